"""The few checks the chapters share: each guards against a result that would otherwise be
silently wrong, or an error that would surface far from its cause.

Where Python or PyTorch already raises at the call that got a bad argument, the course lets it:
these helpers are only for what those libraries would not catch there. Every message names the
argument, what would be valid, and the bad value (`token id 50257 is outside the vocabulary`).
"""

import difflib
import math
from collections.abc import Iterable

import torch
from torch._subclasses.fake_tensor import is_fake


def check(condition: bool, message, error: type[Exception] = ValueError) -> None:
    """Raise `error(message)` unless `condition`; a lambda message is built only on failure."""
    if not condition:
        raise error(message() if callable(message) else message)


def check_finite(name: str, value, *, step: int | None = None) -> float:
    """Return `value` (a number or a one-element tensor) as a float; raise FloatingPointError
    if it is nan or infinite. Training loops call it on each step's loss, with the `step`'s
    number, so that a run that diverged stops there instead of training on nan weights."""
    # a tensor on a GPU waits for its value here; detached, as a loss needs its graph later
    number = float(value.detach() if hasattr(value, "detach") else value)
    check(math.isfinite(number), lambda: f"{name} became {number}"
          + ("" if step is None else f" at step {step}") + ": training stopped there, as every "
          "later update would be nan. Two causes are common: a batch whose targets are all -100 "
          "(chapter 7's ignore_index: no token to average over, 0/0), which a batch of only "
          "padding or masked prompt (chapter 7) gives (drop such examples, or let each keep a "
          "target); or a diverging run, which a lower learning rate or clipping the gradients "
          "avoids", FloatingPointError)
    return number


def check_has_values(name: str, module, what_to_do: str) -> None:
    """Raise ValueError unless every tensor of `module` (an nn.Module) has values: one on the
    meta device has a shape only, and torch.save would write it without a word. `what_to_do`
    ends the message."""
    meta = next((key for key, t in module.state_dict(keep_vars=True).items() if t.is_meta), None)
    check(meta is None, lambda: f"{name} is on the meta device ({meta} has a shape but no "
          f"values): {what_to_do}")


def check_keys(name: str, mapping: dict, required: Iterable[str], optional: Iterable[str] = ()
               ) -> None:
    """Raise ValueError unless the dict `mapping` holds every required key and no unknown one:
    a misspelt key would otherwise be ignored ("unknown configuration key 'emb_dims' (did you
    mean 'emb_dim'?)")."""
    required, valid = list(required), [*required, *optional]
    unknown = [f"{key!r}" + "".join(f" (did you mean {close!r}?)" for close in
                                    difflib.get_close_matches(str(key), valid, n=1))
               for key in mapping if key not in valid]
    check(not unknown, lambda: f"unknown {name} key {', '.join(unknown)}; the keys are "
          f"{', '.join(valid)}")
    missing = [key for key in required if key not in mapping]
    check(not missing, lambda: f"the {name} lacks {', '.join(missing)}")


def check_token_ids(ids, name: str = "in_idx", vocab_size: int | None = None) -> None:
    """Raise ValueError unless the tensor `ids` is (batch, tokens) and every id is in
    0 .. vocab_size - 1. The embedding's own error ("index out of range in self") names neither
    the id nor the vocabulary, and on a GPU it is an opaque device assert, reported later."""
    # one sequence without its batch axis: an IndexError naming neither the argument nor the axis;
    # an empty prompt (text_to_token_ids("") is float32) would be refused for its dtype
    check(ids.dim() == 2 and ids.shape[1] > 0, lambda: f"{name} must have shape (batch, tokens), "
          f"with at least one token (a prompt cannot be empty), got {tuple(ids.shape)}"
          + (f": add a batch axis with {name}.unsqueeze(0)" if ids.dim() == 1 else ""))
    # The values are not read while torch.compile traces the model (a branch on them would cut
    # the compiled code in two), nor where a tensor has none: on the meta device, or a fake
    # tensor (FakeTensorMode: shapes and dtypes only, as shared/tooling/gpu_memory.py counts).
    if (vocab_size is None or ids.numel() == 0 or torch.compiler.is_compiling() or ids.is_meta
            or is_fake(ids)):  # a batch of 0 sequences has no ids to compare
        return
    low, high = torch.aminmax(ids)  # both extremes in one pass over the ids
    # one test: a GPU waits for its result once, not twice
    check(not ((low < 0) | (high >= vocab_size)), lambda: f"{name}: token id "
          f"{low.item() if low < 0 else high.item()} is outside the vocabulary: ids must be in "
          f"0..{vocab_size - 1}")


def check_divisible(name: str, value: int, by_name: str, by: int) -> None:
    """Raise unless the count `value` (of `name`) is a multiple of `by` (of `by_name`), which
    must be positive (0 would be Python's ZeroDivisionError, naming neither)."""
    check(by > 0 and value % by == 0,
          lambda: f"{by_name} must be a positive count dividing {name} ({value}), got {by}")


def check_fits_context(num_tokens: int, context_length: int, cached: int = 0,
                       what: str = "the model", limit: str = "context_length") -> None:
    """Raise unless `num_tokens` new tokens after `cached` ones fit `what`'s `limit` argument."""
    check(cached + num_tokens <= context_length, lambda: f"the input has {num_tokens} tokens"
          + (f" after {cached} cached ones" if cached else "") + f" but {what} was built for "
          f"{limit}={context_length}; crop the text to its last {context_length} tokens"
          + (" (reset() the cache, then feed them)" if cached else ""))


def check_token_lists(name: str, batch) -> None:
    """Raise unless each item of `batch` (what a collate function pads) is a non-empty list of
    token ids, naming the item at fault: a tensor or an array would be added to its padding
    element by element, and an empty item would be a row of padding with no target."""
    bad = next(((i, ids) for i, ids in enumerate(batch) if not (isinstance(ids, list) and ids)),
               None)
    check(bad is None, lambda: f"item {bad[0]} of the {name} must be a non-empty list of token "
          f"ids, got {bad[1]!r} (a tensor's .tolist() gives one)",
          TypeError if bad and not isinstance(bad[1], list) else ValueError)
