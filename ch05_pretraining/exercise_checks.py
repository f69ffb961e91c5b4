"""Checks of chapter 5's exercises: the right answers are worked out here, out of the
learner's sight (reading this file gives them away: try the exercise first)."""

import collections
import contextlib
import functools
import math
import tempfile
from pathlib import Path

import tiktoken
import torch
from torch import nn

from shared import (
    GPTDatasetV1,
    GPTModel,
    batches_per_step,
    calc_loss_batch,
    calc_loss_loader,
    check,
    generate_text,
    generator_states,
    gpt2_config,
    restore_generators,
    save_checkpoint,
)
from shared.exercises import NOT_TRIED, property_exercise, value_exercise


@functools.cache
def _gpt2():
    return tiktoken.get_encoding("gpt2")


@contextlib.contextmanager
def _untouched(model=None):
    """Leave every random generator (the CPU's, and a GPU's that sampling on it draws from) and
    the model's train/eval mode as they were: checking an answer must not change what the
    notebook's later cells print."""
    training = model.training if model is not None else None
    states = generator_states()
    try:
        yield
    finally:
        restore_generators(states)
        if model is not None:
            model.train(training)


def _device_of(model):
    """Where the learner's model is (a GPU, if 5.1.3's `device` is one): the check's inputs go
    there too."""
    device = next(model.parameters()).device
    check(device.type != "meta", "model is on the meta device (its tensors have shapes but no "
          "values), and this check runs it: build it on a real device, or load weights into it")
    return device


# The toy example of section 5.3: nine words and their next-token logits.
TOY_WORDS = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"]
TOY_LOGITS = [4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79]


def _toy_distribution(temperature, top_k=None):
    """The probabilities with which `generate` samples each toy word (temperature > 0)."""
    logits = torch.tensor(TOY_LOGITS, dtype=torch.float64)
    if top_k is not None:
        logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[-1], -math.inf)
    return torch.softmax(logits / temperature, dim=0)


@value_exercise("5.1", rel_tol=1e-2, abs_tol=1e-9, hints=[  # 1%: three figures, as printed, pass
    "Temperature divides the logits before the softmax; read the entry of \"pizza\" "
    "(vocab[\"pizza\"]) from each of the three softmax results.",
    "Divide the logits, not the probabilities, by the temperature, and give each answer as a "
    "plain number (a tensor's .item()), in the order T=1, 0.1, 5.",
], mistakes=[
    (lambda expected: [0.0, 0.0, 0.049],
     "These are the sampling cell's counts divided by 1,000, an estimate; the exercise asks "
     "for the exact probabilities from the softmax."),
    (lambda expected: [100 * p for p in expected],
     "These look like percentages; give probabilities between 0 and 1."),
    (lambda expected: [expected[1], expected[0], expected[2]],
     "The right numbers, in the wrong order: give them for T=1, then 0.1, then 5."),
])
def pizza_probabilities():
    pizza = TOY_WORDS.index("pizza")
    return [_toy_distribution(t)[pizza].item() for t in (1, 0.1, 5)]


SAMPLING_SETTINGS = {"precise": {"temperature": 0.5, "top_k": 3},
                     "balanced": {"temperature": 1.0, "top_k": 5},
                     "adventurous": {"temperature": 2.0}}


def _entropy(probs):
    probs = probs[probs > 0]
    return -(probs * probs.log()).sum().item()


@value_exercise("5.2", rel_tol=1e-3, hints=[
    "Keep the top k logits, divide by the temperature and take the softmax (5.3.1, 5.3.2): "
    "that is one setting's distribution; H = -sum(p * ln p), over the words whose "
    "probability is not 0.",
    "Leave out the zeros (0 * ln 0 counts as 0, but torch computes nan), and use the natural "
    "logarithm, torch.log: the answer is in nats.",
], mistakes=[
    (lambda expected: {name: h / math.log(2) for name, h in expected.items()},
     "These are bits (logarithm base 2); the exercise asks for nats (natural logarithm)."),
    (lambda expected: {name: _entropy(_toy_distribution(options["temperature"]))
                       for name, options in SAMPLING_SETTINGS.items()},
     "These are the entropies without the top-k cut: keep only the k most likely words "
     "before the softmax."),
])
def sampling_entropies():
    return {name: _entropy(_toy_distribution(**options))
            for name, options in SAMPLING_SETTINGS.items()}


