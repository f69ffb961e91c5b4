"""Files and runs protected: what the course writes never destroys someone's work.

A model's folder, written whole or not at all: `write_model_folder`, which chapter 5's savers
(`save_gpt2_safetensors`, 5.5.1; `save_open_model`, 5.9) call in one line.
- a reader of the folder finds the old save or the new one, never a mix; an exception (a full
  disk, Ctrl-C) leaves the old content and no temporary folder;
- an existing folder is replaced only when it holds an earlier save of the same writer for a
  model of the same architecture, or is empty, unless `replace=True`;
- even `replace=True` replaces only what the writer writes: never a file or sub-folder of
  another name (your notes, a project's `.git`), the home folder, the current folder or one
  holding it.

One file of torch.save's, for chapter 5's checkpoints (5.4.1) and pretrain.py:
- `read_torch_file`: read with weights_only=True (no code in the file runs); any failure is one
  error that says the file is not readable, and one a newer torch wrote says so;
- `check_file_replaceable`: a saver overwrites only what it would write itself, unless told,
  and never a file that is not torch.save's (your notes, a dataset in another format);
- `check_loads_back`: a value that torch.load(weights_only=True) could not read back is refused
  when it is saved, not found when it is loaded.

A training run's folder, ch05_pretraining/pretrain.py's --out, in one line there each:
- `run_folder_problems`: the command line's --out (a folder, not holding --data), --resume and
  --overwrite, checked before anything is read or made;
- `RunFolder`: which files a run writes; the claim (a folder of other files, or another run,
  refused before anything is written); a run refused before it trained leaves the folder as
  it was; `--overwrite` deletes the old run's files only once the new run has trained a step;
  a resume's log trimmed to the steps before it; a run stopped by a nan says what the folder
  keeps and how to start again. Built from `not_ours` (the files in a folder
  that a program did not write), `claim_run_folder` / `release_run_folder` (one run at a
  time: a kernel lock that a killed run does not leave behind, `RunFolderBusyError` naming
  the run that holds it), `not_there_yet` / `remove_made` and `remove_files`;
- `check_export_folder`: --export never replaces the run or a folder holding a learner's
  own files;
- `StopSignals` / `RunStoppedError`: SIGTERM and Ctrl-C stop a run at the end of a step.
"""

import contextlib
import glob
import io
import json
import os
import pkgutil
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import safetensors
import torch
import torch.distributed as dist

from shared.checks import check, check_flag
from shared.command_line import UsageError
from shared.utils import write_atomically


SAVED_BY = "saved_by"  # the key, in a safetensors file's metadata, of the function that wrote it


