"""The numerical environment in which stored notebook outputs are made and re-checked.

PyTorch's float32 results depend on which kernels run: the thread count changes how sums
are split; on an AVX-512 processor ATen picks AVX-512 kernels where an AVX2 processor runs
AVX2 ones; Intel's MKL (matrix products, some element-wise functions) picks a code path per
processor. Each choice moves results in the last bits, and a training run carries such a
difference forward. Pinning them makes every x86-64 processor with AVX2 run the same ATen
kernels, on one thread, and every such Intel processor the same MKL code path
(Intel's "conditional numerical reproducibility"). MKL on AMD processors ignores MKL_CBWR's
branch, and its element-wise functions differ between processors whatever the pins, so the
notebooks also print numbers only to the precision that carries meaning (see README.md,
"Platforms").

`python -m shared.tooling.notebooks run` and the test run (shared/tooling/pytest_setup.py) both
apply these settings before any kernel starts; kernels inherit them from the environment.
"""

import os
import re
import sys


def has_avx2() -> bool:
    """Whether this is a Linux machine whose processor has AVX2 and FMA (read from /proc)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:  # not Linux
        return False
    return all(re.search(rf"\b{flag}\b", flags) for flag in ("avx2", "fma"))


def pinned_numerics() -> dict[str, str]:
    """One thread everywhere; the AVX2 kernel choices only where the processor has AVX2 (ATen
    does not check, and would run instructions an older processor lacks)."""
    pins = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if has_avx2():
        pins.update({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"})
    return pins


def pin_numerics() -> None:
    """Set pinned_numerics() in this process's environment, which child processes inherit."""
    pins = pinned_numerics()
    os.environ.update(pins)
    torch = sys.modules.get("torch")
    if torch is not None:
        # Already imported: its thread pool may have read the environment before this.
        # (ATen reads its capability and MKL its branch at the first kernel, not at import.)
        torch.set_num_threads(int(pins["OMP_NUM_THREADS"]))
