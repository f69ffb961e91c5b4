"""The course's validation vocabulary: one line at a function's boundary says what is valid.

Every chapter checks its inputs with these, so that a teaching class carries one line of
checks, not ten, and every message has the same shape: the argument's name, what would be
valid, and the bad value (`max_new_tokens must be an integer >= 0, got -1`). A wrong type
raises TypeError, a wrong value ValueError.
"""

import difflib
import math
import numbers
import os
import weakref
from collections.abc import Collection, Iterable, Sequence


def check(condition: bool, message, error: type[Exception] = ValueError) -> None:
    """Raise `error(message)` unless `condition`; a lambda message is built only on failure."""
    if not condition:
        raise error(message() if callable(message) else message)


def check_count(name: str, value, minimum: int, valid: str = "") -> None:
    """Raise unless `value` is an int >= minimum (True is not a count); `valid` may word it."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int or value < minimum:
        raise (ValueError if is_int else TypeError)(
            f"{name} must be {valid or f'an integer >= {minimum}'}, got {value!r}")


def check_number(name: str, value, valid: str, low: float = 0.0, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> None:
    """Raise unless `value` is a finite real number in [low, high] (an end excluded if open);
    `valid` says so in words: "a number in [0, 1)"."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {valid}, got {value!r}")
    above_low = value > low if low_open else value >= low
    below_high = value < high if high_open else value <= high
    if not (above_low and below_high and math.isfinite(value)):  # nan fails every test
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def check_finite(name: str, value, *, step: int | None = None) -> float:
    """Return `value` (a number or a one-element tensor) as a float; raise FloatingPointError
    if it is nan or infinite. Training loops call it on each step's loss, with the `step`'s
    number, so that a run that diverged stops there instead of training on nan weights."""
    # a tensor on a GPU waits for its value here; detached, as a loss needs its graph later
    number = float(value.detach() if hasattr(value, "detach") else value)
    if not math.isfinite(number):
        at_step = "" if step is None else f" at step {step}"
        raise FloatingPointError(
            f"{name} became {number}{at_step}: training stopped there, as every later update "
            "would be nan. Two causes are common: a batch whose targets are all -100 (chapter "
            "7's ignore_index: no token to average over, 0/0), which a batch of only padding or "
            "masked prompt (chapter 7) gives (drop such examples, or let each keep a target); "
            "or a diverging run, which a lower learning rate or clipping the gradients avoids")
    return number


def check_flag(name: str, value) -> None:
    """Raise unless `value` is True or False (1, "yes" and None are not flags)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_strings(name: str, value, valid: str = "a list of strings") -> None:
    """Raise unless `value` is a list or tuple of distinct, non-empty strings: a str would be
    read letter by letter, and a set has no order (say, of the ids they get)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        hint = f"; did you mean [{value!r}]?" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be {valid}, got {value!r}{hint}")
    if "" in value:
        raise ValueError(f"{name} cannot hold the empty string")
    seen = set()
    for s in value:
        if s in seen:
            raise ValueError(f"{name} has {s!r} twice; each must appear once")
        seen.add(s)


def check_choice(name: str, value, choices: Collection) -> None:
    """Raise unless `value` is one of `choices`, naming the nearest one for a misspelling."""
    if value in choices:
        return
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {name} {value!r}{hint}; choose one of {list(choices)}")


def check_type(name: str, value, types: type | tuple[type, ...], valid: str) -> None:
    """Raise TypeError unless `value` is an instance of `types`; `valid` says it in words."""
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {valid}, got {type(value).__name__}")


def check_has_values(name: str, module, what_to_do: str) -> None:
    """Raise ValueError unless every tensor of `module` (an nn.Module) has values: one on the
    meta device has a shape only, nothing to save, compute with or load into. `what_to_do`
    ends the message."""
    meta = next((key for key, t in module.state_dict(keep_vars=True).items() if t.is_meta), None)
    check(meta is None, lambda: f"{name} is on the meta device ({meta} has a shape but no "
          f"values): {what_to_do}")


