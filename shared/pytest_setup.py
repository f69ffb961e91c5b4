"""Settings every test run needs; pyproject.toml loads this plugin (`-p shared.pytest_setup`).

The stored notebook outputs were produced with one thread (`python -m shared.notebooks run`
sets the same). Thread count changes float summation order, so nbval would see other digits
with two threads: pin it here, before torch is imported and before nbval starts kernels,
which inherit the environment.
"""

import os


def pytest_configure(config):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
