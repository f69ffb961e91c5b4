# Generated from ch05_pretraining/beyond_1_checkpoints.ipynb
# by `python -m shared.tooling.notebooks export`. Do not edit: change the notebook's cells
# marked `#| export checkpoints`, then export again.
# Each `# %%` line names the cell the code below it came from.

# %% beyond_1_checkpoints.ipynb cell 15, 5.4.3 Checkpoints that check what they load

"""Chapter 5, section 5.4: training checkpoints (model, optimizer and the random generators'
states), saved atomically and loaded all or nothing, on any device."""

import contextlib
import io
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from shared.architecture import generator_problems, model_state_problems, optimizer_state_problems
from shared.checks import check, check_has_values
from shared.safe_files import check_file_replaceable, check_loads_back, read_torch_file
from shared.utils import write_atomically


# %% beyond_1_checkpoints.ipynb cell 17, 5.4.3 Checkpoints that check what they load

# The generators a run draws from: the CPU's (shuffling, and dropout on the CPU) always, and the
# GPU's that the model is on (dropout there): a CUDA GPU's, by its number, or the Mac's (MPS).
_RNG_KEYS = ("torch_rng", "cuda_rng", "mps_rng")


def save_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, *, replace: bool = False,
                    **extra) -> None:
    """Save model, optimizer, the states of the generators the model draws from and any `extra`
    values to `path`, atomically. It overwrites a checkpoint of the same architecture (the same
    weights' names and shapes, and config if both record one), as a run does every few steps;
    another model's, or another file of torch.save's, only with replace=True, and never a file
    of another kind (your notes, a dataset)."""
    check_has_values("model", model, "give it values first (to_empty, then load or train it)")
    for key, value in extra.items():  # refused now, not when load_checkpoint reads it back
        check(key not in _RNG_KEYS, f"{key} names a generator's state: name the extra otherwise")
        check_loads_back(f"the extra value {key}", value, "load_checkpoint")
    config = extra.get("config")
    check_file_replaceable(path, "save_checkpoint", replace, lambda saved: (
        isinstance(saved, dict) and not model_state_problems(saved.get("model"), model)
        and not (isinstance(config, dict) and saved.get("config", config) != config)))
    devices = {tensor.device for tensor in [*model.parameters(), *model.buffers()]}
    state = {"model": model.state_dict(), **generator_states(devices), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    write_atomically(path, lambda tmp: torch.save(state, tmp))  # a crash leaves no half file


def save_weights(path: str | Path, model: nn.Module, *, replace: bool = False) -> None:
    """Save `model.state_dict()` alone to `path`, atomically, as torch.save(model.state_dict(),
    path) does (load it with model.load_state_dict(torch.load(path))). It overwrites weights of
    the same names and shapes (any model's), another file of torch.save's only with
    replace=True, and never a file of another kind."""
    check_has_values("model", model, "give it values first (to_empty, then load or train it)")
    check_file_replaceable(path, "save_weights", replace,
                           lambda saved: not model_state_problems(saved, model))
    state = model.state_dict()
    write_atomically(path, lambda tmp: torch.save(state, tmp))


# %% beyond_1_checkpoints.ipynb cell 19, 5.4.3 Checkpoints that check what they load

def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True, expect: dict | None = None, *,
                    validate: Callable[[dict], list[str]] | None = None) -> dict:
    """Load a checkpoint of save_checkpoint into `model` (and `optimizer`), from any device onto
    the model's, all or nothing: the model's and the optimizer's states, the generators' states,
    the `expect`ed values ({"seed": 123}; of a dict, such as a config, the keys that differ are
    named) and what `validate(checkpoint)` returns (["holds ...", ...]) are checked first, and
    one ValueError lists every problem. restore_rng restores each generator the checkpoint and
    this machine both have, and warns of one this machine lacks (a GPU's)."""
    check_has_values("model", model, "give it memory first with model.to_empty(device=...)")
    state = read_torch_file(path)  # weights_only: no code in the file runs
    check(isinstance(state, dict) and "model" in state, lambda: f"{path} is not a checkpoint "
          f"of save_checkpoint (no 'model' key): {_how_to_load(state)}")
    problems = model_state_problems(state["model"], model)
    if optimizer is not None:
        problems += optimizer_state_problems(state.get("optimizer"), optimizer)
    if restore_rng:
        problems += [f"{problem} (pass restore_rng=False)" for problem in generator_problems(state)]
    for key, wanted in (expect or {}).items():
        saved = state.get(key)
        if isinstance(saved, dict) and isinstance(wanted, dict):  # a config: name what differs
            keys = sorted(k for k in saved | wanted if saved.get(k) != wanted.get(k))
            saved, wanted = {k: saved.get(k) for k in keys}, {k: wanted.get(k) for k in keys}
        if key not in state or saved != wanted:
            problems.append(f"records no {key} (expected {wanted!r})" if key not in state
                            else f"was trained with {key}={saved!r}, not {wanted!r}")
    problems += validate(state) if validate is not None else []
    check(not problems, lambda: f"{path} " + "; ".join(problems))
    model.load_state_dict(state["model"])  # nothing below can fail after the checks above
    if optimizer is not None:  # its state is moved to its parameters' device, as it loads
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng and (skipped := restore_generators(state)):
        warnings.warn(f"{path} holds the random state of {' and of '.join(skipped)}, which this "
                      "machine lacks: not restored, so dropout draws other masks than the saved "
                      "run would have (restore_rng=False restores no generator)", stacklevel=2)
    return state


