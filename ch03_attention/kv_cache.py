# Generated from ch03_attention/beyond_1_kv_cache.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export kv_cache`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_kv_cache.ipynb cell 2, Chapter 3, beyond the book: a fused kernel and a key-value ...

"""Chapter 3, beyond the book: a key-value cache for generation."""

import torch

from shared.checks import check
from shared.utils import inputs_trusted


# %% beyond_1_kv_cache.ipynb cell 15, 3.7.2 A key-value cache for generation

class KVCache:
    """The keys and values one attention layer has computed so far, kept for reuse.

    Memory for `max_tokens` positions is allocated once, on first use, and each update writes
    into it: concatenating instead would copy the whole cache at every generated token.
    window: a sliding-window layer's cache, which keeps only the window - 1 latest positions
    (max_tokens then caps the positions seen and reserves nothing); values may be of any width."""

    def __init__(self, max_tokens: int, *, window: int | None = None):
        # 0 would keep no position, and say nothing; 1.5 or 2.0 would fail only at the first update
        check(window is None or type(window) is int and window >= 1, "window must be an int >= 1")
        self.max_tokens, self.window = max_tokens, window
        self.length = 0  # positions seen (all of them kept, without a window)
        self.keys = self.values = None
        self.model = lambda: None  # none yet; chapter 4's GPTModel.make_kv_caches sets its own

    def reset(self):
        """Forget the cached tokens (before a new prompt); the memory is kept."""
        self.length = 0

    def update(self, keys, values):
        """Append (batch, heads, new_tokens, head_dim) keys and values; return all of them."""
        start, new, cap = self.length, keys.shape[2], self.max_tokens
        end, layout = start + new, (_layout(keys), values.shape[3])  # keys', and values' width
        # Past max_tokens, a write fails deep in PyTorch, or (one position) writes nothing; keys
        # or values unlike those held, or values unlike their keys but in width, would be cast
        # into the storage (another dtype) or copied into every row, position or feature (a batch,
        # a token or a width of 1), without a word. One check of all, once per generate_text call:
        held = layout if start == 0 else (_layout(self.keys), self.values.shape[3])
        if not inputs_trusted():
            check(end <= cap and layout == held and _kind(values) == _kind(keys), lambda:
                  f"{start} cached and {new} new positions pass the cache's max_tokens={cap}"
                  if end > cap else f"layout {layout} differs from the cache's {held}: reset() it "
                  "first" if layout != held else "values must match their keys in all but width")
        if self.window is not None:
            return self._update_window(keys, values)
        # (1) new, or a new layout: keys', or values' width (none is read before the first update)
        if start == 0 and (layout[0] != _layout(self.keys) or layout[1] != self.values.shape[3]):
            shape = (*keys.shape[:2], self.max_tokens)  # then each one's own width
            self.keys, self.values = (t.new_empty(*shape, t.shape[3]) for t in (keys, values))
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


def _kind(tensor) -> tuple:
    """A tensor's shape but its width, dtype and device: what values share with their keys."""
    return tensor.shape[:3], tensor.dtype, tensor.device


def _layout(tensor) -> tuple | None:
    """What the storage is made for: (batch, heads, head_dim), dtype and device."""
    return None if tensor is None else (*tensor.shape[:2], tensor.shape[3], tensor.dtype,
                                        tensor.device)


__all__ = [
    'KVCache',
]
