"""The README's set-up is what CI runs, it installs what the tests need, and every chapter
notebook starts with the Colab cell (shared/tooling/colab.py), which does nothing off Colab."""

import ast
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from shared.data import PROJECT_ROOT
from shared.tooling import colab, notebooks


README = PROJECT_ROOT / "README.md"
CI_RUN = PROJECT_ROOT / ".ci" / "run"


def readme_block(marker: str) -> list[str]:
    """The command lines of the README's ```bash block right below `<!-- ci: marker -->`."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(rf"<!-- ci: {marker} -->\n```bash\n(.*?)```\n", text, re.S)
    assert len(blocks) == 1, f"README.md needs one ```bash block below <!-- ci: {marker} -->"
    return [line for line in blocks[0].splitlines() if line.strip()]


# The README's two commands and CI ------------------------------------------------------------

WINDOWS = pytest.mark.skipif(sys.platform == "win32", reason=".ci/run is a bash script")


@WINDOWS
def test_ci_runs_the_readmes_set_up_and_test_command_and_the_browser_only():
    result = subprocess.run(["bash", str(CI_RUN), "--dry-run"], capture_output=True, text=True,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    setup, test = readme_block("set-up"), readme_block("test")
    cpu_torch = [line for line in setup if line.startswith(
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")]
    assert len(cpu_torch) == 1, "the set-up's CPU torch line is what CI replaces"
    expected = [("pip install torch==2.13.0" if line in cpu_torch else line) for line in setup]
    browser = re.search(r"^BROWSER_LINE='(.*)'$", CI_RUN.read_text(), re.M)[1]
    assert "apt-get install -y -qq chromium" in browser  # Debian's, for test_chat_page.py
    assert result.stdout.splitlines() == expected + [browser] + test
    assert test == ["pytest"]


@WINDOWS
def test_ci_refuses_a_readme_without_the_marked_blocks(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(CI_RUN, tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(README.read_text(encoding="utf-8").replace(
        "<!-- ci: set-up -->", "<!-- set-up -->"), encoding="utf-8")
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run"), "--dry-run"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "blocks marked '<!-- ci: set-up -->'" in result.stderr
    (tmp_path / "README.md").write_text(README.read_text(encoding="utf-8").replace(
        "--index-url https://download.pytorch.org/whl/cpu", ""), encoding="utf-8")
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run"), "--dry-run"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "needs one line starting" in result.stderr


def test_the_set_up_installs_the_requirements_and_the_books_package():
    setup = "\n".join(readme_block("set-up"))
    assert "pip install -r requirements.txt" in setup
    book = re.search(r"^pip install --no-deps llms-from-scratch==(\S+)", setup, re.M)
    assert book, "the book's package, which the tests compare the course with"
    import llms_from_scratch  # the tests' reference, installed by that line
    assert llms_from_scratch.__file__


def test_no_test_skips_for_a_package_the_set_up_installs():
    """Every package the tests use is installed by the README's set-up, so a missing one is a
    failure, not a skip: no test file calls pytest.importorskip."""
    offenders = []
    for path in sorted(PROJECT_ROOT.glob("**/test_*.py")):
        if any(part.startswith(".") or part in ("data", "build") for part in
               path.relative_to(PROJECT_ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "importorskip":
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == [], f"import these plainly: {offenders}"


# The Colab cell --------------------------------------------------------------------------------

@pytest.mark.parametrize("notebook", notebooks.chapter_notebooks(),
                         ids=notebooks.notebook_id)
def test_every_chapter_notebook_starts_with_the_colab_cell(notebook):
    nb = nbformat.read(notebook, as_version=4)
    index = colab.first_code_cell(nb)
    assert index == 1 and nb.cells[0].cell_type == "markdown", "right after the title"
    cell = nb.cells[index]
    assert cell.source == colab.colab_cell(notebook.parent.name), (
        f"run `python -m shared.tooling.colab {notebook.relative_to(PROJECT_ROOT)}`")
    assert cell.outputs == [] and cell.metadata.get("tags", []) == []  # nbval runs it


def test_off_colab_the_cell_does_nothing(capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    namespace = {}
    exec(colab.colab_cell("ch02_text_data"), namespace)
    assert set(namespace) == {"__builtins__", "sys"}
    assert capsys.readouterr() == ("", "")


@pytest.fixture
def on_colab(tmp_path, monkeypatch):
    """A fake Colab: google.colab imported, /content in tmp_path, and pip only recorded."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    content = tmp_path / "content"
    content.mkdir()
    pip_calls = []
    real_run = subprocess.run

    def run(command, **kwargs):
        if command[:3] == [sys.executable, "-m", "pip"]:
            pip_calls.append((command[3:], kwargs["cwd"], kwargs.get("input")))
            return subprocess.CompletedProcess(command, 0)
        return real_run(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)

    def run_cell(chapter="ch04_gpt_model", url=""):
        source = colab.colab_cell(chapter).replace("/content", str(content))
        exec(source.replace('COURSE_GIT_URL = ""', f"COURSE_GIT_URL = {url!r}"), {})

    return types.SimpleNamespace(content=content, pip_calls=pip_calls, run_cell=run_cell)


