"""Fixtures of chapter 5's tests (test_pretrain.py, test_bad_inputs.py, test_pretraining.py)."""

import pytest
import torch

from shared import read_text


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """A folder of texts for pretrain.py: The Verdict as two documents."""
    folder = tmp_path_factory.mktemp("texts")
    story = read_text("the-verdict")
    (folder / "a.txt").write_text(story[:10_000], encoding="utf-8")
    (folder / "b.txt").write_text(story[10_000:], encoding="utf-8")
    return folder


class PretendGenerators:
    """torch.cuda's and torch.mps's generator functions on a machine with `gpus` CUDA GPUs and
    a Mac's GPU, each generator's state kept here (16 bytes, as CUDA's are), so that a test on
    the CPU can see which ones a checkpoint saves and restores."""

    def __init__(self, monkeypatch, gpus=2):
        self.cuda = [torch.full((16,), i, dtype=torch.uint8) for i in range(gpus)]
        self.mps = torch.full((16,), 100, dtype=torch.uint8)
        for name, function in {
                "is_available": lambda: True, "is_initialized": lambda: True,
                "device_count": lambda: len(self.cuda),
                "get_rng_state_all": lambda: [state.clone() for state in self.cuda],
                "set_rng_state": self.set_cuda}.items():
            monkeypatch.setattr(torch.cuda, name, function)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        monkeypatch.setattr(torch.mps, "get_rng_state", lambda device="mps": self.mps.clone())
        monkeypatch.setattr(torch.mps, "set_rng_state", self.set_mps)

    def set_cuda(self, state, device="cuda"):
        self.cuda[device] = state.clone()

    def set_mps(self, state, device="mps"):
        self.mps = state.clone()

    def draw(self):
        """What drawing on every device does: each generator moves on."""
        torch.rand(1)
        self.cuda = [state + 1 for state in self.cuda]
        self.mps = self.mps + 1


@pytest.fixture
def pretend_gpus(monkeypatch):
    """pretend_gpus(n): torch.cuda and torch.mps answer as on a machine with n CUDA GPUs and a
    Mac's GPU, until the test ends (or monkeypatch.undo()); returns their PretendGenerators."""
    return lambda gpus=2: PretendGenerators(monkeypatch, gpus)
