"""Tests of the pretraining script: tokenising once, exact resume, and DDP with torchrun."""

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import tiktoken
import torch

from ch05_pretraining import pretrain
from ch05_pretraining.run_folder import RunFolder
from shared import (
    DATASETS,
    GPTModel,
    fetch,
    generate_text,
    load_gpt2,
    save_gpt2_safetensors,
    text_to_token_ids,
    token_ids_to_text,
)
from shared.safe_files import SAVED_BY


SCRIPT = Path(pretrain.__file__)
TINY = ["--size", "gpt2-small (124M)", "--emb-dim", "32", "--n-layers", "2", "--n-heads", "2",
        "--context", "32", "--batch", "2", "--lr", "3e-3", "--min-lr", "3e-4",
        "--warmup-steps", "2", "--eval-every", "5", "--eval-batches", "2", "--quiet"]


def final_weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_a_step_draws_the_same_windows_whatever_ran_before_and_ranks_split_them():
    tokens = np.arange(1000, dtype=np.uint16)
    whole = list(pretrain.RandomWindows(tokens, 8, 4, num_slots=5, seed=1))
    later = list(pretrain.RandomWindows(tokens, 8, 4, num_slots=2, seed=1, first_slot=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole[3:], later, strict=True))
    halves = [list(pretrain.RandomWindows(tokens, 8, 2, 5, 1, rank=r, world_size=2))
              for r in (0, 1)]
    for step, (inputs, targets) in enumerate(whole):
        torch.testing.assert_close(torch.cat([halves[0][step][0], halves[1][step][0]]), inputs)
        assert torch.equal(targets[:, :-1], inputs[:, 1:])


def test_an_interrupted_run_resumes_to_the_same_weights(texts, tmp_path):
    common = ["--data", str(texts), *TINY, "--steps", "12", "--checkpoint-every", "4"]
    pretrain.main([*common, "--out", str(tmp_path / "straight")])
    pretrain.main([*common, "--out", str(tmp_path / "resumed"), "--stop-after", "6"])
    stopped = final_weights(tmp_path / "resumed")
    pretrain.main([*common, "--out", str(tmp_path / "resumed"), "--resume"])
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert not torch.equal(stopped["tok_emb.weight"], resumed["tok_emb.weight"])
    for name in straight:  # dropout is on: the random-number streams must continue exactly
        assert torch.equal(straight[name], resumed[name]), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed/log.jsonl").open()]
    assert steps == [0, 5, 10]
    logs = [[{key: entry[key] for key in ("step", "train_loss", "val_loss")}
             for entry in map(json.loads, (tmp_path / run / "log.jsonl").open())]
            for run in ("straight", "resumed")]
    assert logs[0] == logs[1]  # step 10's training loss too, estimated after the resume


def refused_resume(out, *differences):
    """The message of a resume refused for flags that differ from the run's."""
    return re.escape(f"--resume continues the run in {out} with its own settings: "
                     f"{'; '.join(differences)} (leave the flag out, or choose another --out)")


def test_resuming_with_another_model_is_refused_naming_the_flags(texts, tmp_path):
    common = ["--data", str(texts), *TINY, "--steps", "2", "--out", str(tmp_path)]
    pretrain.main(common)
    before = folder_state(tmp_path)
    for flags, differences in [
            (["--drop-rate", "0.2"], ["--drop-rate 0.2 differs from the run's 0.1"]),
            (["--context", "16", "--emb-dim", "768"], ["--emb-dim 768 differs from the run's 32",
                                                       "--context 16 differs from the run's 32"]),
            (["--size", "gpt2-medium (355M)", "--emb-dim", "32"], [
                '--size "gpt2-medium (355M)" has --n-layers 24, the run\'s 2',
                '--size "gpt2-medium (355M)" has --n-heads 16, the run\'s 2']),
            (["--fast"], ["--fast: the run was trained without it"])]:
        with pytest.raises(pretrain.UsageError, match="^" + refused_resume(tmp_path,
                                                                           *differences)):
            pretrain.main(["--data", str(texts), "--out", str(tmp_path), *flags, "--resume"])
    assert {name: state for name, state in folder_state(tmp_path).items()
            if name != "run.lock"} == {n: s for n, s in before.items() if n != "run.lock"}
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(pretrain.UsageError, match=f"--resume: {elsewhere} holds no checkpoint"):
        pretrain.main([*common, "--out", str(elsewhere), "--resume"])
    assert not elsewhere.exists()  # refused before making a folder or tokenising into it


def test_a_resumes_heads_are_checked_against_the_runs_width_not_gpt2_smalls(texts, tmp_path):
    pretrain.main(["--data", str(texts), *TINY, "--emb-dim", "128", "--n-heads", "4",
                   "--steps", "2", "--out", str(tmp_path)])
    with pytest.raises(pretrain.UsageError, match="^" + refused_resume(
            tmp_path, "--n-heads 5 differs from the run's 4") + "$"):  # no word of width 768
        pretrain.main(["--data", str(texts), "--out", str(tmp_path), "--resume", "--n-heads",
                       "5"])


