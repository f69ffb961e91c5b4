# Generated from ch03_attention/beyond_1_kv_cache.ipynb
# by `python -m shared.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export kv_cache`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_kv_cache.ipynb cell 2, Chapter 3, beyond the book: a fused kernel and a key-value ...

"""Chapter 3, beyond the book: a key-value cache for generation."""

import torch

from shared import check, check_count


# %% beyond_1_kv_cache.ipynb cell 15, 3.7.2 A key-value cache for generation

class KVCache:
    """The keys and values one attention layer has computed so far, kept for reuse.

    Memory for `max_tokens` positions is allocated once, on first use, and each update writes
    into it: concatenating instead would copy the whole cache at every generated token.
    window: a sliding-window layer's cache, which keeps only the window - 1 latest positions
    (max_tokens then caps the positions seen and reserves nothing)."""

    def __init__(self, max_tokens: int, *, window: int | None = None):
        check_count("max_tokens", max_tokens, 1)
        if window is not None:
            check_count("window", window, 1)
        self.max_tokens, self.window = max_tokens, window
        self.length = 0  # positions seen (all of them kept, without a window)
        self.keys = self.values = None

    def reset(self):
        """Forget the cached tokens (before a new prompt); the memory is kept."""
        self.length = 0

    def update(self, keys, values):
        """Append (batch, heads, new_tokens, head_dim) keys and values; return all of them."""
        _check_kv_update(self, keys, values)  # the next cell: a clear error for each misuse
        if self.window is not None:
            return self._update_window(keys, values)
        start, end = self.length, self.length + keys.shape[2]
        shape = (*keys.shape[:2], self.max_tokens, keys.shape[3])
        if start == 0 and (self.keys is None or self.keys.shape != shape
                           or self.keys.dtype != keys.dtype or self.keys.device != keys.device):
            self.keys, self.values = keys.new_empty(shape), values.new_empty(shape)  # (1)
        self.keys[:, :, start:end] = keys  # (2) write into the next free positions
        self.values[:, :, start:end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # (3) views: nothing is copied

    def _update_window(self, keys, values):
        """The kept positions and the new ones; keep their window - 1 latest (end of 3.7.2)."""
        start, self.length = self.length, self.length + keys.shape[2]
        if start > 0:  # the kept positions come first
            keys = torch.cat([self.keys, keys], dim=2)
            values = torch.cat([self.values, values], dim=2)
        first_kept = keys.shape[2] - min(keys.shape[2], self.window - 1)
        # copies: a view would keep all of `keys` (a long prompt's) in memory
        self.keys, self.values = keys[:, :, first_kept:].clone(), values[:, :, first_kept:].clone()
        return keys, values


# %% beyond_1_kv_cache.ipynb cell 17, 3.7.2 A key-value cache for generation

def _check_kv_update(cache: KVCache, keys, values) -> None:
    """Raise unless the new keys fit and match the cached ones (a new dtype would convert)."""
    check(keys.dim() == 4 and values.shape == keys.shape, lambda: "keys and values must both "
          f"have shape (batch, heads, new_tokens, head_dim), got {tuple(keys.shape)} and "
          f"{tuple(values.shape)}")
    start, kept, new = cache.length, cache.keys, keys
    check(start + new.shape[2] <= cache.max_tokens, lambda: f"the KV cache has room for "
          f"{cache.max_tokens} positions; {start} are filled and {new.shape[2]} more do not fit")
    check(start == 0 or ((new.shape[:2], new.shape[3], new.dtype, new.device) ==
                         (kept.shape[:2], kept.shape[3], kept.dtype, kept.device)), lambda:
          f"the cache holds {start} positions of (batch, heads, head_dim) = "
          f"{(*kept.shape[:2], kept.shape[3])}, {kept.dtype} on {kept.device}; the new keys "
          f"are {(*new.shape[:2], new.shape[3])}, {new.dtype} on {new.device}: call reset() "
          "before a new sequence")


__all__ = [
    'KVCache',
]
