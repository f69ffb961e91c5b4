"""A stand-in GPU for tests on a machine with only a CPU: the device `fakegpu`.

CI has no GPU, yet the course must run with its models on one, and the usual mistake (a
tensor made on the CPU meeting a model on the GPU) only shows there. A tensor on `fakegpu`
says it is on that device while a CPU tensor inside it holds its values, so real code runs end
to end (training, `.item()`, `.tolist()`, printing, argmax) with the CPU's numbers, and every
operation checks its tensors' devices as CUDA does: one that mixes a `fakegpu` tensor with a
CPU tensor fails with CUDA's message, "Expected all tensors to be on the same device ...".
CUDA's exceptions are kept: a 0-dim CPU tensor is a scalar, CPU indices may index a device
tensor, and a copy crosses devices (so `load_state_dict` from CPU tensors works).

    from shared.tooling.fake_gpu import FAKE_GPU     # importing registers the device
    model = GPTModel(cfg).to(FAKE_GPU)
    ids = torch.tensor([[1, 2]], device=FAKE_GPU)
    model(ids).argmax(-1).tolist()           # runs; model(ids.cpu()) raises

Factory functions given `device="fakegpu"`, `.to("fakegpu")`, `module.to("fakegpu")` and
`torch.load(..., map_location="fakegpu")` put tensors there; `.cpu()` and `.to("cpu")` bring
them back; `.numpy()` refuses, as on CUDA. `shared.get_device()` returns this device when
LLM_COURSE_DEVICE=fakegpu, so a notebook's kernel can run on it too.

What it does not emulate: speed and memory (each operation on it passes through Python, so it
is slower than the CPU), asynchronous execution, a GPU's own random generator (draws come
from the CPU's, so dropout matches the CPU), autocast (accepted, casts nothing), pinned
memory, `torch.cuda.*` (code that asks for `device.type == "cuda"` takes its other branch), and
in-place operations that change a tensor's shape (`resize_`, `set_`). `torch.save` writes a
`fakegpu` tensor as a CPU tensor, so a file loaded without `map_location` comes back on the
CPU, where a GPU's would come back on the GPU. `module.to("fakegpu")` keeps each parameter
object, as `.to("cuda")` does, but `.cpu()` back makes new ones (an optimizer built before
that holds the old ones). Once imported, torch names `fakegpu` this process's accelerator
(`torch.accelerator.current_accelerator()`), as it would name a GPU.

It is built on PyTorch's experimental registration of a device written in Python
(`torch.utils.backend_registration._setup_privateuseone_for_python_backend`, tested with
torch 2.13): the device is PyTorch's spare "PrivateUse1" backend, renamed. A process can name
that backend only once.
"""

import copy
import functools

import torch
from torch.utils._pytree import tree_map
from torch.utils.backend_registration import (
    _DummyBackendModule,
    _setup_privateuseone_for_python_backend,
)


NAME = "fakegpu"
aten = torch.ops.aten

# Operations that CUDA lets take CPU tensors beside device ones: indices (moved to the indexed
# tensor's device), and copies, whose point is to cross devices.
CROSS_DEVICE = {aten.copy_.default, aten._to_copy.default}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
            aten._index_put_impl_.default}


class FakeGPUTensor(torch.Tensor):
    """A tensor on `fakegpu` whose values are the CPU tensor `self.cpu_values`."""

    @staticmethod
    def __new__(cls, cpu_values: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, cpu_values.size(), strides=cpu_values.stride(),
            storage_offset=cpu_values.storage_offset(), dtype=cpu_values.dtype,
            layout=cpu_values.layout, device=FAKE_GPU, requires_grad=cpu_values.requires_grad)

    def __init__(self, cpu_values: torch.Tensor):
        self.cpu_values = cpu_values

    # A traceable wrapper (one inner tensor), so that module.to() swaps each parameter in
    # place, as .to("cuda") keeps it: an optimizer built before the move still holds it.
    def __tensor_flatten__(self):
        return ["cpu_values"], None

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return FakeGPUTensor(inner["cpu_values"])

    def __repr__(self, **kwargs):  # tensor([...], device='fakegpu:0'), as a GPU's prints
        name = type(self).__name__
        text = super().__repr__(**kwargs).replace(f"{name}(", "tensor(", 1)
        return text.replace("\n" + " " * (len(name) - len("tensor")), "\n")  # the indent

    def __format__(self, spec):  # f"{loss:.3f}" on a 0-dim tensor, as torch.Tensor allows
        return self.item().__format__(spec) if self.dim() == 0 else super().__format__(spec)

    def tolist(self):  # torch's own refuses subclasses; a CUDA tensor's copies to the host
        return self.cpu_values.tolist()

    # Its memory is its values' memory: tied weights share it (checkpoints and safetensors
    # find ties by the address)
    def data_ptr(self):
        return self.cpu_values.data_ptr()

    def untyped_storage(self):
        return self.cpu_values.untyped_storage()

    def __deepcopy__(self, memo):  # torch's would rebuild it from that storage, shapeless
        if id(self) not in memo:
            copied = FakeGPUTensor(copy.deepcopy(self.cpu_values.detach(), memo))
            copied.requires_grad_(self.requires_grad)
            for key, value in self.__dict__.items():  # a parameter's mark, say
                if key != "cpu_values":
                    setattr(copied, key, copy.deepcopy(value, memo))
            if self.grad is not None:
                copied.grad = copy.deepcopy(self.grad, memo)
            memo[id(self)] = copied
        return memo[id(self)]

    def __reduce_ex__(self, protocol):  # torch.save, pickle: the values, as a CPU tensor
        return self.cpu_values.__reduce_ex__(protocol)

    def numpy(self, *, force: bool = False):
        raise TypeError(f"can't convert {FAKE_GPU.type}:0 device type tensor to numpy. Use "
                        "Tensor.cpu() to copy the tensor to host memory first.")

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return run_on_cpu(func, args, kwargs or {})