def test_a_resume_refuses_other_training_settings_but_may_change_the_steps(texts, tmp_path,
                                                                          capsys):
    common = ["--data", str(texts), *TINY, "--steps", "4", "--out", str(tmp_path)]
    pretrain.main([*common, "--stop-after", "1"])
    before = folder_state(tmp_path)
    with pytest.raises(pretrain.UsageError, match=refused_resume(
            tmp_path, "--grad-accum 2 differs from the run's 1",
            "--lr 0.5 differs from the run's 0.003")):
        pretrain.main([*common, "--resume", "--lr", "0.5", "--grad-accum", "2"])
    before.pop("run.lock")  # held and let go by the refused run; the run's files are untouched
    assert {name: state for name, state in folder_state(tmp_path).items()
            if name != "run.lock"} == before
    capsys.readouterr()
    pretrain.main([*common, "--steps", "6", "--resume"])  # a longer run: said, not refused
    assert ("resuming with --steps 6, not the 4 this run began with: the learning-rate schedule "
            "is computed for the new length") in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoint.pt")["step"] == 5


def test_a_stopped_run_resumes_with_data_out_and_resume_alone_then_generates(texts, tmp_path,
                                                                           capsys):
    out = tmp_path / "run"
    pretrain.main(["--data", str(texts), *TINY, "--steps", "8", "--checkpoint-every", "3",
                   "--fast", "--out", str(out), "--stop-after", "3"])  # a job's time limit
    pretrain.main(["--data", str(texts), "--out", str(out), "--resume"])  # the run's settings
    assert torch.load(out / "checkpoint.pt")["step"] == 7
    pretrain.main(["--data", str(texts), "--out", str(out), "--resume", "--steps", "10"])
    finished = torch.load(out / "checkpoint.pt")
    assert finished["step"] == 9 and finished["config"]["emb_dim"] == 32
    assert finished["config"]["tie_weights"]  # --fast, taken from the run too
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").open()] == [0, 5]
    printed = capsys.readouterr().out
    assert "Step 000005: Train loss" in printed  # --quiet hides the bar alone
    assert (f'python {os.path.relpath(SCRIPT)} --out {out} --generate "Every effort moves you"'
            in printed)

    torch.manual_seed(1)
    model = pretrain.load_run(out)
    after = torch.rand(1)
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(1))  # load_run leaves the caller's random numbers
    assert not model.training and model.cfg == finished["config"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, finished["model"][name]), name
    pretrain.main(["--out", str(out), "--generate", "Every effort", "--new-tokens", "5"])
    tokenizer = tiktoken.get_encoding("gpt2")
    torch.manual_seed(123)  # --seed's default
    expected = generate_text(model, text_to_token_ids("Every effort", tokenizer), 5,
                        temperature=0.8, top_k=40)
    assert capsys.readouterr().out == token_ids_to_text(expected, tokenizer) + "\n"

    pretrain.main(["--out", str(out), "--export", str(tmp_path / "hf")])
    exported = load_gpt2(tmp_path / "hf")
    ids = torch.tensor([[464, 1110, 318, 257]])
    torch.testing.assert_close(exported.eval()(ids), model(ids))
    torch.manual_seed(1)
    save_gpt2_safetensors(GPTModel({**model.cfg, "n_layers": 1}), tmp_path / "other")
    with pytest.raises(FileExistsError, match=r"holds another model, which "
                                              r"save_gpt2_safetensors saved: .* add --overwrite"):
        pretrain.main(["--out", str(out), "--export", str(tmp_path / "other")])
    pretrain.main(["--out", str(out), "--export", str(tmp_path / "other"), "--overwrite"])
    assert load_gpt2(tmp_path / "other").cfg["n_layers"] == model.cfg["n_layers"]
    for folder in (out, tmp_path, out / "hf"):  # it would replace the run, or block --overwrite
        with pytest.raises(pretrain.UsageError, match=re.escape(
                f"--export {folder} is --out or holds it")):
            pretrain.main(["--out", str(out), "--export", str(folder), "--overwrite"])
    with pytest.raises(pretrain.UsageError, match="train nothing: leave out --overwrite$"):
        pretrain.main(["--out", str(out), "--generate", "Hi", "--overwrite"])
    assert torch.load(out / "checkpoint.pt")["step"] == 9
    with pytest.raises(pretrain.UsageError, match="train nothing: leave out --lr, --resume"):
        pretrain.main(["--out", str(out), "--generate", "Hi", "--resume", "--lr", "1"])


def test_export_with_overwrite_never_deletes_a_learners_own_files(texts, tmp_path):
    """A new user's --export FOLDER --overwrite into their folder of texts deleted them: a
    FOLDER holding files that save_gpt2_safetensors does not write is refused, naming one, with
    or without --overwrite, and nothing in it changes."""
    out = tmp_path / "run"
    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", str(out)])
    mine = tmp_path / "mytexts"
    mine.mkdir()
    for name in ("bread", "letters", "notes", "poems", "story"):
        (mine / f"{name}.txt").write_text(f"my own {name}")
    before = folder_state(mine)
    for overwrite in (["--overwrite"], []):
        with pytest.raises(FileExistsError, match=r"bread\.txt"):
            pretrain.main(["--out", str(out), "--export", str(mine), *overwrite])
        assert folder_state(mine) == before
    with pytest.raises(FileExistsError, match=re.escape(
            f"--export {mine} holds files that save_gpt2_safetensors does not write (bread.txt, "
            "letters.txt, notes.txt, poems.txt, story.txt), which pretrain.py never deletes, "
            "even with --overwrite: move them, or choose a new or empty FOLDER")):
        pretrain.main(["--out", str(out), "--export", str(mine), "--overwrite"])
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(FileExistsError, match="a-file is a file, which pretrain.py never"):
        pretrain.main(["--out", str(out), "--export", str(tmp_path / "a-file"), "--overwrite"])
    assert (tmp_path / "a-file").read_text() == "mine"


