# Generated from ch05_pretraining/beyond_1_checkpoints.ipynb
# by `python -m shared.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export checkpoints`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_checkpoints.ipynb cell 8, The lesson's run

"""Chapter 5, section 5.4: training checkpoints (model, optimizer and the random generators'
states), saved atomically and loaded all or nothing, on any device."""

import contextlib
import io
import json
import pickle
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from shared import check, write_atomically


# %% beyond_1_checkpoints.ipynb cell 9, The lesson's run

def lesson_run(model_config: dict, training: dict, train_loader: Iterable, val_loader: Iterable,
               device: torch.device | str, tokenizer, path: str | Path = "lesson_run.pth"):
    """The lesson's section 5.2 run: (model, optimizer, (train_losses, val_losses, tokens_seen)).

    Read from `path`, which the lesson writes in 5.4, when it holds a run of `model_config` and
    `training`; otherwise trained as the lesson trains it and saved to `path`, replacing a run
    of other settings (a cache: it can always be trained again)."""
    from shared import GPTModel, set_seed, train_model_simple  # the lesson's

    path = Path(path)
    saved = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    if saved is not None and (saved.get("config"), saved.get("training")) == (model_config,
                                                                             training):
        model = GPTModel(model_config).to(device)
        model.load_state_dict(saved["model"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"],
                                      weight_decay=training["weight_decay"])
        optimizer.load_state_dict(saved["optimizer"])
        return model, optimizer, tuple(saved["losses"])
    set_seed(123)  # as the lesson's training cell (5.2)
    model = GPTModel(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"],
                                  weight_decay=training["weight_decay"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        losses = train_model_simple(model, train_loader, val_loader, optimizer, device,
                                    num_epochs=training["num_epochs"],
                                    eval_freq=training["eval_freq"],
                                    eval_iter=training["eval_iter"],
                                    start_context="Every effort moves you", tokenizer=tokenizer)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "losses": losses,
             "config": model_config, "training": training}
    write_atomically(path, lambda tmp: torch.save(state, tmp))  # another settings' file: replaced
    return model, optimizer, losses


# %% beyond_1_checkpoints.ipynb cell 15, 5.4.1 Checkpoints that check what they load

# Where a checkpoint keeps each generator's state: the CPU's (shuffling, and dropout on the CPU)
# always; a CUDA GPU's (by its number) or the Mac GPU's (MPS) when the model is there, as
# dropout on a GPU draws from that GPU's generator. A model on one device draws from the CPU's
# generator and that device's, and from no other.
_RNG_KEYS = ("torch_rng", "cuda_rng", "mps_rng")
_CUDA_STATE_BYTES = 16  # a CUDA GPU's generator state: its seed and its offset, 8 bytes each


def save_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, *, replace: bool = False,
                    **extra) -> None:
    """Save model, optimizer and the states of the random generators the model draws from (the
    CPU's and its device's), plus any `extra` values, to `path`, atomically.

    A checkpoint at `path` of a model of the same architecture (the same weights' names and
    shapes, and the same `config` if both record one) is overwritten, as a run does every few
    steps: any run of that architecture matches, not only this model's. Anything else there (a
    checkpoint of another architecture, a file of another kind) is refused unless replace=True.
    """
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    on_meta = [name for name, tensor in tensors.items() if tensor.is_meta]
    check(not on_meta, lambda: f"model is on the meta device ({on_meta[0]} has a shape but no "
          "values): a checkpoint of it could not be loaded; give it values first (to_empty, "
          "then load or train its weights)")
    taken = [key for key in _RNG_KEYS if key in extra]  # "model", "optimizer": the arguments'
    check(not taken, lambda: f"an extra value may not be named {taken[0]}: save_checkpoint "
          "stores a generator's state under that name")
    for key, value in extra.items():  # refused now, not when load_checkpoint reads it back
        if not _loads_back(value):
            raise ValueError(f"the extra value {key}={value!r} ({type(value).__name__}) could "
                             "not be loaded back: load_checkpoint reads with torch.load("
                             "weights_only=True), which takes numbers, strings, lists, tuples, "
                             "dicts and tensors (convert it: float(x), str(path), a dict of "
                             "those for an argparse Namespace)")
    check(not Path(path).is_dir(), f"{path} is a folder: save_checkpoint writes a file (give "
          "a file name in it, such as checkpoint.pth)")
    if not replace and (held := _held_instead(Path(path), model, extra.get("config"))):
        raise ValueError(f"{path} {held}: save_checkpoint overwrites unasked only a checkpoint "
                         "of the same weights' names and shapes, and the same config if both "
                         "record one; pass replace=True to replace it, or choose another path")
    devices = {tensor.device for tensor in tensors.values()}
    state = {"model": model.state_dict(), **generator_states(devices), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    write_atomically(path, lambda tmp: torch.save(state, tmp))  # a crash leaves no half file


def save_weights(path: str | Path, model: nn.Module, *, replace: bool = False) -> None:
    """Save `model.state_dict()` alone to `path`, as torch.save(model.state_dict(), path) does
    (load it with model.load_state_dict(torch.load(path))), atomically. It overwrites weights
    of the same names and shapes (any model's), anything else only with replace=True."""
    check(not Path(path).is_dir(), f"{path} is a folder: save_weights writes a file (give a "
          "file name in it, such as model.pth)")
    if not replace and (held := _held_instead(Path(path), model, None, plain=True)):
        raise ValueError(f"{path} {held}: save_weights overwrites only weights of the same "
                         "names and shapes; pass replace=True to replace it, or give another path")
    state = model.state_dict()
    write_atomically(path, lambda tmp: torch.save(state, tmp))


# %% beyond_1_checkpoints.ipynb cell 17, 5.4.1 Checkpoints that check what they load

def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True, expect: dict | None = None, *,
                    validate: Callable[[dict], list[str]] | None = None) -> dict:
    """Load a checkpoint written by save_checkpoint into `model` (and `optimizer`).

    All or nothing: the model state, the optimizer state, the generators' states and the
    `expect`ed extra values (say {"seed": 123}; of a dict, such as a config, the keys that
    differ are named) are all checked first; on any mismatch ValueError lists the problems and
    model, optimizer and generators are untouched. `validate`, a function of the checkpoint's
    dict that returns what else is wrong (["holds ...", ...]), adds its checks to these.

    The checkpoint may come from another device: the weights and the optimizer's state end on
    the model's. restore_rng restores every generator whose state the checkpoint holds and
    this machine has; one it lacks (a GPU's, saved on a GPU and loaded on a CPU-only machine)
    is skipped with a warning that names it. A generator the checkpoint does not hold (a
    GPU's, in one saved on the CPU) keeps its state.
    """
    if (other := _another_format(Path(path))) is not None:  # a model folder, a safetensors file
        raise ValueError(f"{path} {other}")
    check(Path(path).is_file(), f"no checkpoint at {path}", FileNotFoundError)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or damaged?): "
                         f"{error}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(_not_a_checkpoint(path, state))
    problems = _model_state_problems(state["model"], model)
    if optimizer is not None:
        problems += _optimizer_state_problems(state.get("optimizer"), optimizer)
    if restore_rng:
        problems += [f"{problem} (pass restore_rng=False)"
                     for problem in generator_problems(state)]
    for key, value in (expect or {}).items():
        if key not in state:
            problems.append(f"records no {key} (expected {value!r})")
        elif state[key] != value:
            saved, wanted = state[key], value
            if isinstance(saved, dict) and isinstance(wanted, dict):  # a config: name what differs
                keys = sorted(k for k in saved | wanted if saved.get(k) != wanted.get(k))
                saved, wanted = {k: saved.get(k) for k in keys}, {k: wanted.get(k) for k in keys}
            problems.append(f"was trained with {key}={saved!r}, not {wanted!r}")
    if validate is not None:
        problems += validate(state)
    if problems:
        raise ValueError(f"{path} " + "; ".join(problems))
    model.load_state_dict(state["model"])  # nothing below can fail after the checks above
    if optimizer is not None:  # its state is moved to its parameters' device, as it loads
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng and (skipped := restore_generators(state)):
        warnings.warn(f"{path} holds the random state of {' and of '.join(skipped)}, which "
                      "this machine lacks: not restored, so dropout draws other masks than the "
                      "saved run would have (restore_rng=False restores no generator and says "
                      "nothing)", stacklevel=2)
    return state


