"""Small helpers every chapter uses: reproducible seeds, the device to run on, the allocator,
progress bars."""

import contextlib
import contextvars
import ctypes
import os
import random
import sys
from collections.abc import Callable, Iterator
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


DEVICE_ENV = "LLM_COURSE_DEVICE"
# What get_device accepts, with how many devices of each kind there are (an index must be
# below it: "cuda:1" needs two GPUs). fakegpu is the tests' stand-in GPU
# (shared/tooling/fake_gpu.py).
DEVICE_KINDS = {"cpu": lambda: 1, "cuda": lambda: torch.cuda.device_count(),
                "mps": lambda: int(torch.backends.mps.is_available()), "fakegpu": lambda: 1}


def get_device(prefer: str | None = None) -> torch.device:
    """The device to run on: `prefer`, else $LLM_COURSE_DEVICE, else the fastest available
    (CUDA, then Apple's MPS, then the CPU).

    Both name a device as PyTorch does ("cpu", "cuda", "cuda:1", "mps"), and one that is not
    here is refused. The variable lets a learner choose a device without editing a notebook
    (LLM_COURSE_DEVICE=cpu keeps a run on the CPU of a machine with a GPU), and lets the
    tests run a notebook with its model on "fakegpu", a stand-in GPU that catches tensors
    left on the CPU (see shared/tooling/fake_gpu.py). An empty variable counts as unset.
    """
    name, wanted = ("prefer", prefer) if prefer is not None else (
        DEVICE_ENV, os.environ.get(DEVICE_ENV) or None)
    if wanted is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, colon, index = str(wanted).partition(":")
    valid = 'one of "cpu", "cuda", "cuda:<index>", "mps" or "fakegpu" (the tests\' stand-in GPU)'
    if kind not in DEVICE_KINDS or (colon and not index.isdigit()):  # "cuda:" is no device
        raise ValueError(f"{name} must be {valid}, got {wanted!r}")
    count = DEVICE_KINDS[kind]()
    if int(index or 0) >= count:
        raise ValueError(f"{name} must name a device this machine has, got {wanted!r} "
                         f"(PyTorch sees {count} {kind} device{'' if count == 1 else 's'} here)")
    if kind == "fakegpu":
        import shared.tooling.fake_gpu  # noqa: F401 - importing registers the device
    return torch.device(wanted)


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
    `python -m shared.tooling.notebooks run` and the test run set LLM_COURSE_TEXT_PROGRESS=1, and
    the stored outputs show each bar finished; a learner running the notebook sees the widget.
    The text bar goes to stdout, where the lines its `write` prints go too: they stay above
    the bar, in order, instead of splitting it across separate stdout and stderr outputs.
    """
    if os.environ.get(TEXT_PROGRESS_ENV) == "1":
        from tqdm.std import tqdm
        kwargs.setdefault("file", sys.stdout)
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def measured_on() -> str:
    """Where and when a timing is being made, for a cell to print beside it: the date, the
    processor (its model name from /proc/cpuinfo on Linux), torch's thread count and version,
    e.g. "2026-11-25, Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, 1 thread, torch 2.13.0".
    """
    import datetime
    import platform
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo
                     if line.startswith("model name")]
        processor = names[0] if names else processor
    except OSError:  # not Linux
        pass
    threads = torch.get_num_threads()
    return (f"{datetime.date.today():%Y-%m-%d}, {processor}, {threads} thread"
            f"{'s' if threads != 1 else ''}, torch {torch.__version__}")


# Set in generate_text's steps after the first, which only append the model's own tokens
_TRUSTED_INPUTS = contextvars.ContextVar("trusted_inputs", default=False)


@contextlib.contextmanager
def trusted_inputs() -> Iterator[None]:
    """Within it, a model skips the checks it runs on every call (GPTModel's input and cache
    checks, KVCache.update's): for a caller that checked the first call itself."""
    token = _TRUSTED_INPUTS.set(True)
    try:
        yield
    finally:
        _TRUSTED_INPUTS.reset(token)


def inputs_trusted() -> bool:
    """Whether trusted_inputs() is in force (never while torch.compile traces a model)."""
    return not torch.compiler.is_compiling() and _TRUSTED_INPUTS.get()