def check_keys(name: str, mapping, required: Iterable[str], optional: Iterable[str] = ()
               ) -> None:
    """Raise unless `mapping` is a dict holding every required key and no unknown one (a
    misspelt key would otherwise be ignored): "unknown configuration key 'emb_dims' (did you
    mean 'emb_dim'?)"."""
    required = list(required)
    valid = [*required, *optional]
    if not isinstance(mapping, dict):
        raise TypeError(f"the {name} must be a dict, got {type(mapping).__name__}")
    unknown = []
    for key in mapping:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            unknown.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if unknown:
        raise ValueError(f"unknown {name} key {', '.join(unknown)}; "
                         f"the keys are {', '.join(valid)}")
    missing = [key for key in required if key not in mapping]
    if missing:
        raise ValueError(f"the {name} lacks {', '.join(missing)}")


def check_entry(entry, keys: Iterable[str], where: str = "entry") -> None:
    """Raise unless `entry` is a dict holding a str under each of `keys`; `where` names it:
    "entry 3 has no 'output' key (its keys: ['input', 'instruction'])"."""
    if not isinstance(entry, dict):
        raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
    for key in keys:
        if key not in entry:
            raise ValueError(f"{where} has no {key!r} key (its keys: {sorted(map(str, entry))})")
        if not isinstance(entry[key], str):
            raise TypeError(f"{where}: {key!r} must be a string, got {entry[key]!r}")


def check_entries(data: Sequence, keys: Iterable[str]) -> None:
    """check_entry for every entry of the list `data`, named by its index, before any work (a
    generator would be used up by the check)."""
    if not isinstance(data, Sequence) or isinstance(data, str):
        raise TypeError(f"data must be a list of entries (dicts), got {type(data).__name__}")
    keys = tuple(keys)
    for index, entry in enumerate(data):
        check_entry(entry, keys, f"entry {index}")


def check_shape(name: str, tensor, dims: Iterable, hint: str = "") -> None:
    """Raise unless `tensor` has one axis per entry of `dims`: a label (any size), or a
    (label, size) pair that must match: ("batch", "tokens", ("d_in", 768)) reads
    "(batch, tokens, d_in=768)" in the message."""
    dims = list(dims)
    labels = [d if isinstance(d, str) else f"{d[0]}={d[1]}" for d in dims]
    sizes = [None if isinstance(d, str) else d[1] for d in dims]
    shape = tuple(tensor.shape)
    if len(shape) != len(dims) or any(s is not None and s != n for s, n in zip(sizes, shape)):
        raise ValueError(f"{name} must have shape ({', '.join(labels)}), got {shape}{hint}")


def check_token_ids(ids, name: str = "in_idx", vocab_size: int | None = None) -> None:
    """Raise unless `ids` is a (batch, tokens) tensor of integer token ids, at least one token,
    each in 0 .. vocab_size - 1 when vocab_size is given. `name` is the argument's name."""
    import torch  # here, so that the checks above need nothing beyond the standard library
    from torch._subclasses.fake_tensor import is_fake

    is_tensor = isinstance(ids, torch.Tensor)
    # An empty tensor is refused as empty, whatever its dtype (torch.tensor([]) is float32).
    if not is_tensor or (ids.dtype not in (torch.long, torch.int) and ids.numel()):
        kind = ids.dtype if is_tensor else type(ids).__name__
        raise TypeError(f"{name} must be a tensor of integer token ids (torch.long), got {kind}")
    if ids.dim() != 2 or ids.numel() == 0:
        one_row = ids.dim() == 1 and ids.numel()  # an empty row needs tokens, not an axis
        hint = f"; add a batch axis with {name}.unsqueeze(0)" if one_row else ""
        raise ValueError(f"{name} must have shape (batch, tokens), with at least one token (a "
                         f"prompt cannot be empty), got {tuple(ids.shape)}{hint}")
    # The values are not read while torch.compile traces the model (a branch on them would cut
    # the compiled code in two), nor where a tensor has none: on the meta device, or a fake
    # tensor (FakeTensorMode: shapes and dtypes only, as shared/tooling/gpu_memory.py counts).
    if vocab_size is None or torch.compiler.is_compiling() or ids.is_meta or is_fake(ids):
        return
    # The embedding's own error ("index out of range in self") names neither the id nor the
    # vocabulary, and on a GPU it is an opaque device assert.
    low, high = torch.aminmax(ids)  # both extremes in one pass over the ids
    if (low < 0) | (high >= vocab_size):  # one test: a GPU waits for its result once, not twice
        raise ValueError(f"token id {low.item() if low < 0 else high.item()} is outside the "
                         f"vocabulary: ids must be in 0..{vocab_size - 1}")


