"""What a model of a family is: GPT-2's configuration check, `validate_config(cfg)`; the layout
check of the savers, `check_architecture(model, family, ...)`; and what keeps a saved state from
loading.

Chapter 4's final `GPTModel(cfg)` calls `validate_config` first: a configuration with an unknown
key, a flag that is not True or False, or a context_length whose causal masks exceed this
machine's memory, is refused, naming the key, before any weight is made.
A missing key is the KeyError of the first line that reads it, and a bad count or rate is
refused by the layer that gets it (nn.Linear, nn.Dropout, MultiHeadAttention's divisibility
check).

A saver (GPT-2's files, 5.5.1; the open models' files, 5.9) writes a model's weights under
names that describe one architecture. A model of another layout (a module of another class, a
module the family lacks, a parameter of another shape, a configuration key the format has no
place for) would be written as something it is not, and loaded back wrongly. So the saver
compares the model with `family(model.cfg)` built on the meta device (shapes only: no memory,
no random draws) and refuses, naming what differs. What the modules compute is not compared:
a hook, or a method set on one module, is the learner's own and is not saved.

And what keeps a saved state from loading, for chapter 5's `load_checkpoint` (5.4.1) and
pretrain.py, each a list of problems (empty: it fits): `model_state_problems` (names, shapes and
tied weights), `optimizer_state_problems` (groups, options, per-weight state) and
`generator_problems` (the random generators' states, against this machine's).
"""

import psutil
import torch
from torch import nn

from shared.checks import check


def validate_config(cfg: dict, optional_keys: dict | None = None,
                    required_keys: tuple | None = None) -> dict:
    """A copy of cfg with the defaults of optional_keys filled in. An unknown key raises
    ValueError (a misspelt key would be ignored), and so does a flag that is not True or False
    (qkv_bias="no" would be true), and a context_length whose causal masks (3.5.3's, one per
    block) exceed this machine's memory: building them would swap, or end the process, without
    an error. A missing key is the KeyError of the layer that reads it, and a bad count or rate
    that layer's refusal. The keys default to chapter 4's (GPTModel passes its own)."""
    from shared import OPTIONAL_CONFIG_KEYS, REQUIRED_CONFIG_KEYS  # chapter 4's: read when called

    optional_keys = OPTIONAL_CONFIG_KEYS if optional_keys is None else optional_keys
    keys = [*(REQUIRED_CONFIG_KEYS if required_keys is None else required_keys), *optional_keys]
    check(all(key in keys for key in cfg), lambda: "unknown configuration key "
          f"{', '.join(repr(k) for k in cfg if k not in keys)}; the keys are {', '.join(keys)}")
    cfg = {**optional_keys, **cfg}
    flags = ["qkv_bias", *(k for k, v in optional_keys.items() if isinstance(v, bool))]
    check(all(isinstance(cfg[k], bool) for k in flags), lambda: "; ".join(
        f"{k} must be True or False, got {cfg[k]!r}" for k in flags
        if not isinstance(cfg[k], bool)), TypeError)
    masks = 4 * cfg["context_length"] ** 2 * (cfg["n_layers"] + 1)  # bytes, in float32
    check(masks < psutil.virtual_memory().total or torch.get_default_device().type == "meta",
          lambda: f"context_length {cfg['context_length']:,}: the causal masks exceed memory")
    return cfg


