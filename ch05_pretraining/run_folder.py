"""pretrain.py's run folder: what a run writes, and nothing it did not write lost.

A hand-written helper of ch05_pretraining/pretrain.py (README.md, "Layout"), used by it alone;
its tests are ch05_pretraining/test_run_folder.py.

- `text_files`, `tokenize_folder`: --data, a folder of .txt files, tokenised once with GPT-2's
  tokenizer into OUT/tokens.bin, a checksummed uint16 memory map, rebuilt when a file changes;
- `run_folder_problems`: the command line's --out (a folder, not holding --data), --resume and
  --overwrite, checked before anything is read or made;
- `RunFolder`: which files a run writes; the claim (a folder of other files, or another run,
  refused before anything is written); a run refused before it trained leaves the folder as
  it was; `--overwrite` deletes the old run's files only once the new run has trained a step;
  a resume's log trimmed to the steps before it; a run stopped by a nan says what the folder
  keeps and how to start again. Built from `not_ours` (the files in a folder that a program
  did not write), `claim_run_folder` / `release_run_folder` (one run at a time: a kernel lock
  that a killed run does not leave behind, `RunFolderBusyError` naming the run that holds it),
  `not_there_yet` / `remove_made` and `remove_files`;
- `check_export_folder`: --export replaces only an earlier export (a model.safetensors that
  save_gpt2_safetensors wrote), never the run or a folder holding anything else;
- `StopSignals` / `RunStoppedError`: SIGTERM and Ctrl-C stop a run at the end of a step;
- `given_flags`: which flags a command line gives, not left to their defaults (a resume takes
  the run's settings for the others).
"""

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import tiktoken
import torch
import torch.distributed as dist

from shared.data import prepare_tiktoken_cache, sha256_of
from shared.safe_files import saved_by
from shared.tooling.command_line import UsageError
from shared.utils import write_atomically


# --data: a folder of texts, tokenised once ------------------------------------------------------

def text_files(folder: Path) -> list[Path]:
    """The *.txt files directly in `folder`, sorted, each a regular file (a pipe would hang)."""
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no .txt files (pretrain.py reads the *.txt "
                                "files directly in it)")
    if odd := [file.name for file in files if not file.is_file()]:
        raise ValueError(f"{folder}: {', '.join(odd)}: not a regular file (a folder, a pipe or "
                         "a broken link named *.txt); move it out of the folder")
    return files


def tokenize_folder(folder: Path, token_file: Path) -> np.memmap:
    """GPT-2's token ids of every *.txt file in `folder` (each followed by <|endoftext|>),
    cached in `token_file` (uint16, memory-mapped). A manifest beside it (.json: the files'
    names, sizes and times, the tokens' count and sha256) says whether the cache is whole and
    current; one that is not is rebuilt, and both are written atomically."""
    files = text_files(folder)
    fingerprint = hashlib.sha256()
    for file in files:
        fingerprint.update(f"{file.name}\0{file.stat().st_size}\0{file.stat().st_mtime_ns}\0"
                           .encode())
    manifest = token_file.with_suffix(".json")
    try:
        recorded = json.loads(manifest.read_text())
        intact = (recorded["fingerprint"] == fingerprint.hexdigest()
                  and token_file.stat().st_size == 2 * recorded["tokens"]  # not cut or grown
                  and sha256_of(token_file) == recorded["sha256"])  # not damaged in place
    except (OSError, ValueError, KeyError, TypeError):  # missing, or a damaged manifest
        intact = False
    if not intact:
        prepare_tiktoken_cache()  # offline with the data mirror too
        tokenizer, ids = tiktoken.get_encoding("gpt2"), []
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:  # name the file, not just the byte
                raise ValueError(f"{file} is not UTF-8 text (byte {error.start}: "
                                 f"{error.reason}); convert it to UTF-8 or move it out of "
                                 f"{folder}") from None
            if (nul := text.find("\0")) >= 0:  # valid UTF-8, but in no text: binary, UTF-16?
                raise ValueError(f"{file} holds a NUL character (at character {nul:,}): a binary "
                                 f"or UTF-16 file? convert it to UTF-8 text or move it out of "
                                 f"{folder}")
            # "<|endoftext|>" in a file is the separator, on purpose: corpora are often files
            # of many documents joined by it, as GPT-2's were
            ids += tokenizer.encode(text, allowed_special={"<|endoftext|>"})
            ids.append(tokenizer.eot_token)
        array = memoryview(np.array(ids, dtype=np.uint16))  # written and hashed, not copied
        write_atomically(token_file, lambda tmp: tmp.write_bytes(array))
        write_atomically(manifest, lambda tmp: tmp.write_text(json.dumps({
            "fingerprint": fingerprint.hexdigest(), "files": [f.name for f in files],
            "tokens": len(ids), "sha256": hashlib.sha256(array).hexdigest()})))
    return np.memmap(token_file, dtype=np.uint16, mode="r")