# %% beyond_1_checkpoints.ipynb cell 19, 5.4.1 Checkpoints that check what they load

def generator_states(devices: Iterable[str | torch.device] | None = None) -> dict:
    """The states of the random generators a run draws from, named as in _RNG_KEYS: the CPU's
    and those of the GPUs among `devices` (by default every GPU: each CUDA GPU's once CUDA is
    in use, the Mac's where there is one). CUDA GPUs' states are keyed by the GPU's number."""
    states = {"torch_rng": torch.get_rng_state()}
    if devices is None:  # a GPU's state only once CUDA is in use: asking would start it
        cuda = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []
        mps = torch.backends.mps.is_available()
    else:
        devices = [torch.device(device) for device in devices]
        cuda = sorted({torch.cuda.current_device() if device.index is None else device.index
                       for device in devices if device.type == "cuda"})
        mps = any(device.type == "mps" for device in devices)
    if cuda:
        states["cuda_rng"] = {index: torch.cuda.get_rng_state(index) for index in cuda}
    if mps:
        states["mps_rng"] = torch.mps.get_rng_state()
    return states


def restore_generators(states: dict) -> list[str]:
    """Set each generator to its state in `states` (as generator_states gives them); the names
    of the devices whose states this machine cannot take."""
    torch.set_rng_state(states["torch_rng"])
    skipped = []
    saved = states.get("cuda_rng", {})
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, state in saved.items():
        if index < here:
            torch.cuda.set_rng_state(state, index)  # queued until CUDA starts, if it has not
    if missing := [index for index in saved if index >= here]:
        skipped.append(f"CUDA GPU{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(map(str, missing))}")
    if "mps_rng" in states:
        if torch.backends.mps.is_available():
            torch.mps.set_rng_state(states["mps_rng"])
        else:
            skipped.append("a Mac's GPU (MPS)")
    return skipped


