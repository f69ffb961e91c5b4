"""The pinned numerics reach every place where notebook outputs are made or re-checked."""

import os
import subprocess
import sys

import nbformat
import torch

from shared.tooling import notebooks
from shared.tooling.numerics import has_avx2, pinned_numerics


PINNED_NUMERICS = pinned_numerics()


def test_the_test_run_computes_under_the_pinned_numerics():
    assert {k: os.environ.get(k) for k in PINNED_NUMERICS} == PINNED_NUMERICS
    assert torch.get_num_threads() == 1
    if has_avx2():  # elsewhere the kernel choice is left alone
        assert torch.backends.cpu.get_cpu_capability() == "AVX2"


def test_a_fresh_process_started_by_the_test_run_inherits_the_pins():
    code = "import torch; print(torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())"
    threads, capability = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                         text=True, check=True).stdout.split()
    assert threads == "1"
    if has_avx2():
        assert capability == "AVX2"


def test_notebooks_run_executes_under_the_pinned_numerics(tmp_path, monkeypatch):
    for name in PINNED_NUMERICS:  # as a learner's shell would be: nothing pinned
        monkeypatch.delenv(name, raising=False)
    notebook = tmp_path / "probe.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, torch\n"
        f"print({PINNED_NUMERICS!r} == {{k: os.environ.get(k) for k in {PINNED_NUMERICS!r}}})\n"
        "print(torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())"))
    nbformat.write(nb, notebook)
    notebooks.run(notebook, timeout=120)
    printed = nbformat.read(notebook, as_version=4).cells[0].outputs[0].text.split()
    assert printed[0] == "True" and printed[1] == "1"
    if has_avx2():
        assert printed[2] == "AVX2"
