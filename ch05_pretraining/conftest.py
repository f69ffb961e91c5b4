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


# The tests of these files run pretrain.py and expect a resume to give the uninterrupted run's
# weights bit for bit, which holds on the CPU; on a learner's GPU (the default device there) a
# resume is exact only to rounding.
PRETRAIN_TESTS = {"test_pretrain.py", "test_bad_inputs.py"}


@pytest.fixture(autouse=True)
def pretrain_on_the_cpu(request, monkeypatch):
    """LLM_COURSE_DEVICE=cpu for the tests of PRETRAIN_TESTS (and the runs they start). A test
    that chooses the device itself overrides it with the same monkeypatch (test_pretrain.py's
    pretend_machine unsets it)."""
    if request.node.path.name in PRETRAIN_TESTS:
        monkeypatch.setenv("LLM_COURSE_DEVICE", "cpu")


class PretendGenerators:
    """torch.cuda's and torch.mps's generator functions on a machine with `gpus` CUDA GPUs and
    a Mac's GPU, each generator's state kept here (16 bytes, as CUDA's are), so that a test on
    the CPU can see which ones a checkpoint saves and restores. `initialized=False`: CUDA not
    yet in use, where asking a GPU for its state would start CUDA (here: fail)."""

    def __init__(self, monkeypatch, gpus=2, initialized=True):
        self.cuda = [torch.full((16,), i, dtype=torch.uint8) for i in range(gpus)]
        self.mps = torch.full((16,), 100, dtype=torch.uint8)
        self.initialized = initialized
        for name, function in {
                "is_available": lambda: True, "is_initialized": lambda: self.initialized,
                "device_count": lambda: len(self.cuda), "current_device": lambda: 0,
                "get_rng_state": self.get_cuda,
                "get_rng_state_all": lambda: [self.get_cuda(i) for i in range(len(self.cuda))],
                "set_rng_state": self.set_cuda}.items():
            monkeypatch.setattr(torch.cuda, name, function)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        monkeypatch.setattr(torch.mps, "get_rng_state", lambda device="mps": self.mps.clone())
        monkeypatch.setattr(torch.mps, "set_rng_state", self.set_mps)

    @staticmethod
    def index(device):
        """The GPU's number in torch.cuda's ways of naming it: 1, "cuda:1", torch.device."""
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        return device.index or 0

    def get_cuda(self, device="cuda"):
        assert self.initialized, "asked a GPU for its generator's state: that starts CUDA"
        return self.cuda[self.index(device)].clone()

    def set_cuda(self, state, device="cuda"):  # torch.cuda's is lazy: no start of CUDA
        self.cuda[self.index(device)] = state.clone()

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
    Mac's GPU, until the test ends (or monkeypatch.undo()); returns their PretendGenerators.
    pretend_gpus(n, initialized=False): the same, before CUDA is in use."""
    return lambda gpus=2, initialized=True: PretendGenerators(monkeypatch, gpus, initialized)


@pytest.fixture
def pretend_cpu_only(monkeypatch):
    """pretend_cpu_only(): torch answers as on a machine with no GPU, CUDA or MPS, whatever
    this one has (a learner's Mac or CUDA box), until the test ends; may follow pretend_gpus."""
    def cpu_only():
        for name, answer in {"is_available": False, "is_initialized": False,
                             "device_count": 0}.items():
            monkeypatch.setattr(torch.cuda, name, lambda answer=answer: answer)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    return cpu_only
