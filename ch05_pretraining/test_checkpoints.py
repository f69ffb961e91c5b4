"""checkpoints.py: save_checkpoint, save_weights and load_checkpoint refuse what does not fit
with a clear error, before anything changes, and lose nothing a learner has."""

import argparse
import copy
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ch05_pretraining.checkpoints import (
    generator_states,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from conftest import tiny_gpt as tiny_model
from shared import calc_loss_batch


def batches(n=1):
    ids = torch.arange(2 * 5).reshape(2, 5) % 50
    return [(ids, (ids + 1) % 50)] * n


def trained(seed, **change):
    """A tiny GPT and its AdamW after one step, so the optimizer has state."""
    model = tiny_model(seed, **change)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    one_step(model, optimizer)
    return model, optimizer


def fresh(seed=0, device="cpu"):
    """A tiny GPT on `device` and its AdamW, before any step."""
    model = tiny_model(seed).to(device)
    return model, torch.optim.AdamW(model.parameters(), lr=0.01)


def one_step(model, optimizer):
    for inputs, targets in batches(1):
        calc_loss_batch(inputs, targets, model, "cpu").backward()
        optimizer.step()


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def edited(path, change):
    """Rewrite the checkpoint at `path` with `change(state)` applied, as a hand-made file."""
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def newer_torch_file(path):
    """A checkpoint as a newer torch might write it: its pickle calls a function of torch's
    that this torch lacks (torch._utils._rebuild_tensor_v9)."""
    save_checkpoint(path, *trained(1), step=1)
    with zipfile.ZipFile(path) as old:
        files = {name: old.read(name) for name in old.namelist()}
    with zipfile.ZipFile(path, "w") as new:
        for name, data in files.items():
            if name.endswith("data.pkl"):
                data = data.replace(b"_rebuild_tensor_v2", b"_rebuild_tensor_v9")
            new.writestr(name, data)


# load_checkpoint: each bad file or argument, refused before anything changes ------------------

def set_key(key, value):
    return lambda path: (save_checkpoint(path, *trained(1), step=1),
                         edited(path, lambda state: state.__setitem__(key, value)))


def other_param_groups(path):  # fits the model: only the optimizer does not
    model, _ = trained(1)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0}])
    save_checkpoint(path, model, optimizer, step=1)


def sgd_state(path):
    model, _ = trained(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    one_step(model, optimizer)
    save_checkpoint(path, model, optimizer, step=1)


def wrong_adam_shape(path):
    save_checkpoint(path, *trained(1), step=1)
    edited(path, lambda state: state["optimizer"]["state"][0].__setitem__("exp_avg",
                                                                         torch.zeros(3)))


def from_the_meta_device(path):  # save_checkpoint refuses a meta model; a file made by hand
    save_checkpoint(path, *trained(1), step=1)
    edited(path, lambda state: state.__setitem__(
        "model", {name: tensor.to("meta") for name, tensor in state["model"].items()}))


def truncated(path):
    save_checkpoint(path, *trained(1), step=1)
    path.write_bytes(path.read_bytes()[:2000])


def safetensors_file(path):
    import safetensors.torch

    safetensors.torch.save_file(trained(1)[0].state_dict(), path)


def model_folder(path):  # a published model's folder, say
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "qwen3"}')


def good(path):
    save_checkpoint(path, *trained(1), step=1)


CHECKPOINT = "checkpoint.pth"
LOAD_REFUSALS = [  # (what is at the path, options, exception, a name the message must hold)
    (lambda path: None, {}, FileNotFoundError, CHECKPOINT),
    (lambda path: torch.save(trained(1)[0].state_dict(), path), {}, ValueError,
     "model.load_state_dict(torch.load(path))"),  # the book's plain state_dict
    (lambda path: torch.save({"model_state_dict": trained(1)[0].state_dict(),  # 5.4's dictionary
                              "optimizer_state_dict": trained(1)[1].state_dict()}, path),
     {}, ValueError, "model.load_state_dict(checkpoint['model_state_dict'])"),
    (lambda path: torch.save([1, 2, 3], path), {}, ValueError, CHECKPOINT),
    (truncated, {}, ValueError, CHECKPOINT),
    (safetensors_file, {}, ValueError, CHECKPOINT),
    (model_folder, {}, ValueError, CHECKPOINT),
    (newer_torch_file, {}, ValueError, CHECKPOINT),
    (lambda path: save_checkpoint(path, *trained(1, emb_dim=8), step=1), {}, ValueError,
     "model"),
    (from_the_meta_device, {}, ValueError, "model"),
    (other_param_groups, {}, ValueError, "optimizer"),
    (set_key("optimizer", None), {}, ValueError, "optimizer"),
    (sgd_state, {}, ValueError, "optimizer"),
    (wrong_adam_shape, {}, ValueError, "optimizer"),
    (set_key("torch_rng", torch.zeros(7)), {}, ValueError, "restore_rng"),
    (good, {"expect": {"step": 2}}, ValueError, "step"),
    (good, {"expect": {"seed": 123}}, ValueError, "seed"),
    (good, {"validate": lambda state: ["holds no data checksum"]}, ValueError, "checksum"),
]


