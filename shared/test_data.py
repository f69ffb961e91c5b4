"""Tests of shared.data: each source in turn, checksums, clear errors, no partial files."""

import hashlib
import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from shared import data


CONTENT = b"The quick brown fox.\n" * 100


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1; set `server.routes[path] = bytes or callable`."""
    routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            if callable(body):
                body(self)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.routes = routes
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dataset(monkeypatch, tmp_path):
    """Register a small test dataset; data/ is a fresh temporary folder, no mirror set."""
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)

    def register(urls=(), content=CONTENT, **kwargs):
        ds = data.DataFile(name="test-set", path="sub/test.txt",
                          sha256=hashlib.sha256(content).hexdigest(), urls=tuple(urls),
                          licence="test", **kwargs)
        monkeypatch.setitem(data.DATASETS, ds.name, ds)
        return ds

    return register


def leftovers(folder):
    return [p.name for p in folder.rglob("*") if p.name.endswith(".part")]


def test_uses_existing_file_with_matching_checksum(dataset, tmp_path):
    dataset(urls=["http://127.0.0.1:9/never-contacted"])
    target = tmp_path / "data" / "sub" / "test.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(CONTENT)
    assert data.fetch("test-set") == target


def test_copies_from_mirror(dataset, data_mirror, tmp_path):
    dataset()
    (data_mirror / "sub").mkdir()
    (data_mirror / "sub" / "test.txt").write_bytes(CONTENT)
    path = data.fetch("test-set")
    assert path.read_bytes() == CONTENT
    assert path.parent.parent == tmp_path / "data"


def test_corrupt_mirror_file_is_rejected_and_not_kept(dataset, data_mirror, tmp_path):
    dataset()
    (data_mirror / "sub").mkdir()
    (data_mirror / "sub" / "test.txt").write_bytes(b"tampered")
    with pytest.raises(data.DataFetchError, match="wrong sha256"):
        data.fetch("test-set")
    assert not (tmp_path / "data" / "sub" / "test.txt").exists()
    assert leftovers(tmp_path / "data") == []


def test_corrupt_local_file_is_moved_aside_and_replaced(dataset, tmp_path, server):
    server.routes["/test.txt"] = CONTENT
    dataset(urls=[server.url + "/test.txt"])
    target = tmp_path / "data" / "sub" / "test.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"my edits")
    with pytest.warns(UserWarning, match="wrong sha256"):
        path = data.fetch("test-set", progress=False)
    assert path.read_bytes() == CONTENT
    assert (target.parent / "test.txt.corrupt").read_bytes() == b"my edits"
    target.write_bytes(b"my second edits")  # a second bad copy never replaces the first
    with pytest.warns(UserWarning, match="moved it to .*test.txt.corrupt.1"):
        data.fetch("test-set", progress=False)
    assert (target.parent / "test.txt.corrupt").read_bytes() == b"my edits"
    assert (target.parent / "test.txt.corrupt.1").read_bytes() == b"my second edits"


def test_downloads_trying_fallback_urls(dataset, server):
    server.routes["/good.txt"] = CONTENT
    dataset(urls=[server.url + "/missing.txt", server.url + "/good.txt"])
    assert data.fetch("test-set", progress=False).read_bytes() == CONTENT


def test_download_with_wrong_checksum_leaves_nothing(dataset, server, tmp_path):
    server.routes["/bad.txt"] = b"not what was promised"
    dataset(urls=[server.url + "/bad.txt"])
    with pytest.raises(data.DataFetchError, match="wrong sha256"):
        data.fetch("test-set", progress=False)
    assert not (tmp_path / "data" / "sub" / "test.txt").exists()
    assert leftovers(tmp_path / "data") == []


def test_truncated_download_leaves_nothing(dataset, server, tmp_path):
    def truncated(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(CONTENT)))
        handler.end_headers()
        handler.wfile.write(CONTENT[:100])  # then the connection closes

    server.routes["/cut.txt"] = truncated
    dataset(urls=[server.url + "/cut.txt"])
    with pytest.raises(data.DataFetchError, match="cut.txt"):
        data.fetch("test-set", progress=False)
    assert list((tmp_path / "data").rglob("*.txt")) == []
    assert leftovers(tmp_path / "data") == []


def test_no_source_error_lists_what_was_tried_and_the_fix(dataset):
    dataset(urls=["http://127.0.0.1:9/unreachable.txt"])  # port 9: nothing listens
    with pytest.raises(data.DataFetchError) as error:
        data.fetch("test-set", progress=False, timeout=5)
    message = str(error.value)
    assert "not there" in message
    assert f"${data.MIRROR_ENV} is not set" in message
    assert "127.0.0.1:9/unreachable.txt" in message
    assert f"set {data.MIRROR_ENV}" in message


def test_download_false_never_touches_the_network(dataset):
    dataset(urls=["http://127.0.0.1:9/unreachable.txt"])
    with pytest.raises(data.DataFetchError, match="download=False"):
        data.fetch("test-set", download=False)


def test_zip_member_extracted_and_newlines_normalised(dataset, server):
    crlf = CONTENT.replace(b"\n", b"\r\n")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "other file")
        zf.writestr("test.txt", crlf)
    server.routes["/archive.zip"] = archive.getvalue()
    dataset(urls=[server.url + "/archive.zip"], archive_member="test.txt",
            normalize_newlines=True)
    assert data.fetch("test-set", progress=False).read_bytes() == CONTENT


def test_mirror_holds_the_extracted_member_of_an_archive(dataset, data_mirror):
    """The mirror has data/'s layout, so for a zipped dataset it holds the extracted file."""
    dataset(urls=["http://127.0.0.1:9/archive.zip"], archive_member="test.txt",
            normalize_newlines=True)
    (data_mirror / "sub").mkdir()
    (data_mirror / "sub" / "test.txt").write_bytes(CONTENT)
    assert data.fetch("test-set", download=False).read_bytes() == CONTENT