def test_export_with_overwrite_never_replaces_a_model_the_course_did_not_write(texts, tmp_path):
    """A GPT-2 downloaded from Hugging Face (config.json, model.safetensors, no metadata naming
    the course's writer) is not an earlier export: --overwrite does not replace it."""
    out = tmp_path / "run"
    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", str(out)])
    downloaded = tmp_path / "gpt2"
    downloaded.mkdir()
    safetensors.torch.save_file({"wte.weight": torch.zeros(4, 2)},
                                downloaded / "model.safetensors", {"format": "pt"})
    (downloaded / "config.json").write_text('{"model_type": "gpt2"}')
    before = folder_state(downloaded)
    for overwrite in (["--overwrite"], []):
        with pytest.raises(FileExistsError, match="holds a model.safetensors that "
                                                  "save_gpt2_safetensors did not write"):
            pretrain.main(["--out", str(out), "--export", str(downloaded), *overwrite])
        assert folder_state(downloaded) == before
    pretrain.main(["--out", str(out), "--export", str(tmp_path / "hf")])
    with safetensors.safe_open(tmp_path / "hf" / "model.safetensors", "pt") as f:
        assert f.metadata()[SAVED_BY] == "save_gpt2_safetensors"  # what the check reads
    pretrain.main(["--out", str(out), "--export", str(tmp_path / "hf"), "--overwrite"])


def test_generate_works_offline_with_the_data_mirror(texts, tmp_path):
    """The command every run prints at its end: offline, GPT-2's tokenizer files come from
    LLM_COURSE_DATA_MIRROR, as for training (a proxy that refuses every connection stands in
    for no network)."""
    out = tmp_path / "run"
    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", str(out)])
    mirror = tmp_path / "mirror"
    for name in ("gpt2-encoder", "gpt2-vocab"):
        (mirror / DATASETS[name].path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / DATASETS[name].path).write_bytes(fetch(name).read_bytes())
    env = {key: value for key, value in os.environ.items()
           if key not in ("TIKTOKEN_CACHE_DIR", "NO_PROXY", "no_proxy")}
    env.update(LLM_COURSE_DATA_MIRROR=str(mirror), LLM_COURSE_DATA_DIR=str(tmp_path / "data"),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--generate",
                             "Every effort", "--new-tokens", "3"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Every effort")


def test_generate_says_when_it_crops_a_prompt_longer_than_the_context(texts, tmp_path):
    out = tmp_path / "run"
    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", str(out)])  # context 32
    prompt = "Every effort moves you " * 10  # 41 tokens
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--generate",
                             prompt, "--new-tokens", "3"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(prompt.strip())
    assert re.fullmatch(r"pretrain.py: the prompt has 41 tokens, more than context_size=32\b.*"
                        r"\n", result.stderr)  # one line, where the learner looks
    short = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--generate",
                            "Every effort", "--new-tokens", "3"], capture_output=True, text=True)
    assert short.returncode == 0 and short.stderr == ""


def test_load_run_takes_the_runs_folder_or_its_checkpoint(texts, tmp_path):
    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", str(tmp_path)])
    model = pretrain.load_run(tmp_path / "checkpoint.pt")  # the file, as a learner may give
    assert torch.equal(model.tok_emb.weight, final_weights(tmp_path)["tok_emb.weight"])
    assert torch.equal(pretrain.load_run(tmp_path).tok_emb.weight, model.tok_emb.weight)


def test_read_checkpoint_says_a_newer_torch_wrote_the_file_and_refuses_any_damage_as_such(
        tmp_path):
    from ch05_pretraining.test_checkpoints import newer_torch_file

    path = tmp_path / "checkpoint.pt"
    newer_torch_file(path)
    with pytest.raises(ValueError, match=re.escape(
            f"{path} was written by a newer torch? It calls torch._utils._rebuild_tensor_v9")):
        pretrain.read_checkpoint(path)
    torch.save({"config": {"emb_dim": 4}, "seed": 1}, path)
    data = path.read_bytes()
    for position in range(0, len(data), 7):  # whatever torch raises, one ValueError
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        path.write_bytes(damaged)
        try:
            pretrain.read_checkpoint(path)  # the damage may be where torch does not look
        except ValueError as error:  # anything else fails the test
            assert str(path) in str(error)


def test_help_shows_every_default_and_a_first_example_for_a_cpu():
    parser = pretrain.make_parser()
    shown = " ".join(parser.format_help().split())  # argparse wraps lines anywhere
    for action in parser._actions:
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in shown, action.dest
    first = shown.index("pretrain.py --data my_texts/ --out runs/tiny")
    assert "--emb-dim 128 --n-layers 2 --n-heads 4 --context 64" in shown[first:first + 200]
    assert "no progress bar (the evaluation lines and the rest are printed)" in shown
    assert "weights-rank<r>.sha256 the sha256 of each process's final weights" in shown