# --out: the run's folder ------------------------------------------------------------

def not_ours(folder: Path, names: str) -> str:
    """The entries of `folder` that are not files named as the regular expression `names` says
    (matched against the whole name), for a message: at most five, sorted, a folder's name
    ending in "/", then how many more; "" when there are none. A folder is never ours, whatever
    its name: what removes our files removes files only."""
    others = sorted(path.name + "/" * path.is_dir() for path in folder.iterdir()
                    if not re.fullmatch(names, path.name)
                    or (path.is_dir() and not path.is_symlink()))
    return ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")


def remove_files(folder: Path, names: str, keep: tuple[str, ...] = ()) -> None:
    """Delete the files (never a folder) in `folder` whose whole names `names` matches, except
    those named in `keep`."""
    for path in folder.iterdir():
        if (re.fullmatch(names, path.name) and path.name not in keep
                and (path.is_symlink() or not path.is_dir())):
            path.unlink(missing_ok=True)


def not_there_yet(folder: Path, files: tuple[str, ...]) -> list[Path]:
    """What writing `files` into `folder` would create that is not there now: those files, then
    the missing folders (`folder` and its missing parents, innermost first); for remove_made."""
    return ([folder / name for name in files if not (folder / name).exists()]
            + [path for path in (folder, *folder.parents) if not path.exists()])


def remove_made(made: list[Path]) -> None:
    """Remove what not_there_yet listed: its files, then its folders, each only if empty now (a
    folder something else wrote into meanwhile stays). Errors are ignored: it cleans up after
    another error, which is the one to report."""
    for path in made:
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


class RunFolderBusyError(ValueError):
    """Another run holds the folder (claim_run_folder)."""