def check_memory(name: str, value, nbytes: int, what: str) -> None:
    """Raise unless `nbytes` (what `value` of `name` would allocate, `what`) could fit in this
    machine's physical memory at all: a size that never could is refused before allocating."""
    import torch

    try:  # Linux and macOS; elsewhere there is nothing to compare with
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return
    check(nbytes <= total or torch.get_default_device().type == "meta", lambda: f"{name} "
          f"{value:,} needs {nbytes / 2**30:,.1f} GiB for {what}, more than this machine's "
          f"{total / 2**30:,.1f} GiB of memory")


def check_same_shape(name: str, tensor, other_name: str, other, why: str = "") -> None:
    """Raise ValueError unless `tensor` has the shape of `other` (the argument `other_name`);
    `why`, if given, says why in parentheses."""
    check(tuple(tensor.shape) == tuple(other.shape), lambda: f"{name} must have {other_name}'s "
          f"shape{f' ({why})' if why else ''}: {name} has shape {tuple(tensor.shape)}, "
          f"{other_name} {tuple(other.shape)}")


def check_same_lengths(sequences: dict, minimum: int = 0, hint: str = "") -> None:
    """Raise ValueError unless the two or more `sequences` (argument name -> sequence) have one
    length, at least `minimum`: "a, b and c must have the same length, got 2, 2 and 1{hint}"."""
    names, lengths = list(sequences), [len(s) for s in sequences.values()]
    at_least = f", at least {minimum}" if minimum else ""
    check(len(set(lengths)) == 1 and lengths[0] >= minimum, lambda: f"{', '.join(names[:-1])} "
          f"and {names[-1]} must have the same length{at_least}, got "
          f"{', '.join(map(str, lengths[:-1]))} and {lengths[-1]}{hint}")


def check_one_sequence(name: str, ids) -> None:
    """Raise ValueError unless the tensor `ids` is one sequence, of shape (tokens) or
    (1, tokens), saying what to pass instead of a single id or a batch."""
    shape = tuple(ids.shape)
    hints = {0: f" (a single id): pass {name}.reshape(1)",
             2: f" (a batch): pass one row at a time, for row in {name}"}
    one_sequence = len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)
    check(one_sequence, lambda: f"{name} must be one sequence, of shape (tokens) or (1, tokens), "
          f"got {shape}{hints.get(len(shape), '')}")


def check_divisible(name: str, value: int, by_name: str, by: int) -> None:
    """Raise unless the count `value` (of `name`) is a multiple of `by` (of `by_name`)."""
    check(value % by == 0, lambda: f"{name} ({value}) must be divisible by {by_name} ({by})")


def check_fits_context(num_tokens: int, context_length: int, cached: int = 0,
                       what: str = "the model", limit: str = "context_length") -> None:
    """Raise unless `num_tokens` new tokens after `cached` ones fit `what`'s `limit` argument."""
    check(cached + num_tokens <= context_length, lambda: f"the input has {num_tokens} tokens"
          + (f" after {cached} cached ones" if cached else "") + f" but {what} was built for "
          f"{limit}={context_length}; crop the text to its last {context_length} tokens"
          + (" (reset() the cache, then feed them)" if cached else ""))