def generator_problems(states: dict) -> list[str]:
    """What keeps `states` (as generator_states gives them) from being restored here."""
    def fits(saved, size):
        return (isinstance(saved, torch.Tensor) and saved.dtype == torch.uint8
                and saved.shape == (size,))

    def cuda_fits(index, saved):
        if not (isinstance(index, int) and index >= 0):
            return False
        if index >= (torch.cuda.device_count() if torch.cuda.is_available() else 0):
            return True  # a GPU this machine lacks: skipped when restoring
        size = (torch.cuda.get_rng_state(index).numel() if torch.cuda.is_initialized()
                else _CUDA_STATE_BYTES)  # asking an idle GPU would start CUDA
        return fits(saved, size)

    if not (isinstance(states, dict)
            and fits(states.get("torch_rng"), torch.get_rng_state().numel())):
        return ["holds no valid random-number state"]
    saved = states.get("cuda_rng", {})  # one state per GPU, keyed by its number
    if not isinstance(saved, dict) or not all(map(cuda_fits, saved, saved.values())):
        return ["holds a CUDA random-number state that this machine's GPUs cannot take"]
    if ("mps_rng" in states and torch.backends.mps.is_available()
            and not fits(states["mps_rng"], torch.mps.get_rng_state().numel())):
        return ["holds an MPS random-number state that this Mac cannot take"]
    return []


# %% beyond_1_checkpoints.ipynb cell 21, 5.4.1 Checkpoints that check what they load

def _loads_back(value) -> bool:
    """Whether torch.load(weights_only=True), as load_checkpoint reads, accepts `value`."""
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)
    except (pickle.PicklingError, pickle.UnpicklingError, AttributeError, TypeError):
        return False
    return True


def _not_a_checkpoint(path, state) -> str:
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        return (f"{path} holds a plain state_dict ({len(state)} tensors, weights only), not a "
                f"checkpoint of save_checkpoint: load it with "
                f"model.load_state_dict(torch.load(path))")
    kind = (f"a dict with keys {sorted(map(str, state))[:6]}" if isinstance(state, dict)
            else f"a {type(state).__name__}")
    return f"{path} is not a checkpoint of save_checkpoint: it holds {kind}, no 'model'"


