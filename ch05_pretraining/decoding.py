# Generated from ch05_pretraining/beyond_3_decoding.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export decoding`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_3_decoding.ipynb cell 9, Chapter 5, beyond the book: decoding

"""Chapter 5, beyond the book: the decoding step on its own (logits processors for a repetition
penalty, top-k, temperature, top-p and min-p; next_token_probs and next_token) and
generate_text, the book's generate with a KV cache (sections 5.3.4 and 5.7)."""

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ch05_pretraining.pretraining import context_length_of
from shared.checks import check, check_token_ids
from shared.utils import inputs_trusted, trusted_inputs


# %% beyond_3_decoding.ipynb cell 11, 5.3.4 Top-p, min-p, a repetition penalty: the decoding ste...

# A logits processor takes one position's logits (..., vocab) and the token ids so far
# (..., length) and returns new logits; a token whose logit is -inf can no longer be picked.
# The decoding step applies a list of them in order, then picks from what is left.

class RepetitionPenalty:
    """CTRL's penalty (Keskar et al., 2019), as transformers implements it: the logit of every
    token already in the sequence, prompt included, is divided by `penalty` where positive and
    multiplied where negative, so a penalty above 1 makes a repeat less likely."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, logits, tokens):
        seen = logits.gather(-1, tokens)
        return logits.scatter(-1, tokens, torch.where(seen > 0, seen / self.penalty,
                                                      seen * self.penalty))


class TopK:
    """Keep the k largest logits (5.3.2)."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, logits, tokens):
        kth_largest = torch.topk(logits, min(self.k, logits.shape[-1])).values[..., -1:]
        return logits.masked_fill(logits < kth_largest, -torch.inf)


class Temperature:
    """Divide the logits by the temperature (5.3.1), which must be above 0 (0 is greedy: no
    division). Shifted first so that the largest logit is 0: a tiny temperature or huge logits
    then give -inf for the others, not inf - inf = nan. A temperature below the dtype's
    smallest normal number (torch.finfo(dtype).tiny, 1.18e-38 in float32) divides as by that
    number: greedy, in effect."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, logits, tokens):
        temperature = max(self.temperature, torch.finfo(logits.dtype).tiny)
        return (logits - logits.amax(dim=-1, keepdim=True)) / temperature


class TopP:
    """Keep the nucleus: the most likely tokens whose probabilities first add up to top_p."""

    def __init__(self, top_p: float):
        self.top_p = top_p

    def __call__(self, logits, tokens):
        if self.top_p >= 1:  # everything: float32 sums of the tail can reach 1 before its end
            return logits
        sorted_probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely ones
        drop = before >= self.top_p
        drop[..., 0] = False  # the most likely token stays even if top_p rounds to 0 in float32
        return logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -torch.inf)


class MinP:
    """Min-p (Nguyen et al., 2024): drop every token less likely than min_p times the most
    likely one, a cut that follows the model's confidence."""

    def __init__(self, min_p: float):
        self.min_p = min_p

    def __call__(self, logits, tokens):
        probs = torch.softmax(logits, dim=-1)
        return logits.masked_fill(probs < self.min_p * probs.amax(dim=-1, keepdim=True),
                                  -torch.inf)


# %% beyond_3_decoding.ipynb cell 13, 5.3.4 Top-p, min-p, a repetition penalty: the decoding ste...

def sampling_processors(temperature: float = 0.0, top_k: int | None = None,
                        top_p: float | None = None, min_p: float | None = None,
                        repetition_penalty: float | None = None) -> list:
    """generate_text's sampling options as the processors of one decoding step: transformers'
    order, except that top-k comes before the temperature (the two commute). Greedy decoding
    (temperature 0) needs only the penalty: the cuts all keep the largest logit."""
    processors = [] if repetition_penalty is None else [RepetitionPenalty(repetition_penalty)]
    if temperature == 0:
        return processors
    options = [(top_k, TopK), (temperature, Temperature), (top_p, TopP), (min_p, MinP)]
    return processors + [make(value) for value, make in options if value is not None]