@pytest.mark.parametrize("write, options, error, name", LOAD_REFUSALS)
def test_load_checkpoint_refuses_before_anything_changes(write, options, error, name, tmp_path):
    path = tmp_path / CHECKPOINT
    write(path)
    model, optimizer = trained(0)
    weights, moments = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    with pytest.raises(error) as refusal:
        load_checkpoint(path, model, optimizer, **options)
    assert name in str(refusal.value)
    assert same(model.state_dict(), weights) and same(optimizer.state_dict(), moments)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_good_load_changes_all_three(tmp_path):  # so the test above can fail
    save_checkpoint(tmp_path / "good.pth", *trained(1), step=1)
    saved_rng = torch.get_rng_state()
    torch.rand(5)
    model, optimizer = trained(0)
    weights, moments = model.state_dict()["tok_emb.weight"].clone(), optimizer.state_dict()
    state = load_checkpoint(tmp_path / "good.pth", model, optimizer, expect={"step": 1})
    assert state["step"] == 1
    assert not torch.equal(model.state_dict()["tok_emb.weight"], weights)
    assert not same(optimizer.state_dict()["state"], moments["state"])
    assert torch.equal(torch.get_rng_state(), saved_rng)


def test_a_model_on_the_meta_device_is_refused_with_what_to_do(tmp_path):
    save_checkpoint(tmp_path / "c.pth", *trained(1), step=1)
    model = tiny_model().to("meta")  # built to save memory: shapes, no values
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError) as refusal:
        load_checkpoint(tmp_path / "c.pth", model, optimizer)
    assert str(refusal.value) == (
        "model is on the meta device (tok_emb.weight has a shape but no values): "
        "give it memory first with model.to_empty(device=...)")
    assert all(tensor.is_meta for tensor in model.state_dict().values())
    assert optimizer.state_dict()["state"] == {}
    model.to_empty(device="cpu")  # what the message says to do
    load_checkpoint(tmp_path / "c.pth", model, optimizer)
    assert same(model.state_dict(), trained(1)[0].state_dict())


def test_a_file_a_newer_torch_wrote_says_so_on_its_first_line(tmp_path):
    newer_torch_file(tmp_path / "newer.pth")
    with pytest.raises(ValueError) as refusal:
        load_checkpoint(tmp_path / "newer.pth", tiny_model())
    assert str(refusal.value).splitlines()[0] == (
        f"{tmp_path / 'newer.pth'} was written by a newer torch? It calls "
        f"torch._utils._rebuild_tensor_v9, which this torch ({torch.__version__}) lacks: "
        "upgrade torch, then load it again")