def write_model_folder(folder: str | Path, write: Callable[[Path], object], writer: str,
                       names: str, same: dict, replace: bool = False) -> None:
    """Call `write(tmp)` to fill a new folder beside `folder`, then rename it into `folder`'s
    place: a reader finds the old content or the new, never a mix of both, and an exception
    (a full disk, Ctrl-C) leaves the old content and no temporary folder. Between the two
    renames `folder` is absent for an instant: a process killed there (SIGKILL, a power cut)
    leaves the old content in a hidden sibling `.NAME.xxxxxxxx.old`, which the next call names
    instead of writing. A process killed while writing leaves its hidden `.NAME.xxxxxxxx.tmp`,
    which the next call names in a warning (it may hold gigabytes).

    An existing `folder` is replaced only when it is empty, when it holds what `writer` saved
    there before for a model of the same architecture (paths the regular expression `names`
    matches, weights whose metadata name `writer`, a config.json holding `same`), or when
    `replace` is True and it holds only paths `names` matches (another model's save, another
    program's weights). A path of another name is your own work, and is never replaced; nor
    are the home folder, the current folder or one holding it: a folder named by mistake
    loses nothing.
    """
    check_flag("replace", replace)
    path = Path(os.path.abspath(folder))
    _check_replaceable(folder, path, writer, names, same, replace)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a SIGKILL
        warnings.warn(f"{stale} is left by a save to {folder} that was killed while writing "
                      "(part of that save, maybe gigabytes): delete it, unless a save to "
                      f"{folder} is running now", stacklevel=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # a sibling: same disk,
    old_path = tmp.with_suffix(".old")  # so the renames below move no data
    tmp.mkdir()
    try:
        write(tmp)
        if path.exists() or path.is_symlink():
            os.replace(path, old_path)
        os.replace(tmp, path)
    except BaseException:
        if not path.exists() and (old_path.exists() or old_path.is_symlink()):
            os.replace(old_path, path)  # put the old content back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old_path.is_dir() and not old_path.is_symlink():
        shutil.rmtree(old_path)
    else:
        old_path.unlink(missing_ok=True)


def _check_replaceable(folder: str | Path, path: Path, writer: str, names: str, same: dict,
                       replace: bool) -> None:
    """Raise FileExistsError, saying what to do, unless write_model_folder may put a new save
    at `path` (see there). Only what it must is read: it stops at the first entry it refuses."""
    def refuse(what: str, hint: str = "pass replace=True to replace it (everything in it is "
               "deleted), or choose another folder") -> None:
        raise FileExistsError(f"{folder} {what}: {hint}")

    real, cwd, home = Path(os.path.realpath(path)), Path.cwd(), Path.home().resolve()
    if real == home or real == cwd or real in cwd.parents:
        refuse("is the home folder" if real == home else "is the current folder or holds it",
               f"{writer} replaces its folder whole, so give it one of the model's own, such "
               f"as {str(Path(folder) / 'model')!r}")
    if not path.exists() and not path.is_symlink():
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.old"):
            refuse(f"is missing, and {stale} holds what was there before a save was killed "
                   "between its two renames", f"rename it back to {folder} (or delete it), "
                   "then save again")
        return
    never = (f"{writer} replaces only what it writes, even with replace=True: move it, or "
             "choose another folder")
    if path.is_symlink() or not path.is_dir():
        refuse(f"is {'a link' if path.is_symlink() else 'a file'}, which {writer} does not "
               "write", never)
    for relative, entry in _walk(path, lambda relative: re.fullmatch(names, relative)):
        if not re.fullmatch(names, relative) or entry.is_symlink():
            refuse(f"holds {'the folder ' if entry.is_dir() else ''}{relative}, which {writer} "
                   "does not write", never)
        if not replace and relative.endswith(".safetensors") and not _saved_by(entry, writer):
            refuse(f"holds {relative}, which {writer} did not write (its metadata does not name "
                   f"{writer}: another program's save)")
    if replace or not any(path.iterdir()):
        return
    try:
        old = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        old = None
    if not isinstance(old, dict):
        refuse(f"holds no readable config.json beside the weights, so it is not a save of "
               f"{writer}")
    differ = [f"{key}={old.get(key)!r} (this model's: {value!r})"
              for key, value in same.items() if old.get(key) != value]
    if differ:
        refuse(f"holds another model, which {writer} saved: {', '.join(differ[:3])}",
               "pass replace=True to replace it, or choose another folder")


def _walk(folder: Path, descend: Callable[[str], object], prefix: str = ""
          ) -> Iterator[tuple[str, os.DirEntry]]:
    """(path relative to `folder`, entry) for each entry in it, lazily and in name order,
    going into the sub-folders `descend` accepts: a check that stops at the first entry it
    refuses never walks a large tree (a home folder named by mistake)."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        relative = prefix + entry.name
        yield relative, entry
        if entry.is_dir(follow_symlinks=False) and descend(relative):
            yield from _walk(Path(entry.path), descend, relative + "/")


def _saved_by(entry: os.DirEntry, writer: str) -> bool:
    """Whether the safetensors file `entry` names `writer` in its metadata."""
    try:
        with safetensors.safe_open(entry.path, framework="pt") as f:
            return (f.metadata() or {}).get(SAVED_BY) == writer
    except Exception:  # unreadable: not what the writer leaves
        return False


# One file of torch.save's ---------------------------------------------------------------------

def read_torch_file(path: str | Path, mmap: bool = False):
    """What torch.save wrote to `path`, read onto the CPU with torch.load(weights_only=True):
    tensors and plain values only, no code in the file runs (`mmap`: tensors mapped, read only
    where used, when the file is torch's zip format). A missing file is FileNotFoundError, any
    failure to read it one ValueError, and a file a newer torch wrote is named as such."""
    check(Path(path).exists(), f"no checkpoint at {path}", FileNotFoundError)
    try:
        return torch.load(path, map_location="cpu", weights_only=True,
                          mmap=mmap and zipfile.is_zipfile(path))  # not before torch 1.6's
    except Exception as error:  # a damaged file raises anything: IndexError, UnicodeDecodeError
        cause = str(error).rpartition("WeightsUnpickler error: ")[2].partition("\n")[0]
        unknown = re.match(r"Unsupported global: GLOBAL (torch\.\S+)", cause)
        try:  # a function of torch's that this torch lacks: a newer torch wrote the file
            newer = unknown and pkgutil.resolve_name(unknown[1]) is None
        except (ImportError, AttributeError):
            newer = True
        check(not newer, lambda: f"{path} was written by a newer torch? It calls {unknown[1]}, "
              f"which this torch ({torch.__version__}) lacks: upgrade torch, then load it again")
        raise ValueError(f"{path} is not a readable checkpoint (truncated, damaged, or not "
                         f"written by torch.save): {type(error).__name__}: {cause}") from None


def check_file_replaceable(path: str | Path, writer: str, replace: bool,
                           ours: Callable[[object], bool]) -> None:
    """Refuse a folder at `path`, a file that is not torch.save's (even when `replace`), and,
    unless `replace`, one that `ours` does not accept (it is given what
    torch.load(weights_only=True) reads from the file): a run overwrites its own file, a typo in
    a path no other file, and replace=True no file of another kind."""
    check_flag("replace", replace)
    check(not Path(path).is_dir(), f"{path} is a folder: {writer} writes a file (give a file "
          "name in it, such as model.pth)")
    if not Path(path).exists():
        return
    try:  # mapped, not read: a check compares names and shapes
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not torch.save's file (or one older than torch 1.6, never ours)
        saved = None
    check(saved is not None, f"{path} is not a file of torch.save's, which {writer} never "
          "replaces, even with replace=True: move it, or choose another path")
    check(replace or ours(saved), f"{path} holds something other than what {writer} saves for "
          "a model of this architecture (the same weights' names and shapes, and config if both "
          "record one), which is all it overwrites unasked: pass replace=True, or choose another "
          "path")


def check_loads_back(name: str, value, reader: str) -> None:
    """Raise ValueError unless torch.load(weights_only=True), as `reader` reads the file, would
    load `value` back: a value it cannot read is refused when saved, not found when loaded."""
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    except Exception:  # pickling errors, and torch's refusal of a class it does not load
        raise ValueError(f"{name}={value!r} ({type(value).__name__}) could not be loaded back: "
                         f"{reader}'s torch.load(weights_only=True) takes numbers, strings, "
                         "lists, tuples, dicts and tensors (convert it: float(x), str(path), "
                         "vars(args))") from None


# A training run's folder ---------------------------------------------------------------------

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
    if path.exists() and not path.is_dir():
        problems.append(f"--out {path} is a file, not a folder")
    elif resume and not (path / "checkpoint.pt").is_file():
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


def check_export_folder(folder: Path, run: Path | None = None) -> None:
    """Refuse pretrain.py's --export FOLDER when it is the --out `run`, inside it or holding it
    (UsageError), when it is a file, or when it holds files that save_gpt2_safetensors does
    not write (FileExistsError): what --overwrite lets it replace is an earlier export, never a
    run or a learner's own files."""
    if run is not None and (_inside(folder, run) or _inside(run, folder)):
        raise UsageError(f"--export {folder} is --out or holds it: the export would replace the "
                         "run it is made from (or, inside it, block its --overwrite); choose "
                         "another FOLDER")
    if folder.is_file() and not folder.is_symlink():
        raise FileExistsError(f"--export {folder} is a file, which pretrain.py never deletes, "
                              "even with --overwrite: choose a new or empty FOLDER")
    if folder.is_dir() and (others := not_ours(folder, EXPORT_FILES)):
        raise FileExistsError(f"--export {folder} holds files that save_gpt2_safetensors does "
                              f"not write ({others}), which pretrain.py never deletes, even "
                              "with --overwrite: move them, or choose a new or empty FOLDER")


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
