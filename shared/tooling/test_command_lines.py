"""Every command line of the course ends a user's mistake in one line and a non-zero status.

Usage errors (a bad flag) give status 2, other mistakes (a folder for a notebook, a cell that
does not parse, a missing folder) status 1; none of them a traceback. A few cases run as real
processes, as a user would; the rest run a script's `__main__` block in this process (runpy),
which is the same code without the second or two of importing torch again.
"""

import argparse
import ast
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from shared.data import PROJECT_ROOT, DataFetchError
from shared.tooling import notebooks
from shared.tooling.command_line import (
    CommandParser,
    HelpFormatter,
    UsageError,
    number_arg,
    path_arg,
    run_main,
)
from shared.tooling.test_notebooks import make_notebook


# Every module of the project with a `__main__` block: a command line. Test files' blocks are
# debugging aids.
def main_block(path) -> ast.If | None:
    """The `if __name__ == "__main__":` block of the module at `path`, if it has one."""
    return next((node for node in ast.parse(path.read_text(encoding="utf-8")).body
                 if isinstance(node, ast.If)
                 and ast.unparse(node.test) == "__name__ == '__main__'"), None)


COMMAND_LINES = sorted(
    path.relative_to(PROJECT_ROOT).as_posix()
    for path in [*PROJECT_ROOT.glob("shared/**/*.py"), *PROJECT_ROOT.glob("ch*/*.py")]
    if not path.name.startswith("test_") and main_block(path))


def run_command(*args, cwd=PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def one_line(stderr: str) -> str:
    """The single line of `stderr`, or a failure showing all of it."""
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    return stderr.strip()


def a_lesson_with_a_syntax_error(folder):
    return make_notebook(folder / "lesson.ipynb", [
        ("# A lesson\n## 1.2 Areas", None),
        ("#| export\nimport math\n\ndef area(r:\n    return math.pi * r * r", []),
    ])


def test_the_command_lines_are_found():
    assert {"shared/tooling/notebooks.py", "ch02_text_data/benchmark_bpe.py",
            "ch07_instructions/draw_figures.py"} <= set(COMMAND_LINES)


@pytest.mark.parametrize("path", COMMAND_LINES)
def test_every_command_line_runs_its_main_through_run_main(path):
    calls = {ast.unparse(node.func) for node in ast.walk(main_block(PROJECT_ROOT / path))
             if isinstance(node, ast.Call)}
    assert "run_main" in calls, f"{path}: end `__main__` with run_main(main)"


# Real processes ----------------------------------------------------------------------------

def test_a_folder_for_a_notebook_names_it_and_a_notebook_in_it():
    result = run_command("-m", "shared.tooling.notebooks", "export", "ch05_pretraining")
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "shared.tooling.notebooks: ch05_pretraining is a folder, not a notebook (give a .ipynb "
        "path, e.g. ch05_pretraining/pretraining.ipynb)")


def test_a_syntax_error_in_an_exported_cell_names_the_notebook_and_the_cell(tmp_path):
    notebook = a_lesson_with_a_syntax_error(tmp_path)
    result = run_command("-m", "shared.tooling.notebooks", "export", notebook)
    assert result.returncode == 1
    assert one_line(result.stderr) == (  # line 4 of the cell as the notebook shows it
        f"shared.tooling.notebooks: {notebook} cell 1, 1.2 Areas, line 4: '(' was never closed: "
        "def area(r:")
    assert not (tmp_path / "lesson.py").exists()


def test_standalone_into_a_missing_folder_names_the_folder(tmp_path):
    output = tmp_path / "not" / "there" / "gpt.py"
    result = run_command("-m", "shared.tooling.notebooks", "standalone", "ch04_gpt_model",
                         "-o", output)
    assert result.returncode == 1
    assert f"there is no folder {output.parent}" in one_line(result.stderr)


def test_a_bad_flag_is_one_usage_line_with_status_2():
    result = run_command("ch02_text_data/benchmark_bpe.py", "--repeats", "0")
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "benchmark_bpe.py: error: argument --repeats: 0 must be at least 1 (see --help)")


# The notebooks command line, in this process ------------------------------------------------

def notebooks_command(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: notebooks.main([str(a) for a in argv]), prog="shared.tooling.notebooks")
    return exit_.value.code, one_line(capsys.readouterr().err)