def test_a_torch_global_this_torch_has_is_not_blamed_on_a_newer_torch(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "whole.pth")  # a whole module
    with pytest.raises(ValueError, match="is not a readable checkpoint") as refusal:
        load_checkpoint(tmp_path / "whole.pth", torch.nn.Linear(2, 2))
    assert "newer torch" not in str(refusal.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's, on damaged bytes
def test_a_damaged_legacy_file_is_not_a_readable_checkpoint_whatever_torch_raises(tmp_path):
    model = torch.nn.Linear(2, 2)
    legacy = io.BytesIO()  # torch's format before 1.6
    torch.save({"model": model.state_dict(), "step": 1}, legacy,
               _use_new_zipfile_serialization=False)
    data, causes = legacy.getvalue(), set()
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        (tmp_path / "legacy.pth").write_bytes(damaged)
        try:
            load_checkpoint(tmp_path / "legacy.pth", model, restore_rng=False)
        except ValueError as error:  # anything else escaped the checks
            causes |= set(re.findall(r"not a readable checkpoint .*: (\w+):", str(error)))
    assert "IndexError" in causes  # torch's own error for this damage, now a clear one


def test_a_gpu_generator_state_that_does_not_fit_is_refused_before_anything_changes(
        tmp_path, pretend_gpus):
    generators = pretend_gpus(2)
    for key, value in [("cuda_rng", {0: torch.zeros(16, dtype=torch.uint8),
                                     1: torch.zeros(7, dtype=torch.uint8)}),
                       ("cuda_rng", torch.zeros(16, dtype=torch.uint8)),
                       ("cuda_rng", {-1: torch.zeros(16, dtype=torch.uint8)}),
                       ("mps_rng", torch.zeros(3))]:
        path = tmp_path / "c.pth"
        set_key(key, value)(path)
        model, optimizer = trained(0)
        weights = copy.deepcopy(model.state_dict())
        rng, cuda, mps = torch.get_rng_state(), list(generators.cuda), generators.mps
        with pytest.raises(ValueError, match="restore_rng"):
            load_checkpoint(path, model, optimizer)
        assert same(model.state_dict(), weights) and torch.equal(torch.get_rng_state(), rng)
        assert same(generators.cuda, cuda) and torch.equal(generators.mps, mps)


@pytest.mark.parametrize("saved_tied", [False, True])
def test_a_checkpoint_is_refused_by_a_model_tied_otherwise(saved_tied, tmp_path):
    saved, loading = tiny_model(tie_weights=saved_tied), tiny_model(1, tie_weights=not saved_tied)
    save_checkpoint(tmp_path / "c.pth", saved)
    before = copy.deepcopy(loading.state_dict())
    with pytest.raises(ValueError, match=f"tie_weights={saved_tied}"):
        load_checkpoint(tmp_path / "c.pth", loading, restore_rng=False)
    assert same(loading.state_dict(), before)
    load_checkpoint(tmp_path / "c.pth", tiny_model(2, tie_weights=saved_tied))  # its own kind


# save_checkpoint: each bad argument, refused before a file is written -------------------------

def text_file(path):
    path.write_text("my notes\n")


def other_config(path):  # the same shapes, another model: n_heads differs
    model = tiny_model(n_heads=4)
    save_checkpoint(path, model, config=model.cfg)


SAVE_REFUSALS = [  # (what is at the path, change to the call, exception, name in the message)
    (None, {"model": "meta"}, ValueError, "model"),
    (None, {"torch_rng": torch.zeros(3)}, ValueError, "torch_rng"),
    (None, {"cuda_rng": torch.zeros(3)}, ValueError, "cuda_rng"),
    (None, {"mps_rng": torch.zeros(3)}, ValueError, "mps_rng"),
    (None, {"note": np.float32(1.5)}, ValueError, "note"),
    (None, {"note": Path("runs/a")}, ValueError, "note"),
    (None, {"note": argparse.Namespace(lr=0.1)}, ValueError, "note"),
    (None, {"note": {"ok": [1, 2], "bad": {np.int64(3)}}}, ValueError, "note"),
    (None, {"replace": "yes"}, TypeError, "replace"),
    (None, {"path": "."}, ValueError, "folder"),
    (text_file, {}, ValueError, "replace=True"),
    (lambda path: torch.save([1, 2, 3], path), {}, ValueError, "replace=True"),
    (lambda path: save_checkpoint(path, tiny_model(emb_dim=8), step=1), {}, ValueError,
     "replace=True"),
    (other_config, {}, ValueError, "replace=True"),
    (lambda path: torch.save(tiny_model().state_dict(), path), {}, ValueError, "replace=True"),
]


@pytest.mark.parametrize("write, change, error, name", SAVE_REFUSALS)
def test_save_checkpoint_refuses_before_writing(write, change, error, name, tmp_path):
    path = tmp_path / CHECKPOINT
    if write is not None:
        write(path)
    files = {file: file.read_bytes() for file in tmp_path.iterdir() if file.is_file()}
    model = tiny_model()
    call = {"path": path, "model": model, "config": model.cfg, **change}
    call["path"] = tmp_path if call["path"] == "." else call["path"]
    call["model"] = model.to("meta") if call["model"] == "meta" else call["model"]
    with pytest.raises(error) as refusal:
        save_checkpoint(**call)
    assert name in str(refusal.value)
    assert {file: file.read_bytes() for file in tmp_path.iterdir() if file.is_file()} == files


def test_save_checkpoint_says_how_to_replace_what_is_there(tmp_path):
    path = tmp_path / CHECKPOINT
    torch.save([1, 2, 3], path)  # torch.save's file, not a checkpoint
    with pytest.raises(ValueError) as refusal:
        save_checkpoint(path, tiny_model())
    assert str(refusal.value) == (
        f"{path} holds something other than what save_checkpoint saves for a model of this "
        "architecture (the same weights' names and shapes, and config if both record one), "
        "which is all it overwrites unasked: pass replace=True, or choose another path")
    save_checkpoint(path, tiny_model(), replace=True)  # told: replaced whole
    load_checkpoint(path, tiny_model(1))


def test_a_file_that_is_not_torch_saves_is_never_replaced(tmp_path):
    path = tmp_path / CHECKPOINT
    text_file(path)
    before = path.read_bytes()
    for save in (save_checkpoint, save_weights):
        with pytest.raises(ValueError, match=r"is not a file of torch\.save's, which "
                                             rf"{save.__name__} never replaces, even with "
                                             r"replace=True"):
            save(path, tiny_model(), replace=True)
    assert path.read_bytes() == before


def test_save_checkpoint_overwrites_the_same_models_checkpoint(tmp_path):
    path = tmp_path / CHECKPOINT
    model, optimizer = trained(0)
    save_checkpoint(path, model, optimizer, step=1, config=model.cfg)
    one_step(model, optimizer)
    save_checkpoint(path, model, optimizer, step=2, config=model.cfg)  # as training does
    assert load_checkpoint(path, *trained(1))["step"] == 2


def test_a_failed_save_leaves_no_temporary_file_and_the_old_checkpoint(tmp_path):
    path = tmp_path / CHECKPOINT
    model, optimizer = trained(0)
    save_checkpoint(path, model, optimizer, step=1)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="callback"):  # a function cannot be loaded back
        save_checkpoint(path, model, optimizer, step=2, callback=lambda: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]
    assert path.read_bytes() == before


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError("disk full")
    monkeypatch.setattr("shared.utils.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / CHECKPOINT, tiny_model())
    assert list(tmp_path.iterdir()) == []


# save_weights: each bad argument, refused before a file is written ----------------------------

WEIGHTS_REFUSALS = [  # (what is at the path, change to the call, exception, name in message)
    (None, {"model": "meta"}, ValueError, "model"),
    (None, {"replace": 1}, TypeError, "replace"),
    (None, {"path": "."}, ValueError, "folder"),
    (text_file, {}, ValueError, "replace=True"),
    (lambda path: save_checkpoint(path, tiny_model(), step=1), {}, ValueError, "replace=True"),
    (lambda path: torch.save(tiny_model(emb_dim=8).state_dict(), path), {}, ValueError,
     "replace=True"),
]


@pytest.mark.parametrize("write, change, error, name", WEIGHTS_REFUSALS)
def test_save_weights_refuses_before_writing(write, change, error, name, tmp_path):
    path = tmp_path / "model.pth"
    if write is not None:
        write(path)
    files = {file: file.read_bytes() for file in tmp_path.iterdir() if file.is_file()}
    call = {"path": path, "model": tiny_model(), **change}
    call["path"] = tmp_path if call["path"] == "." else call["path"]
    call["model"] = tiny_model().to("meta") if call["model"] == "meta" else call["model"]
    with pytest.raises(error) as refusal:
        save_weights(**call)
    assert name in str(refusal.value)
    assert {file: file.read_bytes() for file in tmp_path.iterdir() if file.is_file()} == files


def test_save_weights_overwrites_the_same_models_weights_as_the_book_loads_them(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(tiny_model(3).state_dict(), path)  # as the book saves weights
    save_weights(path, tiny_model(4))  # the same model's weights: overwritten
    model = tiny_model()
    model.load_state_dict(torch.load(path))  # the book's way to load them
    assert same(model.state_dict(), tiny_model(4).state_dict())
    torch.save([1, 2, 3], path)  # torch.save's file of another kind: replaced when told
    save_weights(path, tiny_model(), replace=True)
    assert same(torch.load(path), tiny_model().state_dict())


def test_save_leaves_no_temporary_file(tmp_path):
    save_checkpoint(tmp_path / CHECKPOINT, tiny_model())
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]


def test_a_model_on_the_meta_device_is_refused_before_a_file_is_written(tmp_path):
    save_checkpoint(tmp_path / "c.pth", *trained(3), step=1)
    before = (tmp_path / "c.pth").read_bytes()
    model, optimizer = fresh(device="meta")
    with pytest.raises(ValueError, match=r"^model is on the meta device \(tok_emb.weight has "
                                         r"a shape but no values\)"):
        save_checkpoint(tmp_path / "c.pth", model, optimizer, step=2)
    assert (tmp_path / "c.pth").read_bytes() == before  # the good checkpoint is kept
    assert [path.name for path in tmp_path.iterdir()] == ["c.pth"]


def test_section_5_4s_cell_saves_again_after_a_change_of_model(tmp_path, monkeypatch):
    """Cell ch05-n34 (beyond_1_checkpoints) writes the notebook's own trained_checkpoint.pth;
    re-run after a change of profile, LLM_COURSE_QUICK or MODEL_CONFIG, it replaces the earlier
    run's checkpoint of another architecture instead of stopping at it."""
    import nbformat

    from shared.data import PROJECT_ROOT

    nb = nbformat.read(PROJECT_ROOT / "ch05_pretraining" / "beyond_1_checkpoints.ipynb",
                       as_version=4)
    cell = next(cell.source for cell in nb.cells if cell.get("id") == "ch05-n34")
    monkeypatch.chdir(tmp_path)
    for emb_dim in (16, 8):  # the earlier run's model, then one of another configuration
        model, optimizer = trained(3, emb_dim=emb_dim)  # the cell counts AdamW's state
        exec(cell, {"save_checkpoint": save_checkpoint, "model": model, "optimizer": optimizer,
                    "MODEL_CONFIG": model.cfg, "TRAINING": {"num_epochs": 1},
                    "train_loader": [None] * 3, "torch": torch, "os": os,
                    "print": lambda *args: None})
    assert torch.load("trained_checkpoint.pth")["model"]["tok_emb.weight"].shape[1] == 8


# generator_states and restore_generators, through load_checkpoint: every generator a run
# draws from, on any machine ---------------------------------------------------------------

def test_a_checkpoint_keeps_the_cpus_generator_and_those_of_the_models_devices(tmp_path,
                                                                             pretend_gpus):
    pretend_gpus(8)  # a machine with 8 CUDA GPUs in use and a Mac's GPU
    save_checkpoint(tmp_path / "c.pth", *trained(3))  # a model on the CPU
    saved = torch.load(tmp_path / "c.pth", weights_only=True)
    assert {"cuda_rng", "mps_rng"}.isdisjoint(saved)  # it drew from none of them
    assert torch.equal(saved["torch_rng"], torch.get_rng_state())
    # a model on GPU 3 draws from that GPU's generator alone; on the Mac's GPU, from its own
    assert list(generator_states(["cpu", torch.device("cuda", 3)])["cuda_rng"]) == [3]
    assert generator_states([torch.device("mps")]).keys() == {"torch_rng", "mps_rng"}
    assert generator_states().keys() == {"torch_rng", "cuda_rng", "mps_rng"}  # all of them
    assert list(generator_states()["cuda_rng"]) == list(range(8))


def with_gpu_generators(path, devices):
    """Add to the checkpoint at `path` the states of `devices`' generators, as save_checkpoint
    keeps them for a model on those devices (none can be made here)."""
    state = torch.load(path, weights_only=True)
    state.update(generator_states(devices))
    torch.save(state, path)


def test_a_checkpoint_restores_every_generator_a_run_draws_from(tmp_path, pretend_gpus):
    generators = pretend_gpus(2)
    save_checkpoint(tmp_path / "c.pth", *trained(3))
    with_gpu_generators(tmp_path / "c.pth", ["cuda:0", "cuda:1", "mps"])
    cpu, cuda, mps = torch.get_rng_state(), list(generators.cuda), generators.mps
    generators.draw()
    assert not torch.equal(torch.get_rng_state(), cpu) and not torch.equal(generators.mps, mps)
    load_checkpoint(tmp_path / "c.pth", *trained(3))
    assert torch.equal(torch.get_rng_state(), cpu)
    assert all(map(torch.equal, generators.cuda, cuda)) and torch.equal(generators.mps, mps)


def test_a_gpus_state_is_checked_and_restored_without_starting_cuda(tmp_path, pretend_gpus):
    generators = pretend_gpus(2)
    save_checkpoint(tmp_path / "c.pth", *trained(3))
    with_gpu_generators(tmp_path / "c.pth", ["cuda:1"])
    saved = generators.cuda[1]
    generators.draw()
    generators.initialized = False  # a CPU model, on a machine whose CUDA is not yet in use
    load_checkpoint(tmp_path / "c.pth", *trained(3))  # fails if it asks a GPU its state
    assert torch.equal(generators.cuda[1], saved)  # set, as torch.cuda does it: lazily
    state = torch.load(tmp_path / "c.pth", weights_only=True)
    state["cuda_rng"][1] = torch.zeros(7, dtype=torch.uint8)  # not a CUDA generator's state
    torch.save(state, tmp_path / "c.pth")
    with pytest.raises(ValueError, match="holds a CUDA random-number state that this "
                                         "machine's GPUs cannot take"):
        load_checkpoint(tmp_path / "c.pth", *trained(3))


def test_a_file_of_the_minimal_version_is_refused_as_such_not_as_a_gpus_state(tmp_path):
    """5.4.1's save_resumable stores the CUDA state as a list, or None without CUDA."""
    model, optimizer = trained(3)
    for cuda in (None, []):
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(), "cuda_rng": cuda}, tmp_path / "m.pth")
        with pytest.raises(ValueError, match="as a list or None, not by GPU number"):
            load_checkpoint(tmp_path / "m.pth", *trained(3))


