"""Fetch the course's datasets by name, offline when a mirror folder is configured.

Every file the course uses is listed once in DATASETS with its sha256. `fetch(name)`
looks in three places, in order, and returns the first copy whose checksum matches:

1. the project's `data/` folder (a file fetched earlier);
2. a local mirror folder named by the environment variable LLM_COURSE_DATA_MIRROR
   (a folder with the same layout as `data/`; CI points it at `../shared/data`);
3. the canonical URLs, one after the other, with a progress bar.

A file is written to a temporary name beside its destination and renamed only after
its checksum matches, so a failed or interrupted fetch never leaves a partial file.

`download_file(url, destination)`, the book's downloader (chapters 6 and 7 fetch their data
with it), serves a file DATASETS lists through `fetch` and downloads any other.
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from shared.checks import check
from shared.utils import write_atomically


MIRROR_ENV = "LLM_COURSE_DATA_MIRROR"
DATA_DIR_ENV = "LLM_COURSE_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DataFile:
    """One file the course downloads: where it goes, where it comes from, how it is checked."""

    name: str
    path: str  # relative to data/ and to a mirror folder
    sha256: str | None  # None only where no published checksum was available to us
    urls: tuple[str, ...]
    licence: str
    archive_member: str | None = None  # the URLs serve a zip holding this file
    normalize_newlines: bool = False  # compare after CRLF -> LF and one trailing newline
    size: int | None = None  # bytes, checked before the (slow) checksum
    check: Callable[[Path], None] | None = None  # structural check; raises ValueError


def check_safetensors(path: Path) -> None:
    """Raise ValueError unless `path` is a complete safetensors file.

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's
    byte range, then the data. A file is complete when the ranges cover its data exactly, so
    a truncated download is caught even without a published checksum. (A header that is not
    JSON raises json's ValueError; one that is not an object, AttributeError or TypeError.)
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(min(header_len, size, 100_000_000)))
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + header_len + max(ends, default=0)
    check(expected == size, lambda: f"the header describes {expected} bytes but the file has "
          f"{size} (truncated download?)")


GPT2_WEIGHT_REPOS = {  # dataset name -> Hugging Face repository of OpenAI's weights
    "gpt2-small-weights": "openai-community/gpt2",
    "gpt2-medium-weights": "openai-community/gpt2-medium",
    "gpt2-large-weights": "openai-community/gpt2-large",
    "gpt2-xl-weights": "openai-community/gpt2-xl",
}
# Only the 124M file's checksum and size were available to us (published with revision
# 607a30d of openai-community/gpt2); the larger files are verified structurally.
_GPT2_WEIGHT_CHECKSUMS = {
    "gpt2-small-weights": ("248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
                           548_105_171),
}


def _gpt2_weights(name: str, repo: str) -> DataFile:
    sha256, size = _GPT2_WEIGHT_CHECKSUMS.get(name, (None, None))
    return DataFile(
        name=name,
        path=f"gpt2-weights/{repo.split('/')[1]}/model.safetensors",
        sha256=sha256,
        size=size,
        urls=(f"https://huggingface.co/{repo}/resolve/main/model.safetensors",),
        licence="MIT (OpenAI GPT-2)",
        check=check_safetensors,
    )


_JUDGE_SCORES = {  # the book's judge data: each judge's scores of each model's responses
    "gpt4-model-1": "705f24bf17878d5e29c5cb2daeae00a64a1688756192478f91f41bf1eff85689",
    "gpt4-model-2": "2b10d2abdf1f71f4f8057c012be2bf6c777823adbadb597f4d1699e06129db5a",
    "llama3-8b-model-1": "a6005211110bf3d9e30dbdb17638a1918004bc490c85b0b3520798a31d7fa5a4",
    "llama3-8b-model-2": "18e501530c56085aca3e6c2d7da39edc03fd85fe205f17a65ab1a400c6d61125",
}


def _from_books_repository(name: str, file: str, sha256: str, path: str | None = None,
                           **extra) -> DataFile:
    """A file of chapter 7's folders in the book's repository, kept as `path` (default: the
    file's own name)."""
    return DataFile(name=name, path=path or file.rpartition("/")[2], sha256=sha256,
                    licence="Apache-2.0", **extra,
                    urls=("https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/"
                          + file,))


