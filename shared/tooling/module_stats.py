"""How much of each chapter module is the lesson, and how much is input checking.

    python -m shared.tooling.module_stats          # a table of every chapter module and script
    python -m shared.tooling.module_stats --check  # status 1 if anything is over its target

Per module: code lines (not blank, not a comment, not a docstring), validation lines and their
share, and the number of public names (`__all__`). A line counts as validation when it belongs
to:

* a function whose name says it checks (`check_*`, `_check_*`, `validate_*`, `*_problems`),
  unless it is annotated `-> bool` (the book's `check_if_running` answers a question);
* a call statement of such a function (`check_fits_context(n, context_length)`), or an assignment of
  its result (`cfg = validate_config(cfg)`);
* an `if` without `else` whose body ends by raising (`if x < 0: raise ValueError(...)`);
* an `assert`, or an `except` clause that only re-raises (a clearer error for a library's).

The targets, hard (no ceiling above them): checks sit at the boundary, so they are a small
part of the code. A lesson module (the one its chapter's lesson notebook exports) keeps its share
at most 10%, every other module (companion or script) at most 12%, all of them together at most
8%, and the self-contained copy a learner takes of a chapter (`notebooks standalone CHAPTER`,
which carries the checks it calls from shared/checks.py) at most 12%.
`shared/tooling/test_module_stats.py` fails when one is exceeded. `shared/checks.py`,
`shared/architecture.py` and `shared/safe_files.py` are the checks and the file safety the
modules call, so they are counted in the standalone copies that use them and not on their own.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import tokenize
from pathlib import Path

from shared.data import PROJECT_ROOT
from shared.tooling.command_line import CommandParser, run_main


# Percent of code lines that are checks, at most.
LESSON_TARGET = 10.0  # a chapter's lesson module
OTHER_TARGET = 12.0  # a companion module or a script
PROJECT_TARGET = 8.0  # every module and script together
STANDALONE_TARGET = 12.0  # a chapter's standalone copy

# What is still over its target, with the share it may not exceed until its checks are cut: a
# module's name, "all" for every module together, or "standalone CHAPTER" for a copy. An entry
# only goes down and leaves once it is within its target (the test fails otherwise); while this
# holds anything, the targets above are not yet met.
NOT_YET_WITHIN_TARGET: dict[str, float] = {}


VALIDATOR = re.compile(r"_?(check|validate)\w*|\w*_problems")


def _span(node: ast.AST) -> set[int]:
    return set(range(node.lineno, node.end_lineno + 1))


def _docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines |= _span(body[0])
    return lines


def _comment_or_blank_lines(source: str) -> set[int]:
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                              tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines |= set(range(token.start[0], token.end[0] + 1))
    return set(range(1, len(source.splitlines()) + 1)) - code_lines


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _answers(function: ast.FunctionDef) -> bool:
    """Whether `function` is a question (annotated `-> bool`) rather than a check."""
    return isinstance(function.returns, ast.Name) and function.returns.id == "bool"


def validation_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and VALIDATOR.fullmatch(
                node.name) and not _answers(node):
            lines |= _span(node)
        elif isinstance(node, (ast.Expr, ast.Assign)) and isinstance(node.value, ast.Call) \
                and VALIDATOR.fullmatch(_called_name(node.value)):
            lines |= _span(node)
        elif isinstance(node, ast.If) and not node.orelse and isinstance(node.body[-1], ast.Raise):
            lines |= _span(node)
        elif isinstance(node, ast.Assert):
            lines |= _span(node)
        elif isinstance(node, ast.ExceptHandler) and all(isinstance(s, ast.Raise)
                                                         for s in node.body):
            lines |= _span(node)
    return lines


def module_stats(path: Path) -> dict:
    return source_stats(path.read_text(encoding="utf-8"))


def source_stats(source: str) -> dict:
    tree = ast.parse(source)
    not_code = _comment_or_blank_lines(source) | _docstring_lines(tree)
    code = set(range(1, len(source.splitlines()) + 1)) - not_code
    validation = validation_lines(tree) & code
    public = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__"
                                                for t in node.targets):
            public = ast.literal_eval(node.value)
    return {"lines": len(source.splitlines()), "code": len(code),
            "validation": len(validation), "public": len(public)}


def chapter_module_paths() -> list[tuple[str, Path]]:
    from shared import CHAPTER_MODULES

    paths = []
    for name in CHAPTER_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            paths.append((name, Path(spec.origin)))
    return paths


def script_paths() -> list[tuple[str, Path]]:
    """The hand-written command lines a learner runs (`pretrain.py`), by module name."""
    return [(f"{path.parent.name}.{path.stem}", path)
            for path in sorted(PROJECT_ROOT.glob("ch0*/pretrain.py"))]


def is_lesson_module(name: str) -> bool:
    """Whether `name` is a lesson module: the one named after its chapter's lesson notebook."""
    from shared.tooling.notebooks import lesson_notebook

    chapter, module = name.split(".")
    return lesson_notebook(PROJECT_ROOT / chapter).stem == module


