"""Settings every test run needs; pyproject.toml loads this plugin
(`-p shared.tooling.pytest_setup`).

The stored notebook outputs were produced under shared.tooling.numerics.pinned_numerics() (one
thread, AVX2 kernels; `python -m shared.tooling.notebooks run` sets the same). They are pinned
here, before nbval starts kernels, which inherit the environment. Importing this plugin imports
`shared`, and so torch, first: pin_numerics re-pins torch's threads, and ATen and MKL read
their settings at the first kernel, which runs later. shared/tooling/test_numerics.py checks
that the pins took effect in this process and in the processes it starts. tiktoken's cache is
prepared here too (shared.data.prepare_tiktoken_cache: GPT-2's BPE files from data/ or the
data mirror), so `tiktoken.get_encoding("gpt2")` works offline in every kernel and test
process, which inherit TIKTOKEN_CACHE_DIR. Progress bars are text,
as in the stored outputs (shared.utils.progress_bar). glibc keeps freed memory for reuse in
every process of the run (shared.utils.keep_freed_memory, in this one; the equivalent
environment variables for the processes it starts): the notebooks and tests train, and every
training step would otherwise fault its activations back in page by page. It changes no
computed value, only where memory comes from.
"""

import os

from shared.data import prepare_tiktoken_cache
from shared.tooling.numerics import pin_numerics
from shared.utils import KEEP_FREED_MEMORY_ENV, TEXT_PROGRESS_ENV, keep_freed_memory


def pytest_configure(config):
    pin_numerics()
    prepare_tiktoken_cache()  # offline with the data mirror: kernels inherit TIKTOKEN_CACHE_DIR
    os.environ[TEXT_PROGRESS_ENV] = "1"  # text progress bars, as in the stored outputs
    keep_freed_memory()
    os.environ.update(KEEP_FREED_MEMORY_ENV)


# The longest test files, longest first (minutes on 2 cores). pytest-xdist hands out whole groups
# in collection order (`--no-loadscope-reorder` in pyproject.toml: its default order puts groups
# with many tests first, so these one-test files came last and ran alone at the end of the run).
# A chapter's notebooks are one group, its lesson first, run by one worker: a companion then finds
# the files its lesson saved instead of making them again, and never reads one while the lesson
# writes it. Every other test file is a group of its own, as `--dist loadfile` makes it, and so
# is a companion that reads no file another notebook writes (SEPARATE_NOTEBOOKS), so that the
# other worker can run it while one works through chapter 5's.
SEPARATE_NOTEBOOKS = (
    "ch05_pretraining/beyond_6_open_models.ipynb",  # builds its checkpoints in temporary folders
    "ch05_pretraining/beyond_10_scaling.ipynb",  # reads scaling_sweep.json, a committed file
    "ch07_instructions/beyond_4_grpo.ipynb",  # trains its own model; reads grpo_run.json
)
LONGEST_FIRST = (
    "ch05_pretraining",
    "ch07_instructions",
    *SEPARATE_NOTEBOOKS,
    "shared/test_book_profile.py",
    "shared/test_book_package.py",
    "ch06_classification",
)


def test_group(nodeid: str) -> str:
    """The group of a collected test: its chapter folder for a notebook's cell, else its file."""
    path = nodeid.split("::")[0]
    if not path.endswith(".ipynb") or path in SEPARATE_NOTEBOOKS:
        return path
    return path.split("/")[0]


def notebook_order(path: str) -> tuple:
    """A chapter's lesson before its companions, and these in their numbered order."""
    from pathlib import PurePosixPath

    from shared.tooling.notebooks import COMPANION_PREFIX

    name = PurePosixPath(path).stem
    if not name.startswith(COMPANION_PREFIX):
        return (0, 0, name)
    number = name[len(COMPANION_PREFIX):].partition("_")[0]
    return (1, int(number) if number.isdigit() else 10**6, name)


def pytest_collection_modifyitems(items):
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}

    def key(item):
        path = item.nodeid.split("::")[0]
        within = notebook_order(path) if path.endswith(".ipynb") else ()
        return (rank.get(test_group(item.nodeid), len(rank)), within)

    items.sort(key=key)  # stable: a file's tests keep their order


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler by scope (`--dist loadfile`), with a chapter's notebooks as one
    scope. (xdist's own `--dist loadgroup` marks scopes by rewriting node ids, which pytest 9
    no longer allows.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ChapterScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    return ChapterScheduling(config, log)