def next_token_probs(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                     top_p: float | None = None, *, min_p: float | None = None,
                     repetition_penalty: float | None = None,
                     tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The probability of each token being picked next, from one position's logits (..., vocab)
    and, for the repetition penalty, the token ids so far: all on the largest processed logit
    when greedy (temperature 0), else their softmax."""
    for process in sampling_processors(temperature, top_k, top_p, min_p, repetition_penalty):
        logits = process(logits, tokens)
    if temperature == 0:
        return nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(logits, dim=-1)


def next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, *, processors: list | None = None,
               tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The next token id (..., 1) for logits (..., vocab): `processors` (default: those of
    temperature, top_k and top_p) applied in order, then the largest logit when greedy (no
    random number is drawn), else a draw from their softmax. `temperature` alone decides
    which: with your own `processors`, pass the temperature too."""
    if processors is None:
        processors = sampling_processors(temperature, top_k, top_p)
    for process in processors:
        logits = process(logits, tokens)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    return torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)


# %% beyond_3_decoding.ipynb cell 26, 5.7 Faster generation: the KV cache

class KVCachedModel:
    """`model` with its keys and values kept between calls (5.7). Called as generate_text calls a
    model, with the text so far (batch, tokens), it runs the model on the tokens it has not
    seen, through the caches of model.make_kv_caches(max_tokens), and returns their last
    position's logits (batch, 1, vocab). A text that does not continue the last one (a new
    prompt, or a window that slid past the context) empties the caches and starts over: the
    logits are the uncached model's, to float32 rounding."""

    def __init__(self, model: nn.Module, max_tokens: int | None = None):
        self.model, self.kv_caches = model, model.make_kv_caches(max_tokens)
        self.seen = None  # the token ids whose keys and values the caches hold

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        seen = 0 if self.seen is None else self.seen.shape[1]
        # generate_text's later steps (within trusted_inputs) append to what was seen
        if not (0 < seen < idx.shape[1] and (inputs_trusted() or
                                              torch.equal(idx[:, :seen], self.seen))):
            for cache in self.kv_caches:  # stale, or of another text
                cache.reset()
            seen = 0
        self.seen = None  # until the model has run: an error leaves no half-filled cache in use
        logits = self.model(idx[:, seen:], self.kv_caches, last_only=True)
        self.seen = idx
        return logits


