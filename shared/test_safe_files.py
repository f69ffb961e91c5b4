"""shared/safe_files.py: write_model_folder (a model's folder written whole or not at all, and
never over someone's work; the savers that call it are tested with their formats in chapter 5),
one file of torch.save's (read, replaced, its values checked; chapter 5's checkpoints are tested
in ch05_pretraining/test_checkpoints.py), and a training run's folder (pretrain.py's runs are
tested in ch05_pretraining/test_pretrain.py, RunFolder here)."""

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from shared.command_line import UsageError
from shared.safe_files import (
    SAVED_BY,
    RunFolder,
    RunFolderBusyError,
    RunStoppedError,
    StopSignals,
    check_export_folder,
    check_file_replaceable,
    check_loads_back,
    claim_run_folder,
    not_ours,
    not_there_yet,
    read_torch_file,
    release_run_folder,
    remove_files,
    remove_made,
    run_folder_problems,
    write_model_folder,
)


NAMES = r"config\.json|model\.safetensors"


def writer_of(config, value=0.0, writer="test_saver"):
    def write(tmp):
        safetensors.torch.save_file({"w": torch.full((2,), value)}, tmp / "model.safetensors",
                                    metadata={"format": "pt", SAVED_BY: writer})
        (tmp / "config.json").write_text(json.dumps(config))
    return write


def save(folder, config=None, value=0.0, replace=False, writer="test_saver"):
    config = config or {"width": 4}
    write_model_folder(folder, writer_of(config, value, writer), "test_saver", NAMES,
                       same=config, replace=replace)


def contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_save_replaces_its_own_earlier_save_of_the_same_architecture(tmp_path):
    folder = tmp_path / "model"
    save(folder, value=0.0)
    save(folder, value=1.0)
    assert safetensors.torch.load_file(folder / "model.safetensors")["w"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left


def test_another_architecture_is_replaced_only_when_asked(tmp_path):
    folder, other = tmp_path / "model", {"width": 8}
    save(folder)
    before = contents(folder)
    with pytest.raises(FileExistsError, match=r"holds another model, which test_saver saved: "
                                              r"width=4 \(this model's: 8\)"):
        save(folder, config=other)
    assert contents(folder) == before
    save(folder, config=other, replace=True)
    assert json.loads((folder / "config.json").read_text()) == other


def test_a_folder_of_someone_elses_files_is_refused_and_kept(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for replace in (False, True):  # one rule: what the saver does not write is never replaced
        with pytest.raises(FileExistsError, match="holds notes.txt, which test_saver does not "
                                                  "write: test_saver replaces only what it "
                                                  "writes, even with replace=True"):
            save(folder, replace=replace)
        assert contents(folder) == {"notes.txt": b"mine"}


def test_weights_another_program_wrote_are_refused(tmp_path):
    folder = tmp_path / "model"
    save(folder, writer="another_program")
    with pytest.raises(FileExistsError, match="its metadata does not name test_saver"):
        save(folder)


def test_replace_never_takes_a_sub_folder_it_does_not_write(tmp_path):
    folder = tmp_path / "project"
    (folder / ".git").mkdir(parents=True)
    with pytest.raises(FileExistsError, match=r"holds the folder \.git, which test_saver does "
                                              r"not write"):
        save(folder, replace=True)
    assert (folder / ".git").is_dir()


def test_replace_never_takes_the_current_or_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is the current folder or holds it"):
        save(tmp_path, replace=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(FileExistsError, match="is the home folder"):
        save(home, replace=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_a_write_that_fails_leaves_the_old_save_and_no_temporary_folder(tmp_path):
    folder = tmp_path / "model"
    save(folder)
    before = contents(folder)

    def fails(tmp):
        writer_of({"width": 4}, 1.0)(tmp)
        raise KeyboardInterrupt  # Ctrl-C after the new files are written, before the swap

    with pytest.raises(KeyboardInterrupt):
        write_model_folder(folder, fails, "test_saver", NAMES, same={"width": 4})
    assert contents(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_what_a_killed_save_left_is_named(tmp_path):
    folder = tmp_path / "model"
    save(folder)
    folder.rename(tmp_path / ".model.0123abcd.old")  # killed between its two renames
    with pytest.raises(FileExistsError, match=r"is missing, and .*\.model\.0123abcd\.old holds "
                                              r"what was there"):
        save(folder)
    (tmp_path / ".model.0123abcd.old").rename(folder)
    (tmp_path / ".model.89abcdef.tmp").mkdir()  # killed while writing
    with pytest.warns(UserWarning, match=r"\.model\.89abcdef\.tmp is left by a save"):
        save(folder)


# One file of torch.save's: read_torch_file, check_file_replaceable, check_loads_back --------

@pytest.mark.parametrize("mmap", [False, True])
def test_read_torch_file_reads_tensors_and_values_in_either_format(mmap, tmp_path):
    state = {"w": torch.arange(3.0), "step": 7}
    torch.save(state, tmp_path / "new.pt")
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)  # torch < 1.6
    for name in ("new.pt", "old.pt"):  # mmap maps what it can, and reads an old file whole
        read = read_torch_file(tmp_path / name, mmap=mmap)
        assert read["step"] == 7 and torch.equal(read["w"], state["w"])


@pytest.mark.parametrize("write, error", [
    (lambda path: None, FileNotFoundError),
    (lambda path: path.write_text("my notes\n"), ValueError),
    (lambda path: path.mkdir(), ValueError),
    (lambda path: torch.save({"w": torch.zeros(9)}, path) or path.write_bytes(
        path.read_bytes()[:200]), ValueError),  # truncated
    (lambda path: torch.save({"call": print}, path), ValueError),  # code: weights_only refuses
])
def test_read_torch_file_refuses_what_it_cannot_read_naming_the_path(write, error, tmp_path):
    path = tmp_path / "file.pt"
    write(path)
    with pytest.raises(error) as refusal:
        read_torch_file(path, mmap=True)
    assert str(path) in str(refusal.value) and "newer torch" not in str(refusal.value)


def test_check_file_replaceable_refuses_a_folder_and_what_ours_rejects_unless_told(tmp_path):
    seen = []

    def ours(saved):
        seen.append(saved)
        return isinstance(saved, dict) and saved.get("kind") == "mine"

    check_file_replaceable(tmp_path / "new.pt", "my_saver", False, ours)  # nothing there yet
    with pytest.raises(ValueError, match="is a folder: my_saver writes a file"):
        check_file_replaceable(tmp_path, "my_saver", True, ours)  # not even when told
    with pytest.raises(TypeError, match="replace"):
        check_file_replaceable(tmp_path / "new.pt", "my_saver", "yes", ours)
    torch.save({"kind": "mine"}, tmp_path / "mine.pt")
    check_file_replaceable(tmp_path / "mine.pt", "my_saver", False, ours)
    torch.save([1, 2, 3], tmp_path / "other.pt")  # torch.save's, not ours: replaced when told
    with pytest.raises(ValueError, match="what my_saver saves .*: pass replace=True"):
        check_file_replaceable(tmp_path / "other.pt", "my_saver", False, ours)
    assert seen == [{"kind": "mine"}, [1, 2, 3]]
    check_file_replaceable(tmp_path / "other.pt", "my_saver", True, ours)
    (tmp_path / "notes.txt").write_text("my notes\n")
    for replace in (False, True):
        with pytest.raises(ValueError, match="notes.txt is not a file of torch.save's, which "
                                             "my_saver never replaces, even with replace=True"):
            check_file_replaceable(tmp_path / "notes.txt", "my_saver", replace, ours)
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"  # a check writes nothing


@pytest.mark.parametrize("value", [Path("runs/a"), {"ok": [1], "bad": Path("b")}, lambda: None])
def test_check_loads_back_refuses_what_weights_only_cannot_read_naming_it(value):
    check_loads_back("step", {"lr": 0.1, "seen": [1, (2, "a")], "w": torch.zeros(2)}, "reader")
    with pytest.raises(ValueError, match=r"^the extra value note=.* could not be loaded back: "
                                         r"reader's torch.load\(weights_only=True\)"):
        check_loads_back("the extra value note", value, "reader")


# A training run's folder: not_ours, remove_files, not_there_yet and remove_made, claim_run_folder

RUNS_FILE = r"(checkpoint\.pt|log\.jsonl)(\.tmp)?"


def test_not_ours_names_every_other_entry_and_any_folder(tmp_path):
    assert not_ours(tmp_path, RUNS_FILE) == ""
    (tmp_path / "checkpoint.pt").write_text("")
    (tmp_path / "log.jsonl.tmp").write_text("")
    assert not_ours(tmp_path, RUNS_FILE) == ""
    (tmp_path / "log.jsonl").mkdir()  # a folder is never a run's file, whatever its name
    for name in "abcdef":
        (tmp_path / f"{name}.txt").write_text("mine")
    assert not_ours(tmp_path, RUNS_FILE) == "a.txt, b.txt, c.txt, d.txt, e.txt and 2 more"


def test_remove_files_deletes_only_matching_files_and_keeps_what_it_is_told(tmp_path):
    for name in ("checkpoint.pt", "log.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "checkpoint.pt.tmp").mkdir()
    remove_files(tmp_path, RUNS_FILE, keep=("log.jsonl",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt.tmp", "log.jsonl",
                                                          "notes.txt"]


def test_remove_made_removes_what_was_not_there_and_nothing_else(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "keep.txt").write_text("mine")
    out = tmp_path / "runs" / "a" / "b"
    made = not_there_yet(out, ("tokens.bin", "run.lock"))
    out.mkdir(parents=True)
    (out / "tokens.bin").write_text("")
    remove_made(made)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["keep.txt"]
    out.mkdir(parents=True)
    (out / "late.txt").write_text("written meanwhile")  # a folder not empty now stays
    remove_made(not_there_yet(out, ("tokens.bin",)))
    assert (out / "late.txt").read_text() == "written meanwhile"


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_claimed_run_folder_refuses_a_second_claim_naming_the_first(tmp_path):
    lock = claim_run_folder(tmp_path)
    try:
        with pytest.raises(RunFolderBusyError, match=rf"is in use by process {os.getpid()} on "):
            claim_run_folder(tmp_path)
    finally:
        release_run_folder(lock)
    assert (tmp_path / "run.lock").read_text() == ""
    release_run_folder(claim_run_folder(tmp_path))  # free again


def test_a_folder_the_check_refuses_gets_no_run_lock(tmp_path):
    def refuse():
        raise ValueError("not a run's folder")
    with pytest.raises(ValueError, match="not a run's folder"):
        claim_run_folder(tmp_path, check=refuse)
    assert list(tmp_path.iterdir()) == []


# RunFolder: pretrain.py's --out ---------------------------------------------------------------

def folder_state(folder: Path) -> dict:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def a_finished_run(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "tokens.bin", "tokens.json", "weights-rank1.sha256"):
        (folder / name).write_bytes(b"old " + name.encode())
    (folder / "log.jsonl").write_text("".join(json.dumps({"step": step}) + "\n"
                                              for step in (0, 5, 10)) + '{"step": 1')
    return folder


@pytest.mark.parametrize("files, resume, overwrite, message", [
    (["notes.md"], False, True, "holds files that are not a run of pretrain.py (notes.md)"),
    (["checkpoint.pt", "log.jsonl"], False, False, "holds a run (checkpoint.pt, log.jsonl): "
                                                   "pass --resume to continue it"),
    (["log.jsonl"], False, False, "holds a run stopped before its first checkpoint"),
])
def test_run_folder_refuses_a_fresh_start_before_writing_anything(tmp_path, files, resume,
                                                                   overwrite, message):
    for name in files:
        (tmp_path / name).write_text("mine")
    before = folder_state(tmp_path)
    with pytest.raises(UsageError, match=re.escape(f"--out {tmp_path} {message}")):
        RunFolder(tmp_path, resume, overwrite).claim()
    assert folder_state(tmp_path) == before  # not even a run.lock


def test_run_folder_that_cannot_be_made_is_a_usage_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UsageError, match="--out .* cannot be made: Not a directory"):
        RunFolder(tmp_path / "a_file" / "run").claim()


def test_run_folder_refused_before_training_removes_only_what_it_made(tmp_path):
    out = tmp_path / "runs" / "new"
    with pytest.raises(ValueError, match="too few tokens"):
        with RunFolder(out).claim():
            (out / "tokens.bin").write_text("")
            raise ValueError("too few tokens")
    assert not (tmp_path / "runs").exists()
    old = a_finished_run(tmp_path / "old")
    before = folder_state(old)
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(old, overwrite=True).claim():
            raise KeyboardInterrupt
    assert {n: b for n, b in folder_state(old).items() if n != "run.lock"} == before


def test_run_folder_overwrite_deletes_the_old_run_once_a_step_is_trained(tmp_path):
    out = a_finished_run(tmp_path / "run")
    (out / "checkpoint.pt.tmp").write_text("")  # as a killed write leaves
    with RunFolder(out, overwrite=True).claim() as folder:
        folder.begin(0)
        assert folder.old_run and (out / "checkpoint.pt").exists()
        folder.trained_a_step()
        assert not folder.old_run
    assert sorted(path.name for path in out.iterdir()) == ["run.lock", "tokens.bin",
                                                           "tokens.json"]  # the new run's
    assert (out / "run.lock").read_text() == ""  # let go


def test_run_folder_resumed_keeps_the_logs_steps_before_its_first(tmp_path):
    out = a_finished_run(tmp_path / "run")
    with RunFolder(out, resume=True).claim() as folder:
        folder.begin(6)
        folder.trained_a_step()  # no --overwrite: nothing deleted
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").open()] == [0, 5]
    assert (out / "checkpoint.pt").exists()


def test_an_unclaimed_run_folder_does_nothing(tmp_path):
    """Under torchrun only rank 0 claims --out; the other ranks' RunFolder is only a path."""
    out = a_finished_run(tmp_path / "run")
    before = folder_state(out)
    with pytest.raises(ValueError):
        with RunFolder(out, overwrite=True) as folder:
            folder.begin(0)
            folder.trained_a_step()
            raise ValueError
    assert folder_state(out) == before


@pytest.mark.parametrize("files, data, resume, overwrite, wanted", [
    (["checkpoint.pt"], None, True, True, ["--resume continues the run in --out and "
                                           "--overwrite replaces it: give one of them"]),
    ([], "texts", False, False, ["--data {out}/texts is inside --out {out} (or is it)"]),
    (["log.jsonl"], None, True, False, ["--resume: {out} holds no checkpoint.pt to continue, as "
                                        "its run stopped before saving one"]),
    ([], None, False, True, []),
])
def test_run_folder_problems_names_the_flags_before_anything_is_made(tmp_path, files, data,
                                                                      resume, overwrite, wanted):
    out = tmp_path / "run"
    (out / "texts").mkdir(parents=True)
    for name in files:
        (out / name).write_text("")
    problems = run_folder_problems(out, data and out / data, resume, overwrite)
    assert len(problems) == len(wanted)
    for problem, start in zip(problems, wanted):
        assert problem.startswith(start.format(out=out))
    (tmp_path / "file").write_text("")
    assert run_folder_problems(tmp_path / "file", None, False, False) == [
        f"--out {tmp_path / 'file'} is a file, not a folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "run"]  # nothing made


@pytest.mark.parametrize("saved, old_run, says", [
    (None, False, "no checkpoint was saved: start the run again with a lower --lr and "
                  "--overwrite"),
    (None, True, "the run that was in {out} is untouched: start the run again"),
    (4, False, "{out}/checkpoint.pt keeps step 4, the last saved: start again with a lower --lr "
               "in a new --out"),
])
def test_run_folder_stopped_by_a_nan_says_what_it_keeps(tmp_path, saved, old_run, says):
    folder = RunFolder(tmp_path)
    folder.old_run = old_run
    if saved is not None:
        folder.saving(saved, torch.nn.Linear(2, 2))
    with pytest.raises(FloatingPointError) as error:
        with folder.stopping_on_nan():
            raise FloatingPointError("the loss became nan at step 5")
    assert str(error.value).startswith("the loss became nan at step 5; "
                                       + says.format(out=tmp_path))
    with pytest.raises(ValueError, match="^other$"):  # any other error passes unchanged
        with folder.stopping_on_nan():
            raise ValueError("other")


def test_run_folder_never_saves_weights_that_became_nan(tmp_path):
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    folder = RunFolder(tmp_path)
    with pytest.raises(FloatingPointError, match="the weights became nan or infinite at step 3"):
        folder.saving(3, model)
    assert folder.saved_step is None


def test_check_export_folder_refuses_the_runs_folder_or_one_holding_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for folder in (run, run / "hf", tmp_path):
        with pytest.raises(UsageError, match=re.escape(f"--export {folder} is --out or holds it")):
            check_export_folder(folder, run)
    check_export_folder(tmp_path / "hf", run)


def test_check_export_folder_refuses_a_file_or_a_folder_of_other_files(tmp_path):
    check_export_folder(tmp_path / "new")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    check_export_folder(tmp_path / "hf")  # an earlier export
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files that save_gpt2_safetensors does "
                                              r"not write \(notes.txt\)"):
        check_export_folder(tmp_path / "hf")
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="--export .*file is a file"):
        check_export_folder(tmp_path / "file")


# StopSignals: a run stopped at a step boundary ------------------------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no SIGTERM to send")
def test_a_signal_before_training_stops_at_once_and_one_while_training_waits_for_the_step():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        with pytest.raises(RunStoppedError, match="stopped by SIGTERM before training"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes: it raises well before this ends
        assert signals.requested == signal.SIGTERM  # noted too, in case the raise is swallowed
        signals.requested, signals.deferring = None, True
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert signals.requested == signal.SIGINT  # noted, for the end of the step
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_stop_signals_stop_after_the_step_with_the_signal_requested():
    with StopSignals() as signals:
        assert signals.requested_anywhere(torch.device("cpu")) == 0
        signals.requested = signal.SIGTERM  # as the handler sets it while training
        assert signals.requested_anywhere(torch.device("cpu")) == signal.SIGTERM
        with pytest.raises(RunStoppedError, match="stopped by SIGTERM after step 7, "
                                                  "checkpointed in ckpt.pt") as stopped:
            signals.stop(7, Path("ckpt.pt"))
    assert stopped.value.signum == signal.SIGTERM and stopped.value.step == 7
