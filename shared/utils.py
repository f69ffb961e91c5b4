"""Small helpers every chapter uses: reproducible seeds, the device to run on, the allocator."""

import ctypes
import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a cell prints the same numbers on every run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The fastest device available (CUDA, then Apple's MPS, then the CPU), or `prefer`."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse; False where there is no glibc.

    By default glibc serves large blocks with mmap and unmaps them when freed, and returns
    memory at the top of the heap to the kernel. A training step frees and re-allocates
    gigabytes of activations and gradients, so every step faults all of them in again, page by
    page. With large blocks kept on the heap and no trimming, later steps reuse the same pages.
    The cost: the process keeps its peak memory. Equivalent before Python starts:
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
