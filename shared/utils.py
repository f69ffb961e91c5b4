"""Small helpers every chapter uses: reproducible seeds, the device to run on, the allocator,
progress bars."""

import ctypes
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a cell prints the same numbers on every run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to write a temporary file beside `path`, then rename it to `path`.

    A reader sees the old file or the new one, never half of one; a failure (a full disk, a
    value that cannot be stored, Ctrl-C) leaves the old file and no temporary one behind.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
# The same setting for a process not yet started, read by glibc when it starts
KEEP_FREED_MEMORY_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**30)}


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


TEXT_PROGRESS_ENV = "LLM_COURSE_TEXT_PROGRESS"


def progress_bar(iterable=None, **kwargs):
    """A tqdm progress bar: a widget in a live notebook, text in a terminal and in stored runs.

    A notebook saves a widget bar as its first frame ("0%"): the later frames live only in
    the browser. A text bar is saved as text, and its last frame is the finished bar. So
    `python -m shared.notebooks run` and the test run set LLM_COURSE_TEXT_PROGRESS=1, and the
    stored outputs show each bar finished; a learner running the notebook sees the widget.
    The text bar goes to stdout, where the lines its `write` prints go too: they stay above
    the bar, in order, instead of splitting it across separate stdout and stderr outputs.
    """
    if os.environ.get(TEXT_PROGRESS_ENV) == "1":
        from tqdm.std import tqdm
        kwargs.setdefault("file", sys.stdout)
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)