def check_architecture(model: nn.Module, family: type, user: str, config_keys,
                       options: dict | None = None, instead: str = "") -> None:
    """Raise, naming what differs, unless `model` has the layout of family(model.cfg): the same
    classes of modules under the same names (the model itself included, so a subclass is
    refused), the same parameter names and shapes, and only the configuration keys
    `config_keys` (any other key must be one of `options`, a dict of option: default, left at
    its default). `user` writes the weights in that layout; `instead`: what to do instead,
    added to every refusal."""
    def refuse_unless(ok, message, error=ValueError):
        check(ok, lambda: f"{user} does not support {message()}" + (f": {instead}" if instead
                                                                        else ""), error)

    family_name = family.__name__
    check(isinstance(model, family), lambda: f"model must be a {family_name}, got "
          f"{type(model).__name__}", TypeError)
    options = options or {}
    odd = [f"{key}={model.cfg[key]!r}" for key in model.cfg if key not in config_keys
           and (key not in options or model.cfg[key] != options[key])]
    refuse_unless(not odd, lambda: f"the configuration {', '.join(odd)}; it knows "
                  f"{', '.join(config_keys)}" + (", the other options at their defaults"
                                                 if options else ""))
    with torch.device("meta"):
        reference = family(model.cfg)
    expected = dict(reference.named_modules())
    odd_modules = [(name, type(module), type(expected[name]))
                   for name, module in model.named_modules()
                   if name in expected and type(module) is not type(expected[name])]
    refuse_unless(not odd_modules, lambda: "; ".join(
        f"{kind.__name__}, a subclass of {family_name} (use a {family_name}(model.cfg): a "
        f"state_dict moves between the two with load_state_dict)" if not name else
        f"{name}: a {_class_name(kind, wanted)} where {family_name} has a "
        f"{_class_name(wanted, kind)}"
        for name, kind, wanted in odd_modules[:3]) + (
        " (adapters? merge them into the weights first: merge_lora, chapter 6)"
        if any(wanted is nn.Linear for *_, wanted in odd_modules) else ""), TypeError)
    extra = [name for name, _ in model.named_modules() if name and name not in expected]
    refuse_unless(not extra, lambda: f"modules {family_name}(model.cfg) does not have: "
                  f"{', '.join(extra[:3])}", TypeError)
    found, wanted = (dict(m.named_parameters(remove_duplicate=False)) for m in (model, reference))
    shapes = [f"{name} of shape {tuple(found[name].shape)}, {family_name}(model.cfg) has "
              f"{tuple(p.shape)}" if name in found else f"a model without {name}"
              for name, p in wanted.items()
              if name not in found or found[name].shape != p.shape]
    shapes += [f"{name}, a parameter {family_name} does not have" for name in found
               if name not in wanted]
    refuse_unless(not shapes, lambda: "; ".join(shapes[:3]) + (
        f"; and {len(shapes) - 3} more" if len(shapes) > 3 else ""))
    ties = [_tied(m) for m in (model, reference)]  # one matrix under two names, or two
    refuse_unless(ties[0] == ties[1], lambda: f"weights tied otherwise than in "
                  f"{family_name}(model.cfg): {sorted(ties[0]) or 'none'} in the model, "
                  f"{sorted(ties[1]) or 'none'} there (tie_weights={model.cfg.get('tie_weights')})")


def _tied(model: nn.Module) -> set[tuple[str, str]]:
    """Pairs of parameter names that hold one and the same tensor."""
    first = {}
    return {(first.setdefault(id(p), name), name)
            for name, p in model.named_parameters(remove_duplicate=False)
            if first.setdefault(id(p), name) != name}


def _class_name(cls, other) -> str:
    """cls's name, with its module where `other` has the same name (nn.LayerNorm, ours)."""
    same = cls.__name__ == other.__name__
    return f"{cls.__module__}.{cls.__qualname__}" if same else cls.__name__


# A saved state against what it loads into ---------------------------------------------------

def model_state_problems(saved, model: nn.Module) -> list[str]:
    """What keeps `saved` (a state_dict) from loading into `model`: names, shapes and ties."""
    if not isinstance(saved, dict):
        return [f"holds a {type(saved).__name__} as its model state, not a state_dict"]
    wanted = model.state_dict(keep_vars=True)  # its own tensors: tied ones share their memory
    ours = {name: tuple(tensor.shape) for name, tensor in wanted.items()}
    theirs = {name: tuple(value.shape) if isinstance(value, torch.Tensor) and not value.is_meta
              else "no values" for name, value in saved.items()}  # meta: a file saved by hand
    found = [f"{name}: {theirs.get(name, 'missing')} in the checkpoint, {ours.get(name, 'none')} "
             "in this model" for name in {**ours, **theirs} if theirs.get(name) != ours.get(name)]
    if found:
        more = f"; and {len(found) - 4} more" if len(found) > 4 else ""
        return [f"does not fit this model ({'; '.join(found[:4])}{more})"]
    # An untied checkpoint loaded into a tied model would overwrite the one shared matrix with
    # whichever copy loads last; a tied one loaded into an untied model would split it in two.
    ours, theirs = _tied_pairs(wanted), _tied_pairs(saved)
    found = [f"this model ties {a} and {b} (one matrix), the checkpoint holds two different "
             f"ones (saved from an untied model: build this one untied, tie_weights=False)"
             for a, b in sorted(ours - theirs) if not torch.equal(saved[a], saved[b])]
    return found + [f"the checkpoint ties {a} and {b} (saved from a tied model), this model "
                    f"keeps them apart (build it tied, tie_weights=True)"
                    for a, b in sorted(theirs - ours)]


