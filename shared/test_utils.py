"""Tests of the small shared helpers: seeding, device choice, plotting, progress bars."""

import datetime
import os
import random
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch

from shared import get_device, heatmap, measured_on, progress_bar, set_seed
from shared.utils import DEVICE_ENV, KEEP_FREED_MEMORY_ENV, TEXT_PROGRESS_ENV


matplotlib.use("Agg")


def draw_all():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_set_seed_reproduces_python_numpy_and_torch():
    set_seed(7)
    first = draw_all()
    set_seed(7)
    assert draw_all() == first
    set_seed(8)
    assert draw_all() != first


def test_get_device_prefers_what_is_asked_and_falls_back_to_an_available_device(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert get_device("cpu") == torch.device("cpu")
    device = get_device()
    assert torch.zeros(1, device=device).device.type == device.type


def test_get_device_takes_the_device_the_variable_names(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "fakegpu")  # the tests' stand-in GPU, registered on demand
    device = get_device()
    assert device.type == "fakegpu"
    assert str(torch.ones(2, device=device).device) == "fakegpu:0"
    assert get_device("cpu") == torch.device("cpu")  # an argument is more specific
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "")  # an empty variable is unset
    assert get_device() == get_device(None) and get_device().type in ("cpu", "cuda", "mps")


def test_get_device_finds_the_gpus_torch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv(DEVICE_ENV, "cuda:1")
    assert get_device() == torch.device("cuda", 1)
    assert get_device("cuda") == torch.device("cuda")


@pytest.mark.parametrize("value, message", [
    ("gpu", r"LLM_COURSE_DEVICE must be one of \"cpu\", \"cuda\", \"cuda:<index>\", \"mps\" or "
            r"\"fakegpu\" \(the tests' stand-in GPU\), got 'gpu'"),
    ("cuda:x", "LLM_COURSE_DEVICE must be one of .* got 'cuda:x'"),
    ("cuda:", "LLM_COURSE_DEVICE must be one of .* got 'cuda:'"),  # torch's own message is vaguer
    ("CPU", "LLM_COURSE_DEVICE must be one of .* got 'CPU'"),
    ("cuda", r"LLM_COURSE_DEVICE must name a device this machine has, got 'cuda' \(PyTorch "
             r"sees 0 cuda devices here\)"),
    ("cuda:2", r"got 'cuda:2' \(PyTorch sees 2 cuda devices here\)"),
    ("mps", r"got 'mps' \(PyTorch sees 0 mps devices here\)"),
    ("fakegpu:1", r"got 'fakegpu:1' \(PyTorch sees 1 fakegpu device here\)"),
])
def test_a_device_that_is_not_here_is_refused_naming_the_variable(monkeypatch, value, message):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if value == "cuda:2" else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv(DEVICE_ENV, value)
    with pytest.raises(ValueError, match=message):
        get_device()
    with pytest.raises(ValueError, match=message.replace("LLM_COURSE_DEVICE", "prefer")):
        get_device(value)


def test_heatmap_labels_and_values():
    ax = heatmap(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), ["a", "b"], ["x", "y"], title="t",
                 annotate=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert ax.get_title() == "t"
    np.testing.assert_array_equal(ax.images[0].get_array(), [[0, 1], [2, 3]])
    assert [t.get_text() for t in ax.texts] == ["0.00", "1.00", "2.00", "3.00"]


PAGE_FAULTS_OF_REALLOCATION = """
import resource, sys, torch
from shared import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(40):  # allocate, touch and free 64 MiB, as a training step does with activations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""
PAGES_PER_ALLOCATION = 16 * 2**20 * 4 // 4096


def steady_state_faults(mode):
    """Median page faults per re-allocation over the last 10 of 40, in a fresh process (the
    setting is process-wide). Measured here, glibc settles into reusing the freed block after
    2 to 8 allocations, not always at the first; the last 10 are well past that."""
    command = [sys.executable, "-c", PAGE_FAULTS_OF_REALLOCATION, mode]
    # glibc's defaults: without the variables that the test run sets for its own processes
    env = {k: v for k, v in os.environ.items() if k not in KEEP_FREED_MEMORY_ENV}
    faults = [int(n) for n in subprocess.run(command, capture_output=True, text=True,
                                             check=True, env=env).stdout.split()]
    return sorted(faults[-10:])[5]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator, Linux only")
def test_keep_freed_memory_stops_page_faults_on_reallocation():
    # Default glibc: every allocation maps fresh 4 KiB pages (or 2 MiB ones under
    # transparent huge pages, hence a generous lower bound).
    assert steady_state_faults("default") > PAGES_PER_ALLOCATION // 1000
    # Kept: the same pages are reused, so (almost) nothing faults.
    assert steady_state_faults("keep") < PAGES_PER_ALLOCATION // 100


def test_the_test_run_keeps_freed_memory_in_the_processes_it_starts():
    """shared.tooling.pytest_setup sets glibc's variables, so kernels and subprocesses inherit
    them."""
    command = [sys.executable, "-c", "import os; print(os.environ.get('MALLOC_MMAP_MAX_'), "
               "os.environ.get('MALLOC_TRIM_THRESHOLD_'))"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    assert out == [KEEP_FREED_MEMORY_ENV["MALLOC_MMAP_MAX_"],
                   KEEP_FREED_MEMORY_ENV["MALLOC_TRIM_THRESHOLD_"]]


def test_stored_runs_get_a_text_bar_on_stdout_that_ends_finished(capsys, monkeypatch):
    """With LLM_COURSE_TEXT_PROGRESS=1 (stored notebook runs), the bar is text on stdout,
    so a notebook saves its last frame: the finished bar, after the lines it wrote."""
    monkeypatch.setenv(TEXT_PROGRESS_ENV, "1")
    with progress_bar(total=3, desc="work") as bar:
        for step in range(3):
            bar.write(f"line {step}")
            bar.update(1)
    out = capsys.readouterr()
    shown = [line.rsplit("\r", 1)[-1] for line in out.out.split("\n") if line.strip()]
    shown = [line for line in shown if line.strip()]
    assert shown[:3] == ["line 0", "line 1", "line 2"]
    assert shown[-1].startswith("work: 100%|") and "3/3" in shown[-1]
    assert out.err == ""


def test_write_atomically_into_a_missing_folder_raises_and_leaves_nothing(tmp_path):
    from shared.utils import write_atomically

    target = tmp_path / "no such folder" / "responses.json"
    with pytest.raises(FileNotFoundError, match=r"no such folder/responses\.json"):
        write_atomically(target, lambda tmp: tmp.write_text("[]"))
    assert not (tmp_path / "no such folder").exists()


def test_measured_on_names_the_date_the_processor_the_threads_and_torch(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    line = measured_on()
    assert line.startswith(f"{datetime.date.today():%Y-%m-%d}, ")
    assert line.endswith(f", 1 thread, torch {torch.__version__}")
    assert len(line.split(", ")) >= 4  # the processor sits between the date and the threads