def _held_instead(path: Path, model: nn.Module, config, plain: bool = False) -> str | None:
    """What `path` holds instead of a checkpoint of `model` (with `config`, if not None), or
    with plain=True instead of `model`'s state_dict alone; None if nothing or that."""
    if not path.exists():
        return None
    try:  # mapped, not read: only the names and shapes are compared
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # mmap needs torch.save's zip format; an older file is read whole
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any file torch cannot read is not a checkpoint
        return "holds a file that is not a checkpoint (torch.load cannot read it)"
    weights = (isinstance(saved, dict) and saved
               and all(isinstance(value, torch.Tensor) for value in saved.values()))
    if plain and not weights:
        kind = ("a checkpoint of save_checkpoint" if isinstance(saved, dict) and "model" in saved
                else f"a {type(saved).__name__}")
        return f"holds {kind}, not a model's state_dict"
    if not plain and not (isinstance(saved, dict) and isinstance(saved.get("model"), dict)):
        kind = "a plain state_dict" if weights else f"a {type(saved).__name__}"
        return f"holds {kind}, not a checkpoint of save_checkpoint"
    if problems := _model_state_problems(saved if plain else saved["model"], model):
        return f"holds {'the weights' if plain else 'a checkpoint'} of another model: it " \
               f"{problems[0]}"
    theirs = saved.get("config")
    if isinstance(config, dict) and isinstance(theirs, dict) and theirs != config:
        keys = sorted(k for k in theirs | config if theirs.get(k) != config.get(k))
        return (f"holds a checkpoint of another model (its config differs: "
                f"{ {k: theirs.get(k) for k in keys} }, this model's "
                f"{ {k: config.get(k) for k in keys} })")
    return None


def _another_format(path: Path) -> str | None:
    """How to load `path` if it is a folder or a safetensors file (GPT-2's, a published
    model's), which load_checkpoint does not read; None for any other file."""
    if path.is_file():
        with open(path, "rb") as file:  # safetensors: an 8-byte header length, then its JSON
            start = file.read(9)
        if len(start) < 9 or start[8:] != b"{":
            return None
    elif not path.is_dir():
        return None
    folder = path if path.is_dir() else path.parent
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
    except (OSError, ValueError, KeyError, TypeError):  # no config.json, or not one of a model
        model_type = None
    gpt2 = ("holds GPT-2 weights in safetensors (as save_gpt2_safetensors writes them), not a "
            "checkpoint of save_checkpoint: load them with load_gpt2(path), which builds the "
            "GPTModel they describe")
    if model_type == "gpt2":
        return gpt2
    if model_type is not None:  # section 5.9's loader names the families it reads, if not this
        return (f"holds a Hugging Face {model_type!r} model (config.json), not a checkpoint of "
                "save_checkpoint: load it with load_open_model(folder) (section 5.9), or with "
                "transformers' AutoModelForCausalLM.from_pretrained(folder)")
    if path.is_dir():
        return ("is a folder, not a checkpoint file: give the path of the file save_checkpoint "
                "wrote")
    import safetensors

    try:
        with safetensors.safe_open(path, framework="pt") as file:
            names = [name.removeprefix("transformer.") for name in file.keys()]
    except Exception:  # a damaged one: torch.load's error will say so
        return None
    if "wte.weight" in names:
        return gpt2
    return ("holds safetensors weights, not a checkpoint of save_checkpoint: read them with "
            "safetensors.torch.load_file(path)")


# %% beyond_1_checkpoints.ipynb cell 23, 5.4.1 Checkpoints that check what they load

