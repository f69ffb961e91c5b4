"""Checks of chapter 3's exercises: the right answers are worked out here, out of the
learner's sight (reading this file gives them away: try the exercise first).

The checks draw their own test inputs from a private generator, so running a check never
moves the notebook's global random state.
"""

import functools
import math
import numbers

import torch
from torch import nn

from shared import (
    CausalAttention,
    KVCache,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
)
from shared.exercises import (
    NOT_TRIED,
    difference,
    plain,
    property_exercise,
    value_exercise,
)


ROLES = ("W_query", "W_key", "W_value")


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _is(obj, class_name):
    """True for an instance of the chapter's class `class_name`, whether the class comes from
    the exported module or from the notebook's own cell (two distinct class objects)."""
    return isinstance(obj, nn.Module) and type(obj).__name__ == class_name


# ---------------------------------------------------------------------------------- 3.1

def _copied_v1(sa_v2):
    sa_v1 = SelfAttention_v1(sa_v2.W_query.in_features, sa_v2.W_query.out_features)
    with torch.no_grad():
        for role in ROLES:
            getattr(sa_v1, role).copy_(getattr(sa_v2, role).weight.T)
    return sa_v1


@functools.cache
def _sa_v2_example():
    with torch.random.fork_rng():
        torch.manual_seed(123)
        return SelfAttention_v2(3, 2), SelfAttention_v2(4, 4)


def _v1_examples():
    sa_v2, _ = _sa_v2_example()
    untransposed = SelfAttention_v1(3, 2)
    for role in ROLES:  # shape (2, 3) where (3, 2) is needed
        setattr(untransposed, role, nn.Parameter(getattr(sa_v2, role).weight.detach().clone()))
    swapped = _copied_v1(sa_v2)
    swapped.W_query, swapped.W_key = swapped.W_key, swapped.W_query
    return {
        "given": {"sa_v2": sa_v2},
        "right": [_copied_v1(sa_v2)],
        "wrong": [SelfAttention_v1(3, 2), untransposed, swapped, sa_v2,
                  sa_v2(torch.rand(6, 3)).detach()],
    }


def _v1_weight_problem(sa_v1, sa_v2):
    """What is wrong with the three matrices, if their shapes or roles give it away."""
    for role in ROLES:
        weight, linear = getattr(sa_v1, role), getattr(sa_v2, role)
        if not isinstance(weight, torch.Tensor):
            return f"Your module's {role} is a {type(weight).__name__}, not a matrix."
        if tuple(weight.shape) != (linear.in_features, linear.out_features):
            return (f"Your module's {role} has shape {tuple(weight.shape)}, but SelfAttention_v1 "
                    f"computes x @ {role}, so it needs the shape (d_in, d_out).")
    for role in ROLES:
        weight = getattr(sa_v1, role).detach()
        for other in ROLES:
            if other != role and torch.allclose(weight, getattr(sa_v2, other).weight.T):
                return (f"Your module's {role} holds sa_v2's {other}: each matrix belongs to "
                        "its own role.")
        stored = getattr(sa_v2, role).weight.detach()
        if weight.shape == stored.shape and torch.allclose(weight, stored) and \
                not torch.allclose(stored, stored.T):
            return (f"Your module's {role} is sa_v2's weight as nn.Linear stores it; the two "
                    "classes multiply from different sides.")
    return None


