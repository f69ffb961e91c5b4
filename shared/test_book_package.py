"""The book's own package tests, run against the course.

A learner with the book open types the book's names. The `llms_from_scratch` package (the
book's code, in requirements.txt) ships tests for chapters 2-7 and appendices D and E; here
they run unchanged, from the installed package, in a fresh interpreter in which the modules
`llms_from_scratch.ch02` ... `ch07`, `appendix_d` and `appendix_e` are replaced by modules
whose book names come from the course:

- every name the book's module defines at its top level is taken from `shared` (the course's
  one import surface), except a name in `shared.BOOK_NAMES_REDEFINED` (chapter 6's
  `calc_loss_batch`, ...), which comes from the course module of the chapter that redefines
  it (appendix D is taught in chapter 5, appendix E in chapter 6), and one in
  `shared.BOOK_NAMES_EXTENDED` (`GPTModel`), which comes from the lesson that teaches it,
  not from the companion that extends it;
- the package's bonus variants, which the book's chapters do not teach (`GPTModelFast`,
  `PyTorchMultiHeadAttention`, the `kv_cache` package, ...), stay the package's own, and
  the book's tests of them are not run;
- the tests' downloads (urllib's `urlopen`/`urlretrieve` of the-verdict.txt, the SMS spam
  zip, instruction-data.json) are served from the course's data (shared.data: the mirror or
  data/), and every other network connection fails: the run is offline.

A book name the course does not provide is left out of its module, so a test that imports
it fails with "cannot import name"; test_the_course_provides_every_book_name lists them all.
`python shared/test_book_package.py` prints each book test's outcome.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import os
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import shared
from shared.data import PROJECT_ROOT


package = importlib.import_module("llms_from_scratch")  # the README's set-up installs it
PACKAGE_DIR = Path(package.__file__).parent
# The book module -> the course's chapter package that teaches it.
BOOK_MODULES = {
    "ch02": "ch02_text_data", "ch03": "ch03_attention", "ch04": "ch04_gpt_model",
    "ch05": "ch05_pretraining", "ch06": "ch06_classification", "ch07": "ch07_instructions",
    "appendix_d": "ch05_pretraining", "appendix_e": "ch06_classification",
}
BOOK_TESTS = [f"test_{module}.py" for module in BOOK_MODULES]
# The package's variants beyond the book's chapters: they stay the package's own.
BONUS = {"ch03": {"PyTorchMultiHeadAttention"},
         "ch04": {"FeedForwardFast", "TransformerBlockFast", "GPTModelFast"}}
# The book's tests of those variants test the package's code, not the course's: not run. (Its
# chapter 5 test trains GPTModelFast for 40 s, once per run of this file.)
NOT_BONUS_TESTS = "not GPTModelFast"


def book_names(module: str) -> list[str]:
    """The names the book's module defines at its top level (not those it imports)."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
    return [name for name in names if name not in BONUS.get(module, ())]


def course_object(module: str, name: str):
    """The course's object for the book's `module`.`name`; AttributeError if there is none."""
    if name in shared.BOOK_NAMES_REDEFINED + shared.BOOK_NAMES_EXTENDED:
        for course_module in shared.CHAPTER_MODULES:
            if course_module.startswith(BOOK_MODULES[module] + "."):
                found = importlib.import_module(course_module)
                if name in getattr(found, "__all__", ()):
                    return getattr(found, name)
        raise AttributeError(f"no course module of {BOOK_MODULES[module]} defines {name}")
    return getattr(shared, name)


def missing_book_names() -> dict[str, list[str]]:
    missing = {}
    for module in BOOK_MODULES:
        for name in book_names(module):
            try:
                course_object(module, name)
            except AttributeError:
                missing.setdefault(module, []).append(name)
    return missing


# What the fresh interpreter runs --------------------------------------------------------

class _Response(io.BytesIO):
    """What urlopen returns, for the tests' and the book functions' uses."""

    def __init__(self, body: bytes, url: str):
        super().__init__(body)
        self.url, self.status, self.code = url, 200, 200
        self.headers = {"Content-Length": str(len(body))}

    def getcode(self):
        return self.status

    def info(self):
        return self.headers


def _served(url: str) -> bytes:
    """The bytes behind one of the course's dataset URLs, from its data (mirror or data/)."""
    import urllib.error

    from shared import data

    for dataset in data.DATASETS.values():
        if url in dataset.urls:
            content = data.fetch(dataset.name, progress=False).read_bytes()
            if dataset.archive_member is None:
                return content
            archive = io.BytesIO()  # the mirror holds the extracted member; zip it again
            with zipfile.ZipFile(archive, "w") as zipped:
                zipped.writestr(dataset.archive_member, content)
            return archive.getvalue()
    raise urllib.error.URLError(f"{url}: not one of the course's datasets (this run is offline)")