def _model_state_problems(saved, model: nn.Module) -> list[str]:
    """What keeps `saved` (a state_dict) from loading into `model`."""
    wanted = model.state_dict(keep_vars=True)  # its own tensors: tied ones are one object
    if not isinstance(saved, dict):
        return [f"holds a {type(saved).__name__} as its model state, not a state_dict"]
    found = [f"missing {name}" for name in wanted if name not in saved]
    found += [f"unexpected {name}" for name in saved if name not in wanted]
    for name, tensor in wanted.items():
        value = saved.get(name)
        if value is not None and not isinstance(value, torch.Tensor):
            found.append(f"{name} is a {type(value).__name__}, not a tensor")
        elif value is not None and value.shape != tensor.shape:
            found.append(f"{name} has shape {tuple(value.shape)}, the model needs "
                         f"{tuple(tensor.shape)}")
        elif value is not None and value.is_meta:  # torch.load gives meta tensors back as such
            found.append(f"{name} holds no values (saved from a model on the meta device)")
    more = f"; and {len(found) - 4} more" if len(found) > 4 else ""
    if found:
        return [f"does not fit this model ({'; '.join(found[:4])}{more})"]
    # Loading an untied checkpoint into a tied model would overwrite the one shared matrix
    # with whichever copy loads last; a tied one into an untied model would split it in two.
    ours, theirs = _tied_pairs(wanted), _tied_pairs(saved)
    found = [f"this model ties {a} and {b} (one matrix), the checkpoint holds two different "
             f"ones (saved from an untied model: build this one untied, tie_weights=False)"
             for a, b in sorted(ours - theirs) if not torch.equal(saved[a], saved[b])]
    found += [f"the checkpoint ties {a} and {b} (saved from a tied model), this model keeps "
              f"them apart (build it tied, tie_weights=True)" for a, b in sorted(theirs - ours)]
    return found


def _tied_pairs(state: dict) -> set[tuple[str, str]]:
    """Pairs of names whose tensors are one tensor: tied weights share their memory (on the
    meta device, which has none, they are one object: a model's own, state_dict(keep_vars))."""
    first = {}
    pairs = set()
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.numel():
            key = id(tensor) if tensor.is_meta else (tensor.data_ptr(), tensor.shape,
                                                     tensor.stride())
            if key in first:
                pairs.add((first[key], name))
            first.setdefault(key, name)
    return pairs


# Optimizer state that is one number per weight (Adam's averages, SGD's momentum, ...).
_PER_WEIGHT_STATE = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer",
                     "square_avg", "sum", "grad_avg", "acc_delta"}


def _optimizer_state_problems(saved, optimizer: torch.optim.Optimizer) -> list[str]:
    """What keeps `saved` (an optimizer's state_dict) from loading into `optimizer`."""
    if saved is None:
        return ["holds no optimizer state (pass optimizer=None to load the model alone)"]
    if not (isinstance(saved, dict) and isinstance(saved.get("param_groups"), list)
            and isinstance(saved.get("state"), dict)):
        return ["holds an optimizer state that is not an optimizer's state_dict"]
    ours = optimizer.param_groups
    sizes = [len(group.get("params", [])) for group in saved["param_groups"]]
    if sizes != [len(group["params"]) for group in ours]:
        return [f"has optimizer parameter groups of {sizes} tensors, this optimizer "
                f"{[len(group['params']) for group in ours]}"]
    options = {key for group in saved["param_groups"] for key in group}
    if unknown := sorted(options - {key for group in ours for key in group}):
        return [f"has optimizer options {unknown} that {type(optimizer).__name__} lacks "
                "(saved by another kind of optimizer?)"]
    index_to_param = dict(zip([i for group in saved["param_groups"] for i in group["params"]],
                              [p for group in ours for p in group["params"]]))
    found = []
    for index, values in saved["state"].items():
        param = index_to_param.get(index)
        if param is None:
            found.append(f"optimizer state for parameter {index!r}, which no group lists")
            continue
        for name, value in values.items():
            if name in _PER_WEIGHT_STATE and getattr(value, "shape", None) != param.shape:
                found.append(f"optimizer {name} of parameter {index} has shape "
                             f"{tuple(getattr(value, 'shape', ()))}, the parameter "
                             f"{tuple(param.shape)}")
    return found[:4]


__all__ = [
    'lesson_run',
    'save_checkpoint',
    'save_weights',
    'load_checkpoint',
    'generator_states',
    'restore_generators',
    'generator_problems',
]