def share(stats: dict) -> float:
    return 100 * stats["validation"] / stats["code"] if stats["code"] else 0.0


def target(name: str) -> float:
    """The share module `name` may not exceed."""
    return LESSON_TARGET if is_lesson_module(name) else OTHER_TARGET


def standalone_rows() -> list[tuple[str, dict]]:
    """Each chapter's standalone copy, measured like a module."""
    from shared.tooling.standalone import standalone_source

    rows = []
    for chapter in sorted(p.name for p in PROJECT_ROOT.glob("ch0*_*") if p.is_dir()):
        source = standalone_source(chapter)
        rows.append((f"standalone {chapter}", source_stats(source)))
    return rows


def total(rows: list[tuple[str, dict]]) -> dict:
    return {key: sum(s[key] for _, s in rows) for key in ("lines", "code", "validation", "public")}


def limit(name: str, aim: float) -> float:
    """What `name` may not exceed: its target `aim`, or its entry in NOT_YET_WITHIN_TARGET."""
    return max(aim, NOT_YET_WITHIN_TARGET.get(name, aim))


def over_target(rows: list[tuple[str, dict]],
                copies: list[tuple[str, dict]] | None = None) -> list[str]:
    """What exceeds its target: a module, all modules together, or a standalone copy."""
    problems = [f"{name}: {share(s):.1f}% of its code lines are checks, over its target of "
                f"{target(name):.1f}% (keep only the checks that prevent a silent wrong result, "
                "a far-away failure, a hang or a lost file)"
                for name, s in rows if share(s) > limit(name, target(name))]
    if rows and share(total(rows)) > limit("all", PROJECT_TARGET):
        problems.append(f"all modules: {share(total(rows)):.1f}% of their code lines are checks, "
                        f"over the project's target of {PROJECT_TARGET:.1f}%")
    problems += [f"{name}: {share(s):.1f}% of its code lines are checks, over the standalone "
                 f"target of {STANDALONE_TARGET:.1f}%"
                 for name, s in copies or () if share(s) > limit(name, STANDALONE_TARGET)]
    return problems


def shares(rows, copies) -> dict[str, float]:
    """Every measured share by name, the total as "all"."""
    return {**{name: share(s) for name, s in rows + copies}, "all": share(total(rows))}


def all_rows() -> list[tuple[str, dict]]:
    return [(name, module_stats(path)) for name, path in chapter_module_paths() + script_paths()]


def _table(rows, targets) -> None:
    for (name, s), limit in zip(rows, targets):
        print(f"{name:40} {s['lines']:6} {s['code']:6} {s['validation']:11} "
              f"{share(s):5.1f}% {limit:6.1f}% {s['public']:7}")


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m shared.tooling.module_stats",
                           description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a module, the total or a standalone copy is "
                             "over its target")
    args = parser.parse_args(argv)
    rows, copies = all_rows(), standalone_rows()
    print(f"{'module':40} {'lines':>6} {'code':>6} {'validation':>11} {'share':>6} "
          f"{'target':>7} {'public':>7}")
    _table(rows, [target(name) for name, _ in rows])
    _table([("all", total(rows))], [PROJECT_TARGET])
    print()
    _table(copies, [STANDALONE_TARGET] * len(copies))
    if NOT_YET_WITHIN_TARGET:
        print("\nnot yet within target, may not exceed: " + ", ".join(
            f"{name} {cap:.1f}%" for name, cap in NOT_YET_WITHIN_TARGET.items()))
    if args.check:
        problems = over_target(rows, copies)
        for line in problems:
            print(line)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    run_main(main)