def serve_downloads_from_the_course_data() -> None:
    import socket
    import urllib.request

    def urlopen(url, *args, **kwargs):
        url = getattr(url, "full_url", url)
        return _Response(_served(url), url)

    def urlretrieve(url, filename=None, reporthook=None, data=None):
        body = _served(url)
        Path(filename).write_bytes(body)
        return filename, {"Content-Length": str(len(body))}

    def no_network(self, address, *args):
        raise OSError(f"network access to {address} in an offline test")

    urllib.request.urlopen, urllib.request.urlretrieve = urlopen, urlretrieve
    socket.socket.connect = no_network


def install_the_course_as_the_book() -> None:
    """Replace the book's chapter modules by the course's names (see the module docstring)."""
    # The package's own modules first (they import each other), so that its bonus variants
    # bind the package's code; its kv_cache modules import none of them.
    originals = {module: importlib.import_module(f"{package.__name__}.{module}")
                 for module in BOOK_MODULES}
    for module, original in originals.items():
        replacement = types.ModuleType(original.__name__, f"The course, under the book's "
                                                           f"{module} names.")
        for name in BONUS.get(module, ()):
            setattr(replacement, name, getattr(original, name))
        for name in book_names(module):
            try:
                setattr(replacement, name, course_object(module, name))
            except AttributeError:
                pass  # the test that imports it fails with "cannot import name"
        sys.modules[original.__name__] = replacement
        setattr(package, module, replacement)


RUNNER = textwrap.dedent("""
    import sys
    import pytest
    from shared import test_book_package as harness
    harness.serve_downloads_from_the_course_data()
    harness.install_the_course_as_the_book()
    import llms_from_scratch.ch04  # the book's names are the course's; bonus, the book's
    from ch04_gpt_model import gpt_model  # the lesson's GPTModel is the book's
    assert llms_from_scratch.ch04.GPTModel is gpt_model.GPTModel
    assert llms_from_scratch.ch04.GPTModelFast.__module__ == "llms_from_scratch.ch04"
    sys.exit(pytest.main(sys.argv[1:]))
""")


def run_book_tests(workdir: Path, tests=BOOK_TESTS) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the book's test files in a fresh interpreter (cwd `workdir`, which the book's
    chapter 2 test writes the-verdict.txt into). Returns the exit code, each test's outcome
    (passed, failed, error: a file that cannot be imported) with its reason, and the output."""
    (workdir / "pytest.ini").write_text("[pytest]\n")  # not the course's options (nbval, xdist)
    report = workdir / "report.xml"
    command = [sys.executable, "-c", RUNNER, "-c", str(workdir / "pytest.ini"),
               "--rootdir", str(PACKAGE_DIR), "-p", "no:cacheprovider", "-q",
               "--continue-on-collection-errors", f"--junitxml={report}", "-k", NOT_BONUS_TESTS,
               *(str(PACKAGE_DIR / "tests" / test) for test in tests)]
    # One thread, as in every test process, but the processor's own kernels rather than the
    # AVX2 ones pinned for the notebooks (shared/tooling/numerics.py): the book's tests compare
    # losses to one decimal, and on an AVX-512 processor its chapter 5 and appendix D tests,
    # which train GPT-2 small's shape, run in three quarters of the time
    env = {name: value for name, value in os.environ.items()
           if name not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=1200)
    output = result.stdout + result.stderr
    return result.returncode, outcomes(report) if report.exists() else {}, output


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """test -> (passed/failed/error/skipped, the reason's last line and the seconds it took),
    from pytest's JUnit XML; a test file that cannot be imported is one `error`."""
    import xml.etree.ElementTree as ET

    found = {}
    for case in ET.parse(report).iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        test = (f"{classname.rpartition('.')[2]}::{name}" if classname
                else name.rpartition(".")[2])
        word, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                word = {"failure": "failed"}.get(child.tag, child.tag)
                lines = (child.text or "").strip().splitlines()
                errors = [line[1:].strip() for line in lines if line.startswith("E ")]
                reason = errors[-1] if errors else (child.get("message") or "")
        found[test] = (word, f"{reason} ({float(case.get('time', 0)):.0f} s)".lstrip())
    return found


# The tests ------------------------------------------------------------------------------

def test_the_course_provides_every_book_name():
    missing = missing_book_names()
    assert not missing, "book names the course does not provide:\n" + "\n".join(
        f"  llms_from_scratch.{module}: {', '.join(names)}" for module, names in missing.items())


def test_the_books_package_tests_pass_against_the_course(tmp_path):
    code, results, output = run_book_tests(tmp_path)
    assert results, output[-6000:]
    failed = {test: result for test, result in results.items() if result[0] != "passed"}
    missing = missing_book_names()
    assert code == 0 and not failed, (
        "the book's tests against the course:\n"
        + "\n".join(f"  {test}: {word} {reason}" for test, (word, reason) in results.items())
        + ("\nbook names missing: " + json.dumps(missing) if missing else "")
        + "\n\n" + output[-6000:])


if __name__ == "__main__":
    import tempfile

    print("missing book names:", json.dumps(missing_book_names(), indent=1))
    with tempfile.TemporaryDirectory() as folder:
        code, results, output = run_book_tests(Path(folder), sys.argv[1:] or BOOK_TESTS)
    print(output[-4000:])
    for test, (word, reason) in results.items():
        print(f"{word:7} {test}  {reason}")
