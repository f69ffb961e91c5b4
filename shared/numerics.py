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

`python -m shared.notebooks run` and the test run (shared/pytest_setup.py) both apply these
settings before any kernel starts; kernels inherit them from the environment.
"""

import os
import sys


PINNED_NUMERICS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
}


def pin_numerics(environ=os.environ) -> None:
    """Set PINNED_NUMERICS in `environ` (by default this process's, inherited by children)."""
    environ.update(PINNED_NUMERICS)
    torch = sys.modules.get("torch")
    if torch is not None and environ is os.environ:
        # Already imported: its thread pool may have read the environment before this.
        # (ATen reads its capability and MKL its branch at the first kernel, not at import.)
        torch.set_num_threads(int(PINNED_NUMERICS["OMP_NUM_THREADS"]))