@pytest.mark.parametrize("text, problem", [
    ("{", "is not a notebook: not JSON (Expecting property name"),
    ("[1, 2]", 'is not a notebook: its JSON has no list of "cells"'),
    ('{"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
     "is not a valid notebook: "),
])
def test_a_file_that_is_not_a_notebook_is_named(tmp_path, capsys, text, problem):
    path = tmp_path / "lesson.ipynb"
    path.write_text(text)
    status, line = notebooks_command(capsys, "check", path)
    assert status == 1 and line.startswith(f"shared.tooling.notebooks: {path} {problem}")


def test_a_module_for_a_notebook_points_to_the_notebook(capsys):
    status, line = notebooks_command(capsys, "export", "ch02_text_data/text_data.py")
    assert status == 1 and line == (
        "shared.tooling.notebooks: ch02_text_data/text_data.py is not a notebook (give a .ipynb "
        "path, e.g. ch02_text_data/text_data.ipynb)")


def test_a_missing_notebook_is_named(tmp_path, capsys):
    status, line = notebooks_command(capsys, "export", tmp_path / "lesson.ipynb")
    assert status == 1 and f"{tmp_path / 'lesson.ipynb'}: no such notebook" in line


def test_every_path_is_checked_before_any_module_is_written(tmp_path, capsys):
    good = make_notebook(tmp_path / "good.ipynb", [("#| export\nx = 1", [])])
    status, line = notebooks_command(capsys, "export", good, tmp_path)
    assert status == 1 and f"{tmp_path} is a folder" in line
    assert not (tmp_path / "good.py").exists()


def test_a_syntax_error_in_a_cell_is_a_syntax_error_naming_the_cell(tmp_path):
    notebook = a_lesson_with_a_syntax_error(tmp_path)
    with pytest.raises(SyntaxError, match=r"lesson.ipynb cell 1, 1.2 Areas, line 4: '\('"):
        notebooks.export(notebook)


def test_standalone_names_an_unknown_chapter_and_the_known_ones(capsys):
    status, line = notebooks_command(capsys, "standalone", "ch04_gpt")
    assert status == 1 and "'ch04_gpt'" in line and "ch04_gpt_model" in line


def test_standalone_into_a_folder_asks_for_a_file(tmp_path, capsys):
    status, line = notebooks_command(capsys, "standalone", "ch04_gpt_model", "-o", tmp_path)
    assert status == 1 and f"-o {tmp_path} is a folder" in line


@pytest.mark.parametrize("argv, problem", [
    (["standalone", "ch03_attention", "ch04_gpt_model"], "standalone takes one chapter folder"),
    (["export", "-o", "x.py"], "-o/--output is for run and standalone only, not export"),
    (["exports"], "invalid choice: 'exports'"),
])
def test_usage_errors_are_one_line_with_status_2(capsys, argv, problem):
    status, line = notebooks_command(capsys, *argv)
    assert status == 2 and problem in line
    assert line.startswith("python -m shared.tooling.notebooks: error: ")


# The chapter scripts, in this process --------------------------------------------------------

@pytest.mark.parametrize("script, args, status, problem", [
    ("ch05_pretraining/benchmark_blocks.py", ["--seeds", "-1"],
     2, "argument --seeds: -1 must be at least 0 and at most 4294967295"),
    ("ch05_pretraining/benchmark_book_run.py", ["--only", "slow"],
     2, "argument --only: invalid choice: 'slow'"),
    ("ch05_pretraining/benchmark_generation.py", ["--size", "gpt2-smal"],
     2, "argument --size: invalid choice: 'gpt2-smal'"),
    ("ch05_pretraining/benchmark_open_models.py", ["--new-tokens", "x"],
     2, "argument --new-tokens: 'x' is not an integer"),
    ("ch05_pretraining/benchmark_training.py", ["--device", "gpu"],
     2, "argument --device: 'gpu' is not a torch device"),
    ("ch07_instructions/benchmark_gpu_memory.py", ["--memory-limit", "x"],
     2, "argument --memory-limit: 'x' is not a finite number"),
    ("ch06_classification/lora_learning_rates.py", ["abc"],
     2, "argument lr: 'abc' is not a finite number"),
    ("shared/tooling/module_stats.py", ["extra"], 2, "unrecognized arguments: extra"),
    ("ch07_instructions/chat_page.py", ["--port", "0"],
     2, "argument --port: 0 must be at least 1 and at most 65535"),
])
def test_a_script_ends_a_bad_argument_in_one_line(monkeypatch, capsys, script, args, status,
                                                  problem):
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(PROJECT_ROOT / script), run_name="__main__")
    assert exit_.value.code == status
    assert problem in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("script", sorted(PROJECT_ROOT.glob("ch*/draw_figures.py")),
                         ids=lambda p: p.parent.name)
