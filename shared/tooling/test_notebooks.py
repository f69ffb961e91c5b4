"""Tests of the notebook tooling, and repository-wide checks that CI runs with the rest."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import shared
from shared.tooling import notebooks


def make_notebook(path, cells):
    """cells: (source, tags) pairs; a markdown cell when tags is None. Exported cells start
    with the `#| export` marker line."""
    nb = nbformat.v4.new_notebook()
    for i, (source, tags) in enumerate(cells):
        cell = (nbformat.v4.new_markdown_cell(source) if tags is None
                else nbformat.v4.new_code_cell(source))
        cell.id = f"cell-{i}"
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(notebooks.normalize(nb), path)
    return path


@pytest.fixture
def notebook(tmp_path):
    return make_notebook(tmp_path / "lesson.ipynb", [
        ("# A lesson", None),
        ('#| export\n"""Module docstring."""\nimport math', []),
        ("print('scratch work')", []),
        ("#| export\ndef area(r):\n    return math.pi * r * r\n\n_helper = 1\nUNIT = 'm'", []),
        ("area(2)", []),
    ])


def test_export_writes_only_marked_cells_with_header_and_all(notebook):
    assert notebooks.export(notebook)
    module = notebook.with_suffix(".py").read_text()
    assert module.startswith("# Generated from lesson.ipynb")
    assert "#| export" not in module.splitlines()  # the marker lines are dropped
    assert "scratch work" not in module and "area(2)" not in module
    assert "__all__ = [\n    'area',\n    'UNIT',\n]" in module
    namespace = {}
    exec(module, namespace)
    assert namespace["area"](1) == pytest.approx(3.14159, abs=1e-5)


def test_check_passes_on_fresh_export_and_fails_with_diff_on_drift(notebook, capsys):
    notebooks.export(notebook)
    assert notebooks.export(notebook, check=True)
    module = notebook.with_suffix(".py")
    module.write_text(module.read_text().replace("math.pi * r * r", "3 * r * r"))
    assert not notebooks.export(notebook, check=True)
    output = capsys.readouterr().out
    assert "-    return math.pi * r * r" in output and "+    return 3 * r * r" in output
    assert notebooks.main(["check", str(notebook)]) == 1


def test_check_fails_when_module_is_missing(notebook):
    assert not notebooks.export(notebook, check=True)


def test_magics_in_exported_cells_are_rejected(tmp_path):
    nb = make_notebook(tmp_path / "m.ipynb", [("#| export\n%timeit 1 + 1", [])])
    with pytest.raises(ValueError, match="notebook-only syntax"):
        notebooks.export_source(nb)


def test_the_old_export_tag_is_refused_with_the_fix(tmp_path):
    nb = make_notebook(tmp_path / "m.ipynb", [("import math", ["export"])])
    with pytest.raises(ValueError, match="start it with a `#| export` line"):
        notebooks.export_source(nb)


def test_a_named_marker_exports_to_its_own_module_with_cell_references(tmp_path):
    nb = make_notebook(tmp_path / "lesson.ipynb", [
        ("# A lesson\n## 1.1 Areas", None),
        ("#| export\nimport math\n\ndef area(r):\n    return math.pi * r * r", []),
        ("## 1.2 Files", None),
        ("#| export formats\ndef to_text(x):\n    return str(x)", []),
        ("#| export lesson\nUNIT = 'm'", []),  # the notebook's own name: its own module
    ])
    assert notebooks.export(nb)
    lesson, formats = (tmp_path / "lesson.py").read_text(), (tmp_path / "formats.py").read_text()
    assert "# %% lesson.ipynb cell 1, 1.1 Areas\n" in lesson
    assert "# %% lesson.ipynb cell 4, 1.2 Files\n" in lesson and "UNIT = 'm'" in lesson
    assert "to_text" not in lesson and "__all__ = [\n    'area',\n    'UNIT',\n]" in lesson
    assert "# %% lesson.ipynb cell 3, 1.2 Files\n" in formats
    assert "__all__ = [\n    'to_text',\n]" in formats
    assert notebooks.export(nb, check=True)
    (tmp_path / "formats.py").write_text(formats.replace("str(x)", "repr(x)"))
    assert not notebooks.export(nb, check=True)  # drift in a second module is caught too


def test_export_never_overwrites_a_file_it_did_not_write(tmp_path):
    nb = make_notebook(tmp_path / "lesson.ipynb", [("#| export exercise_checks\nx = 1", [])])
    (tmp_path / "exercise_checks.py").write_text("HAND_WRITTEN = True\n")
    with pytest.raises(ValueError, match="exercise_checks.py, which export did not write"):
        notebooks.export(nb)
    assert (tmp_path / "exercise_checks.py").read_text() == "HAND_WRITTEN = True\n"


def test_export_imports_each_shared_name_from_its_defining_module(tmp_path):
    nb = make_notebook(tmp_path / "lesson.ipynb", [
        ("#| export\nimport math\n\nfrom shared import GPTModel, check, set_seed\n"
         "from shared.checks import check_count  # why\n\n"
         "def f():\n    from shared import MultiHeadAttention as MHA\n    return MHA", []),
    ])
    assert notebooks.export(nb)
    module = (tmp_path / "lesson.py").read_text()
    assert ("import math\n\nfrom ch04_gpt_model.final_model import GPTModel\n"
            "from shared.checks import check, check_count  # why\n"
            "from shared.utils import set_seed\n") in module
    assert "    from ch03_attention.attention import MultiHeadAttention as MHA\n" in module
    assert "from shared import" not in module
    assert notebooks.export(nb, check=True)


def test_export_refuses_a_name_shared_does_not_have(tmp_path):
    nb = make_notebook(tmp_path / "lesson.ipynb", [
        ("# 1.1 Areas", None), ("#| export\nfrom shared import no_such_name", [])])
    with pytest.raises(ValueError, match="cell 1, 1.1 Areas.*no_such_name"):
        notebooks.export(nb)


def test_generated_modules_import_the_course_from_defining_modules():
    """Notebooks import through `shared`; their modules name the module behind each name, so
    that the files show what imports what (`shared`'s lazy lookup would hide it)."""
    for notebook in notebooks.chapter_notebooks():
        for path, text in notebooks.export_sources(notebook).items():
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and node.module == "shared":
                    facade_own = {alias.name for alias in node.names} <= set(dir(shared)) - set(
                        shared.chapter_exports()) - set(shared.INFRASTRUCTURE)
                    assert facade_own, f"{path}: line {node.lineno} imports through `shared`"


def test_every_exported_module_is_a_chapter_module_of_shared():
    exported = {f"{path.parent.name}.{path.stem}" for nb in notebooks.chapter_notebooks()
                for path in notebooks.export_sources(nb)}
    assert exported == set(shared.CHAPTER_MODULES)  # a new `#| export foo` is listed there


@pytest.mark.parametrize("marker", ["#| export two words", "#| export not-a-name", "#| exports"])
def test_a_malformed_marker_is_refused_naming_the_cell(tmp_path, marker):
    nb = make_notebook(tmp_path / "m.ipynb", [(f"{marker}\nx = 1", [])])
    with pytest.raises(ValueError, match="cell 0: .*the marker line is"):
        notebooks.export_sources(nb)


def test_check_flags_per_run_metadata(notebook):
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["language_info"]["version"] = "3.11.7"
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00"}
    nbformat.write(nb, notebook)
    notebooks.export(notebook)
    assert not notebooks.is_normalized(notebook)
    assert notebooks.main(["check", str(notebook)]) == 1


def test_run_with_output_writes_the_executed_notebook_elsewhere(tmp_path, monkeypatch, capsys):
    source = make_notebook(tmp_path / "tiny.ipynb", [("# Tiny", None), ("print(6 * 7)", []),
                                                      ("## Part two", None), ("", []),
                                                      ("print(1)", [])])
    before = source.read_bytes()
    # In this process: its environment is restored afterwards, and the repository's stub is left
    # to the export tests (a run rewrites it when it is out of date).
    monkeypatch.setenv(notebooks.TEXT_PROGRESS_ENV, "0")
    monkeypatch.setattr(notebooks, "pin_numerics", lambda: None)
    monkeypatch.setattr(notebooks, "export_stub", lambda: True)
    assert notebooks.main(["run", str(source), "-o", f"{tmp_path / 'runs'}/"]) == 0
    assert source.read_bytes() == before  # the source notebook is untouched
    executed = nbformat.read(tmp_path / "runs" / "tiny.ipynb", as_version=4)
    assert executed.cells[1].outputs[0].text == "42\n"
    assert executed.cells[1].execution_count == 1
    # While it runs, stderr says which code cell starts (an empty one is not run), and no
    # stored output holds those lines
    progress = [line for line in capsys.readouterr().err.splitlines() if "code cell" in line]
    assert [re.sub(r", \d+ s$", "", line) for line in progress] == [
        f"{source}: code cell 1 of 2 (cell 1, Tiny)",
        f"{source}: code cell 2 of 2 (cell 4, Part two)"]
    assert executed.cells[4].outputs[0].text == "1\n"


def test_two_runs_started_together_both_execute_their_notebook(tmp_path):
    """Two `python -m shared.tooling.notebooks run` commands started at the same moment (a
    learner's two background jobs) each execute their notebook: neither one's start-up (the
    export, the stub, Python's bytecode caches, tiktoken's cache) stops the other."""
    import os

    sources = [make_notebook(tmp_path / f"tiny{i}.ipynb",
                             [("# Tiny", None), (f"print({i} * 7)", [])]) for i in (1, 2)]
    env = {**os.environ, "PYTHONPATH": str(notebooks.PROJECT_ROOT)}
    runs = [subprocess.Popen([sys.executable, "-m", "shared.tooling.notebooks", "run", str(source),
                              "-o", str(tmp_path / "runs" / source.name)],
                             cwd=notebooks.PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for source in sources]
    for i, run in enumerate(runs, start=1):
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
        executed = nbformat.read(tmp_path / "runs" / f"tiny{i}.ipynb", as_version=4)
        assert executed.cells[1].outputs[0].text == f"{i * 7}\n"


def test_run_refuses_an_output_that_would_overwrite_a_file(tmp_path, capsys):
    source = make_notebook(tmp_path / "tiny.ipynb", [("print(1)", [])])
    before = source.read_bytes()
    taken = tmp_path / "taken.ipynb"
    taken.write_text("a learner's notebook")
    for output, message in [(source, "is the notebook being run"), (taken, "--overwrite"),
                            (tmp_path / "tiny.txt", "ends with .ipynb"),
                            (tmp_path, "is the notebook being run")]:  # a folder: tiny.ipynb
        with pytest.raises(ValueError, match=message) as refused:
            notebooks.main(["run", str(source), "-o", str(output)])
        assert str(output if output != tmp_path else source) in str(refused.value)
    with pytest.raises(SystemExit):  # --overwrite only with -o
        notebooks.main(["run", str(source), "--overwrite"])
    assert "--overwrite" in capsys.readouterr().err
    assert source.read_bytes() == before and taken.read_text() == "a learner's notebook"


def test_run_documents_its_output_option(capsys):
    with pytest.raises(SystemExit):
        notebooks.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "run NOTEBOOK -o" in help_text and "--overwrite" in help_text
    assert "leaving the notebook as it was" in help_text


# Repository-wide checks --------------------------------------------------------------------

def test_every_chapter_module_matches_its_notebook():
    assert notebooks.chapter_notebooks(), "no chapter notebooks found"
    assert notebooks.main(["check"]) == 0, "run `python -m shared.tooling.notebooks export`"


def test_stored_notebooks_hold_outputs_of_a_real_execution():
    for path in notebooks.chapter_notebooks():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        counts = [c.execution_count for c in code]
        assert None not in counts, f"{path}: unexecuted cells"
        assert counts == list(range(1, len(code) + 1)), f"{path}: not run top to bottom"
        assert nb.metadata.kernelspec.name == "python3"


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(notebooks.PROJECT_ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shared_reexports_every_chapter_name():
    import importlib

    for module_name in shared.present_chapter_modules():
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if shared.chapter_exports()[name] != module_name:  # a book name defined again
                assert name in shared.BOOK_NAMES_REDEFINED + shared.BOOK_NAMES_EXTENDED
                continue
            assert getattr(shared, name) is getattr(module, name)
    namespace = {}
    exec("from shared import *", namespace)
    assert {"fetch", "set_seed", "SimpleTokenizerV2", "BPETokenizer"} <= set(namespace)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        shared.NoSuchThing  # noqa: B018


# Editors see through the lazy facade (shared/__init__.pyi) --------------------------------

def definition_files() -> dict[str, Path]:
    """Every name `shared` exports -> the file that defines it, from the facade's own imports
    and the chapter modules' __all__ (nothing here consults the stub)."""
    import ast
    import importlib.util

    facade = ast.parse((notebooks.PROJECT_ROOT / "shared" / "__init__.py").read_text())
    modules = {alias.asname or alias.name: node.module for node in facade.body
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared.")
               for alias in node.names}
    modules.update(shared.chapter_exports())
    return {name: Path(importlib.util.find_spec(module).origin) for name, module in modules.items()}


def has_course_signature(value) -> bool:
    """A function, or a class whose constructor the course writes (its own __init__, or a
    dataclass's). A class that inherits its constructor from torch (nn.Module's, autograd's
    Function) or Python (Exception's) has no signature of the course's to check, and jedi
    takes seconds to infer torch's."""
    import dataclasses
    import inspect

    if inspect.isfunction(value):
        return True
    code = getattr(getattr(value, "__init__", None), "__code__", None)
    return inspect.isclass(value) and (dataclasses.is_dataclass(value) or (
        code is not None and Path(code.co_filename).is_relative_to(notebooks.PROJECT_ROOT)))


def test_jedi_goes_from_every_shared_name_to_its_definition_with_its_signature():
    import inspect

    import jedi

    files = definition_files()
    assert set(files) == set(shared.__all__)
    # One script that imports and calls every name, as a learner's file would: jedi infers
    # the facade and each chapter module once (a script per name took ~20 s).
    names = sorted(files)
    source = "".join(f"from shared import {name}\n" for name in names)
    source += "".join(f"{name}()\n" for name in names)
    script = jedi.Script(source, path=notebooks.PROJECT_ROOT / "probe.py",  # never written
                         project=jedi.Project(notebooks.PROJECT_ROOT))
    for line, name in enumerate(names, start=len(names) + 1):
        expected = files[name]
        found = script.goto(line, 0, follow_imports=True)
        assert [d.module_path for d in found] == [expected], name
        value = getattr(shared, name)
        if has_course_signature(value):
            signatures = script.get_signatures(line, len(name) + 1)
            assert signatures, f"no signature help for {name}"
            parameters = inspect.signature(value).parameters.values()
            named = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            assert signature_names(signatures[0])[:len(named)] == named, name


def signature_names(signature) -> list[str]:
    """The parameter names jedi shows for a signature, as written in the `def`. Its public
    `params` also spells out what **kwargs is passed on to (heatmap's go to matplotlib's
    imshow, progress_bar's to tqdm), which costs seconds of inferring those libraries and says
    nothing about the facade; jedi's own signature object can leave them unresolved."""
    inner = getattr(signature, "_signature", None)  # private in jedi 0.19-0.20; else public
    if inner is None or not hasattr(inner, "get_param_names"):
        return [p.name for p in signature.params]
    return [p.string_name for p in inner.get_param_names(resolve_stars=False)]


def test_the_stub_is_checked_for_drift(monkeypatch, tmp_path, capsys):
    stale = tmp_path / "__init__.pyi"
    stale.write_text(notebooks.facade_stub_source().replace("GPTModel as GPTModel,\n", ""))
    monkeypatch.setattr(notebooks, "STUB_PATH", stale)
    assert not notebooks.export_stub(check=True)
    assert "-    GPTModel as GPTModel," in capsys.readouterr().out
    assert notebooks.export_stub()
    assert notebooks.export_stub(check=True)


def test_normalize_collapses_the_solutions_but_their_signposts(tmp_path):
    path = make_notebook(tmp_path / "lesson.ipynb", [
        ("## 1.1 A section", None), ("x = 1", []),
        ("## Exercises\n\n### Exercise 1.1: Why?", None), ("answer = None", []),
        ("## Solutions", None), ("### Solution 1.1", None), ("Because of this:", None),
        ("print(2)", []),
    ])
    cells = nbformat.read(path, as_version=4).cells
    assert notebooks.solution_cells(cells) == [5, 6, 7]
    # the heading folds its solution; the cells under it open with it, in one click
    assert [dict(c.metadata) for c in cells] == [{}] * 5 + [
        {"jp-MarkdownHeadingCollapsed": True}, {}, {}]
    cells[1].metadata["jupyter"] = {"source_hidden": True}  # a reader's collapse elsewhere
    nb = nbformat.read(path, as_version=4)
    nb.cells = cells
    assert "jupyter" not in notebooks.normalize(nb).cells[1].metadata


def test_a_solution_cell_before_any_signpost_stays_closed_itself():
    cells = [nbformat.v4.new_markdown_cell("## Solutions"),
             nbformat.v4.new_markdown_cell("All solutions use the model above."),
             nbformat.v4.new_code_cell("model = None"),
             nbformat.v4.new_markdown_cell("### Solution 1.1"),
             nbformat.v4.new_code_cell("print(2)")]
    assert notebooks.solution_folds(cells) == {
        1: {"jupyter": {"source_hidden": True}},
        2: {"jupyter": {"source_hidden": True, "outputs_hidden": True}},
        3: {"jp-MarkdownHeadingCollapsed": True}, 4: {}}


def test_normalize_collapses_the_code_of_cells_tagged_hide_input(tmp_path):
    path = make_notebook(tmp_path / "lesson.ipynb", [
        ("## 1.1 A section", None), ("#| export\ndef f():\n    return 1", ["hide-input"]),
        ("f()", [])])
    cells = nbformat.read(path, as_version=4).cells
    assert cells[1].metadata["jupyter"] == {"source_hidden": True}  # its output stays open
    assert "jupyter" not in cells[2].metadata
    assert notebooks.is_normalized(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["tags"] = []  # the tag removed: the cell opens again
    assert "jupyter" not in notebooks.normalize(nb).cells[1].metadata


def test_normalize_folds_the_section_under_a_heading_tagged_fold_section():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## 1.1 A section"),
                nbformat.v4.new_markdown_cell("### More (beyond the book)"),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_markdown_cell("## 1.2 The next section")]
    nb.cells[1].metadata["tags"] = ["fold-section"]
    folded = [c.metadata.get("jp-MarkdownHeadingCollapsed") for c in notebooks.normalize(nb).cells]
    assert folded == [None, True, None, None]
    nb.cells[1].metadata["tags"] = []  # the tag removed: the section opens again
    assert "jp-MarkdownHeadingCollapsed" not in notebooks.normalize(nb).cells[1].metadata


@pytest.mark.parametrize("notebook_path", notebooks.chapter_notebooks(), ids=notebooks.notebook_id)
def test_every_solution_is_collapsed_in_the_stored_notebook(notebook_path):
    """Working an exercise in JupyterLab does not show the next one's answer; each
    `### Solution N.M` heading stays open, alone in its cell, so a learner finds the one wanted."""
    cells = nbformat.read(notebook_path, as_version=4).cells
    inside = notebooks.solution_cells(cells)
    if notebooks.is_companion(notebook_path) and not inside:
        pytest.skip("a companion without exercises")
    assert inside, f"{notebook_path.name}: no '## Solutions' section"
    signposts = 0
    folds = notebooks.solution_folds(cells)
    for index in inside:
        cell = cells[index]
        kept = {k: v for k, v in cell.metadata.items() if k != "tags"}
        assert kept == folds[index], (
            f"{notebook_path.name}: solution cell {index} is not collapsed: run "
            "`python -m shared.tooling.notebooks normalize`")
        if notebooks.is_signpost(cell):
            signposts += 1
            assert all(line.startswith("### Solution") or not line.strip()
                       for line in cell.source.splitlines()), (
                f"{notebook_path.name}: cell {index} is a heading other than a solution's")
    least = 1 if notebooks.is_companion(notebook_path) else 4  # a companion may have one
    assert signposts >= least, f"{notebook_path.name}: {signposts} '### Solution' signposts"


# What each file of a chapter folder is (README.md, "Layout") ------------------------------------

HAND_WRITTEN = {"__init__.py", "conftest.py", "exercise_checks.py", "draw_figures.py"}
README_LAYOUT = (notebooks.PROJECT_ROOT / "README.md").read_text(encoding="utf-8").partition(
    "## Layout")[2].partition("\n## ")[0]


@pytest.mark.parametrize("chapter", sorted(notebooks.PROJECT_ROOT.glob("ch0*/")),
                         ids=lambda p: p.name)
def test_every_file_of_a_chapter_is_of_a_kind_the_readme_names(chapter):
    for path in sorted(chapter.glob("*.py")):
        first = path.read_text(encoding="utf-8").partition("\n")[0]
        if first.startswith("# Generated from "):
            assert f"{chapter.name}.{path.stem}" in shared.CHAPTER_MODULES, path
        elif not (path.name in HAND_WRITTEN or path.name.startswith(("test_", "benchmark_"))):
            assert f"{chapter.name}/{path.name}" in README_LAYOUT, (
                f"{path.relative_to(notebooks.PROJECT_ROOT)}: a hand-written file the README's "
                "Layout does not name (say what it is there, or name it as its kind)")
    lessons = [nb.name for nb in chapter.glob("*.ipynb") if not notebooks.is_companion(nb)]
    assert len(lessons) == 1, f"{chapter.name}: one lesson notebook, not {lessons}"


def test_the_readme_chapter_table_names_every_notebook():
    """README.md's chapter table: one row per notebook, lesson and companions."""
    text = (notebooks.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    table = text.partition("## Chapters")[2].partition("\n\n")[2].partition("\n\n")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and ".ipynb" in line]
    named = [path for row in rows for path in re.findall(r"\[`(ch0[^`]+\.ipynb)`\]", row)]
    expected = [nb.relative_to(notebooks.PROJECT_ROOT).as_posix()
                for nb in notebooks.chapter_notebooks()]
    assert sorted(named) == sorted(expected), "run the table's rows past the chapter folders"