def test_a_long_run_on_a_cpu_says_so_once(texts, tmp_path, monkeypatch, capsys):
    assert pretrain.long_run_warning(30.0, 1999) == (
        "pretrain.py: at 30 s a step, the 1,999 steps left take about 16.7 h on this CPU. "
        "A model that trains in minutes there, in a new --out: --emb-dim 128 --n-layers 2 "
        "--n-heads 4 --context 64 (or a GPU)")  # --resume would refuse other size flags
    assert pretrain.long_run_warning(0.5, 1000) is None
    monkeypatch.setattr(pretrain, "LONG_CPU_RUN", 0)  # as if each step took hours
    pretrain.main(["--data", str(texts), *TINY, "--steps", "6", "--out", str(tmp_path)])
    said = [line for line in capsys.readouterr().err.splitlines() if "on this CPU" in line]
    assert len(said) == 1 and "the 4 steps left take about" in said[0]


def test_a_run_whose_loss_becomes_nan_stops_there_keeping_the_last_good_checkpoint(texts,
                                                                                  tmp_path):
    # A learning rate that really diverges: after warmup's first steps the weights are so
    # large that step 3's loss overflows to nan
    run = ["--data", str(texts), *TINY, "--lr", "1e11", "--warmup-steps", "1000", "--steps",
           "1000", "--stop-after", "20", "--checkpoint-every", "2", "--out", str(tmp_path)]
    with pytest.raises(FloatingPointError) as error:  # the command line: status 1, this line
        pretrain.main(run)
    # the training loss, which train_model checks before step 3's update
    assert re.fullmatch(r"the loss became nan at step 3: training stopped there, .*; "
                        f"{re.escape(str(tmp_path))}/checkpoint.pt keeps step 1, the last saved: "
                        r"start again with a lower --lr in a new --out, which keeps this "
                        r"checkpoint \(--overwrite would delete it\)", str(error.value))
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 1
    assert all(tensor.isfinite().all() for tensor in checkpoint["model"].values())


def test_a_run_stopped_by_nan_before_its_first_checkpoint_names_the_way_out(texts, tmp_path):
    run = ["--data", str(texts), *TINY, "--lr", "1e11", "--warmup-steps", "1000", "--steps",
           "1000", "--stop-after", "20", "--out", str(tmp_path)]  # a checkpoint at step 499
    with pytest.raises(FloatingPointError, match=re.escape(
            "no checkpoint was saved: start the run again with a lower --lr and --overwrite")):
        pretrain.main(run)
    for flags, message in [([], f"--out {tmp_path} holds a run stopped before its first "
                                "checkpoint (log.jsonl): start it again with --overwrite"),
                           (["--resume"], f"--resume: {tmp_path} holds no checkpoint.pt to "
                                          "continue, as its run stopped before saving one: "
                                          "start it again with --overwrite")]:
        with pytest.raises(pretrain.UsageError, match=re.escape(message)):
            pretrain.main(["--data", str(texts), "--out", str(tmp_path), *flags])
    pretrain.main([*run, "--lr", "3e-3", "--steps", "2", "--warmup-steps", "1", "--stop-after",
                   "1", "--overwrite"])  # the way out works
    assert torch.load(tmp_path / "checkpoint.pt")["step"] == 1


def test_weights_that_became_infinite_are_not_saved(texts, tmp_path, monkeypatch):
    """As when one update overflows: the loss before it was finite, the weights after it not."""
    build = pretrain.build

    def build_overflowing_at_step_2(args, process):
        model, optimizer = build(args, process)
        update, updates = optimizer.step, []

        def step(*args, **kwargs):
            update(*args, **kwargs)
            updates.append(True)
            if len(updates) == 3:
                with torch.no_grad():
                    model.tok_emb.weight[0, 0] = math.inf
        monkeypatch.setattr(optimizer, "step", step)
        return model, optimizer
    monkeypatch.setattr(pretrain, "build", build_overflowing_at_step_2)
    with pytest.raises(FloatingPointError, match=re.escape(
            "the weights became nan or infinite at step 2: training stopped there")) as error:
        pretrain.main(["--data", str(texts), *TINY, "--steps", "6", "--checkpoint-every", "1",
                       "--out", str(tmp_path)])
    assert f"{tmp_path / 'checkpoint.pt'} keeps step 1, the last saved: start" in str(error.value)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 1
    assert all(tensor.isfinite().all() for tensor in checkpoint["model"].values())


def test_a_folder_of_other_files_is_refused_even_with_overwrite_and_left_as_it_was(
        texts, tmp_path):
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "pictures").mkdir()
    (tmp_path / "log.jsonl").mkdir()  # a folder, whatever its name, is not a run's file
    common = ["--data", str(texts), *TINY, "--steps", "2", "--out", str(tmp_path)]
    before = folder_state(tmp_path)
    for overwrite in ([], ["--overwrite"]):
        with pytest.raises(pretrain.UsageError, match=re.escape(
                f"--out {tmp_path} holds files that are not a run of pretrain.py (log.jsonl/, "
                "notes.md, pictures/), which a run never deletes, even with --overwrite: move "
                "them, or choose a new or empty --out")):
            pretrain.main([*common, *overwrite])
        assert folder_state(tmp_path) == before  # not even a run.lock was made
    for name in ("pictures", "log.jsonl"):
        (tmp_path / name).rmdir()
    (tmp_path / "notes.md").unlink()
    pretrain.main(common)  # emptied: a run may use it
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint.pt", "log.jsonl", "run.lock", "tokens.bin", "tokens.json",
        "weights-rank0.sha256"]