def _texts_for_seeds(model, options, seeds=range(5), max_new_tokens=15):
    prompt = torch.tensor([_gpt2().encode("Every effort moves you")], device=_device_of(model))
    texts = set()
    for seed in seeds:
        torch.manual_seed(seed)
        ids = generate_text(model, prompt, max_new_tokens, **options)
        texts.add(tuple(ids[0].tolist()))
    return texts


@functools.cache
def _tiny_gpt(vocab_size=6200, context_length=16, seed=0):  # the prompt's ids are below 6200
    torch.manual_seed(seed)
    return GPTModel(gpt2_config(vocab_size=vocab_size, context_length=context_length,
                                emb_dim=8, n_heads=2, n_layers=1)).eval()


@value_exercise("5.3", hints=[
    "A setting is deterministic when no random number decides the token: greedy decoding "
    "(temperature 0), or sampling from a distribution that has a single token left.",
    "Try each setting with set_seed(0) to set_seed(4) on the model in eval mode and compare the "
    "texts; then think about what top_k=1, or top_k=2 at a high temperature, leaves.",
], mistakes=[
    (lambda expected, **given: [0],
     "Greedy decoding is one; another setting leaves a single candidate token whatever the "
     "temperature, and a third decodes greedily too."),
    (lambda expected, **given: sorted(set(expected) | {4}),
     "top_k=2 leaves two candidate tokens, and at temperature 2 the random draw still chooses "
     "between them."),
    (lambda expected, **given: [i for i in expected if i != 3],
     "temperature=0 decodes greedily, whatever top_k is: top-k cannot change the argmax."),
], examples=lambda: {"given": {"model": _tiny_gpt(),
                               "candidates": [{}, {"temperature": 1.0},
                                              {"temperature": 1.0, "top_k": 1},
                                              {"temperature": 0.0, "top_k": 40},
                                              {"temperature": 2.0, "top_k": 2},
                                              {"temperature": 0.7, "top_k": 5}]}})
def deterministic_settings(model, candidates):
    # Decided on a fixed untrained model, not on the learner's `model`: a model trained long
    # enough can give one token nearly all the probability, so that a setting which leaves two
    # tokens happens to give one text for five seeds, though a random number still decides.
    key = repr(candidates)
    if key not in _DETERMINISTIC:  # each wrong try would otherwise generate 450 tokens again
        _DETERMINISTIC[key] = [i for i, options in enumerate(candidates)
                               if len(_texts_for_seeds(_tiny_gpt(), options)) == 1]
    return list(_DETERMINISTIC[key])


_DETERMINISTIC: dict = {}


_RESUME_CFG = gpt2_config(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=1,
                          drop_rate=0.0)


def _resume_batches(seed):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, _RESUME_CFG["vocab_size"], (2, 2, 9), generator=generator)
    return [(row[:, :-1], row[:, 1:]) for row in ids]


def _train(model, optimizer, batches):
    """The book's training step on each batch, silently, where the model is."""
    model.train()
    for input_batch, target_batch in batches:
        optimizer.zero_grad()
        calc_loss_batch(input_batch, target_batch, model, _device_of(model)).backward()
        optimizer.step()


def _one_more_step(model, optimizer):
    _train(model, optimizer, _resume_batches(1)[:1])


