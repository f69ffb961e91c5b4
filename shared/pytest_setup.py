"""Settings every test run needs; pyproject.toml loads this plugin (`-p shared.pytest_setup`).

The stored notebook outputs were produced under shared.numerics.pinned_numerics() (one
thread, AVX2 kernels; `python -m shared.notebooks run` sets the same). They are pinned here,
before nbval starts kernels, which inherit the environment. Importing this plugin imports
`shared`, and so torch, first: pin_numerics re-pins torch's threads, and ATen and MKL read
their settings at the first kernel, which runs later. shared/test_numerics.py checks that
the pins took effect in this process and in the processes it starts. Progress bars are text,
as in the stored outputs (shared.utils.progress_bar). glibc keeps freed memory for reuse in
every process of the run (shared.utils.keep_freed_memory, in this one; the equivalent
environment variables for the processes it starts): the notebooks and tests train, and every
training step would otherwise fault its activations back in page by page. It changes no
computed value, only where memory comes from.
"""

import os

from shared.numerics import pin_numerics
from shared.utils import KEEP_FREED_MEMORY_ENV, TEXT_PROGRESS_ENV, keep_freed_memory


def pytest_configure(config):
    pin_numerics()
    os.environ[TEXT_PROGRESS_ENV] = "1"  # text progress bars, as in the stored outputs
    keep_freed_memory()
    os.environ.update(KEEP_FREED_MEMORY_ENV)


# The longest test files, longest first (minutes on 2 cores). pytest-xdist hands out whole files
# in collection order (`--no-loadscope-reorder` in pyproject.toml: its default order puts files
# with many tests first, so these one-test files came last and ran alone at the end of the run).
LONGEST_FIRST = (
    "ch05_pretraining/pretraining.ipynb",
    "ch07_instructions/instructions.ipynb",
    "shared/test_book_profile.py",
    "shared/test_book_package.py",
    "ch06_classification/classification.ipynb",
)


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