def test_overwrite_deletes_only_the_files_a_run_writes_never_the_texts_or_the_folder(
        texts, tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "texts").mkdir(parents=True)  # the learner's texts inside the run's folder
    for file in texts.iterdir():
        (run / "texts" / file.name).write_text(file.read_text())
    before = folder_state(run / "texts")
    for data in (run / "texts", run):
        with pytest.raises(pretrain.UsageError, match=re.escape(
                f"--data {data} is inside --out {run} (or is it)")):
            pretrain.main(["--data", str(data), *TINY, "--steps", "2", "--out", str(run),
                           "--overwrite"])
    assert folder_state(run / "texts") == before
    monkeypatch.chdir(tmp_path)  # --out . is the current folder, which holds run/
    with pytest.raises(pretrain.UsageError, match=re.escape(
            "--out . holds files that are not a run of pretrain.py (run/)")):
        pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", ".",
                       "--overwrite"])
    assert folder_state(run / "texts") == before

    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", "done"])
    (tmp_path / "done" / "weights-rank1.sha256").write_text("")  # as a torchrun run leaves
    (tmp_path / "done" / "checkpoint.pt.tmp").write_text("")  # as a killed write leaves
    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", "done",
                   "--overwrite"])
    assert sorted(path.name for path in (tmp_path / "done").iterdir()) == [
        "checkpoint.pt", "log.jsonl", "run.lock", "tokens.bin", "tokens.json",
        "weights-rank0.sha256"]  # the new run's, not the old run's rank 1 or half-written file


def test_paths_that_cannot_work_are_named_before_anything_is_made(texts, tmp_path):
    for flag in ("--data", "--out"):  # "" would mean the current folder
        paths = {"--data": str(texts), "--out": str(tmp_path / "run"), flag: ""}
        with pytest.raises(pretrain.UsageError, match=f"argument {flag}: an empty path"):
            pretrain.main(["--data", paths["--data"], "--out", paths["--out"], *TINY])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(pretrain.UsageError, match=f"--out {tmp_path / 'a_file' / 'run'} cannot "
                                                  "be made: Not a directory"):
        pretrain.main(["--data", str(texts), "--out", str(tmp_path / "a_file" / "run"), *TINY])


def torchrun(args, processes, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", str(SCRIPT), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if not check:
        return result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_torchrun_on_two_cpu_processes_keeps_replicas_identical_and_learns(texts, tmp_path):
    args = ["--data", str(texts), *TINY, "--steps", "30", "--drop-rate", "0.0",
            "--eval-every", "10", "--checkpoint-every", "100"]
    output = torchrun([*args, "--out", str(tmp_path / "ddp")], processes=2)
    assert "2 process(es) on cpu" in output and "4 sequences of 32 per step" in output
    hashes = [(tmp_path / f"ddp/weights-rank{r}.sha256").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    log = [json.loads(line) for line in (tmp_path / "ddp/log.jsonl").open()]
    assert [row["step"] for row in log] == [0, 10, 20]
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 1.0

    # DDP averages the two halves' gradients: one process with the whole batch agrees
    pretrain.main([*args, "--batch", "4", "--out", str(tmp_path / "single")])
    single, ddp = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], atol=2e-4, rtol=1e-3)

    # a resume on one process must keep the 4 sequences a step: --batch 4, not 2
    with pytest.raises(pretrain.UsageError, match=re.escape(
            "--batch 2 on 1 process(es) makes 2 sequences a step, the run's 4")):
        pretrain.main([*args, "--steps", "32", "--out", str(tmp_path / "ddp"), "--resume"])
    pretrain.main([*args, "--steps", "32", "--batch", "4", "--out", str(tmp_path / "ddp"),
                   "--resume"])
    assert torch.load(tmp_path / "ddp/checkpoint.pt")["step"] == 31


def test_a_process_left_alone_by_torchruns_variables_says_what_it_waits_for_and_gives_up(
        texts, tmp_path):
    with socket.socket() as free:  # a port that no process listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}  # a torchrun job's, started with plain python
    env.pop("TORCHELASTIC_RUN_ID", None)
    out = tmp_path / "run"
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT), "--data", str(texts), *TINY,
                             "--steps", "3", "--out", str(out), "--join-timeout", "2"],
                            capture_output=True, text=True, env=env, timeout=120)
    lines = result.stderr.splitlines()
    assert lines[0] == (f"pretrain.py: rank 0 of 2 waits for the others at 127.0.0.1:{port}, "
                        "at most 2 s (--join-timeout); started without torchrun, its variables "
                        "left set? unset RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT to train "
                        "in one process")
    assert result.returncode == 1 and lines[-1].startswith(
        f"pretrain.py: rank 0 of 2 waits for the others at 127.0.0.1:{port}, at most 2 s "
        "(--join-timeout): they did not all come (")
    assert time.monotonic() - started < 60  # python's start, torch's import and 2 s, not 30 min
    assert not out.exists()  # nothing was made


# Devices: CUDA, then MPS, then the CPU ------------------------------------------------------