def generate_text(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                  context_size: int | None = None, temperature: float = 0.0,
                  top_k: int | None = None, eos_id: int | None = None, *,
                  top_p: float | None = None, min_p: float | None = None,
                  repetition_penalty: float | None = None,
                  logits_processors: Sequence[Callable] = (),
                  use_cache: bool = True) -> torch.Tensor:
    """Extend the token ids `idx` (batch, tokens) by up to `max_new_tokens` tokens.

    Each step picks the next token with next_token: `logits_processors` (your own, each
    called as process(logits, tokens_so_far) -> logits), then sampling_processors' for
    repetition_penalty, top_k, temperature, top_p and min_p, then greedy or a draw. A row that
    produces `eos_id` is padded with it; generation stops when all have (cut each row at its
    first eos_id). Rows must be prompts of one length: padding is not masked. A prompt longer
    than `context_size` (default and maximum: the model's context length) is cropped to its end,
    with a warning; an open model's (ModernGPTModel's) is refused, since its start holds what
    the model needs (<bos>, a chat's turn markers). use_cache (section 5.7) calls the model through
    KVCachedModel, which keeps every layer's keys and values; a model without `make_kv_caches`
    (any function from ids to logits) runs uncached, and needs a context_size.
    """
    model_context = (context_length_of(model) if hasattr(model, "cfg") or hasattr(model, "pos_emb")
                     else None)  # a function from ids to logits says nothing of its context
    context_size = model_context if context_size is None else context_size
    # Each of these would pass without an error, or fail later under another name: a float
    # max_new_tokens in make_kv_caches, as max_tokens; idx[:, -0:] is the whole text; a context
    # past the model's fails once the text outgrows it; an eos_id that is no token id
    # ("<|endoftext|>", -1) never matches; a negative temperature decodes greedily; a top_p of 9
    # (for 0.9) keeps every token; a penalty <= 0 rewards repeats.
    check(isinstance(max_new_tokens, int) and max_new_tokens >= 0,
          lambda: f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    check(0 < (context_size or 0) <= (model_context or math.inf), lambda: "context_size must be "
          f"in 1..{model_context or 'any'} (a model's context length; a function from ids to "
          f"logits has none, so it needs one), got {context_size!r}")
    vocab_size = getattr(model, "cfg", {}).get("vocab_size", math.inf)
    check(eos_id is None or isinstance(eos_id, int) and 0 <= eos_id < vocab_size, lambda: f"eos_id "
          f"must be a token id in 0..{vocab_size - 1}, such as tokenizer.eot_token, got {eos_id!r}")
    check(temperature >= 0, lambda: f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
    check(top_p is None or 0 < top_p <= 1, lambda: f"top_p must be in (0, 1], got {top_p!r}")
    check(min_p is None or 0 <= min_p <= 1, lambda: f"min_p must be in [0, 1], got {min_p!r}")
    check(repetition_penalty is None or repetition_penalty > 0,
          lambda: f"repetition_penalty must be > 0 (1 changes nothing), got {repetition_penalty!r}")
    check_token_ids(idx, "idx")  # (batch, tokens): one prompt without its batch axis, refused here
    if idx.shape[1] > context_size:
        too_long = f"the prompt has {idx.shape[1]} tokens, more than context_size={context_size}"
        check(not _is_open_model(model), lambda: f"{too_long}, and an open model's is not cropped "
              "(its start holds <bos> and a chat's turn markers): shorten the prompt")
        warnings.warn(f"{too_long}: generate_text reads only its last {context_size} (its first "
                      f"{idx.shape[1] - context_size} are dropped)", stacklevel=2)
    processors = [*logits_processors, *sampling_processors(temperature, top_k, top_p, min_p,
                                                           repetition_penalty)]
    ended = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
    if use_cache and max_new_tokens and hasattr(model, "make_kv_caches"):  # fresh ones per prompt
        room = min(context_size, idx.shape[1] + max_new_tokens)  # Qwen3's 40,960 would be GBs
        model = KVCachedModel(model, room)
    # The text grows in one buffer: torch.cat would copy all of it at every token
    text = idx.new_empty(idx.shape[0], idx.shape[1] + max_new_tokens,
                         dtype=torch.promote_types(idx.dtype, torch.long))
    text[:, :idx.shape[1]] = idx
    for step in range(max_new_tokens):
        # the first call checks the prompt and the caches; the later ones only add the model's
        # own tokens, so they skip the model's checks (shared.utils.trusted_inputs)
        with torch.no_grad(), trusted_inputs() if step else contextlib.nullcontext():
            logits = model(idx[:, -context_size:])[:, -1]  # the book's step
        next_id = next_token(logits, temperature, processors=processors, tokens=idx)
        if eos_id is not None:
            ended |= next_id == eos_id
            if bool(ended.all()):
                break
            next_id = next_id.masked_fill(ended, eos_id)  # an ended row is padded
        length = idx.shape[1]
        text[:, length:length + 1] = next_id
        idx = text[:, :length + 1]
    return idx.contiguous()  # a copy only where it stopped early with rows to spare


def _is_open_model(model) -> bool:
    """Whether `model` is one of 5.9's (Llama 3, Qwen3, Gemma 3, whose configurations have a
    rope_base): its prompt's start is <bos> and, in a chat, the turn markers, without which it
    continues text it was never trained on."""
    return "rope_base" in getattr(model, "cfg", {})


__all__ = [
    'RepetitionPenalty',
    'TopK',
    'Temperature',
    'TopP',
    'MinP',
    'sampling_processors',
    'next_token_probs',
    'next_token',
    'KVCachedModel',
    'generate_text',
]