def run_on_cpu(func, args, kwargs):
    """Run `func` on the CPU values of its `fakegpu` tensors; put its results on `fakegpu`."""
    if func in INDEXING:  # the indexed tensor and the values, not the indices
        check_same_device(func, [args[0], *args[2:]])
    elif func not in CROSS_DEVICE:
        check_same_device(func, [*args, *kwargs.values()])
    if func is aten.histc.default and not args[0].is_floating_point():  # CUDA counts integers,
        counts = run_on_cpu(func, (args[0].float(), *args[1:]), kwargs)  # the CPU only floats
        return counts.to(args[0].dtype)  # (transformers' MoE layers count this way off the CPU)
    out = func(*map(_cpu_side, args), **{k: _cpu_side(v) for k, v in kwargs.items()})
    if func is aten._to_copy.default and _is_cpu(kwargs.get("device")):
        return out  # .cpu(), .to("cpu")
    if func is aten.copy_.default and not isinstance(args[0], FakeGPUTensor):
        return args[0]  # a copy into a CPU tensor stays there
    for given in (args[0] if args else None, kwargs.get("out")):  # in place, or out=
        if isinstance(given, FakeGPUTensor) and out is given.cpu_values:
            return given  # the tensor itself, not a second wrapper of its values
    # A view of an ordinary tensor made in inference mode is an ordinary tensor (autograd
    # tracks its version), as torch's own views are.
    if torch.is_inference_mode_enabled() and func.is_view and not args[0].is_inference():
        with torch.inference_mode(False):
            return _wrap(out)
    return _wrap(out)


def _wrap(out):
    if isinstance(out, torch.Tensor):
        return FakeGPUTensor(out)
    if isinstance(out, (list, tuple)):  # (values, indices), unbind's tensors
        return type(out)(map(_wrap, out))
    return out


def check_same_device(func, values):
    """CUDA's error for a CPU tensor of one or more dimensions among `values`."""
    for value in values:
        for t in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(t, torch.Tensor) and not isinstance(t, FakeGPUTensor) and t.dim():
                raise RuntimeError(
                    f"Expected all tensors to be on the same device, but found at least two "
                    f"devices, {FAKE_GPU} and {t.device}! (in {func}; {NAME} is the tests' "
                    f"stand-in for a GPU, see shared/tooling/fake_gpu.py)")


def _cpu_side(x):
    if isinstance(x, FakeGPUTensor):
        return x.cpu_values
    if isinstance(x, (list, tuple)):  # torch.cat's tensors, index's indices
        return [_cpu_side(v) for v in x]
    if isinstance(x, torch.device) and x.type == NAME:
        return torch.device("cpu")
    return x


def _is_cpu(device) -> bool:
    return device is not None and torch.device(device).type == "cpu"


def _make_on_fake_gpu(func, *args, **kwargs):
    """A factory function (or a copy from the CPU) run on the CPU, its result on `fakegpu`."""
    return run_on_cpu(func, args, kwargs)


def _copy_from(src, dst, non_blocking=False):  # torch.tensor(data, device=...) copies this way
    return run_on_cpu(aten.copy_.default, (dst, src), {})


class _BackendModule(_DummyBackendModule):
    """torch.fakegpu: what torch asks of a device's module. torch.accelerator names fakegpu
    as this process's accelerator, so fork_rng() and its like ask for its generator: it has
    one that nothing draws from (its random numbers come from the CPU's)."""

    def get_amp_supported_dtype(self):
        return [torch.float16, torch.bfloat16]

    def get_rng_state(self, device=None):
        return torch.zeros(0, dtype=torch.uint8)

    def set_rng_state(self, state, device=None):
        pass

    def manual_seed(self, seed):
        pass


_setup_privateuseone_for_python_backend(NAME, backend_module=_BackendModule())
FAKE_GPU = torch.device(NAME, 0)

_kernels = torch.library.Library("aten", "IMPL")
_kernels.impl("_copy_from", _copy_from, "PrivateUse1")
# Factories whose generic version makes an empty tensor and resizes it in place, which a
# wrapped tensor cannot follow; the others (empty, zeros, ones, full, rand...) reach the
# fallback below through `empty`.
for _op in [aten.arange.default, aten.arange.start, aten.arange.start_step,
            aten.linspace.default, aten.tril_indices.default, aten.triu_indices.default]:
    _kernels.impl(_op, functools.partial(_make_on_fake_gpu, _op), "PrivateUse1")
_fallback = torch.library.Library("_", "IMPL")
_fallback.fallback(_make_on_fake_gpu, "PrivateUse1")


def _load_onto_fake_gpu(load):
    """torch.load that reads what is mapped to `fakegpu` onto the CPU, then moves it there
    (the storages a file holds cannot be made on a device written in Python)."""
    @functools.wraps(load)
    def torch_load(f, map_location=None, *args, **kwargs):
        if (isinstance(map_location, (str, torch.device))
                and torch.device(map_location).type == NAME):
            loaded = load(f, *args, map_location="cpu", **kwargs)
            return tree_map(lambda x: x.to(FAKE_GPU) if isinstance(x, torch.Tensor) else x,
                            loaded)
        return load(f, map_location, *args, **kwargs)
    return torch_load


torch.load = _load_onto_fake_gpu(torch.load)
