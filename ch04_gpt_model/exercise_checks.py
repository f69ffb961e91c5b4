"""Checks of chapter 4's exercises: the right answers are worked out here, out of the
learner's sight (reading this file gives them away: try the exercise first)."""

import functools
import numbers

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ch04_gpt_model import final_model
from ch04_gpt_model.final_model import GPT2_SIZES, gpt2_config
from ch04_gpt_model.gpt_model import GPTModel, LayerNorm, TransformerBlock, count_parameters
from shared import MultiHeadAttention
from shared.exercises import NOT_TRIED, property_exercise, value_exercise


MEDIUM = "gpt2-medium (355M)"


# Exercise 4.1 --------------------------------------------------------------------------------

@functools.cache
def _block_counts(size):
    with torch.device("meta"):
        block = TransformerBlock(gpt2_config(size))
    return (count_parameters(block.ff), count_parameters(block.att))


@value_exercise("4.1", hints=[
    "A block's feed-forward network and attention are its attributes ff and att, and "
    "count_parameters counts any module; build the block from the configuration the exercise "
    "gives, with GPT-2 medium's width and heads.",
    "By hand, with d = emb_dim: the feed-forward network has two d × 4d matrices, each linear "
    "layer with a bias; the attention has four d × d matrices, and only its output projection "
    "has a bias (qkv_bias is False).",
], mistakes=[
    (lambda expected: _block_counts("gpt2-small (124M)"),
     "These are GPT-2 small's counts; the exercise asks about a block of GPT-2 medium."),
    (lambda expected: expected[::-1],
     "The two counts are in the wrong order: the feed-forward network first, then attention."),
    (lambda expected: (expected[0], expected[1] + 3 * gpt2_config(MEDIUM)["emb_dim"]),
     "Your attention count has biases in the query, key and value projections; the "
     "configuration has qkv_bias=False."),
    (lambda expected: (expected[0], expected[1] + 4 * gpt2_config(MEDIUM)["emb_dim"]),
     "Your attention count includes the block's two LayerNorms; they belong to neither part."),
    (lambda expected: (expected[0] - 5 * gpt2_config(MEDIUM)["emb_dim"],
                       expected[1] - gpt2_config(MEDIUM)["emb_dim"]),
     "These count the weight matrices only; the biases of the linear layers are parameters "
     "too."),
])
def block_part_counts():
    return _block_counts(MEDIUM)


# Exercise 4.2 --------------------------------------------------------------------------------

# (vocab_size, context_length, emb_dim, n_layers, n_heads): small ones first, so a learner can
# redo the failing case by hand; then each size varied alone; then the four GPT-2 sizes.
_COUNT_SETTINGS = [
    (10, 4, 2, 1, 1), (10, 4, 2, 2, 2), (10, 8, 2, 1, 1), (20, 4, 2, 1, 1), (10, 4, 6, 1, 3),
    (97, 16, 32, 3, 4), (50257, 256, 768, 12, 12),
    *((50257, 1024, s["emb_dim"], s["n_layers"], s["n_heads"]) for s in GPT2_SIZES.values()),
]
_SIZE_NAMES = ("vocab_size", "context_length", "emb_dim", "n_layers")


@functools.cache
def _gpt_count(vocab_size, context_length, emb_dim, n_layers, n_heads=1):
    cfg = {"vocab_size": vocab_size, "context_length": context_length, "emb_dim": emb_dim,
           "n_heads": n_heads, "n_layers": n_layers, "drop_rate": 0.0, "qkv_bias": False}
    with torch.device("meta"):
        return count_parameters(GPTModel(cfg))


class _NotANumberError(Exception):
    pass


