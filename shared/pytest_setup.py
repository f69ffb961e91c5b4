"""Settings every test run needs; pyproject.toml loads this plugin (`-p shared.pytest_setup`).

The stored notebook outputs were produced under shared.numerics.PINNED_NUMERICS (one
thread, AVX2 kernels; `python -m shared.notebooks run` sets the same). Pin them here,
before any kernel runs and before nbval starts kernels, which inherit the environment.
"""

from shared.numerics import pin_numerics


def pytest_configure(config):
    pin_numerics()