def pretend_machine(monkeypatch, cuda=0, mps=False, torchrun=None):
    """torch answers as on a machine with `cuda` CUDA GPUs and perhaps a Mac's GPU; torchrun
    = (rank, local rank, processes) sets torchrun's variables. Returns the devices that
    torch.cuda.set_device was given and the process groups that were asked for."""
    monkeypatch.delenv("LLM_COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(pretrain.dist, "is_nccl_available", lambda: cuda > 0)  # Linux's builds
    chosen, groups = [], []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(pretrain, "join_process_group", lambda backend, timeout:
                        groups.append(backend))
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    if torchrun:
        rank, local_rank, processes = torchrun
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
        monkeypatch.setattr(pretrain.dist, "get_rank", lambda: rank)
        monkeypatch.setattr(pretrain.dist, "get_world_size", lambda: processes)
    return chosen, groups


@pytest.mark.parametrize("cuda, mps, torchrun, device, group", [
    (0, False, None, "cpu", None),
    (0, False, (1, 1, 2), "cpu", "gloo"),
    (2, True, None, "cuda:0", None),  # CUDA first
    (8, False, (11, 3, 16), "cuda:3", "nccl"),  # each process its own GPU: its local rank
    (0, True, None, "mps", None),  # then a Mac's GPU
    (0, True, (1, 1, 2), "cpu", "gloo"),  # no collective takes MPS tensors: the CPU
])
def test_the_device_is_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, torchrun, device,
                                                  group):
    chosen, groups = pretend_machine(monkeypatch, cuda, mps, torchrun)
    process = pretrain.set_up_process()
    assert process.device == torch.device(device)
    assert chosen == ([process.device] if process.device.type == "cuda" else [])
    assert groups == ([group] if group else [])
    assert (process.rank, process.world_size) == ((torchrun[0], torchrun[2]) if torchrun
                                                  else (0, 1))


def test_torchrun_on_a_mac_says_that_its_processes_use_the_cpu(monkeypatch, capsys):
    pretend_machine(monkeypatch, mps=True, torchrun=(0, 0, 2))
    assert pretrain.set_up_process().device == torch.device("cpu")
    assert "cannot exchange tensors on a Mac's GPU (MPS)" in capsys.readouterr().err


def test_llm_course_device_chooses_the_device(monkeypatch):
    pretend_machine(monkeypatch, cuda=1, mps=True)
    monkeypatch.setenv("LLM_COURSE_DEVICE", "cpu")  # through shared.get_device
    assert pretrain.set_up_process().device == torch.device("cpu")


def test_under_torchrun_a_gpu_named_by_llm_course_device_is_refused(monkeypatch):
    chosen, groups = pretend_machine(monkeypatch, cuda=2, torchrun=(0, 0, 2))
    monkeypatch.setenv("LLM_COURSE_DEVICE", "cuda:1")  # each process takes its LOCAL_RANK's
    with pytest.raises(pretrain.UsageError, match=r"LLM_COURSE_DEVICE=cuda:1"):
        pretrain.set_up_process()
    assert chosen == groups == []  # refused before a GPU or a process group is taken
    monkeypatch.setenv("LLM_COURSE_DEVICE", "cuda")  # a kind, not one GPU: each its own
    assert pretrain.set_up_process().device == torch.device("cuda", 0)


@pytest.mark.parametrize("device, has_nccl, backend", [
    ("cuda", True, "nccl"), ("cuda", False, "gloo"),  # Windows' builds have no nccl
    ("cpu", True, "gloo"), ("cpu", False, "gloo")])
def test_the_process_group_is_nccl_between_gpus_where_torch_has_it(monkeypatch, device,
                                                                    has_nccl, backend):
    monkeypatch.setattr(pretrain.dist, "is_nccl_available", lambda: has_nccl)
    assert pretrain.process_group_backend(torch.device(device)) == backend


def test_these_tests_train_on_the_cpu_whatever_gpu_the_machine_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a learner's GPU box
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pretrain.set_up_process().device == torch.device("cpu")  # conftest.py's doing


@pytest.mark.parametrize("device, fused", [("cpu", True), ("meta", None)])
def test_fast_fuses_adamw_only_on_a_device_with_the_fused_kernel(texts, tmp_path, device,
                                                                 fused):
    args = pretrain.parse_args(["--data", str(texts), "--out", str(tmp_path), *TINY, "--fast"])
    model, optimizer = pretrain.build(args, pretrain.Process(torch.device(device)))
    assert optimizer.defaults["fused"] is fused
    assert {p.device.type for p in model.parameters()} == {device}


def resume_into(path, process):
    """pretrain.resume of the checkpoint at `path` into a fresh TINY model, as `process`."""
    args = pretrain.make_parser().parse_args(["--data", "unread", "--out", str(path.parent),
                                              *TINY])  # the flags alone: no data is read
    return pretrain.resume(path, *pretrain.build(args, pretrain.Process(torch.device("cpu"))),
                           process)


def save_run_checkpoint(path, rng_states, **extra):
    """A checkpoint as run() saves it, with these per-process generator states."""
    args = pretrain.make_parser().parse_args(["--data", "unread", "--out", str(path.parent),
                                              *TINY])  # the flags alone: no data is read
    model, optimizer = pretrain.build(args, pretrain.Process(torch.device("cpu")))
    pretrain.save_checkpoint(path, model, optimizer, step=3, config=model.cfg,
                             rng_states=rng_states, **extra)