def _resume_problem(resume):
    with _untouched(), tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        trained = GPTModel(_RESUME_CFG)
        optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-3, weight_decay=0.1)
        _train(trained, optimizer, _resume_batches(0))
        path = Path(folder) / "checkpoint.pth"
        # under the book's keys (section 5.4) and save_checkpoint's: a resume written either
        # way reads it
        save_checkpoint(path, trained, optimizer, step=2,
                        model_state_dict=trained.state_dict(),
                        optimizer_state_dict=optimizer.state_dict())
        saved = {name: p.detach().clone() for name, p in trained.named_parameters()}
        try:
            result = resume(path, dict(_RESUME_CFG))
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return f"resume(path, cfg) raises {type(error).__name__}: {error}."
        if result is None:
            return NOT_TRIED
        if not (isinstance(result, tuple) and len(result) == 2):
            return "resume should return a pair: (model, optimizer)."
        model, resumed_optimizer = result
        if not isinstance(model, nn.Module):
            return f"The first item should be the model, not a {type(model).__name__}."
        if not isinstance(resumed_optimizer, torch.optim.Optimizer):
            return (f"The second item should be the optimizer, not a "
                    f"{type(resumed_optimizer).__name__}.")
        theirs = dict(model.named_parameters())
        if set(theirs) != set(saved) or not all(
                theirs[name].shape == p.shape and torch.equal(theirs[name].detach(),
                                                              p.to(theirs[name].device))
                for name, p in saved.items()):
            return "Your model does not hold the weights that were saved."
        # The run that never stopped takes its next step where the learner's model is (a GPU
        # rounds differently from the CPU); loading its own state moves AdamW's state along.
        device = _device_of(model)
        saved = {name: p.to(device) for name, p in saved.items()}
        trained.to(device)
        optimizer.load_state_dict(optimizer.state_dict())
        _one_more_step(trained, optimizer)
        _one_more_step(model, resumed_optimizer)
        if all(torch.equal(theirs[name].detach(), p) for name, p in saved.items()):
            return ("A training step with your optimizer leaves your model unchanged: was the "
                    "optimizer built on this model's parameters?")
        if not all(torch.allclose(theirs[name].detach(), p.detach(), atol=1e-6)
                   for name, p in trained.named_parameters()):
            return ("Your model holds the saved weights, but one more training step moves them "
                    "differently from a run that never stopped: did the optimizer get its "
                    "saved state (AdamW's averages and step count) too?")
        return None


def _resume_with_load_checkpoint(path, cfg):
    from shared import load_checkpoint

    model = GPTModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters())
    load_checkpoint(path, model, optimizer)
    return model, optimizer


def _resume_by_hand(path, cfg):  # as the book's exercise solution, with its keys
    state = torch.load(path, weights_only=True)
    model = GPTModel(cfg)
    model.load_state_dict(state["model_state_dict"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)  # load_state_dict restores lr
    optimizer.load_state_dict(state["optimizer_state_dict"])
    return model, optimizer


def _resume_model_only(path, cfg):
    model = GPTModel(cfg)
    model.load_state_dict(torch.load(path, weights_only=True)["model_state_dict"])
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)


def _resume_fresh(path, cfg):
    model = GPTModel(cfg)
    return model, torch.optim.AdamW(model.parameters())


def _resume_other_parameters(path, cfg):
    model, _ = _resume_by_hand(path, cfg)
    return model, _resume_by_hand(path, cfg)[1]


@property_exercise("5.4", hints=[
    "Build a GPTModel(cfg) and an AdamW over its parameters, then copy both saved states "
    "into them: torch.load the file, then each object's load_state_dict, as in 5.4.",
    "The optimizer's state holds AdamW's two running averages per weight and its step count; "
    "its learning rate and weight decay come back from the file too, so AdamW's defaults are "
    "fine when you build it. Return (model, optimizer).",
], examples=lambda: {
    "right": [_resume_with_load_checkpoint, _resume_by_hand],
    "wrong": [_resume_model_only, _resume_fresh, _resume_other_parameters],
})
def resume_from_checkpoint(resume):
    if not callable(resume):
        return f"The answer is your function resume itself, not a {type(resume).__name__}."
    return _resume_problem(resume)


def _losses(model, train_loader, val_loader, num_batches=None):
    device = _device_of(model)  # before _untouched copies the model
    with _untouched(model), torch.no_grad():
        model.eval()
        return (calc_loss_loader(train_loader, model, device, num_batches),
                calc_loss_loader(val_loader, model, device, num_batches))


def _tiny_loader(n_batches, seed, vocab_size=6200):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (n_batches, 2, 9), generator=generator)
    return [(row[:, :-1], row[:, 1:]) for row in ids]


def _gaps(model, train_loader, val_loader, book_losses, num_batches=None):
    """(gpt's validation minus training loss, the same for the book's two numbers)."""
    train_loss, val_loss = _losses(model, train_loader, val_loader, num_batches)
    return val_loss - train_loss, book_losses[1] - book_losses[0]