@property_exercise("3.1", hints=[
    "nn.Linear(d_in, d_out) keeps its matrix as `weight`, of shape (d_out, d_in), and computes "
    "x @ weight.T; SelfAttention_v1 computes x @ W with W of shape (d_in, d_out).",
    "Overwrite each of the three matrices of sa_v1_yours in place, transposed, inside "
    "`with torch.no_grad():`, e.g. sa_v1_yours.W_query.copy_(...).",
], examples=_v1_examples)
def v1_computes_what_v2_computes(sa_v1, sa_v2):
    if not _is(sa_v1, "SelfAttention_v1"):
        return ("The answer is your SelfAttention_v1 module itself (sa_v1_yours), not a "
                f"{type(sa_v1).__name__}.")
    if any(getattr(sa_v2, role).bias is not None for role in ROLES):
        return ("sa_v2 has query, key and value biases, which SelfAttention_v1 has no place "
                "for: build it with qkv_bias=False.")
    problem = _v1_weight_problem(sa_v1, sa_v2)
    if problem:
        return problem
    generator, d_in = _generator(), sa_v2.W_query.in_features
    device = sa_v2.W_query.weight.device  # drawn on the CPU, the same inputs on every device
    with torch.no_grad():
        for num_tokens in (1, 4, 9):  # inputs of either sign, unlike the chapter's
            x = 2 * torch.randn(num_tokens, d_in, generator=generator).to(device)
            if not torch.allclose(sa_v1(x), sa_v2(x), rtol=1e-4, atol=1e-5):
                return (f"On a random input of shape ({num_tokens}, {d_in}) your module's "
                        "context vectors differ from sa_v2's.")
    return None


# ---------------------------------------------------------------------------------- 3.2

def _wrapper_examples():
    with torch.random.fork_rng():
        torch.manual_seed(123)
        return {
            "given": {"batch": torch.rand(2, 6, 3)},
            "right": [MultiHeadAttentionWrapper(3, 1, 6, 0.0, num_heads=2)],
            "wrong": [MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2),
                      MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=1),
                      MultiHeadAttention(3, 2, 6, 0.0, num_heads=2),
                      MultiHeadAttentionWrapper(4, 1, 6, 0.0, num_heads=2)],
        }


@property_exercise("3.2", hints=[
    "The wrapper concatenates the outputs of its heads along the feature axis: num_heads "
    "outputs of d_out features each.",
    "Keep num_heads=2 and choose d_out so that the two heads together make 2 features.",
], examples=_wrapper_examples)
def wrapper_gives_two_features(mha, batch):
    if not _is(mha, "MultiHeadAttentionWrapper"):
        return ("The answer is your MultiHeadAttentionWrapper (mha_2d) itself, not a "
                f"{type(mha).__name__}.")
    if len(mha.heads) != 2:
        return f"Your wrapper has {len(mha.heads)} head(s); the exercise keeps 2."
    d_in = mha.heads[0].W_query.in_features
    if d_in != batch.shape[-1]:
        return (f"Your wrapper takes d_in={d_in} features per token, and the chapter's batch "
                f"has {batch.shape[-1]}.")
    longest = mha.heads[0].mask.shape[0]
    if longest < batch.shape[1]:
        return (f"Your wrapper was built for context_length={longest}, and the chapter's batch "
                f"has {batch.shape[1]} tokens: the context must hold all of them.")
    mha_was_training = mha.training
    mha.eval()  # dropout changes values, never shapes; eval keeps the check quiet
    try:
        with torch.no_grad():
            shorter = torch.randn(1, min(4, longest), d_in, generator=_generator())
            for x in (batch, shorter.to(batch.device)):
                features = mha(x).shape[-1]
                if features != 2:
                    return (f"Your wrapper gives each token {features} features; the exercise "
                            "asks for 2.")
    finally:
        mha.train(mha_was_training)
    return None


# ---------------------------------------------------------------------------------- 3.3

GPT2_SMALL = {"d_in": 768, "d_out": 768, "context_length": 1024, "num_heads": 12}