def test_unknown_dataset_name():
    with pytest.raises(KeyError, match="no-such-dataset"):
        data.fetch("no-such-dataset")


def test_registry_matches_data_readme():
    readme = (data.PROJECT_ROOT / "data" / "README.md").read_text()
    for ds in data.DATASETS.values():
        assert ds.sha256 is None or ds.sha256 in readme, ds.name
        assert ds.urls[0] in readme, ds.name
        assert f"`{ds.name}`" in readme, ds.name


def safetensors_bytes(n_floats=1000):
    import safetensors.torch
    return safetensors.torch.save({"w": torch.arange(n_floats, dtype=torch.float32)})


def test_size_is_checked_before_the_checksum(dataset, server):
    server.routes["/short.txt"] = CONTENT[:-1]
    dataset(urls=[server.url + "/short.txt"], size=len(CONTENT))
    with pytest.raises(data.DataFetchError, match=f"wrong size {len(CONTENT) - 1:,} bytes"):
        data.fetch("test-set", progress=False)


def test_structural_check_without_a_checksum(monkeypatch, tmp_path, server):
    """A file with no published checksum is accepted only when it is complete."""
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    complete = safetensors_bytes()
    server.routes["/cut.safetensors"] = complete[:-8]  # a server that ends the file early
    server.routes["/good.safetensors"] = complete
    ds = data.DataFile(name="weights", path="w/model.safetensors", sha256=None,
                      urls=(server.url + "/cut.safetensors", server.url + "/good.safetensors"),
                      licence="test", check=data.check_safetensors)
    monkeypatch.setitem(data.DATASETS, ds.name, ds)
    with pytest.warns(UserWarning, match="not a valid file"):
        target = tmp_path / "data" / ds.path
        target.parent.mkdir(parents=True)
        target.write_bytes(complete[: len(complete) // 2])  # an interrupted earlier copy
        path = data.fetch("weights", progress=False)
    assert path.read_bytes() == complete
    assert (target.parent / "model.safetensors.corrupt").exists()
    assert leftovers(tmp_path / "data") == []


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:5], None),  # json's errors (any message): the header is cut short or not JSON
    (lambda b: (10**12).to_bytes(8, "little") + b[8:], None),
    (lambda b: b[:8] + b"{" * (len(b) - 8), None),
    (lambda b: b + b"extra", "the header describes"),
])
def test_check_safetensors_names_the_problem(tmp_path, damage, message):
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_bytes())
    data.check_safetensors(path)
    path.write_bytes(damage(safetensors_bytes()))
    with pytest.raises(ValueError, match=message):
        data.check_safetensors(path)