@value_exercise("5.5", rel_tol=1e-4, hints=[
    "A gap is the validation loss minus the training loss. For gpt: calc_loss_loader(loader, "
    "gpt, device) over each whole loader, with gpt in eval mode (no dropout) and under "
    "torch.no_grad(). For the book's GPT-2: its two numbers in book_gpt2_losses.",
    "Leave num_batches out, so that every batch counts; use book_gpt2_losses as given; and give "
    "(gpt's gap, the book's GPT-2's gap) as plain numbers. A gap can be negative.",
], mistakes=[
    (lambda expected, **given: tuple(-gap for gap in expected),
     "You subtracted the other way round: a gap is the validation loss minus the training "
     "loss."),
    (lambda expected, **given: _losses(given["model"], given["train_loader"],
                                       given["val_loader"]),
     "These look like gpt's training and validation losses; the exercise asks for two gaps, "
     "each the validation loss minus the training loss."),
    (lambda expected, **given: _gaps(**given, num_batches=5),
     "gpt's gap here comes from the first 5 batches of each loader (the training loop's "
     "eval_iter); average over every batch."),
    (lambda expected, **given: (expected[1], expected[0]),
     "The right numbers, in the wrong order: gpt's gap first, then the book's GPT-2's."),
], examples=lambda: {"given": {"model": _tiny_gpt(context_length=8),
                               "train_loader": _tiny_loader(8, 1),
                               "val_loader": _tiny_loader(3, 2),
                               "book_losses": (3.755, 3.560)}})
def pretrained_gaps(model, train_loader, val_loader, book_losses):
    return _gaps(model, train_loader, val_loader, book_losses)


@functools.cache
def _parameter_count(size, **options):
    with torch.device("meta"):
        model = GPTModel(gpt2_config(size, **options))
    return sum(p.numel() for p in model.parameters())


@functools.cache
def _state_dict_count(size, **options):
    with torch.device("meta"):
        model = GPTModel(gpt2_config(size, **options))
    return sum(t.numel() for t in model.state_dict().values())


@value_exercise("5.6", hints=[
    "Build each model with gpt2_config(size, qkv_bias=True) (GPT-2's context of 1024), on the "
    "meta device, and count the numbers in its parameters; a tied head is one matrix in two "
    "roles.",
    "GPT-2 has query/key/value biases (qkv_bias=True: gpt2_config leaves them out by default), "
    "and parameters() lists a shared matrix once, so the tied count needs no subtraction.",
], mistakes=[
    (lambda expected: (_parameter_count("gpt2-xl (1558M)"),
                       _parameter_count("gpt2-xl (1558M)", tie_weights=True)),
     "These counts leave out GPT-2's query/key/value biases: build with qkv_bias=True, as "
     "GPT-2 has them."),
    (lambda expected: (_state_dict_count("gpt2-xl (1558M)", qkv_bias=True),
                       _state_dict_count("gpt2-xl (1558M)", qkv_bias=True, tie_weights=True)),
     "These count the state_dict, which holds each block's causal-mask buffer too; count "
     "model.parameters() only."),
    (lambda expected: (expected[1], expected[0]),
     "The right numbers, in the wrong order: untied first, then tied."),
])
def gpt2_xl_parameters():
    return (_parameter_count("gpt2-xl (1558M)", qkv_bias=True),
            _parameter_count("gpt2-xl (1558M)", qkv_bias=True, tie_weights=True))


VOCAB_SIZE = 50257
UNIGRAM_ADD = 0.01  # added to every count by exercise 5.7's unigram model


def _bigram_loss(train_data, val_loader, unigram_add=UNIGRAM_ADD, use_bigram=True, log=math.log,
                 halve_unseen=False):
    ids = _gpt2().encode(train_data)
    counts, pairs = collections.Counter(ids), collections.Counter(zip(ids[:-1], ids[1:]))
    followed = collections.Counter(ids[:-1])  # how often each token has a successor
    total, n = 0.0, 0
    for inputs, targets in val_loader:
        for a, b in zip(inputs.flatten().tolist(), targets.flatten().tolist()):
            p = (counts[b] + unigram_add) / (len(ids) + unigram_add * VOCAB_SIZE)
            if use_bigram:
                if followed[a]:  # else the pairs say nothing: the unigram alone
                    p = 0.5 * pairs[a, b] / followed[a] + 0.5 * p
                elif halve_unseen:  # the mistake: probabilities that sum to 1/2
                    p = 0.5 * p
            total -= log(p)
            n += 1
    return total / n