def _how_to_load(state) -> str:
    """What loads a file of the book's, which load_checkpoint does not read."""
    if isinstance(state, dict) and "model_state_dict" in state:  # 5.4's dictionary
        return ("it holds the book's dictionary of 5.4: load it with model.load_state_dict("
                "checkpoint['model_state_dict']) and optimizer.load_state_dict(checkpoint["
                "'optimizer_state_dict'])")
    return ("weights alone, as torch.save(model.state_dict(), path) writes them, load with "
            "model.load_state_dict(torch.load(path))")


# %% beyond_1_checkpoints.ipynb cell 21, 5.4.3 Checkpoints that check what they load

def generator_states(devices: Iterable[str | torch.device] | None = None) -> dict:
    """The states of the generators a run on `devices` draws from, keyed as in _RNG_KEYS (each
    CUDA GPU's by its number); by default every GPU's (CUDA's once CUDA is in use)."""
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
    of the devices this machine lacks, whose states are skipped."""
    torch.set_rng_state(states["torch_rng"])
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, state in states.get("cuda_rng", {}).items():
        if index < here:
            torch.cuda.set_rng_state(state, index)  # queued until CUDA starts, if it has not
    missing = [str(index) for index in states.get("cuda_rng", {}) if index >= here]
    skipped = [f"CUDA GPU{'s' * (len(missing) > 1)} {', '.join(missing)}"] if missing else []
    if "mps_rng" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps_rng"])
    elif "mps_rng" in states:
        skipped.append("a Mac's GPU (MPS)")
    return skipped


# %% beyond_1_checkpoints.ipynb cell 25, 5.4.3 Checkpoints that check what they load

def lesson_run(model_config: dict, training: dict, train_loader: Iterable, val_loader: Iterable,
               device: torch.device | str, tokenizer, path: str | Path = "lesson_run.pth"):
    """The lesson's 5.2 run, (model, optimizer, (train_losses, val_losses, tokens_seen)): read
    from `path` (the lesson writes it in 5.4) if it holds a run of these settings, else trained
    as the lesson trains it and saved there, replacing another settings' run (a cache)."""
    from ch04_gpt_model.final_model import GPTModel  # as the lesson's run
    from ch05_pretraining.pretraining import train_model_simple
    from shared.utils import set_seed

    path = Path(path)
    saved = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
    cached = (saved.get("config"), saved.get("training")) == (model_config, training)
    if not cached:
        set_seed(123)  # as the lesson's training cell (5.2)
    model = GPTModel(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"],
                                  weight_decay=training["weight_decay"])
    if cached:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        return model, optimizer, tuple(saved["losses"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        losses = train_model_simple(model, train_loader, val_loader, optimizer, device,
                                    training["num_epochs"], training["eval_freq"],
                                    training["eval_iter"], "Every effort moves you", tokenizer)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "losses": losses,
             "config": model_config, "training": training}
    write_atomically(path, lambda tmp: torch.save(state, tmp))  # another settings' file: replaced
    return model, optimizer, losses


__all__ = [
    'save_checkpoint',
    'save_weights',
    'load_checkpoint',
    'generator_states',
    'restore_generators',
    'lesson_run',
]
