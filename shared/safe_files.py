"""Files protected: what the course writes never destroys someone's work.

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

A training run's folder (pretrain.py's --out) has its own safety, beside the script:
ch05_pretraining/run_folder.py.
"""

import glob
import io
import json
import os
import pkgutil
import re
import shutil
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from shared.checks import check


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
    # replace="no" would be true and overwrite: only a real flag is taken
    check(isinstance(replace, bool), lambda: f"replace must be True or False, got {replace!r}",
          TypeError)
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
    return saved_by(entry.path) == writer


def saved_by(path: str | Path) -> str | None:
    """The function of the course that wrote the safetensors file at `path`, as its metadata
    names it (SAVED_BY); None for another program's file, or one that cannot be read."""
    import safetensors  # here: `import shared` loads no safetensors until a file is checked

    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get(SAVED_BY)
    except Exception:  # unreadable: not what a writer of the course leaves
        return None


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
    # replace="no" would be true and overwrite: only a real flag is taken
    check(isinstance(replace, bool), lambda: f"replace must be True or False, got {replace!r}",
          TypeError)
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