@value_exercise("3.3", hints=[
    "sum(p.numel() for p in layer.parameters()) counts every trainable number of a module.",
    "The layer has four nn.Linear layers of 768 × 768 weights; which of them have a bias when "
    "qkv_bias=True?",
], mistakes=[
    (lambda expected: expected - 3 * GPT2_SMALL["d_out"],
     "That is the count without the query, key and value biases; GPT-2's projections have "
     "them (qkv_bias=True)."),
    (lambda expected: expected + GPT2_SMALL["context_length"] ** 2,
     "This counts the causal mask too: it is a buffer, not a parameter (it is never trained)."),
    (lambda expected: expected - GPT2_SMALL["d_out"] * (GPT2_SMALL["d_out"] + 1),
     "The output projection, out_proj, is missing: it is trained too."),
    (lambda expected: 12 * expected,
     "This is the count for all 12 layers of GPT-2 small; the exercise asks for one attention "
     "layer."),
])
@functools.cache
def gpt2_attention_parameters():
    with torch.device("meta"):  # sizes only: no memory is allocated, no random number drawn
        layer = MultiHeadAttention(**GPT2_SMALL, dropout=0.0, qkv_bias=True)
    return sum(p.numel() for p in layer.parameters())


# ---------------------------------------------------------------------------------- 3.4

# (batch_size, num_tokens, d_out, num_heads): a toy, odd sizes, GPT-2 small, a model of
# LLaMA 2 7B's width, GPT-3's width and heads
SCORE_SETTINGS = [(2, 6, 4, 2), (3, 5, 6, 3), (4, 7, 8, 1), (8, 1024, 768, 12),
                  (2, 4096, 4096, 32), (1, 2048, 12288, 96)]


@functools.cache
def _score_shape(batch_size, num_tokens, d_out, num_heads):
    """The shape of Q @ K^T inside the chapter's MultiHeadAttention, on the meta device."""
    with torch.device("meta"):
        layer = MultiHeadAttention(d_out, d_out, num_tokens, 0.0, num_heads)
        x = torch.empty(batch_size, num_tokens, d_out)
        queries = layer.split_heads(layer.W_query(x))
        keys = layer.split_heads(layer.W_key(x))
        return tuple((queries @ keys.transpose(2, 3)).shape)


def _wrong_scores_bytes():
    """Typical wrong answers to the memory question (for the tests)."""
    right = _scores_bytes()
    return [right // 16, right // 8, right // 4, right * 8, right // 1024, right / 2**20,
            right + 1, 2 * right, "512 MiB"]


# The memory question: the scores of one layer of GPT-2 medium (1,024 dimensions in 16 heads)
# for 8 sequences of 1,024 tokens, float32
MEMORY_SETTING = {"batch_size": 8, "num_tokens": 1024, "d_out": 1024, "num_heads": 16}


def _scores_bytes():
    shape = _score_shape(*MEMORY_SETTING.values())
    return torch.Size(shape).numel() * 4  # float32: 4 bytes per number


def _scores_bytes_problem(answer):
    """What is wrong with a number of bytes given for the memory question, or None."""
    answer, expected = plain(answer), _scores_bytes()
    if isinstance(answer, bool) or not math.isfinite(answer):
        return difference(answer, expected)  # says what kind of number is wanted
    for factor, why in [
        (MEMORY_SETTING["num_heads"], "every head has score matrices of its own"),
        (MEMORY_SETTING["batch_size"], "every sequence of the batch has scores of its own"),
        (4, "that counts numbers; the exercise asks for bytes, 4 per float32"),
        (MEMORY_SETTING["num_tokens"], "a score matrix compares every query with every key"),
    ]:
        if answer * factor == expected:
            return f"That memory leaves something out: {why}."
    if answer == 8 * expected:
        return "That counts bits; the exercise asks for bytes."
    if 0 < answer < 2**20:
        return (f"{answer!r} bytes is less than one MiB: the answer is a number of bytes; if you "
                "worked it out in MiB or GiB, convert it.")
    return difference(answer, expected)