def test_gpt2_weight_datasets_point_at_the_hugging_face_files():
    for name, repo in data.GPT2_WEIGHT_REPOS.items():
        ds = data.DATASETS[name]
        assert ds.urls == (f"https://huggingface.co/{repo}/resolve/main/model.safetensors",)
        assert ds.check is data.check_safetensors
    small = data.DATASETS["gpt2-small-weights"]
    assert (small.size, small.sha256[:8]) == (548_105_171, "248dfc39")


def test_tiktoken_gpt2_works_offline_from_a_mirror(tmp_path, monkeypatch):
    """GPT-2's BPE files, fetched the normal way, then served as a mirror to an empty data/."""
    import subprocess
    import sys

    mirror = data.fetch("gpt2-encoder").parent.parent  # data/ (or wherever fetch keeps them)
    data.fetch("gpt2-vocab")
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    # A fresh interpreter whose network access fails loudly proves nothing is downloaded.
    code = (
        "import socket\n"
        "def no_network(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = no_network\n"
        "import shared, tiktoken\n"
        "shared.prepare_tiktoken_cache()\n"
        "print(tiktoken.get_encoding('gpt2').encode('Hello, world'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[15496, 11, 995]"
    assert len(list((tmp_path / "data" / "tiktoken").iterdir())) == 2


def run_without_permission_override(code: str, env: dict):
    """Run `code` in a fresh interpreter that file permissions apply to. Root ignores a
    folder's write bit, so as root the capabilities that override permissions are dropped
    (util-linux's setpriv); any other user is already bound by them."""
    import shutil
    import subprocess
    import sys

    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})


def test_read_only_data_folder_never_breaks_the_tiktoken_cache_and_fetch_says_why():
    import shutil
    import stat
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="read-only-data-"))  # /tmp, reachable by nobody
    temp = Path(tempfile.mkdtemp(prefix="temp-"))  # where tiktoken's cache goes instead
    try:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
                     | stat.S_IROTH | stat.S_IXOTH)
        env = {data.DATA_DIR_ENV: str(folder), "TMPDIR": str(temp)}
        code = (
            "import os; os.environ.pop('TIKTOKEN_CACHE_DIR', None)\n"
            "import shared\n"
            "shared.prepare_tiktoken_cache()\n"
            "try:\n"
            "    shared.fetch('the-verdict', download=False)\n"
            "except shared.DataFetchError as error:\n"
            "    print(error)\n"
        )
        mirror = data.mirror_dir() or data.fetch("the-verdict").parent
        result = run_without_permission_override(code, {**env, data.MIRROR_ENV: str(mirror)})
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"cannot write to {folder}" in result.stdout
        assert os.listdir(folder) == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)


# prepare_tiktoken_cache on import: only when the mirror variable asks for it ------------------