DATASETS: dict[str, DataFile] = {
    d.name: d
    for d in [
        DataFile(
            name="the-verdict",
            path="the-verdict.txt",
            sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
            urls=(
                "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/"
                "01_main-chapter-code/the-verdict.txt",
            ),
            licence="public domain (Edith Wharton, 1908)",
        ),
        DataFile(
            name="tinyshakespeare",
            path="tinyshakespeare/input.txt",
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            size=1_115_394,
            urls=(
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                "tinyshakespeare/input.txt",
            ),
            licence="public domain (Shakespeare's plays; the char-rnn repository is MIT)",
        ),
        DataFile(
            name="sms-spam-collection",
            path="SMSSpamCollection",
            sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
            urls=(
                "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
                "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
            ),
            licence="CC BY 4.0 (UCI Machine Learning Repository, Almeida & Hidalgo 2011)",
            archive_member="SMSSpamCollection",
            normalize_newlines=True,
        ),
        _from_books_repository("instruction-data", "01_main-chapter-code/instruction-data.json",
                               "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944"),
        _from_books_repository(
            "instruction-data-with-preference",
            "04_preference-tuning-with-dpo/instruction-data-with-preference.json",
            "305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e"),
        _from_books_repository(  # the book's GPT-2 medium's responses to its 110 test entries
            "instruction-data-with-response",
            "01_main-chapter-code/instruction-data-with-response.json",
            "aced320504c77c98d957316eb9f3460945256226c36b5e9752bf7d49585eb943", size=29_279),
        _from_books_repository(  # the book's judge data: two models' responses, two judges' scores
            "judge-example-data", "03_model-evaluation/eval-example-data.json",
            "90e9ceb4f1184f6b307fd76d0dd1e8b15bd3da200b1fc69ee897107394a775e0",
            path="model-evaluation/eval-example-data.json"),
        *(_from_books_repository(f"judge-scores-{scores}",
                                 f"03_model-evaluation/scores/{scores}-response.json", sha256,
                                 path=f"model-evaluation/scores/{scores}-response.json")
          for scores, sha256 in _JUDGE_SCORES.items()),
        DataFile(
            name="gpt2-encoder",
            path="gpt2/encoder.json",
            sha256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
            urls=("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",),
            licence="MIT (OpenAI GPT-2)",
        ),
        DataFile(
            name="gpt2-vocab",
            path="gpt2/vocab.bpe",
            sha256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
            urls=("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",),
            licence="MIT (OpenAI GPT-2)",
        ),
        *(_gpt2_weights(name, repo) for name, repo in GPT2_WEIGHT_REPOS.items()),
    ]
}

class DataFetchError(RuntimeError):
    """No source gave a file with the expected checksum; the message lists what was tried."""