def test_a_figure_that_cannot_be_written_is_one_line(monkeypatch, capsys, script):
    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("shared.tooling.diagrams.Diagram.save", refuse)
    monkeypatch.setattr(sys, "argv", [str(script)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"draw_figures.py: {script.parent / 'figures'}/")
    assert line.endswith(".svg: Permission denied")


# run_main itself ---------------------------------------------------------------------------

def ending(capsys, error: BaseException) -> tuple[int, str]:
    def main():
        raise error
    with pytest.raises(SystemExit) as exit_:
        run_main(main, prog="tool")
    return exit_.value.code, capsys.readouterr().err


def test_run_main_exits_with_what_main_returns():
    for returned, status in [(None, None), (0, 0), (1, 1)]:  # None: status 0
        with pytest.raises(SystemExit) as exit_:
            run_main(lambda returned=returned: returned)
        assert exit_.value.code == status


def test_ctrl_c_is_one_line_and_status_130(capsys):
    assert ending(capsys, KeyboardInterrupt()) == (130, "tool: interrupted\n")


def test_an_os_error_names_the_path_first(capsys):
    error = FileNotFoundError(2, "No such file or directory", "data/x.txt")
    assert ending(capsys, error) == (1, "tool: data/x.txt: No such file or directory\n")


def test_data_that_cannot_be_fetched_is_its_message_without_a_traceback(capsys):
    status, err = ending(capsys, DataFetchError("could not fetch dataset 'x'. Tried:\n  - y"))
    assert status == 1 and err == "tool: could not fetch dataset 'x'. Tried:\n  - y\n"


def test_a_usage_error_is_one_line_and_status_2(capsys):
    assert ending(capsys, UsageError("--min-lr 1.0 is above --lr 0.1")) == (
        2, "tool: error: --min-lr 1.0 is above --lr 0.1 (see --help)\n")


def test_a_bug_keeps_its_traceback():
    def main():
        raise RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):
        run_main(main)


# The parser and its argument types -----------------------------------------------------------

@pytest.mark.parametrize("parse, text, problem", [
    (number_arg(int, 1), "0", "0 must be at least 1"),
    (number_arg(int, 1), "2.5", "'2.5' is not an integer"),
    (number_arg(float, 0), "nan", "'nan' is not a finite number"),
    (number_arg(float, 0), "-inf", "'-inf' is not a finite number"),
    (number_arg(float, 0, 1, open_high=True), "1", "1.0 must be at least 0 and less than 1"),
    (number_arg(float, 0, 1, open_low=True, open_high=True), "0",
     "0.0 must be greater than 0 and less than 1"),
    (number_arg(int, 0, 9), "10", "10 must be at least 0 and at most 9"),
    (number_arg(float, 0, float32=True), "1e39",
     "1e+39 is beyond float32's range (at most 3.4e+38), in which training computes"),
])
def test_number_arg_names_the_value_and_what_is_valid(parse, text, problem):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(text)
    assert str(refused.value) == problem


def test_number_arg_takes_the_bounds_it_allows():
    assert number_arg(int, 1)("1") == 1 and number_arg(float, 0, 1)("1") == 1.0
    assert number_arg(float)("1e39") == 1e39  # float32 only when asked


def test_path_arg_refuses_an_empty_path():
    assert path_arg("runs/a") == Path("runs/a")
    with pytest.raises(argparse.ArgumentTypeError, match="an empty path"):
        path_arg(" ")


def test_a_raising_parser_raises_a_usage_error_and_help_shows_defaults_not_none():
    parser = CommandParser(prog="tool", formatter_class=HelpFormatter, raise_errors=True)
    parser.add_argument("--steps", type=number_arg(int, 1), default=10, help="steps")
    parser.add_argument("--name", help="a name")
    with pytest.raises(UsageError, match="argument --steps: 0 must be at least 1"):
        parser.parse_args(["--steps", "0"])
    shown = " ".join(parser.format_help().split())
    assert "steps (default: 10)" in shown and "a name" in shown and "None" not in shown
