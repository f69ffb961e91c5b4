"""The book profile's branches of chapters 5-7 run, not only the default profile's.

The stored outputs come from the default profile; the book profile (LLM_COURSE_PROFILE=book)
uses OpenAI's GPT-2 weights where the book does, which cannot be downloaded here. A learner
who has a GPT-2 checkpoint can point the notebooks at it (LLM_COURSE_GPT2_CHECKPOINT, a folder
in transformers' format); this test does the same with a tiny randomly initialised GPT-2 that
transformers builds offline, executes each notebook top to bottom in that profile, and fails on
any error. Outputs are not compared: they are the book's setup on a model that knows nothing.

In full, the book profile takes far longer than CI allows (chapter 5 trains GPT-2 small from
scratch several times; chapter 7 passed once in 18 minutes on a busy 2-core machine). So the
test also sets LLM_COURSE_QUICK=1: each notebook cuts its data to a few batches (and chapter 5
its from-scratch model to one narrow layer and one epoch), and every other line runs as in the
book profile.

The book profile is the one a learner runs on a GPU (its `device` is `get_device()`), so the
test runs it on one: LLM_COURSE_DEVICE=fakegpu makes `get_device()` return the stand-in GPU of
shared/tooling/fake_gpu.py, where any tensor a cell, an exercise check or a solution leaves on
the CPU and mixes with the model's stops the run with CUDA's device-mismatch error. A last cell
checks that the notebook's `device` and its model were there.
"""

import time

import nbformat
import pytest
from nbclient import NotebookClient

from shared.data import DATA_DIR_ENV, PROJECT_ROOT
from shared.utils import DEVICE_ENV


BOOK_PROFILE_NOTEBOOKS = [
    PROJECT_ROOT / "ch05_pretraining" / "pretraining.ipynb",
    PROJECT_ROOT / "ch06_classification" / "classification.ipynb",
    PROJECT_ROOT / "ch07_instructions" / "instructions.ipynb",
]


# The notebook's own device and its model's, printed by a cell added at the end
ON_THE_STAND_IN_GPU = 'print(f"device {device}, model on {next(model.parameters()).device}")'


@pytest.fixture(scope="module")
def tiny_gpt2_checkpoint(tmp_path_factory):
    """A GPT-2 in the published format (GPT-2's vocabulary and context, 2 narrow layers)."""
    import torch
    import transformers  # in requirements.txt

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50257, n_positions=1024, n_embd=64,
                                     n_layer=2, n_head=4)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("notebook", BOOK_PROFILE_NOTEBOOKS, ids=lambda p: p.parent.name)
def test_book_profile_runs_top_to_bottom(notebook, tiny_gpt2_checkpoint, tmp_path,
                                         monkeypatch):
    monkeypatch.setenv("LLM_COURSE_PROFILE", "book")
    monkeypatch.setenv("LLM_COURSE_QUICK", "1")
    monkeypatch.setenv("LLM_COURSE_GPT2_CHECKPOINT", str(tiny_gpt2_checkpoint))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))  # what the run saves stays here
    monkeypatch.setenv(DEVICE_ENV, "fakegpu")
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(ON_THE_STAND_IN_GPU))
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            # run where the files it writes (checkpoints) cannot collide with a
                            # default-profile run of the same notebook in the other test worker
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on error
    print(f"{notebook.name} in the book profile: {time.perf_counter() - start:.0f} s")
    profile_lines = [o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                     if "profile:" in o.get("text", "")]
    assert any("profile: book (quick check)" in line for line in profile_lines)
    assert nb.cells[-1].outputs[0]["text"] == "device fakegpu, model on fakegpu:0\n"