def test_a_resume_restores_each_processs_cpu_and_gpu_generators(tmp_path, pretend_gpus,
                                                                capsys):
    generators = pretend_gpus(2)
    states = []
    for _ in range(2):  # what two processes would gather: each its own streams
        generators.draw()
        states.append(pretrain.generator_states())
    save_run_checkpoint(tmp_path / "checkpoint.pt", states, device="cuda")
    generators.draw()
    process = pretrain.Process(torch.device("cuda", 1), rank=1, world_size=2)
    assert resume_into(tmp_path / "checkpoint.pt", process) == 4
    assert torch.equal(torch.get_rng_state(), states[1]["torch_rng"])
    assert all(map(torch.equal, generators.cuda, states[1]["cuda_rng"].values()))
    assert capsys.readouterr().err == ""  # rank 1 says nothing; nor would rank 0 here


@pytest.mark.parametrize("saved, device, message", [
    ({"device": "cuda"}, "cpu", "resuming on cpu; the checkpoint was saved on cuda"),
    ({"device": "cpu"}, "cuda", "resuming on cuda; the checkpoint was saved on cpu"),
    ({}, "cuda", "resuming on cuda; the checkpoint was saved by an earlier pretrain.py"),
    ({}, "cpu", None),  # an earlier pretrain.py's CPU state: all a CPU run draws from
    ({"device": "mps"}, "mps", None),
])
def test_a_resume_on_another_kind_of_device_says_the_dropout_masks_change(
        tmp_path, capsys, saved, device, message):
    cpu = torch.get_rng_state()
    rng_states = [cpu] if not saved else [{"torch_rng": cpu}]  # earlier: the CPU's state alone
    save_run_checkpoint(tmp_path / "checkpoint.pt", rng_states, **saved)
    torch.rand(3)
    assert resume_into(tmp_path / "checkpoint.pt", pretrain.Process(torch.device(device))) == 4
    assert torch.equal(torch.get_rng_state(), cpu)  # the data's generator, whatever the device
    err = capsys.readouterr().err
    assert (message in err and "same data, new dropout masks" in err) if message else err == ""


