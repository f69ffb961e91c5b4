"""No notebook uses an exported name before the cell that exports it.

A learner reads a chapter top to bottom: a function must be taught (exported) before any cell
calls it. The rule, kept simple enough to state here:

- The names a notebook exports are the public top-level names (classes, functions, assigned
  names) of its cells whose first line is `#| export` or `#| export <module>`.
- A code cell *uses* a name when it loads it: `name`, `shared.name` or `<module>.name` for a
  chapter module (`pretraining.name`).
- Importing is not using: `from shared import name` (or from a chapter module) at the top of
  a notebook only makes the name available; it counts where a later cell loads it.
- A name the notebook binds itself first (a draft `def`, an assignment, an import from a
  library; earlier or in the same cell) is the notebook's own object until the export:
  loading it is not a use of the export.
- A use inside a function body counts where the function is called: a top-level function
  (of any code cell) carries the names its body loads, and a cell that loads the function
  uses them too (transitively). Class bodies count the same way through the class name.
- Anything else (a name in a string, `getattr`, a method reached through an object) is not
  traced.

Each violation names the notebook, the name, the cell that first uses it with its section,
and the cell that exports it with its section. `python shared/test_first_use.py` prints them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from shared import CHAPTER_MODULES
from shared.tooling import notebooks


COURSE_MODULES = ("shared", "ch0")  # imports from these hand on exports; they do not shadow
COURSE_NAMESPACES = {"shared", *(module.rpartition(".")[2] for module in CHAPTER_MODULES)}


def section_of(cells, index: int) -> str:
    """The last markdown heading at or before cell `index` (the cell's section)."""
    for cell in reversed(cells[:index + 1]):
        headings = [line for line in cell.source.splitlines() if line.startswith("#")]
        if cell.cell_type == "markdown" and headings:
            return headings[-1].lstrip("#").strip()
    return ""


class _Uses(ast.NodeVisitor):
    """What one cell loads at run time (`now`), binds at top level (`bound`), and the names each
    top-level function or class loads in its body (`deferred`)."""

    def __init__(self):
        self.now: set[str] = set()
        self.bound: set[str] = set()
        self.imported: set[str] = set()  # bound by an import from the course (no shadowing)
        self.deferred: dict[str, set[str]] = {}

    def cell(self, tree: ast.Module):
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                loads = set()
                for child in (node.body if isinstance(node, ast.ClassDef) else [node]):
                    inner = _Uses()
                    inner.visit_body(child)
                    loads |= inner.now - _locals(child, inner)
                # Decorators, defaults and base classes run when the definition runs.
                for expr in [*node.decorator_list, *getattr(node, "bases", []),
                             *_defaults(node)]:
                    self.visit(expr)
                self.deferred[node.name] = loads
                self.bound.add(node.name)
            else:
                self.visit(node)

    def visit_body(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in node.body:
                self.visit(child)
            for expr in [*node.decorator_list, *_defaults(node)]:
                self.visit(expr)
        else:
            self.visit(node)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self.now.add(node.id)
        else:
            self.bound.add(node.id)

    def visit_Attribute(self, node):
        if (isinstance(node.value, ast.Name) and node.value.id in COURSE_NAMESPACES
                and isinstance(node.ctx, ast.Load)):
            self.now.add(node.attr)  # shared.name, pretraining.name (not an object's method)
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            self.bound.add((alias.asname or alias.name).split(".")[0])

    def visit_ImportFrom(self, node):
        course = (node.module or "").startswith(COURSE_MODULES) or node.level > 0
        for alias in node.names:
            (self.imported if course else self.bound).add(alias.asname or alias.name)

    def visit_FunctionDef(self, node):  # a nested def: its body runs when it is called
        self.bound.add(node.name)

    def visit_AsyncFunctionDef(self, node):
        self.bound.add(node.name)

    def visit_Lambda(self, node):
        self.visit(node.body)


def _locals(node, uses: _Uses) -> set[str]:
    """A function's own names: its parameters and what its body binds (not a global's use)."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return set()
    args = node.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs,
              *([args.vararg] if args.vararg else []), *([args.kwarg] if args.kwarg else [])]
    return uses.bound | {a.arg for a in params}


def _defaults(node):
    if isinstance(node, ast.ClassDef):
        return node.keywords
    return [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]


def exported_names(cell) -> list[str]:
    source = cell.source.lstrip().partition("\n")[2]
    return notebooks.public_names(ast.parse(source))


def first_use_violations(notebook: Path) -> list[dict]:
    """Every name exported by `notebook` that a code cell before its exporting cell uses."""
    cells = nbformat.read(notebook, as_version=4).cells
    exports: dict[str, int] = {}  # name -> first exporting cell
    for index, cell in enumerate(cells):
        if notebooks.is_exported(cell):
            for name in exported_names(cell):
                exports.setdefault(name, index)
    violations = []
    own: set[str] = set()  # names the notebook has bound to its own object so far
    deferred: dict[str, set[str]] = {}
    reported: set[str] = set()
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        uses = _Uses()
        uses.cell(ast.parse(cell.source))
        loaded, todo = set(), list(uses.now)
        while todo:  # a loaded function's body runs now, and so do the functions it loads
            name = todo.pop()
            if name not in loaded:
                loaded.add(name)
                todo.extend(deferred.get(name, ()))
        for name in sorted(loaded):
            export = exports.get(name)
            if (export is not None and index < export and name not in own | uses.bound
                    and name not in reported):
                reported.add(name)
                violations.append({
                    "notebook": _relative(notebook),
                    "name": name, "use": index, "use_section": section_of(cells, index),
                    "export": export, "export_section": section_of(cells, export)})
        for name, body in uses.deferred.items():
            deferred[name] = body
        own |= uses.bound
        own -= uses.imported
        if notebooks.is_exported(cell):
            own -= set(exported_names(cell))  # from here on the name *is* the export
    return violations


def _relative(notebook: Path) -> str:
    try:
        return notebook.resolve().relative_to(notebooks.PROJECT_ROOT).as_posix()
    except ValueError:  # a notebook outside the project (the rule's own test)
        return notebook.name


def describe(v: dict) -> str:
    return (f"{v['notebook']}: {v['name']} used in cell {v['use']} ({v['use_section']}), "
            f"exported in cell {v['export']} ({v['export_section']})")


@pytest.mark.parametrize("notebook", notebooks.chapter_notebooks(), ids=notebooks.notebook_id)
def test_no_exported_name_is_used_before_the_cell_that_exports_it(notebook):
    violations = first_use_violations(notebook)
    assert not violations, "used before it is taught:\n" + "\n".join(map(describe, violations))


def test_the_rule_sees_direct_uses_calls_through_functions_and_ignores_drafts_and_imports(
        tmp_path):
    def code(source):
        return nbformat.v4.new_code_cell(source)

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## 1 Setup"),
        code("from shared import late, later\nimport shared"),  # importing is not using
        code("def helper():\n    return later()"),  # not a use yet: the body runs on call
        code("def draft():\n    return 1\nx = draft()"),  # the notebook's own draft
        nbformat.v4.new_markdown_cell("## 2 Early"),
        code("y = shared.late(2)"),  # a use
        code("helper()"),  # a use of `later`, through helper
        nbformat.v4.new_markdown_cell("## 3 Teaching"),
        code("#| export\ndef draft():\n    return 2\n\ndef late(v):\n    return v\n\n"
             "def later():\n    return 3"),
        code("late(1), later(), draft()"),
    ]
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    violations = first_use_violations(path)
    assert [(v["name"], v["use"], v["use_section"], v["export"]) for v in violations] == [
        ("late", 5, "2 Early", 8), ("later", 6, "2 Early", 8)]
    assert describe(violations[0]) == (
        "lesson.ipynb: late used in cell 5 (2 Early), exported in cell 8 (3 Teaching)")


if __name__ == "__main__":
    found = [v for nb in notebooks.chapter_notebooks() for v in first_use_violations(nb)]
    print("\n".join(map(describe, found)) or "none")