@property_exercise("3.4", hints=[
    "Section 3.6.2: the heads become a batch axis, and every (sequence, head) pair gets its own "
    "score matrix, which compares every query with every key.",
    "Follow the shapes: after the split the queries are (batch, heads, tokens, head_dim); "
    "what does @ with the transposed keys leave? For the memory, multiply the sizes of that "
    "shape and the bytes per number.",
], examples=lambda: {
    "right": [lambda b, t, d, h: (b, h, t, t), lambda b, t, d, h: torch.Size([b, h, t, t]),
              _scores_bytes(), float(_scores_bytes()), torch.tensor(_scores_bytes())],
    "wrong": [lambda b, t, d, h: (b, t, t), lambda b, t, d, h: (b, h, t, d // h),
              lambda b, t, d, h: (b, t, h, t), lambda b, t, d, h: (b, h, d, d),
              lambda b, t, d, h: b * h * t * t, *_wrong_scores_bytes()],
})
def score_shape_rule(score_shape):
    """The answer is either the function score_shape or the number of bytes of the scores."""
    if not callable(score_shape):
        if isinstance(plain(score_shape), numbers.Real):
            return _scores_bytes_problem(score_shape)
        return ("The answer is your function score_shape itself, or the memory of the scores "
                f"in bytes, not a {type(score_shape).__name__}.")
    for b, t, d, h in SCORE_SETTINGS:
        try:
            theirs = score_shape(b, t, d, h)
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return f"score_shape({b}, {t}, {d}, {h}) raises {type(error).__name__}: {error}."
        if theirs is None:
            return NOT_TRIED
        call = (f"score_shape(batch_size={b}, num_tokens={t}, d_out={d}, num_heads={h}) "
                f"returns {theirs!r}")
        if not isinstance(theirs, (tuple, list)):
            return f"{call}: a shape is a tuple of sizes, one per axis."
        theirs = tuple(int(size) for size in theirs)
        if theirs == _score_shape(b, t, d, h):
            continue
        if len(theirs) != 4:
            return (f"{call}, with {len(theirs)} axes; the scores of multi-head attention "
                    "keep an axis for the sequences and one for the heads besides the two of "
                    "each score matrix.")
        if theirs == (b, h, t, d // h):
            return (f"{call}: that is the shape of the queries after the split, not of the "
                    "scores they produce with the keys.")
        return f"{call}, which is not the shape of the scores in such a layer."
    return None


# ---------------------------------------------------------------------------------- 3.5

def _largest_changes(module, inputs, changed, batch_axis):
    with torch.no_grad():
        if batch_axis:
            before, after = module(inputs[None])[0], module(changed[None])[0]
        else:
            before, after = module(inputs), module(changed)
    return after - before


def _changed(inputs):
    changed = inputs.clone()
    changed[-1] += 1.0
    return changed


def _per_token(no_mask, causal, inputs, measure):
    changed = _changed(inputs)
    return {
        "without mask": measure(_largest_changes(no_mask, inputs, changed, False)).tolist(),
        "with mask": measure(_largest_changes(causal, inputs, changed, True)).tolist(),
    }


@functools.cache
def _mask_example():
    inputs = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                           [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])
    with torch.random.fork_rng():
        torch.manual_seed(123)
        no_mask = SelfAttention_v2(3, 2)
        causal = CausalAttention(3, 2, context_length=6, dropout=0.0)
    return {"no_mask": no_mask, "causal": causal, "inputs": inputs}


@value_exercise("3.5", rel_tol=1e-3, abs_tol=1e-4, hints=[
    "Run each module on `inputs` and on the changed copy, and subtract the outputs: one row of "
    "differences per token.",
    "For each row take the largest absolute entry of the difference; CausalAttention wants a "
    "batch axis, so give it a batch of one and take that one back out.",
], mistakes=[
    (lambda expected, **given: _per_token(**given, measure=lambda d: d.norm(dim=-1)),
     "These are the lengths (norms) of the changes; the exercise asks for the largest absolute "
     "change of any one entry of a token's context vector."),
    (lambda expected, **given: _per_token(**given, measure=lambda d: d.max(dim=-1).values),
     "A change can be negative: take the absolute value before the largest."),
    (lambda expected, **given: {"without mask": expected["with mask"],
                                "with mask": expected["without mask"]},
     "The two lists are swapped: which of the modules has the mask?"),
    (lambda expected, **given: {key: torch.tensor(values) for key, values in expected.items()},
     "The answer holds tensors; the exercise asks for lists of numbers (tensor.tolist() makes "
     "one)."),
], examples=lambda: {"given": _mask_example()})
def changes_per_token(no_mask, causal, inputs):
    return _per_token(no_mask, causal, inputs, measure=lambda d: d.abs().amax(dim=-1))


# ---------------------------------------------------------------------------------- 3.6

# (batch, layers, heads, head_dim, max_tokens, bytes_per_number): the first has all its
# factors distinct, so that a missing one is recognised; then GPT-2 small, LLaMA 2 7B's shape
CACHE_SETTINGS = [(3, 5, 7, 6, 9, 4), (1, 12, 12, 64, 1024, 4), (8, 32, 32, 128, 4096, 2),
                  (2, 1, 3, 5, 11, 1), (1, 1, 1, 1, 1, 2)]
DTYPES = {1: torch.int8, 2: torch.bfloat16, 4: torch.float32, 8: torch.float64}


@functools.cache
def _cache_bytes(batch, layers, heads, head_dim, max_tokens, bytes_per_number):
    """What the chapter's KVCache allocates, one per layer, measured on the meta device."""
    dtype = DTYPES[bytes_per_number]
    with torch.device("meta"):
        cache = KVCache(max_tokens)
        one_token = torch.empty(batch, heads, 1, head_dim, dtype=dtype)
        cache.update(one_token, one_token)  # the first update allocates the whole cache
        per_layer = (cache.keys.numel() + cache.values.numel()) * cache.keys.element_size()
    return layers * per_layer


@property_exercise("3.6", hints=[
    "A KVCache allocates its keys and its values once, each of shape (batch, heads, "
    "max_tokens, head_dim), and every layer has its own cache.",
    "Multiply the sizes of one such tensor, count both tensors and every layer, and turn "
    "numbers into bytes.",
], examples=lambda: {
    "right": [lambda b, l, h, d, t, n: 2 * b * l * h * d * t * n],
    "wrong": [lambda b, l, h, d, t, n: b * l * h * d * t * n,
              lambda b, l, h, d, t, n: 2 * b * h * d * t * n,
              lambda b, l, h, d, t, n: 2 * b * l * h * d * t,
              lambda b, l, h, d, t, n: 2 * l * h * d * t * n,
              lambda b, l, h, d, t, n: 2 * b * l * h * d * t * n / 2**20],
})
def cache_bytes_rule(kv_cache_bytes):
    if not callable(kv_cache_bytes):
        return ("The answer is your function kv_cache_bytes itself, not a "
                f"{type(kv_cache_bytes).__name__}.")
    for setting in CACHE_SETTINGS:
        b, l, h, d, t, n = setting
        try:
            theirs = kv_cache_bytes(*setting)
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return f"kv_cache_bytes{setting} raises {type(error).__name__}: {error}."
        if theirs is None:
            return NOT_TRIED
        actual = _cache_bytes(*setting)
        if theirs == actual:
            continue
        call = (f"kv_cache_bytes(batch={b}, layers={l}, heads={h}, head_dim={d}, "
                f"max_tokens={t}, bytes_per_number={n}) returns {theirs!r}")
        for factor, why in [
            (2, "each layer caches keys and values, two tensors of the same shape"),
            (l, "every layer has a cache of its own"),
            (b, "the cache keeps every sequence of the batch"),
            (n, "that counts numbers; the exercise asks for bytes"),
        ]:
            if factor > 1 and theirs * factor == actual:
                return f"{call}, which leaves something out: {why}."
        return f"{call}, and the caches of such a model take a different number of bytes."
    return None
