"""The course's own tooling, apart from what a learner's code imports from `shared`.

    notebooks     export the notebooks' modules, check them, run the notebooks
    standalone    one self-contained module for a chapter (`notebooks standalone`)
    numerics      the pinned numerical environment of stored outputs and test runs
    pytest_setup  the test run's plugin (pyproject.toml: `-p shared.tooling.pytest_setup`)
    fake_gpu      `fakegpu`, a stand-in GPU for tests on a CPU
    module_stats  how much of each chapter module is input checking, and its ceiling
    colab         the first cell of every chapter notebook (Google Colab)
    diagrams      drawing the chapters' figures (`draw_figures.py`)
    gpu_memory    the GPU memory of the book profile's training steps (README.md)

Each is imported by its own name (`from shared.tooling.fake_gpu import FAKE_GPU`, `python -m
shared.tooling.notebooks run ...`); importing this package imports none of them.
"""