def _tied_pairs(state: dict) -> set[tuple[str, str]]:
    """Pairs of names whose tensors are one tensor: tied weights share their memory."""
    first = {}
    for name, tensor in [(name, tensor) for name, tensor in state.items() if tensor.numel()]:
        first.setdefault((tensor.data_ptr(), tensor.shape, tensor.stride()), []).append(name)
    return {(names[0], name) for names in first.values() for name in names[1:]}


# Optimizer state that is one number per weight (Adam's averages, SGD's momentum, ...).
_PER_WEIGHT_STATE = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer",
                     "square_avg", "sum", "grad_avg", "acc_delta"}


def optimizer_state_problems(saved, optimizer: torch.optim.Optimizer) -> list[str]:
    """What keeps `saved` (an optimizer's state_dict) from loading into `optimizer`."""
    if not (isinstance(saved, dict) and isinstance(saved.get("param_groups"), list)
            and isinstance(saved.get("state"), dict)):
        return ["holds no optimizer state (pass optimizer=None to load the model alone)"
                if saved is None else "holds an optimizer state that is not a state_dict"]
    groups, ours = saved["param_groups"], optimizer.param_groups
    sizes = [len(group.get("params", [])) for group in groups]
    our_sizes = [len(group["params"]) for group in ours]
    if sizes != our_sizes:
        return [f"has optimizer parameter groups of {sizes} tensors, this optimizer {our_sizes}"]
    if unknown := sorted({key for g in groups for key in g} - {key for g in ours for key in g}):
        return [f"has optimizer options {unknown} that {type(optimizer).__name__} lacks "
                "(saved by another kind of optimizer?)"]
    params = dict(zip([i for g in groups for i in g["params"]],
                      [tuple(p.shape) for g in ours for p in g["params"]]))
    return [f"optimizer {name} of parameter {index} has shape "
            f"{tuple(getattr(value, 'shape', ()))}, the parameter {params.get(index, 'none')}"
            for index, values in saved["state"].items() for name, value in values.items()
            if name in _PER_WEIGHT_STATE
            and tuple(getattr(value, "shape", (None,))) != params.get(index)][:4]


_CUDA_STATE_BYTES = 16  # a CUDA GPU's generator state: its seed and its offset, 8 bytes each


def generator_problems(states: dict) -> list[str]:
    """What keeps `states` (as chapter 5's generator_states gives them: "torch_rng", and
    "cuda_rng" by GPU number, "mps_rng") from being restored on this machine; a GPU it lacks is
    no problem (restore_generators skips it). No GPU is asked its state: that would start CUDA."""
    def fits(saved, size):
        return (isinstance(saved, torch.Tensor) and saved.dtype == torch.uint8
                and saved.shape == (size,))

    if not (isinstance(states, dict)
            and fits(states.get("torch_rng"), torch.get_rng_state().numel())):
        return ["holds no valid random-number state"]
    cuda = states.get("cuda_rng", {})
    if not isinstance(cuda, dict):  # 5.4.1's minimal save_resumable: a list, or None
        return ["holds its CUDA random-number state as a list or None, not by GPU number as "
                "save_checkpoint saves it (a file of the minimal save_resumable?)"]
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not all(
            isinstance(index, int) and index >= 0
            and (index >= here or fits(state, _CUDA_STATE_BYTES)) for index, state in cuda.items()):
        return ["holds a CUDA random-number state that this machine's GPUs cannot take"]
    if ("mps_rng" in states and torch.backends.mps.is_available()
            and not fits(states["mps_rng"], torch.mps.get_rng_state().numel())):
        return ["holds an MPS random-number state that this Mac cannot take"]
    return []