def test_a_checkpoint_without_gpu_generators_leaves_them_as_they_are(tmp_path, pretend_gpus,
                                                                     pretend_cpu_only):
    pretend_cpu_only()
    save_checkpoint(tmp_path / "c.pth", *trained(3))
    assert {"cuda_rng", "mps_rng"}.isdisjoint(torch.load(tmp_path / "c.pth", weights_only=True))
    cpu = torch.get_rng_state()
    generators = pretend_gpus()
    generators.draw()
    cuda, mps = list(generators.cuda), generators.mps
    load_checkpoint(tmp_path / "c.pth", *trained(3))
    assert torch.equal(torch.get_rng_state(), cpu)
    assert all(map(torch.equal, generators.cuda, cuda)) and torch.equal(generators.mps, mps)


def test_gpu_generators_a_cpu_only_machine_lacks_are_skipped_and_named(tmp_path, pretend_gpus,
                                                                       pretend_cpu_only):
    pretend_gpus(2)
    save_checkpoint(tmp_path / "c.pth", *trained(3), step=1)
    with_gpu_generators(tmp_path / "c.pth", ["cuda:0", "cuda:1", "mps"])  # a model on them
    cpu = torch.get_rng_state()
    pretend_cpu_only()
    torch.rand(1)
    model, optimizer = fresh()
    with pytest.warns(UserWarning, match=r"holds the random state of CUDA GPUs 0, 1 and of a "
                                         r"Mac's GPU \(MPS\), which this machine lacks"):
        assert load_checkpoint(tmp_path / "c.pth", model, optimizer)["step"] == 1
    assert torch.equal(torch.get_rng_state(), cpu)  # what this machine has is restored
    assert same(model.state_dict(), trained(3)[0].state_dict())


def test_a_cpu_checkpoint_loads_its_values_into_a_model_on_a_gpu(tmp_path):
    from shared.tooling.fake_gpu import FAKE_GPU  # the tests' stand-in GPU: CUDA's checks

    saved, saved_optimizer = trained(3)
    save_checkpoint(tmp_path / "c.pth", saved, saved_optimizer, step=2)
    saved_rng = torch.get_rng_state()
    torch.rand(1)
    model, optimizer = fresh(device=FAKE_GPU)
    assert load_checkpoint(tmp_path / "c.pth", model, optimizer)["step"] == 2
    assert torch.equal(torch.get_rng_state(), saved_rng)
    for name, tensor in saved.state_dict().items():
        assert model.state_dict()[name].device == FAKE_GPU, name
        assert torch.equal(model.state_dict()[name].cpu(), tensor), name
    theirs, ours = saved_optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    for index, values in theirs.items():
        for name, value in values.items():
            assert ours[index][name].device == (FAKE_GPU if name != "step" else value.device)
            assert torch.equal(ours[index][name].cpu(), value), (index, name)
