"""ch05_pretraining/run_folder.py, pretrain.py's run folder: --data tokenised once, --out
claimed, kept and cleaned, --export's folder checked, signals that stop a run at a step. The
script's runs that use them are tested in test_pretrain.py."""

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from ch05_pretraining.run_folder import (
    RunFolder,
    RunFolderBusyError,
    RunStoppedError,
    StopSignals,
    check_export_folder,
    claim_run_folder,
    not_ours,
    not_there_yet,
    release_run_folder,
    remove_files,
    remove_made,
    run_folder_problems,
    text_files,
    tokenize_folder,
)
from shared.safe_files import SAVED_BY
from shared.tooling.command_line import UsageError


# tokenize_folder: a folder of texts, tokenised once -----------------------------------------

def a_folder_of_texts(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a.txt").write_text("Every effort moves you.", encoding="utf-8")
    (folder / "b.txt").write_text("I had always thought Jack Gisburn.", encoding="utf-8")
    return folder


def test_the_folder_is_tokenised_once_into_a_memory_map(tmp_path):
    texts = a_folder_of_texts(tmp_path / "texts")
    tokens = tokenize_folder(texts, tmp_path / "tokens.bin")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    assert (tokens == 50256).sum() == 2  # one <|endoftext|> after each document
    manifest = json.loads((tmp_path / "tokens.json").read_text())
    assert manifest["files"] == ["a.txt", "b.txt"] and manifest["tokens"] == len(tokens)
    modified = (tmp_path / "tokens.bin").stat().st_mtime_ns
    tokenize_folder(texts, tmp_path / "tokens.bin")
    assert (tmp_path / "tokens.bin").stat().st_mtime_ns == modified  # reused, not rewritten


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on Windows")
def test_a_pipe_or_a_folder_named_txt_is_refused_not_read(tmp_path):
    texts = a_folder_of_texts(tmp_path / "texts")
    (texts / "notes.txt").mkdir()
    os.mkfifo(texts / "pipe.txt")  # reading it would wait for a writer for ever
    with pytest.raises(ValueError, match=f"{texts}: notes.txt, pipe.txt: not a regular file"):
        tokenize_folder(texts, tmp_path / "tokens.bin")
    assert not (tmp_path / "tokens.bin").exists()


def test_a_folder_without_texts_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} holds no .txt files"):
        text_files(tmp_path)


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing made


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


def an_export(folder, writer="save_gpt2_safetensors"):
    """A folder as a save of `writer` leaves it (None: another program's, without metadata)."""
    folder.mkdir()
    metadata = {"format": "pt"} | ({SAVED_BY: writer} if writer else {})
    safetensors.torch.save_file({"w": torch.zeros(2)}, folder / "model.safetensors", metadata)
    (folder / "config.json").write_text("{}")
    return folder


def test_check_export_folder_refuses_a_file_or_a_folder_of_other_files(tmp_path):
    check_export_folder(tmp_path / "new")
    an_export(tmp_path / "hf")
    check_export_folder(tmp_path / "hf")  # an earlier export
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files that save_gpt2_safetensors does "
                                              r"not write \(notes.txt\)"):
        check_export_folder(tmp_path / "hf")
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="--export .*file is a file"):
        check_export_folder(tmp_path / "file")


def test_check_export_folder_refuses_a_model_the_course_did_not_write(tmp_path):
    """A GPT-2 downloaded from Hugging Face (config.json, model.safetensors) in the folder that
    --export --overwrite names is not an earlier export: it is never replaced."""
    for folder in (an_export(tmp_path / "downloaded", writer=None),
                   an_export(tmp_path / "other", writer="save_open_model")):
        with pytest.raises(FileExistsError, match=re.escape(
                f"--export {folder} holds a model.safetensors that save_gpt2_safetensors did "
                "not write")):
            check_export_folder(folder)
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="holds a config.json but no model.safetensors"):
        check_export_folder(tmp_path / "config-only")


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