def test_a_data_folder_without_texts_is_a_usage_error_and_makes_no_out(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "runs" / "run"
    message = (f"--data {empty} holds no .txt files (pretrain.py reads the *.txt files "
               "directly in it)")
    with pytest.raises(pretrain.UsageError, match=re.escape(message)):
        pretrain.main(["--data", str(empty), "--out", str(out)])
    (empty / "notes.md").write_text("not a .txt file")
    result = subprocess.run([sys.executable, str(SCRIPT), "--data", str(empty),
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2  # a flag that cannot work, as the others
    assert result.stderr.strip() == f"pretrain.py: error: {message} (see --help)"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("problem", ["latin-1", "too few tokens"])
def test_data_refused_after_the_folder_was_made_leaves_nothing_this_run_made(texts, tmp_path,
                                                                             problem):
    data, flags = texts, ["--context", "100000"]
    if problem == "latin-1":
        data, flags = tmp_path / "data", []
        data.mkdir()
        (data / "a.txt").write_bytes("Caf\u00e9".encode("latin-1"))
    made, kept = tmp_path / "runs" / "new", tmp_path / "kept"
    kept.mkdir()  # an empty folder that was there stays, as it was
    for out in (made, kept):
        with pytest.raises(ValueError, match="not UTF-8" if flags == [] else "too few"):
            pretrain.main(["--data", str(data), *TINY, *flags, "--out", str(out)])
    assert not (tmp_path / "runs").exists() and list(kept.iterdir()) == []
    pretrain.main(["--data", str(texts), *TINY, "--steps", "2", "--out", str(kept)])
    before = folder_state(kept)
    with pytest.raises(ValueError, match="too few"):  # a run's own files stay, cache included
        pretrain.main(["--data", str(texts), *TINY, "--context", "100000", "--overwrite",
                       "--out", str(kept)])
    assert sorted(folder_state(kept)) == sorted(before)


@pytest.mark.parametrize("flags, message", [
    (["--steps", "-1"], "argument --steps: -1 must be at least 1"),
    (["--steps", "ten"], "argument --steps: 'ten' is not an integer"),
    (["--eval-every", "0"], "argument --eval-every: 0 must be at least 1"),
    (["--batch", "0"], "argument --batch: 0 must be at least 1"),
    (["--grad-accum", "0"], "argument --grad-accum: 0 must be at least 1"),
    (["--lr", "0"], "argument --lr: 0.0 must be greater than 0"),
    (["--drop-rate", "1"], "argument --drop-rate: 1.0 must be at least 0 and less than 1"),
    (["--val-fraction", "0"], "argument --val-fraction: 0.0 must be greater than 0"),
    (["--min-lr", "1", "--lr", "0.1"], "--min-lr 1.0 is above --lr 0.1"),
    (["--steps", "10", "--warmup-steps", "11"], "--warmup-steps 11 is longer than --steps 10"),
    (["--steps", "10", "--stop-after", "10"], "--stop-after 10 is not before the last step (9)"),
    (["--size", "gpt2-tiny"], "argument --size: invalid choice: 'gpt2-tiny'"),
])
def test_invalid_flags_are_refused_before_reading_data(flags, message, texts, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(pretrain.UsageError, match=re.escape(message)):
        pretrain.main(["--data", str(texts), "--out", str(out), *flags])
    assert not out.exists()  # nothing was tokenised or written


def test_an_invalid_flag_exits_2_with_one_line(texts, tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--data", str(texts),
                             "--out", str(tmp_path / "run"), "--steps", "-1"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "pretrain.py: error: argument --steps: -1 must be at least 1 (see --help)"]
    missing = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "nowhere"),
                              "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_an_empty_prompt_is_refused_by_argparse(tmp_path):
    """An empty prompt gives the model nothing to continue: refused where the flag is read."""
    with pytest.raises(pretrain.UsageError, match="argument --generate: an empty prompt"):
        pretrain.main(["--out", str(tmp_path), "--generate", " "])


# A run never destroys another's work ---------------------------------------------------------

def folder_state(folder: Path) -> dict:
    """Every file's bytes and modification time: what 'untouched' means."""
    return {path.name: (path.read_bytes() if path.is_file() else None, path.stat().st_mtime_ns)
            for path in sorted(folder.iterdir())}


POSIX_SIGNALS = pytest.mark.skipif(sys.platform == "win32", reason="Windows has no SIGTERM to "
                                   "send: its os.kill terminates the process outright")


@POSIX_SIGNALS
def test_sigterm_checkpoints_at_a_step_boundary_and_the_resume_is_bit_identical(texts, tmp_path):
    common = ["--data", str(texts), *TINY, "--steps", "120", "--eval-every", "20",
              "--checkpoint-every", "1000"]
    pretrain.main([*common, "--out", str(tmp_path / "straight")])
    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, str(SCRIPT), *common, "--out", str(out)],
                               stderr=subprocess.PIPE, text=True)
    try:
        log = out / "log.jsonl"
        while process.poll() is None and not (log.exists() and log.read_text().count("\n") >= 2):
            time.sleep(0.01)  # until step 20 is logged: mid-run, with 99 steps still to go
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr  # what a shell reports for it
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 20 <= stopped_at < 119
    assert stderr.splitlines()[-1] == (f"pretrain.py: stopped by SIGTERM after step {stopped_at},"
                                       f" checkpointed in {out / 'checkpoint.pt'}: continue "
                                       "with --resume")
    assert not list(out.glob("*.tmp")) and not list(out.glob("weights-rank*"))
    pretrain.main([*common, "--out", str(out), "--resume"])
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(out)
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_a_new_run_into_a_finished_runs_folder_is_refused_untouched(texts, tmp_path,
                                                                      monkeypatch):
    common = ["--data", str(texts), *TINY, "--steps", "3", "--out", str(tmp_path)]
    pretrain.main(common)
    before = folder_state(tmp_path)
    with pytest.raises(pretrain.UsageError, match=re.escape(
            f"--out {tmp_path} holds a run (checkpoint.pt, log.jsonl): pass --resume to "
            "continue it or --overwrite to replace it")):
        pretrain.main(common)
    assert folder_state(tmp_path) == before
    with pytest.raises(pretrain.UsageError, match="give one of them"):
        pretrain.main([*common, "--resume", "--overwrite"])
    kept = {name: before[name] for name in ("checkpoint.pt", "log.jsonl")}
    with pytest.raises(ValueError, match="too few for one window"):  # fails before training:
        pretrain.main([*common, "--context", "5000", "--emb-dim", "8", "--overwrite"])
    assert {name: folder_state(tmp_path)[name] for name in kept} == kept  # the old run stays

    def out_of_memory(*args, **kwargs):  # as the first step's activations might be
        raise RuntimeError("out of memory")
    with monkeypatch.context() as patch:
        patch.setattr(pretrain, "train_model", out_of_memory)
        with pytest.raises(RuntimeError, match="out of memory"):
            pretrain.main([*common, "--overwrite"])
    assert {name: folder_state(tmp_path)[name] for name in kept} == kept  # still there
    pretrain.main([*common, "--steps", "6", "--overwrite"])  # asked for: a new run replaces it
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").open()]
    assert steps == [0, 5] and torch.load(tmp_path / "checkpoint.pt")["step"] == 5


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(texts, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunFolder(out).claim():  # as a run holds it
        before = folder_state(out)
        result = subprocess.run([sys.executable, str(SCRIPT), "--data", str(texts), *TINY,
                                 "--steps", "3", "--out", str(out)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"pretrain.py: --out {out} is in use by process {os.getpid()} on "
            f"{socket.gethostname()} (started {lock_started(out)}): wait for that run to end, "
            "stop it, or choose another folder"]
        assert folder_state(out) == before
    assert (out / "run.lock").read_text() == ""  # a run that let go is no longer named
    pretrain.main(["--data", str(texts), *TINY, "--steps", "3", "--out", str(out)])  # free now
    assert (out / "run.lock").read_text() == ""


def test_under_torchrun_every_rank_stops_when_rank_0_is_refused_the_folder(texts, tmp_path):
    common = ["--data", str(texts), *TINY, "--steps", "3", "--out", str(tmp_path)]
    pretrain.main(common)
    before = folder_state(tmp_path)
    result = torchrun(common, processes=2, check=False)
    assert result.returncode != 0
    assert f"--out {tmp_path} holds a run (checkpoint.pt, log.jsonl)" in result.stderr
    assert (f"rank 1: stopped, as rank 0 could not take --out {tmp_path} (its message says "
            "why)") in result.stderr
    # torchrun prints a traceback of its own for any failed worker; none comes from a worker
    assert 'pretrain.py", line' not in result.stderr and "Connection reset" not in result.stderr
    assert folder_state(tmp_path) == before


def lock_started(out: Path) -> str:
    return re.search(r"\(started (.*)\)", (out / "run.lock").read_text()).group(1)