def _bigram_example():
    text = "the cat sat on the mat, and the dog sat on the cat. " * 5
    ids = torch.tensor(_gpt2().encode("the dog sat on the mat, and the cat sat on the hat."))
    return {"given": {"train_data": text,
                      "val_loader": [(ids[None, :-1], ids[None, 1:])]}}


@value_exercise("5.7", rel_tol=0, abs_tol=0.01, hints=[
    "Count pairs over the training tokens (collections.Counter(zip(ids[:-1], ids[1:]))); "
    "p(b | a) mixes half the pair's share of what follows a with half the unigram probability "
    "of b from the exercise's unigram formula.",
    "Where a never has a successor in the training text, the pairs say nothing and p(b | a) "
    "is the unigram probability alone. Average -math.log(p) over every (input, target) position of "
    "val_loader: x.flatten() and y.flatten() of each batch.",
], mistakes=[
    (lambda expected, **given: _bigram_loss(**given, use_bigram=False),
     "That is the unigram model alone, which ignores the previous token; mix in the "
     "bigram half."),
    (lambda expected, **given: _bigram_loss(**given, unigram_add=1),
     "The unigram half adds 0.01 to every count, as the exercise's formula says, not 1."),
    (lambda expected, **given: _bigram_loss(**given, log=math.log2),
     "These are bits (logarithm base 2); losses are in nats (natural logarithm), as "
     "cross_entropy computes them."),
    (lambda expected, **given: _bigram_loss(**given, halve_unseen=True),
     "Where a never has a successor in the training text, use the unigram probability whole, "
     "not half of it: the probabilities of all b must sum to 1."),
], examples=_bigram_example)
def bigram_baseline(train_data, val_loader):
    return _bigram_loss(train_data, val_loader)


class _RangeTokenizer:
    """Stands in for a tokenizer: a text of n characters 'encodes' to n distinct ids."""

    def encode(self, text, allowed_special=frozenset()):
        return list(range(len(text)))


_STEP_SETTINGS = [(n, length, batch, accum) for n in (9, 65, 300, 4612, 10_000)
                  for length in (4, 8, 64, 256) for batch in (1, 2, 3, 8) for accum in (1, 2, 3)
                  if n > length]


@functools.cache
def _windows(n_tokens, context_length):
    return len(GPTDatasetV1("x" * n_tokens, _RangeTokenizer(), context_length, context_length))


def _steps_per_epoch(n_tokens, context_length, batch_size, grad_accum_steps):
    loader = torch.utils.data.DataLoader(range(_windows(n_tokens, context_length)),
                                         batch_size=batch_size, drop_last=True)
    return len(list(batches_per_step(range(len(loader)), grad_accum_steps)))