def import_shared_in_a_fresh_interpreter(tmp_path, mirror: bool):
    """Run `import shared; from shared import *` then GPT-2's tokenizer, without a network, in a
    fresh interpreter with an empty data/ folder and TIKTOKEN_CACHE_DIR unset, the mirror
    variable set or not. (The variables import changed, the files in work/, data/, tmp/)."""
    import os
    import subprocess
    import sys

    work, data_folder, temp = tmp_path / "work", tmp_path / "data", tmp_path / "tmp"
    for folder in (work, data_folder, temp):
        folder.mkdir()
    env = {name: value for name, value in os.environ.items()
           if name not in ("TIKTOKEN_CACHE_DIR", data.MIRROR_ENV)}
    env.update({data.DATA_DIR_ENV: str(data_folder), "TMPDIR": str(temp),
                "PYTHONPATH": str(data.PROJECT_ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    if mirror:
        env[data.MIRROR_ENV] = str(data.fetch("gpt2-encoder").parent.parent)
    code = (NO_NETWORK + "import os\nbefore = dict(os.environ)\nimport shared\n"
            "from shared import *\n"
            "print(sorted(k for k in {*before, *os.environ}\n"
            "             if before.get(k) != os.environ.get(k)))\n"
            "import tiktoken\n"  # no prepare_tiktoken_cache() call: a learner's kernel
            "try:\n"
            "    print(tiktoken.get_encoding('gpt2').encode('Hello, world'))\n"
            "except OSError as error:\n"
            "    print('no tokenizer:', error)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    changed, tokens = result.stdout.strip().splitlines()
    files = {name: sorted(str(p.relative_to(tmp_path)) for p in folder.rglob("*") if p.is_file())
             for name, folder in (("work", work), ("data", data_folder), ("tmp", temp))}
    return changed, tokens, files


def test_importing_shared_without_the_mirror_variable_sets_no_variable_and_writes_no_file(
        tmp_path):
    """`import shared` and `from shared import *` (every chapter's module) leave the environment
    and the disk as they were: offline, tiktoken then has no files (it would download them)."""
    changed, tokens, files = import_shared_in_a_fresh_interpreter(tmp_path, mirror=False)
    assert changed == "[]", f"import shared set {changed}"
    assert files == {"work": [], "data": [], "tmp": []}
    assert tokens.startswith("no tokenizer:") and "network used" in tokens


def test_importing_shared_with_the_mirror_variable_readies_tiktoken_offline(tmp_path):
    """With LLM_COURSE_DATA_MIRROR set, as the README's set-up says before starting Jupyter,
    `import shared` is enough: tiktoken's GPT-2 encoding loads without a network, and the only
    changes are TIKTOKEN_CACHE_DIR and GPT-2's two files in data/ and its tiktoken cache."""
    import hashlib

    changed, tokens, files = import_shared_in_a_fresh_interpreter(tmp_path, mirror=True)
    assert changed == "['TIKTOKEN_CACHE_DIR']", f"import shared set {changed}"
    assert tokens == "[15496, 11, 995]"
    cached = sorted(f"data/tiktoken/{hashlib.sha1(data.DATASETS[n].urls[0].encode()).hexdigest()}"
                    for n in ("gpt2-encoder", "gpt2-vocab"))
    copied = sorted(f"data/{data.DATASETS[n].path}" for n in ("gpt2-encoder", "gpt2-vocab"))
    assert files == {"work": [], "data": sorted(cached + copied), "tmp": []}


# tiktoken's cache, read-only or turned off, never reaches the network -------------------------

NO_NETWORK = (  # a fresh interpreter in which any use of the network fails loudly
    "import socket\n"
    "def no_network(*a, **k): raise OSError('network used')\n"
    "socket.socket.connect = no_network\n"
    "socket.getaddrinfo = no_network\n"
    "import warnings; warnings.filterwarnings('error', 'could not prepare')\n"
)
LOAD_GPT2 = ("import shared, tiktoken\nshared.prepare_tiktoken_cache()\n"
             "print(tiktoken.get_encoding('gpt2').encode('Hello, world'))\n")


def gpt2_cache_files():
    """{sha1(url) name: bytes}: GPT-2's BPE files as tiktoken caches them."""
    import hashlib

    return {hashlib.sha1(data.DATASETS[name].urls[0].encode()).hexdigest():
            data.fetch(name).read_bytes() for name in ("gpt2-encoder", "gpt2-vocab")}


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_tiktoken_gpt2_loads_offline_from_a_read_only_cache_that_holds_its_files(tmp_path):
    import stat

    files = gpt2_cache_files()
    mirror = data.fetch("gpt2-encoder").parent.parent
    cache, data_folder = tmp_path / "cache", tmp_path / "data"
    cache.mkdir()
    data_folder.mkdir()
    for name, content in files.items():
        (cache / name).write_bytes(content)
        (cache / name).chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    read_only = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
    cache.chmod(read_only)
    data_folder.chmod(read_only)
    before = snapshot(cache)
    try:
        result = run_without_permission_override(NO_NETWORK + LOAD_GPT2, {
            "TIKTOKEN_CACHE_DIR": str(cache), data.DATA_DIR_ENV: str(data_folder),
            data.MIRROR_ENV: str(mirror)})
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "[15496, 11, 995]"
        assert snapshot(cache) == before and list(data_folder.iterdir()) == []
    finally:
        cache.chmod(0o755)
        data_folder.chmod(0o755)


def test_a_cached_file_that_fails_its_checksum_is_replaced_from_the_mirror(tmp_path):
    files = gpt2_cache_files()
    mirror = data.fetch("gpt2-encoder").parent.parent
    cache = tmp_path / "cache"
    cache.mkdir()
    damaged = sorted(files)[0]
    for name, content in files.items():
        (cache / name).write_bytes(content[:1000] if name == damaged else content)
    result = run_without_permission_override(NO_NETWORK + LOAD_GPT2, {
        "TIKTOKEN_CACHE_DIR": str(cache), data.DATA_DIR_ENV: str(tmp_path / "data"),
        data.MIRROR_ENV: str(mirror)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[15496, 11, 995]"
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == files


@pytest.mark.parametrize("data_writable", [True, False])
def test_a_read_only_empty_cache_is_replaced_by_a_writable_one_it_names(tmp_path, data_writable):
    """With GPT-2's files in the mirror, a read-only, empty TIKTOKEN_CACHE_DIR makes
    prepare_tiktoken_cache fill a writable cache (data/tiktoken, else one in the temporary
    folder) and point tiktoken there, saying so; before, tiktoken went to the network."""
    import stat

    read_only = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
    cache, data_folder, temp = tmp_path / "cache", tmp_path / "data", tmp_path / "tmp"
    for folder in (cache, data_folder, temp):
        folder.mkdir()
    cache.chmod(read_only)
    if not data_writable:
        data_folder.chmod(read_only)
    code = NO_NETWORK + LOAD_GPT2 + "import os; print(os.environ['TIKTOKEN_CACHE_DIR'])\n"
    try:
        result = run_without_permission_override(code, {
            "TIKTOKEN_CACHE_DIR": str(cache), data.DATA_DIR_ENV: str(data_folder),
            data.MIRROR_ENV: str(data.fetch("gpt2-encoder").parent.parent), "TMPDIR": str(temp)})
        assert result.returncode == 0, result.stderr[-2000:]
        ids, chosen = result.stdout.strip().splitlines()
        assert ids == "[15496, 11, 995]"
        expected = data_folder / "tiktoken" if data_writable else next(temp.iterdir())
        assert chosen == str(expected) and sorted(p.name for p in expected.iterdir()) == sorted(
            gpt2_cache_files())
        assert f"tiktoken's cache {cache} cannot be written" in result.stderr
        assert f"TIKTOKEN_CACHE_DIR now points at {expected}" in result.stderr
        assert list(cache.iterdir()) == []
    finally:
        cache.chmod(0o755)
        data_folder.chmod(0o755)


def test_a_read_only_cache_without_any_writable_one_says_what_to_do(tmp_path):
    import stat

    read_only = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
    cache, data_folder, temp = tmp_path / "cache", tmp_path / "data", tmp_path / "tmp"
    for folder in (cache, data_folder, temp):
        folder.mkdir()
        folder.chmod(read_only)
    code = ("import warnings; warnings.simplefilter('always')\n"
            f"import tempfile; tempfile.tempdir = {str(temp)!r}\n"  # else it skips to /tmp
            "import shared\nshared.prepare_tiktoken_cache()\n")
    try:
        result = run_without_permission_override(code, {
            "TIKTOKEN_CACHE_DIR": str(cache), data.DATA_DIR_ENV: str(data_folder),
            data.MIRROR_ENV: str(data.fetch("gpt2-encoder").parent.parent)})
        assert result.returncode == 0, result.stderr[-2000:]  # preparing it never fails
        assert f"cannot write to {cache}" in result.stderr
        assert f"make {cache} writable, or point TIKTOKEN_CACHE_DIR at a writable" in result.stderr
        assert [list(f.iterdir()) for f in (cache, data_folder, temp)] == [[], [], []]
    finally:
        for folder in (cache, data_folder, temp):
            folder.chmod(0o755)


def test_an_empty_tiktoken_cache_dir_turns_the_cache_off_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": "", data.DATA_DIR_ENV: str(tmp_path / "data"),
           data.MIRROR_ENV: str(data.fetch("gpt2-encoder").parent.parent),
           "PYTHONPATH": str(data.PROJECT_ROOT)}
    code = NO_NETWORK + "import shared\nshared.prepare_tiktoken_cache()\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=work,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(work.iterdir()) == []  # not two 1.5 MB files in the current folder


# A folder where a data file should be; failed fetches leave nothing ---------------------------

def test_a_folder_where_the_data_file_should_be_is_named_and_left_alone(dataset, data_mirror,
                                                                        tmp_path):
    dataset()
    target = tmp_path / "data" / "sub" / "test.txt"
    (target / "inside").mkdir(parents=True)  # the learner's folder, with something in it
    (data_mirror / "sub").mkdir()
    (data_mirror / "sub" / "test.txt").write_bytes(CONTENT)
    with pytest.raises(data.DataFetchError, match=rf"dataset 'test-set' must be the file {target},"
                                                  r" but that is a folder; move or rename it"):
        data.fetch("test-set")
    with pytest.raises(data.DataFetchError, match="but that is a folder"):
        data.read_text("test-set")
    assert [p.name for p in target.iterdir()] == ["inside"]


def test_a_folder_in_the_mirror_is_named(dataset, data_mirror):
    dataset()
    (data_mirror / "sub" / "test.txt").mkdir(parents=True)
    with pytest.raises(data.DataFetchError, match=r"mirror: .*test\.txt is a folder, not a file"):
        data.fetch("test-set", download=False)


def test_a_zip_without_the_member_leaves_nothing(dataset, server, tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "other file")
    server.routes["/archive.zip"] = archive.getvalue()
    dataset(urls=[server.url + "/archive.zip"], archive_member="test.txt")
    with pytest.raises(data.DataFetchError, match=r"KeyError: .*'test.txt'"):
        data.fetch("test-set", progress=False)
    assert [p.name for p in (tmp_path / "data").rglob("*") if p.is_file()] == []


def test_an_interrupted_download_leaves_nothing(dataset, monkeypatch, tmp_path):
    def interrupted(url, dst, progress, timeout):
        dst.write(CONTENT[:100])
        raise KeyboardInterrupt  # Ctrl-C in the middle of the file

    monkeypatch.setattr(data, "_download", interrupted)
    dataset(urls=["http://127.0.0.1:9/test.txt"])
    with pytest.raises(KeyboardInterrupt):
        data.fetch("test-set", progress=False)
    assert [p.name for p in (tmp_path / "data").rglob("*") if p.is_file()] == []


# download_file ------------------------------------------------------------------------------

VERDICT_URL = ("https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/"
               "01_main-chapter-code/the-verdict.txt")


def test_download_file_refuses_a_destination_holding_another_file_unless_told(tmp_path):
    destination = tmp_path / "the-verdict.txt"
    destination.write_text("my own notes\n")
    with pytest.raises(ValueError, match=r"the-verdict.txt holds another file than the one at "
                                         r".*the-verdict.txt: pass replace=True"):
        data.download_file(VERDICT_URL, destination)
    assert destination.read_text() == "my own notes\n" and len(list(tmp_path.iterdir())) == 1
    data.download_file(VERDICT_URL, destination, replace=True)
    assert destination.read_bytes() == data.fetch("the-verdict").read_bytes()
    data.download_file(VERDICT_URL, destination)  # the same file: nothing to do, nothing refused
    with pytest.raises(ValueError, match=r"destination .* is a folder"):
        data.download_file(VERDICT_URL, tmp_path)


def test_download_file_of_another_url_refuses_another_file_and_keeps_the_same(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("downloaded text\n")
    destination = tmp_path / "copy.txt"
    destination.write_text("mine\n")
    with pytest.raises(ValueError, match=r"copy.txt holds another file than the one at "
                                         r"file://.*source.txt: pass replace=True"):
        data.download_file(source.as_uri(), destination)
    assert destination.read_text() == "mine\n"
    data.download_file(source.as_uri(), destination, replace=True)
    assert destination.read_text() == "downloaded text\n"


@pytest.mark.parametrize("known", [True, False])
def test_a_failed_download_leaves_no_partial_file(known, tmp_path, monkeypatch):
    import http.client
    import urllib.request

    class BrokenResponse:  # a connection that closes half-way
        headers = {"Content-Length": "100"}

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

        def read(self):
            raise http.client.IncompleteRead(b"x" * 50, 50)

    def broken_copy(source, destination):
        Path(destination).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: BrokenResponse())
    monkeypatch.setattr(data.shutil, "copyfile", broken_copy)
    url = VERDICT_URL if known else "https://example.com/other.txt"
    with pytest.raises(OSError, match="disk full" if known else "could not download .*"
                                                                 "IncompleteRead"):
        data.download_file(url, tmp_path / "file.txt")
    assert list(tmp_path.iterdir()) == []  # no half file for the next call to skip to


def test_download_file_serves_a_known_file_from_the_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    verdict = data.DATASETS["the-verdict"]
    (mirror / verdict.path).write_bytes(data.fetch("the-verdict").read_bytes())
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "data"))
    data.download_file(verdict.urls[0], tmp_path / "the-verdict.txt")
    assert (tmp_path / "the-verdict.txt").read_text().startswith("I HAD always thought")