def data_dir() -> Path:
    """The folder fetched files are kept in: `data/` in the project, or $LLM_COURSE_DATA_DIR."""
    return Path(os.environ.get(DATA_DIR_ENV) or PROJECT_ROOT / "data")


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    name: str,
    *,
    download: bool = True,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Return the path of dataset `name` in data/, fetching it first if needed.

    With download=False only data/ and the mirror are tried (no network access).
    Raises DataFetchError, listing every source tried and how to fix it; KeyError for no such name.
    """
    dataset = DATASETS[name]
    target = data_dir() / dataset.path
    tried: list[str] = []

    if target.is_dir():  # a learner's folder: never moved aside or written into
        raise DataFetchError(f"dataset {name!r} must be the file {target}, but that is a "
                             "folder; move or rename it, and fetch puts the file there")
    if target.exists():
        problem = _verify(target, dataset)
        if problem is None:
            return target
        # Keep the user's file (nothing lost, earlier ones included), but never use it.
        aside = _free_name(target.with_name(target.name + ".corrupt"))
        try:
            os.replace(target, aside)
        except OSError as error:
            raise DataFetchError(f"{target}: {problem}, and it cannot be moved aside "
                                 f"({error}); remove it or make {target.parent} writable"
                                 ) from None
        warnings.warn(f"{target}: {problem}; moved it to {aside}", stacklevel=2)
        tried.append(f"{target}: {problem}, moved aside to {aside.name}")
    else:
        tried.append(f"{target}: not there")

    mirror = mirror_dir()
    if mirror is None:
        tried.append(f"mirror: not configured (${MIRROR_ENV} is not set)")
    elif not (mirror / dataset.path).is_file():
        folder = (mirror / dataset.path).is_dir()
        tried.append(f"mirror: {mirror / dataset.path} "
                     f"{'is a folder, not a file' if folder else 'not there'}")
    else:
        source = mirror / dataset.path
        # The mirror has data/'s layout: an archive's member is already extracted there.
        error = _install(target, dataset, lambda dst: _copy(source, dst), extract=False)
        if error is None:
            return target
        tried.append(f"mirror: {source}: {error}")

    if download:
        for url in dataset.urls:
            error = _install(target, dataset,
                             lambda dst, url=url: _download(url, dst, progress, timeout))
            if error is None:
                return target
            tried.append(f"{url}: {error}")
    else:
        tried.append("download: not attempted (download=False)")

    raise DataFetchError(
        f"could not fetch dataset {name!r} ({dataset.path}). Tried:\n"
        + "\n".join(f"  - {line}" for line in tried)
        + f"\nTo fix: connect to the internet, or set {MIRROR_ENV} to a folder that holds "
        f"{dataset.path}{f' (sha256 {dataset.sha256})' if dataset.sha256 else ''}, "
        f"or place that file at {target}."
    )


def _install(target: Path, dataset: DataFile, write: Callable, extract: bool = True) -> str | None:
    """Write a candidate with `write(file)` to a temporary file, verify, then rename it into place.

    Returns None on success, else a short reason (a folder that cannot be written included);
    the temporary file never survives.
    """
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as f:
            write(f)
        if dataset.archive_member and extract:
            _extract_member(tmp, dataset.archive_member)
        if dataset.normalize_newlines:
            data = tmp.read_bytes().replace(b"\r\n", b"\n").rstrip(b"\n") + b"\n"
            tmp.write_bytes(data)
        problem = _verify(tmp, dataset)
        if problem is not None:
            return problem
        os.replace(tmp, target)
        return None
    except PermissionError as error:
        return f"cannot write to {target.parent} ({error.strerror})"
    except (OSError, http.client.HTTPException, zipfile.BadZipFile, KeyError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _free_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, ...: the first that does not exist yet."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.{number}")
    return candidate


def _verify(path: Path, dataset: DataFile) -> str | None:
    """None if `path` is the dataset's file, else what is wrong with it."""
    if dataset.size is not None and path.stat().st_size != dataset.size:
        return f"wrong size {path.stat().st_size:,} bytes (expected {dataset.size:,})"
    if dataset.check is not None:
        try:
            dataset.check(path)
        except (ValueError, AttributeError, TypeError, KeyError) as error:  # see the check
            return f"not a valid file: {type(error).__name__}: {error}"
    if dataset.sha256 is not None:
        actual = sha256_of(path)
        if actual != dataset.sha256:
            return f"wrong sha256 {actual[:12]}… (expected {dataset.sha256[:12]}…)"
    return None


def _copy(source: Path, dst) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, dst)


def _download(url: str, dst, progress: bool, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "llm-from-scratch-course"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  disable=not progress) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                dst.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise OSError(f"connection closed after {received} of {total} bytes")


def _extract_member(archive: Path, member: str) -> None:
    """Replace the zip file `archive` by the content of its file named `member`."""
    with zipfile.ZipFile(archive) as zf:
        names = {Path(n).name: n for n in zf.namelist()}
        data = zf.read(names[member])  # KeyError: the member's name
    archive.write_bytes(data)


def prepare_tiktoken_cache() -> None:
    """Let `tiktoken.get_encoding("gpt2")` work offline when GPT-2's BPE files are at hand.

    tiktoken caches each file it downloads in $TIKTOKEN_CACHE_DIR under sha1(url). If that
    variable is unset we point it at data/tiktoken, and copy GPT-2's encoder.json and
    vocab.bpe there from data/ or the mirror, unless a copy with the right checksum is there
    already (so a read-only cache that holds both is only read). A cache that lacks them and
    cannot be written is replaced by one that can (data/tiktoken, else a folder in the
    temporary folder): the files are copied there, TIKTOKEN_CACHE_DIR points there, and a
    warning names it. tiktoken still checks the files' hashes. Without a local copy this does
    nothing, and tiktoken downloads the files itself; an empty TIKTOKEN_CACHE_DIR is tiktoken's
    "no cache", and nothing is written either.

    Importing `shared` calls it when LLM_COURSE_DATA_MIRROR is set (so a plain Jupyter kernel
    works offline), and only then; the test run (shared/tooling/pytest_setup.py) and the
    notebook runner call it before any kernel starts (kernels inherit TIKTOKEN_CACHE_DIR), and
    so does a course function that loads GPT-2's encoding itself.
    """
    folder = os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(data_dir() / "tiktoken"))
    if not folder:  # not Path(""), the current folder
        return
    cache = Path(folder)
    problem = _fill_tiktoken_cache(cache)
    if problem is None:
        return
    user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""  # /tmp is shared between users
    temporary = Path(tempfile.gettempdir()) / f"llm-course-tiktoken{user}"
    for other in (data_dir() / "tiktoken", temporary):
        if other != cache and _fill_tiktoken_cache(other) is None:
            os.environ["TIKTOKEN_CACHE_DIR"] = str(other)
            warnings.warn(f"tiktoken's cache {cache} cannot be written ({problem}) and lacks "
                          f"GPT-2's BPE files; they were copied to {other}, and "
                          f"TIKTOKEN_CACHE_DIR now points at {other}", stacklevel=2)
            return
    # Best effort: a read-only cache must not break the caller (a test run, a notebook run).
    warnings.warn(f"could not prepare tiktoken's offline cache: {problem}. "
                  f"tiktoken.get_encoding('gpt2') needs GPT-2's BPE files there: make {cache} "
                  f"writable, or point TIKTOKEN_CACHE_DIR at a writable folder", stacklevel=2)