def _formula_problem(count):
    def theirs(sizes):
        value = count(*sizes)
        if value is None:
            return None
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise _NotANumberError(f"gpt_parameter_count{tuple(sizes)} returns a "
                              f"{type(value).__name__}, not a number.")
        return value

    for *sizes, n_heads in _COUNT_SETTINGS:
        try:
            value = theirs(sizes)
        except _NotANumberError as error:
            return str(error)
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return f"gpt_parameter_count{tuple(sizes)} fails: {type(error).__name__}: {error}."
        if value is None:
            return NOT_TRIED
        truth = _gpt_count(*sizes, n_heads)
        if value == truth:
            continue
        setting = ", ".join(f"{name}={size}" for name, size in zip(_SIZE_NAMES, sizes))
        message = (f"For {setting} your formula gives {value:,}, "
                   f"{'more' if value > truth else 'fewer'} than the model holds.")
        # Which sizes the gap depends on: change each alone and see whether the gap moves.
        moved = []
        for i, name in enumerate(_SIZE_NAMES):
            other = list(sizes)
            other[i] = sizes[i] + 1 if name == "n_layers" else 2 * sizes[i]
            try:
                gap = theirs(other) - _gpt_count(*other, n_heads)
            except Exception:  # noqa: BLE001 - reported above if it matters
                continue
            if gap != value - truth:
                moved.append(name)
        if moved:
            message += (f" The gap changes when {' or '.join(moved)} changes: look at the "
                        "terms that grow with it.")
        else:
            message += " The gap stays the same whatever the sizes: a constant too many or few?"
        return message
    return None


def _right_count(v, t, d, n):
    return 2 * v * d + t * d + n * (12 * d * d + 10 * d) + 2 * d


@property_exercise("4.2", hints=[
    "Count one part at a time: the two embeddings, one Transformer block (attention, "
    "feed-forward network, two LayerNorms), the final LayerNorm and the output head. Only the "
    "blocks repeat n_layers times.",
    "An embedding table has one row per token or position; a LayerNorm has a scale and a "
    "shift of emb_dim each; the query, key and value projections have no bias, the attention's "
    "output projection and both feed-forward layers have one; the output head has none.",
], examples=lambda: {
    "right": [_right_count,
              lambda v, t, d, n: d * (2 * v + t + 2) + n * d * (12 * d + 10)],
    "wrong": [lambda v, t, d, n: 2 * v * d + t * d + n * (12 * d * d + 13 * d) + 2 * d,
              lambda v, t, d, n: v * d + t * d + n * (12 * d * d + 10 * d) + 2 * d,
              lambda v, t, d, n: 2 * v * d + t * d + n * (12 * d * d + 10 * d),
              lambda v, t, d, n: _right_count(v, t, d, n) + 1,
              lambda v, t, d, n: "many"],
})
def parameter_count_formula(gpt_parameter_count):
    if not callable(gpt_parameter_count):
        return ("The answer is your function gpt_parameter_count itself, not a "
                f"{type(gpt_parameter_count).__name__}.")
    return _formula_problem(gpt_parameter_count)


# Exercise 4.3 --------------------------------------------------------------------------------