@property_exercise("5.8", hints=[
    "Three counts in a row: windows (each needs context_length + 1 tokens, a new one every "
    "context_length tokens), batches (drop_last=True drops an incomplete last batch), "
    "optimizer steps (batches_per_step groups grad_accum_steps batches; the last group may "
    "be shorter).",
    "Window k starts at k * context_length and needs tokens up to k * context_length + "
    "context_length: count the k that fit. Then // for the batches and math.ceil for the "
    "steps.",
], examples=lambda: {
    "right": [lambda n, length, batch, accum: math.ceil(((n - 1 - length) // length + 1)
                                                        // batch / accum),
              lambda n, length, batch, accum: -(-(math.ceil((n - length) / length) // batch)
                                                // accum)],
    "wrong": [lambda n, length, batch, accum: n // length // batch // accum,
              lambda n, length, batch, accum: math.ceil(math.ceil((n - length) / length)
                                                        / batch / accum),
              lambda n, length, batch, accum: (n - length) // length // batch // accum],
})
def steps_per_epoch_formula(steps_per_epoch):
    if not callable(steps_per_epoch):
        return (f"The answer is your function steps_per_epoch itself, not a "
                f"{type(steps_per_epoch).__name__}.")
    for n, length, batch, accum in _STEP_SETTINGS:
        try:
            theirs = steps_per_epoch(n, length, batch, accum)
        except Exception as error:  # noqa: BLE001 - the learner's code may fail in any way
            return (f"steps_per_epoch({n}, {length}, {batch}, {accum}) raises "
                    f"{type(error).__name__}: {error}.")
        if theirs is None:
            return NOT_TRIED
        if theirs != _steps_per_epoch(n, length, batch, accum):
            return (f"For n_tokens={n}, context_length={length}, batch_size={batch}, "
                    f"grad_accum_steps={accum} your formula gives {theirs!r}, and "
                    f"train_model takes a different number of steps.")
    return None


# Exercise 5.9 --------------------------------------------------------------------------------

@functools.cache
def _moe_sizes():
    """Qwen3-30B-A3B's numbers per block outside the experts, per expert, in the head and in
    the embedding (built once: 6,144 experts take seconds even on the meta device)."""
    from shared import OPEN_MODEL_CONFIGS, ModernGPTModel

    with torch.device("meta"):
        model = ModernGPTModel(OPEN_MODEL_CONFIGS["qwen3-30b-a3b-2507"])

    def matrices(module):
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))

    block = model.trf_blocks[0]  # every block has the same shapes
    return (len(model.trf_blocks), matrices(block.att) + block.ff.router.weight.numel(),
            matrices(block.ff.experts[0]), model.out_head.weight.numel(),
            model.tok_emb.weight.numel())


def _moe_read_per_token(bytes_per_number=2, experts_read=8, embedding_read=False):
    blocks, outside_experts, expert, head, embedding = _moe_sizes()
    read = blocks * (outside_experts + experts_read * expert) + head
    read += embedding if embedding_read else 0
    gb = read * bytes_per_number / 1e9
    return gb, 20 / gb


@value_exercise("5.9", rel_tol=1e-2, hints=[  # 1%: the solution's 6.08 GB and 3.3 tokens/s
    "Per token and block, the attention's four matrices and the router are read whole; of the "
    "experts, only the ones the router chose for this token.",
    "The output head is a matrix of its own here (not tied) and is read whole; of the token "
    "embedding only the new token's row is read. A bfloat16 number is 2 bytes; the bound in "
    "tokens/s is the bandwidth divided by the bytes read per token.",
], mistakes=[
    (lambda expected: _moe_read_per_token(experts_read=128),
     "A token runs through the num_experts_per_tok experts its router chose, not all of them."),
    (lambda expected: _moe_read_per_token(embedding_read=True),
     "Of the token embedding a single row is read per token, not the whole matrix."),
    (lambda expected: _moe_read_per_token(bytes_per_number=4),
     "That is float32; the published weights are bfloat16, 2 bytes each."),
])
def moe_bytes_per_token():
    return _moe_read_per_token()


# Exercise 5.10 -------------------------------------------------------------------------------

def _tokens_to_fill(budget=100 * 2**20, bytes_per_number=2, kept=511, local=22):
    """The first length at which Gemma 3 1B's cache holds `budget` bytes: `local` layers keep
    `kept` positions at most, the others every position; one key-value head of 256 numbers."""
    per_position = 2 * 256 * bytes_per_number
    fixed = local * kept * per_position
    return math.ceil((budget - fixed) / ((26 - local) * per_position))


@value_exercise("5.10", rel_tol=0, abs_tol=0.5, hints=[  # an int: the first such length
    "A local layer's cache stops growing once its window is full: it keeps the positions of the "
    "window before the new token, whatever the text's length. Only the global layers keep "
    "growing.",
    "Per layer and position the cache holds a key and a value of one head of 256 numbers, 2 "
    "bytes each. Find the first length whose total reaches 100 MiB (100 * 2**20 bytes): the "
    "full windows are a fixed part of it.",
], mistakes=[
    (lambda expected: _tokens_to_fill(local=0),
     "That is a cache with every layer global; 22 of Gemma 3 1B's 26 layers keep a window only."),
    (lambda expected: _tokens_to_fill(kept=512),
     "A window of 512 keeps the 511 positions before the new token, not 512."),
    (lambda expected: _tokens_to_fill(bytes_per_number=4),
     "That is float32; in bfloat16 a number takes 2 bytes."),
    (lambda expected: expected - 1,
     "At that length the cache is just below 100 MiB: the question asks for the first length at "
     "which it holds 100 MiB or more."),
])
def tokens_to_fill_the_cache():
    return _tokens_to_fill()