def _fill_tiktoken_cache(cache: Path) -> str | None:
    """Copy GPT-2's BPE files that tiktoken's cache `cache` lacks into it, from data/ or the
    mirror. None if that worked or nothing is at hand to copy, else why it failed."""
    for name in ("gpt2-encoder", "gpt2-vocab"):
        dataset = DATASETS[name]
        cached = cache / hashlib.sha1(dataset.urls[0].encode()).hexdigest()
        try:
            if cached.is_file() and _verify(cached, dataset) is None:
                continue
            source = _local_copy(name)
        except OSError as error:  # an unreadable cached file, say
            return f"{type(error).__name__}: {error}"
        if source is None:
            continue  # no local copy: tiktoken downloads it itself
        problem = _install(cached, dataset, lambda dst, source=source: _copy(source, dst),
                           extract=False)
        if problem is not None:
            return problem
    return None


def _local_copy(name: str) -> Path | None:
    """Dataset `name` in data/ (copied there from the mirror if need be), else in the mirror
    (data/ may be read-only); None if neither has it."""
    try:
        return fetch(name, download=False)
    except (DataFetchError, OSError):
        mirror = mirror_dir()
        source = mirror / DATASETS[name].path if mirror is not None else None
        return source if source is not None and source.is_file() else None  # _install verifies


def read_text(name: str) -> str:
    """Fetch a text dataset and return its content (UTF-8)."""
    return fetch(name).read_text(encoding="utf-8")



# A folder of texts, tokenised once (pretrain.py's --data) -----------------------------------

def download_file(url: str, destination: str | Path, backup_url: str | None = None, *,
                  replace: bool = False) -> None:
    """The book's downloader: `url` (or else `backup_url`) to `destination`, skipped when a file
    of the same size is there. A file the course knows (shared.DATASETS) comes through its
    data fetching instead: from data/ or the local mirror, verified (and skipped when the same
    bytes are there). The file is written whole or not at all; another file at `destination`
    is refused unless replace=True."""
    destination = Path(destination)
    check(not destination.is_dir(), f"destination {destination} is a folder: give the path "
          "of the file to write in it")

    def check_replaceable(source):  # a file the learner has is not overwritten unasked
        check(replace or not destination.exists(), f"{destination} holds another file than "
              f"the one at {source}: pass replace=True to replace it, or choose another path")

    known = [name for name, data in DATASETS.items() if {url, backup_url} & set(data.urls)]
    if known:
        verified = fetch(known[0])
        if destination.is_file() and filecmp.cmp(verified, destination, shallow=False):
            return
        check_replaceable(url)
        write_atomically(destination, lambda tmp: shutil.copyfile(verified, tmp))
        return
    errors = []
    for source in [url, backup_url] if backup_url else [url]:
        try:
            with urllib.request.urlopen(source, timeout=30) as response:
                size = int(response.headers.get("Content-Length") or -1)
                if destination.is_file() and destination.stat().st_size == size:
                    return
                check_replaceable(source)
                write_atomically(destination, lambda tmp: tmp.write_bytes(response.read()))
                return
        except (OSError, http.client.HTTPException) as error:  # a connection cut short too
            errors.append(f"{source}: {error!r}")
    raise OSError("could not download " + "; ".join(errors))


__all__ = [
    "DATASETS",
    "DataFetchError",
    "DataFile",
    "GPT2_WEIGHT_REPOS",
    "check_safetensors",
    "data_dir",
    "fetch",
    "mirror_dir",
    "prepare_tiktoken_cache",
    "read_text",
    "sha256_of",
]