def make_course(folder):
    (folder / "shared" / "tooling").mkdir(parents=True)
    (folder / "shared" / "tooling" / "colab.py").write_text("")
    (folder / "ch04_gpt_model").mkdir()
    (folder / "ch04_gpt_model" / "gpt_model.ipynb").write_text("{}")
    (folder / "requirements.txt").write_text(
        (PROJECT_ROOT / "requirements.txt").read_text(encoding="utf-8"))
    return folder


def installs_the_course_part(pip_call, course):
    """The pip call installs requirements.txt above its Colab line: the course, not Jupyter."""
    arguments, cwd, needs = pip_call
    assert arguments == ["install", "--quiet", "-r", "/dev/stdin"] and cwd == str(course)
    lines = [line.split(">=")[0] for line in needs.splitlines() if not line.startswith("#")]
    assert "-e ." in lines and "tiktoken" in lines and "torch" in lines
    assert not {"jupyterlab", "ipykernel", "pytest"} & set(lines)
    return True


def test_on_colab_the_cell_uses_a_copy_already_there(on_colab):
    course = make_course(on_colab.content / "my-course")
    on_colab.run_cell()
    assert len(on_colab.pip_calls) == 1
    assert installs_the_course_part(on_colab.pip_calls[0], course)
    assert sys.path[0] == str(course)
    assert Path.cwd() == course / "ch04_gpt_model"
    on_colab.run_cell()  # run again (Run All twice): installed once
    assert len(on_colab.pip_calls) == 1


def test_on_colab_a_copy_in_content_comes_before_one_on_drive(on_colab, capsys):
    make_course(on_colab.content / "drive" / "MyDrive" / "old-course")  # sorts first by path
    fresh = make_course(on_colab.content / "llm-course")
    on_colab.run_cell()
    assert sys.path[0] == str(fresh) and installs_the_course_part(on_colab.pip_calls[0], fresh)
    assert f"the course: {fresh}" in capsys.readouterr().out


def test_on_colab_the_cell_clones_the_address_it_is_given(on_colab, tmp_path):
    origin = make_course(tmp_path / "origin" / "llm-course.git")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(origin)]
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "course"]):
        subprocess.run(git + command, check=True)
    on_colab.run_cell(url=origin.as_uri())  # ends in .git, as a git host's address does
    clone = on_colab.content / "llm-course"
    assert (clone / "shared" / "tooling" / "colab.py").is_file() and sys.path[0] == str(clone)
    assert len(on_colab.pip_calls) == 1
    assert installs_the_course_part(on_colab.pip_calls[0], clone)


def test_on_colab_without_a_copy_or_an_address_the_cell_says_what_to_do(on_colab):
    with pytest.raises(RuntimeError, match="write its git address in COURSE_GIT_URL"):
        on_colab.run_cell()
    assert on_colab.pip_calls == []


def test_the_insert_command_adds_the_cell_once_and_keeps_the_run_in_order(tmp_path):
    chapter = tmp_path / "ch09_lesson"
    chapter.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Chapter 9"),
                nbformat.v4.new_code_cell("#| export\nx = 1", execution_count=1),
                nbformat.v4.new_code_cell("print(x)", execution_count=2)]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    path = chapter / "lesson.ipynb"
    nbformat.write(notebooks.normalize(nb), path)
    assert colab.main([str(path)]) == 0
    assert not colab.insert_colab_cell(path)  # already there
    stored = nbformat.read(path, as_version=4)
    assert [c.source for c in stored.cells][1] == colab.colab_cell("ch09_lesson")
    assert [c.get("execution_count") for c in stored.cells] == [None, 1, 2, 3]
    assert [c.id for c in stored.cells] == ["c0", colab.CELL_ID, "c1", "c2"]
    assert "# %% lesson.ipynb cell 2, Chapter 9" in (chapter / "lesson.py").read_text()
    assert notebooks.is_normalized(path)