def check_nonblank(name: str, text, what_to_do: str) -> None:
    """Raise unless `text` is a string with more than whitespace; `what_to_do` ends the message:
    "entry 3: 'output' is empty ('  '): fill it in or drop the entry"."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string, got {text!r}")
    if not text.strip():
        raise ValueError(f"{name} is empty ({text!r}): {what_to_do}")


def check_token_lists(name: str, batch) -> None:
    """Raise unless `batch` (what a collate function pads) is a non-empty sequence of non-empty
    lists of token ids (integers), naming the item at fault. A tensor or an array in place of a
    list would be added to its padding element by element, so it is refused with what to pass
    instead."""
    if len(batch) == 0:
        raise ValueError(f"the {name} is empty: there is nothing to collate")
    for i, ids in enumerate(batch):
        if not isinstance(ids, list):
            raise TypeError(f"item {i} of the {name} must be a list of token ids, got "
                            f"{type(ids).__name__} (a tensor's .tolist() gives one)")
        if not ids:
            raise ValueError(f"item {i} of the {name} has no tokens")
        for token in ids:  # a float or a nested list would make a tensor no embedding reads
            if not isinstance(token, numbers.Integral) or isinstance(token, bool):
                raise TypeError(f"item {i} of the {name} must hold token ids (integers), got "
                                f"{type(token).__name__} {token!r}")


def check_in_vocab(name: str, tokens: Iterable, vocab: Collection, what_to_do: str = "") -> None:
    """Raise KeyError (the error of the lookup it guards) unless each of `tokens`, the pieces of
    the text `name`, is in `vocab`, naming the first unknown one and how many there are:
    "'Hello' is not in the vocabulary (1 unknown token(s) in text); <what_to_do>"."""
    unknown = [token for token in tokens if token not in vocab]
    if unknown:
        raise KeyError(f"{unknown[0]!r} is not in the vocabulary ({len(unknown)} unknown "
                       f"token(s) in {name})" + (f"; {what_to_do}" if what_to_do else ""))


def check_ids_in_vocab(ids: Iterable, id_to_token: Collection) -> None:
    """Raise TypeError unless each of `ids` is an integer (an int, or a numpy or one-element
    tensor integer; not 1.5, which int() would round down), ValueError unless each is a key of
    `id_to_token`, naming the first bad id: "token id 5 is not in the vocabulary (ids 0..4)".
    Pass a list, not a generator, when the ids are read again after the check."""
    import operator

    for value in ids:
        try:
            i = operator.index(value)
        except TypeError:
            raise TypeError(f"token ids must be integers, got {value!r}") from None
        if i not in id_to_token:  # a plain if, not check(): it runs once per id
            raise ValueError(f"token id {i} is not in the vocabulary "
                             f"(ids 0..{len(id_to_token) - 1})")


def check_kv_caches(kv_caches, model, num_blocks: int) -> int:
    """Raise unless kv_caches is None or one KVCache per block, each empty or filled by `model`
    (another model's keys, even a same-shaped one's, would be read without a word); mark them
    as `model`'s (weakly: they do not keep it alive) and return how many positions they hold."""
    if not kv_caches:
        return 0
    check(len(kv_caches) == num_blocks, lambda: f"kv_caches: {len(kv_caches)} given, "
          f"{num_blocks} needed (one per block): make them with this model's make_kv_caches")
    owner = weakref.ref(model)  # equal to another reference only while it is the same model
    ours = all(c.length == 0 or getattr(c, "filled_by", None) == owner for c in kv_caches)
    check(ours, lambda: f"kv_caches hold {max(c.length for c in kv_caches)} positions that "
          "another model cached; this model would read its keys and values as its own: reset() "
          "each cache first, or make new ones with this model's make_kv_caches")
    for cache in kv_caches:
        cache.filled_by = owner
    return kv_caches[0].length