def dropout_rates(model):
    """The dropout rates that act in one training-mode forward pass, by where they act.

    Records every call of nn.functional.dropout (nn.Dropout's too) and the dropout_p of every
    fused attention call (sdpa), as "attention" inside a MultiHeadAttention, "shortcut"
    elsewhere inside a Transformer block, "embedding" outside the blocks. A dropout module that
    is never called does not count.
    """
    rates, running = {"embedding": set(), "shortcut": set(), "attention": set()}, []

    def where():  # inside an attention module, elsewhere inside a block, or outside the blocks
        if any(isinstance(m, MultiHeadAttention) for m in running):
            return "attention"
        in_block = any(isinstance(sub, MultiHeadAttention) for m in running[1:]
                       for sub in m.modules())
        return "shortcut" if in_block else "embedding"

    def argument(args, kwargs, name, position, default):
        return kwargs.get(name, args[position] if len(args) > position else default)

    class RecordDropout(TorchFunctionMode):  # sees every torch function called in the pass
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is nn.functional.dropout and argument(args, kwargs, "training", 2, True):
                rates[where()].add(argument(args, kwargs, "p", 1, 0.5))
            elif func is nn.functional.scaled_dot_product_attention:
                rates[where()].add(argument(args, kwargs, "dropout_p", 4, 0.0))
            return func(*args, **kwargs)

    def enter(module, args):
        running.append(module)

    def leave(module, args, output):
        running.pop()

    hooks = [hook for m in model.modules()
             for hook in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    device = next(model.parameters()).device
    try:
        with RecordDropout():
            model.train()(torch.zeros(1, 4, dtype=torch.long, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return {kind: sorted(values) for kind, values in rates.items()}


_SMALL = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 3,
          "qkv_bias": False}
_RATE_KEYS = {"embedding": "drop_rate_emb", "shortcut": "drop_rate_shortcut",
              "attention": "drop_rate_attn"}
_PLACES = {"embedding": "on the summed embeddings",
           "shortcut": "on the sublayers' outputs (before the shortcut additions)",
           "attention": "on the attention weights"}
# The three rates differ from each other and from drop_rate, so a rate in the wrong place shows.
_RATE_SETTINGS = [
    {"drop_rate": 0.05, "drop_rate_emb": 0.1, "drop_rate_shortcut": 0.2, "drop_rate_attn": 0.3},
    {"drop_rate": 0.05, "drop_rate_emb": 0.3, "drop_rate_shortcut": 0.0, "drop_rate_attn": 0.15},
    {"drop_rate": 0.05, "drop_rate_emb": 0.25, "drop_rate_shortcut": 0.35, "drop_rate_attn": 0.45,
     "sdpa": True},
]


def _rates_text(cfg):
    shown = ", ".join(f"{key}={cfg[key]}" for key in (*_RATE_KEYS.values(), "drop_rate"))
    return shown + (" and sdpa=True (chapter 3's fused attention, beyond the book)"
                    if cfg.get("sdpa") else "")


def _three_dropouts_problem(make_model):
    for rates in _RATE_SETTINGS:
        cfg = {**_SMALL, **rates}
        torch.manual_seed(0)
        try:
            model = make_model(cfg)
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return (f"Building it with {_rates_text(cfg)} raises {type(error).__name__}: "
                    f"{error}.")
        if not isinstance(model, nn.Module):
            return f"It returns a {type(model).__name__}, not a model."
        try:
            measured = dropout_rates(model)
        except Exception as error:  # noqa: BLE001
            return (f"A training-mode forward pass of your model fails: "
                    f"{type(error).__name__}: {error}.")
        for kind, key in _RATE_KEYS.items():
            # A rate of 0 may be an nn.Dropout(0.0) that is called, or no dropout at all.
            if measured[kind] != [cfg[key]] and (cfg[key] or measured[kind]):
                acting = (f"with rate(s) {measured[kind]}" if measured[kind]
                          else "not at all")
                return (f"Built with {_rates_text(cfg)}, your model's dropout {_PLACES[kind]} "
                        f"acts {acting} in a training-mode forward pass.")
    for key in _RATE_KEYS.values():
        for rate in (1.5, 1.0, -0.1):  # above, at and below [0, 1)'s two ends
            try:
                make_model({**_SMALL, **_RATE_SETTINGS[0], key: rate})
            except ValueError:
                continue
            except Exception as error:  # noqa: BLE001
                return f"With {key}={rate} it raises {type(error).__name__}, not a ValueError."
            return (f"With {key}={rate} your model is built without complaint; a rate outside "
                    "[0, 1) should raise a ValueError.")
    return None


def _example_models():
    class Right(GPTModel):  # the lesson's (the book's) GPTModel, as the exercise asks
        def __init__(self, cfg):
            for key in _RATE_KEYS.values():
                if not 0 <= cfg[key] < 1:
                    raise ValueError(f"{key} must be in [0, 1), got {cfg[key]}")
            super().__init__(cfg)
            self.drop_emb = nn.Dropout(cfg["drop_rate_emb"])
            for block in self.trf_blocks:
                block.drop_shortcut = nn.Dropout(cfg["drop_rate_shortcut"])
                block.att.dropout = nn.Dropout(cfg["drop_rate_attn"])

    class Unchanged(Right):  # takes the three keys, but every dropout keeps drop_rate
        def __init__(self, cfg):
            GPTModel.__init__(self, cfg)

    class Unchecked(Right):  # sets p after construction: nothing refuses 1.5
        def __init__(self, cfg):
            GPTModel.__init__(self, cfg)
            self.drop_emb.p = cfg["drop_rate_emb"]
            for block in self.trf_blocks:
                block.drop_shortcut.p = cfg["drop_rate_shortcut"]
                block.att.dropout.p = cfg["drop_rate_attn"]

    class DropoutRefuses(Right):  # nn.Dropout refuses 1.5 and -0.1 itself, but takes 1.0
        def __init__(self, cfg):
            GPTModel.__init__(self, cfg)
            self.drop_emb = nn.Dropout(cfg["drop_rate_emb"])
            for block in self.trf_blocks:
                block.drop_shortcut = nn.Dropout(cfg["drop_rate_shortcut"])
                block.att.dropout = nn.Dropout(cfg["drop_rate_attn"])

    class Swapped(Right):  # the shortcut's and the attention's rates exchanged
        def __init__(self, cfg):
            super().__init__({**cfg, "drop_rate_shortcut": cfg["drop_rate_attn"],
                              "drop_rate_attn": cfg["drop_rate_shortcut"]})

    class FirstBlockOnly(Right):
        def __init__(self, cfg):
            super().__init__({**cfg, "drop_rate_shortcut": cfg["drop_rate"],
                              "drop_rate_attn": cfg["drop_rate"]})
            self.trf_blocks[0].drop_shortcut.p = cfg["drop_rate_shortcut"]
            self.trf_blocks[0].att.dropout.p = cfg["drop_rate_attn"]

    return {"right": [Right],
            "wrong": [Unchanged, GPTModel, Unchecked, DropoutRefuses, Swapped, FirstBlockOnly]}


@property_exercise("4.3", hints=[
    "Find the three places where GPTModel (4.6) and TransformerBlock (4.5) create their "
    "dropout modules, and the attribute each is kept in; the attention's is inside chapter 3's "
    "MultiHeadAttention.",
    "After super().__init__(cfg), each of the three places holds a dropout built with drop_rate: "
    "give each place its own rate, in every block, in a module that the forward pass calls; "
    "and refuse a bad rate before anything is built.",
], examples=_example_models)
def three_dropout_rates(make_model):
    if isinstance(make_model, nn.Module):
        return "The answer is your model class itself, not a model built from it."
    if not callable(make_model):
        return ("The answer is your model class (or a function from a configuration to a "
                f"model), not a {type(make_model).__name__}.")
    return _three_dropouts_problem(make_model)


# Exercise 4.4 --------------------------------------------------------------------------------

@functools.cache
def _medium_shapes():
    captured = {}
    with torch.device("meta"):
        model = final_model.GPTModel(gpt2_config(MEDIUM))  # last_only is the final model's
        ids = torch.zeros(3, 6, dtype=torch.long)
        hooks = [model.tok_emb.register_forward_hook(
                     lambda m, i, output: captured.update(embedding=tuple(output.shape))),
                 model.trf_blocks[-1].register_forward_hook(
                     lambda m, i, output: captured.update(block=tuple(output.shape)))]
        logits = tuple(model(ids).shape)
        for hook in hooks:
            hook.remove()
        last = tuple(model(ids, last_only=True).shape)
    return (captured["embedding"], captured["block"], logits, last)


@value_exercise("4.4", hints=[
    "Between the embedding and the output head every tensor is (batch, tokens, emb_dim); "
    "only the head changes the last axis.",
    "Read GPT-2 medium's emb_dim and vocab_size in gpt2_config's result; last_only keeps the "
    "position axis, with a single position in it.",
], mistakes=[
    (lambda expected: [(b, t, 768 if d == gpt2_config(MEDIUM)["emb_dim"] else d)
                       for b, t, d in expected[:2]] + list(expected[2:]),
     "768 is GPT-2 small's width; GPT-2 medium's vectors are wider."),
    (lambda expected: [*expected[:3], (expected[3][0], expected[3][2])],
     "last_only keeps the position axis: it slices x[:, -1:], not x[:, -1]."),
    (lambda expected: [(t, b, d) for b, t, d in expected],
     "The first axis is the batch (3 sequences), the second the tokens (6 per sequence)."),
])
def medium_shapes():
    return list(_medium_shapes())


# Exercise 4.5 --------------------------------------------------------------------------------

@functools.cache
def _embedding_share(size, tie):
    with torch.device("meta"):
        model = final_model.GPTModel(gpt2_config(size, tie_weights=tie))
    return count_parameters(model.tok_emb) / count_parameters(model)


@value_exercise("4.5", hints=[
    "With tie_weights=True the head's weight is the embedding's Parameter: count_parameters "
    "counts it once, and the module tok_emb holds it.",
    "Both counts come from the same tied model, built on the meta device: the part is the "
    "module that holds the shared matrix, the whole is the model, in which that matrix counts "
    "once.",
], mistakes=[
    (lambda expected: {size: _embedding_share(size, False) for size in expected},
     "These are the untied shares of 4.7.2; build the models with tie_weights=True."),
    (lambda expected: {size: 100 * share for size, share in expected.items()},
     "These look like percentages; the answer is a fraction between 0 and 1."),
    (lambda expected: {size: 2 * _embedding_share(size, False) for size in expected},
     "That is both vocabulary-sized matrices of the untied model; the tied model has one."),
    (lambda expected: {size: round(share, 3) for size, share in expected.items()},
     "Close: these look rounded, as a printout shows them; compute the fractions with code."),
])
def tied_embedding_shares():
    return {size: _embedding_share(size, True) for size in GPT2_SIZES}


# Exercise 4.6 --------------------------------------------------------------------------------

def layer_norm_relation(changed, original, atol=1e-4):
    """How LayerNorm's output for a changed input relates to its output for the original."""
    if torch.allclose(changed, original, atol=atol):
        return "same"
    return "negated" if torch.allclose(changed, -original, atol=atol) else "different"


_RELATIONS = ("same", "negated", "different")


def _layer_norm_invariances():
    torch.manual_seed(123)
    x = torch.randn(4, 768)
    norm = LayerNorm(768)
    with torch.no_grad():
        return [layer_norm_relation(norm(change), norm(x))
                for change in (10 * x, x + 3, -x, 0.001 * x)]


def _examples_4_6():
    right = _layer_norm_invariances()
    return {"right": [right, [word.upper() + " " for word in right]],
            "wrong": [[*right[:3], right[0]], [right[0], "different", *right[2:]],
                      ["different", *right[1:]], ["negated"] * 4, right[:3], "same",
                      [*right[:3], "equal"]]}


@property_exercise("4.6", hints=[
    "LayerNorm subtracts each row's mean and divides by the row's standard deviation: follow "
    "what each change does to the deviations from the mean and to the standard deviation.",
    "Look at ε in the denominator, sqrt(variance + ε) with ε = 1e-5: next to which variances "
    "can it be ignored, and next to which not?",
], examples=_examples_4_6)
def layer_norm_invariances(answer):
    """None when the four predicted words (any case) are what LayerNorm computes; otherwise a
    hint that says how many are wrong, never which word is right."""
    if isinstance(answer, str) or not isinstance(answer, (list, tuple)) or len(answer) != 4:
        return "The answer is a list of four words, one per change (a) to (d)."
    words = [word.strip().lower() if isinstance(word, str) else word for word in answer]
    for word in words:
        if word not in _RELATIONS:
            return f"Each word is one of 'same', 'negated' or 'different', not {word!r}."
    right = _layer_norm_invariances()
    if words == right:
        return None
    if words == [*right[:3], right[0]]:
        return ("One of your four predictions is wrong: for each change, compare the changed "
                "input's variance with ε as well.")
    if words == [right[0], "different", *right[2:]]:
        return ("Adding 3 to every feature also adds 3 to the mean: what happens to x minus "
                "its mean?")
    if words == ["different", *right[1:]]:
        return "Multiplying by 10 also multiplies the standard deviation by 10."
    wrong = sum(word != expected for word, expected in zip(words, right))
    return f"{wrong} of your four predictions differ from what LayerNorm computes."


# Exercise 4.7 --------------------------------------------------------------------------------

def _qwen3_block_counts(**change):
    from ch04_gpt_model.modern import OPEN_MODEL_CONFIGS, ModernBlock, validate_modern_config

    cfg = validate_modern_config({**OPEN_MODEL_CONFIGS["qwen3-0.6b"], **change})
    with torch.device("meta"):
        block = ModernBlock(cfg)
    return (count_parameters(block.att), count_parameters(block.ff),
            count_parameters(block.norm1) + count_parameters(block.norm2))


@value_exercise("4.7", hints=[
    "Count matrix by matrix: each nn.Linear without a bias has in × out parameters, and each "
    "RMSNorm one weight per number it normalises.",
    "The query matrix maps emb_dim to n_heads × head_dim numbers, the key and value matrices "
    "to n_kv_groups × head_dim each; QK-norm's two RMSNorms work on one head (head_dim).",
], mistakes=[
    (lambda expected: _qwen3_block_counts(head_dim=None),
     "Qwen3 sets head_dim itself: 128, not emb_dim // n_heads = 64."),
    (lambda expected: _qwen3_block_counts(n_kv_groups=16),
     "That is multi-head attention: the keys and values have n_kv_groups heads, not n_heads."),
    (lambda expected: (expected[0] - 256, *expected[1:]),
     "The attention's count includes QK-norm's two RMSNorms."),
    (lambda expected: (expected[0], expected[1] * 2 // 3, expected[2]),
     "SwiGLU has three matrices: gate, up and down."),
    (lambda expected: (*expected[:2], 2 * expected[2]),
     "RMSNorm has a scale and no shift: one weight per number."),
])
def qwen3_block_counts():
    return _qwen3_block_counts()


# Exercise 4.8 --------------------------------------------------------------------------------

def _kv_cache_gib(kv_heads, bytes_per_number=2, tensors=2):
    layers, head_dim, tokens = 32, 4096 // 32, 131_072  # Llama 3.1 8B's config.json
    return tensors * layers * kv_heads * head_dim * bytes_per_number * tokens / 2**30


@value_exercise("4.8", hints=[
    "Per token and layer the cache keeps a key and a value vector for every key-value head, "
    "each head_dim numbers; head_dim is hidden_size / num_attention_heads.",
    "Multiply by the layers, the 2 bytes of a bfloat16 number and the 131,072 tokens; a GiB "
    "is 2**30 bytes. Without grouping, there would be one key-value head per query head.",
], mistakes=[
    (lambda expected: (_kv_cache_gib(8, tensors=1), _kv_cache_gib(32, tensors=1)),
     "The cache holds keys and values: two vectors per head, layer and token."),
    (lambda expected: (_kv_cache_gib(8, bytes_per_number=4), _kv_cache_gib(32, bytes_per_number=4)),
     "That is float32; a bfloat16 number takes 2 bytes."),
    (lambda expected: tuple(gib * 2**30 / 1e9 for gib in expected),
     "Those are GB (10**9 bytes); the answer is in GiB (2**30 bytes)."),
    (lambda expected: expected[::-1], "The grouped-query cache is the smaller of the two."),
])
def llama_8b_kv_cache():
    return (_kv_cache_gib(8), _kv_cache_gib(32))


# Exercise 4.9 --------------------------------------------------------------------------------

def _read_back_after_writes(beta=0.5, writes=3, summed=False):
    """What reading with k returns, as a fraction of v, after each of `writes` writes of one
    pair (k, v) into an empty state (k of unit length, no forgetting)."""
    fractions, held = [], 0.0
    for _ in range(writes):
        held = held + (beta if summed else beta * (1 - held))
        fractions.append(held)
    return tuple(fractions)


@value_exercise("4.9", hints=[
    "Reading with a unit-length key k returns S^T k. Follow one number: the fraction of v that "
    "S^T k holds, starting at 0.",
    "Each write adds beta times the error, (v - S^T k), along k: the fraction moves beta of "
    "the way from where it is to 1.",
], mistakes=[
    (lambda expected: _read_back_after_writes(summed=True),
     "That is 4.9.1's sum, which adds beta * v at every write; the delta rule writes only the "
     "error, what the state does not yet return."),
    (lambda expected: (1.0, 1.0, 1.0),
     "A write with beta below 1 closes only a part of the gap, not all of it."),
    (lambda expected: (0.5, 0.25, 0.125),
     "The write adds to what the state holds; it does not replace it."),
])
def delta_rule_read_back():
    return _read_back_after_writes()