def claim_run_folder(folder: Path, check: Callable[[], None] = lambda: None):
    """Lock `folder`/run.lock for as long as the returned file stays open; `folder` must exist.

    `check()` raises if the folder may not take a run (its files); it runs under the lock, and
    also before run.lock is made in a folder that has none, so that a refused folder is left as
    it was. Another run's hold raises RunFolderBusyError naming it (process, machine, start).
    The lock is the kernel's (flock): it goes with the process, so a crashed or killed run
    leaves none behind. Without flock (Windows, some network disks) nothing is locked, and a
    line on stderr says so. release_run_folder empties the holder's line.
    """
    if not (folder / "run.lock").exists():
        check()
    lock = (folder / "run.lock").open("a+")
    try:
        try:
            import fcntl  # the kernel's file locks: Windows has none (an ImportError)

            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunFolderBusyError(f"--out {folder} is in use by {holder}: wait for that run "
                                     "to end, stop it, or choose another folder") from None
        except (ImportError, OSError):
            print(f"no file lock on this system or disk: nothing stops a second run into "
                  f"{folder}", file=sys.stderr)
        check()
    except BaseException:
        lock.close()
        raise
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()} on {socket.gethostname()} (started "
               f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    lock.flush()
    return lock


def release_run_folder(lock) -> None:
    """Let go of the folder claim_run_folder locked; its run.lock no longer names this run."""
    lock.truncate(0)
    lock.close()


def run_folder_problems(path: Path, data: Path | None, resume: bool, overwrite: bool
                        ) -> list[str]:
    """What keeps pretrain.py's --out `path` from taking a run on the texts in `data` as
    --resume and --overwrite ask, found without reading or making anything (RunFolder.claim
    checks the files in it)."""
    problems = ["--resume continues the run in --out and --overwrite replaces it: give one of "
                "them"] if resume and overwrite else []
    if data is not None and data.is_dir() and _inside(data, path):
        problems.append(f"--data {data} is inside --out {path} (or is it): a run's folder holds "
                        "only its own files; choose an --out outside the texts' folder")
    if resume and not (path / "checkpoint.pt").is_file():  # a file as --out: RunFolder.claim
        problems.append(f"--resume: {path} holds no checkpoint.pt to continue" + (
            ", as its run stopped before saving one: start it again with --overwrite"
            if (path / "log.jsonl").is_file() else ""))
    return problems


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or inside it, links resolved."""
    return path.resolve().is_relative_to(folder.resolve())


class RunFolder:
    """pretrain.py's --out, a training run's folder: a run writes only the files `FILES`
    matches, and deletes nothing else. Used as `with RunFolder(out, resume, overwrite).claim()`:

    - `claim()` makes the folder (and its missing parents) and takes it, one run at a time
      (`claim_run_folder`), once a run may start there: it holds no file a run does not write
      (never deleted, even with `overwrite`), and no run unless `resume` or `overwrite`; else
      UsageError, before anything is written. Under torchrun rank 0 claims it: for the other
      processes it is only a path, and the methods below do nothing there.
    - an exception before `begin(start_step)` (bad text, too few tokens, a refused resume,
      Ctrl-C) removes what the run made: the folder is left as it was;
    - `begin(start_step)` keeps the log's lines of the steps before `start_step` (a resume
      logs the steps after its checkpoint again, and a crash can leave half a line);
    - `trained_a_step()`: with `overwrite`, the old run's files go once the new run has
      trained a step (a run refused or failing before that keeps the old run);
    - `saving(step, model)` refuses nan weights and notes the step checkpoint.pt holds,
      for `stopping_on_nan()`, which says what a run stopped by a nan keeps;
    - leaving the `with` block lets go of the folder.
    """

    FILES = (r"(checkpoint\.pt|log\.jsonl|tokens\.bin|tokens\.json|run\.lock"
             r"|weights-rank\d+\.sha256)(\.tmp)?")  # .tmp: left by a write_atomically killed
    RUN = ("checkpoint.pt", "log.jsonl")  # what a run leaves; tokens.* are a cache
    MADE_FIRST = ("tokens.bin", "tokens.json", "run.lock")  # what a run makes before a step

    def __init__(self, path: Path, resume: bool = False, overwrite: bool = False):
        self.path, self.resume, self.overwrite = Path(path), resume, overwrite
        self.lock, self.made, self.old_run, self.began = None, [], False, False
        self.saved_step = None  # the step checkpoint.pt holds

    def claim(self, rank: int = 0) -> "RunFolder":
        """Under torch.distributed, rank 0 claims the folder and tells the others, which stop
        too when it is refused (rather than wait for it for ever)."""
        refusal = None
        if rank == 0:
            try:
                made = not_there_yet(self.path, self.MADE_FIRST)
                try:
                    self.path.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise UsageError(f"--out {self.path} cannot be made: {error.strerror}"
                                     ) from None
                self.lock = claim_run_folder(self.path, check=self.check_fresh_start)
                self.made, self.old_run = made, self.overwrite
            except Exception as error:  # raised below, once the other ranks know
                refusal = error
        if dist.is_initialized():
            refused = [refusal is not None]
            dist.broadcast_object_list(refused)
            if refused[0] and rank != 0:
                raise ValueError(f"rank {rank}: stopped, as rank 0 could not take --out "
                                 f"{self.path} (its message says why)")
        if refusal is not None:
            raise refusal
        return self

    def check_fresh_start(self) -> None:
        """A new run's folder holds no file a run does not write, and no run unless
        `overwrite`."""
        if self.resume:
            return
        if others := not_ours(self.path, self.FILES):
            raise UsageError(f"--out {self.path} holds files that are not a run of pretrain.py "
                             f"({others}), which a run never deletes, even with --overwrite: "
                             "move them, or choose a new or empty --out")
        found = [name for name in self.RUN if (self.path / name).exists()]
        if found == ["log.jsonl"] and not self.overwrite:  # nothing for --resume to continue
            raise UsageError(f"--out {self.path} holds a run stopped before its first "
                             "checkpoint (log.jsonl): start it again with --overwrite, or "
                             "choose another folder")
        if found and not self.overwrite:
            raise UsageError(f"--out {self.path} holds a run ({', '.join(found)}): pass "
                             "--resume to continue it or --overwrite to replace it, or choose "
                             "another folder")

    def begin(self, start_step: int) -> None:
        self.began, self.saved_step = True, start_step - 1 if self.resume else None
        log = self.path / "log.jsonl"
        if self.lock is None or self.overwrite or not log.is_file():
            return
        kept = []
        for line in log.read_text().splitlines():
            try:
                if json.loads(line)["step"] < start_step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):  # half a line, or not a step's
                continue
        write_atomically(log, lambda tmp: tmp.write_text("".join(kept)))

    def trained_a_step(self) -> None:
        if self.old_run:
            remove_files(self.path, self.FILES, keep=self.MADE_FIRST)
            self.old_run = False

    def saving(self, step: int, model: torch.nn.Module) -> None:
        """Before checkpoint.pt is saved after `step`: refuse (FloatingPointError) weights that
        became nan or infinite, which would replace the last good checkpoint."""
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise FloatingPointError(f"the weights became nan or infinite at step {step}: "
                                     "training stopped there, as every later update would be "
                                     "nan (a lower learning rate usually avoids it)")
        self.saved_step = step

    @contextlib.contextmanager
    def stopping_on_nan(self) -> Iterator[None]:
        """A FloatingPointError in the block (a nan loss or weight) raised again, saying what
        the folder keeps and how to start again (a --resume would repeat the same steps)."""
        try:
            yield
        except FloatingPointError as error:
            if self.saved_step is not None:
                kept = (f"{self.path / 'checkpoint.pt'} keeps step {self.saved_step}, the last "
                        "saved: start again with a lower --lr in a new --out, which keeps this "
                        "checkpoint (--overwrite would delete it)")
            else:
                kept = (f"the run that was in {self.path} is untouched" if self.old_run else
                        "no checkpoint was saved") + (": start the run again with a lower --lr "
                                                      "and --overwrite (or in a new --out)")
            raise FloatingPointError(f"{error}; {kept}") from None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None and not self.began:
            remove_made(self.made)
        if self.lock is not None:
            release_run_folder(self.lock)


EXPORT_FILES = r"config\.json|model\.safetensors"  # what save_gpt2_safetensors writes
EXPORT_WRITER = "save_gpt2_safetensors"  # as its model.safetensors names it (shared.SAVED_BY)


def check_export_folder(folder: Path, run: Path | None = None) -> None:
    """Refuse pretrain.py's --export FOLDER when it is the --out `run`, inside it or holding it
    (UsageError), when it is a file, or when it holds anything but an earlier export: a
    model.safetensors that save_gpt2_safetensors wrote (its metadata says so) and its
    config.json (FileExistsError). What --overwrite lets it replace is an earlier export, never
    a run, a model another program saved (a GPT-2 downloaded from Hugging Face) or a learner's
    own files."""
    if run is not None and (_inside(folder, run) or _inside(run, folder)):
        raise UsageError(f"--export {folder} is --out or holds it: the export would replace the "
                         "run it is made from (or, inside it, block its --overwrite); choose "
                         "another FOLDER")
    if folder.is_file() and not folder.is_symlink():
        raise FileExistsError(f"--export {folder} is a file, which pretrain.py never deletes, "
                              "even with --overwrite: choose a new or empty FOLDER")
    if not folder.is_dir():
        return
    if others := not_ours(folder, EXPORT_FILES):
        raise FileExistsError(f"--export {folder} holds files that save_gpt2_safetensors does "
                              f"not write ({others}), which pretrain.py never deletes, even "
                              "with --overwrite: move them, or choose a new or empty FOLDER")
    weights = folder / "model.safetensors"
    if weights.exists() and saved_by(weights) != EXPORT_WRITER:
        raise FileExistsError(f"--export {folder} holds a model.safetensors that "
                              f"{EXPORT_WRITER} did not write (another program's model?), which "
                              "pretrain.py never replaces, even with --overwrite: move it, or "
                              "choose a new or empty FOLDER")
    if not weights.exists() and (folder / "config.json").exists():
        raise FileExistsError(f"--export {folder} holds a config.json but no model.safetensors: "
                              "not an export of pretrain.py, which never replaces it, even with "
                              "--overwrite: move it, or choose a new or empty FOLDER")


class RunStoppedError(BaseException):
    """Training stopped early on a signal; `step` is the last step done (None: before any).

    A BaseException, as KeyboardInterrupt is, so that no library's `except Exception` can
    swallow it on its way out."""

    def __init__(self, signum: int, step: int | None, checkpoint: Path | None = None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = ("before training began" if step is None else
                 f"after step {step}, checkpointed in {checkpoint}: continue with --resume")
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}")


class StopSignals:
    """SIGTERM and Ctrl-C (SIGINT) as a request to stop, while the `with` block runs.

    Until `deferring` is set nothing is worth saving, so a signal stops at once
    (RunStoppedError). Once it is (the training loop sets it), a signal only sets `requested`
    (its number): the loop checkpoints at the end of the step and stops. A second Ctrl-C stops
    at once. Handlers can only be set in the main thread; elsewhere the signals keep their
    usual effect. The handlers in place before are put back on leaving the block.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested, self.deferring, self.previous = None, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def requested_anywhere(self, device: torch.device) -> int:
        """The signal requested in this process or, under torch.distributed, in any of the
        job's (its number; 0: none): every process stops after the same step, or DDP hangs."""
        signum = self.requested or 0
        if dist.is_initialized():
            wanted = torch.tensor([signum], device=device)
            dist.all_reduce(wanted, op=dist.ReduceOp.MAX)
            signum = int(wanted.item())
        self.requested = signum or None  # another process's signal is this one's too
        return signum

    def stop(self, step: int, checkpoint: Path) -> NoReturn:
        """Raise RunStoppedError after `step`, saved in `checkpoint`, once every process of
        a torch.distributed job is here (none exits while the checkpoint is being written)."""
        if dist.is_initialized():
            dist.barrier()
        raise RunStoppedError(self.requested, step, checkpoint)

    def _handle(self, signum, frame):
        again = self.requested is not None
        self.requested = signum  # set first: if the raise below were swallowed, the loop stops
        if not self.deferring:
            raise RunStoppedError(signum, None)
        if again and signum == signal.SIGINT:
            raise KeyboardInterrupt
        # os.write, not print: the handler may interrupt a print to stderr (a progress bar)
        os.write(2, f"\n{signal.Signals(signum).name}: stopping at the end of this step, with "
                    "a checkpoint (Ctrl-C again to stop at once)\n".encode())


# The command line ------------------------------------------------------------------------------

def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the flags that `argv` gives, not left to their defaults (argparse
    has no public way to tell them apart). `parser` is spent: its defaults are removed."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))
