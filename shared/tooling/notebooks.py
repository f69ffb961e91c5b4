"""The notebooks are the source; this turns them into modules and keeps them honest.

    python -m shared.tooling.notebooks export [NOTEBOOK ...]  write each chapter's module (and
                                                              the stub)
    python -m shared.tooling.notebooks check  [NOTEBOOK ...]  fail, with a diff, on drift
    python -m shared.tooling.notebooks normalize [NOTEBOOK ...]
                                                              rewrite without per-run metadata
                                                              and with the Solutions collapsed
                                                              (no run)
    python -m shared.tooling.notebooks run    [NOTEBOOK ...]  export, then execute in place
    python -m shared.tooling.notebooks run NOTEBOOK -o OUT    execute into OUT, leaving the
                                                              notebook as it was
    python -m shared.tooling.notebooks standalone CHAPTER [-o FILE [--overwrite]]
                                                              one self-contained module for a
                                                              chapter

With no NOTEBOOK, every chapter notebook (ch*/*.ipynb) is meant. Export, check and run
also write or check shared/__init__.pyi, the stub that shows editors what `shared` holds.

Export: the code cells whose first line is `#| export` (a marker every viewer shows, as in
nbdev), in order and without that line, become `<notebook>.py` beside the notebook, under a
header naming the source, followed by an `__all__` of the public names they define. A cell
marked `#| export <module>` goes to `<module>.py` in the same folder instead, so one notebook
can teach several modules. Each block is preceded by a `# %% <notebook> cell N, <section>`
line naming the cell it came from. A cell's `from shared import X` becomes, in the module, an
import of X from the module that defines it (`from ch04_gpt_model.final_model import GPTModel`,
`from shared.checks import check`): the notebook reads as a learner writes, the modules show
what uses what.
Check: the module equals a fresh export and the notebook is normalised (see `normalize`).
Run: execute with pinned numerics (shared/tooling/numerics.py) and no per-run metadata (timings,
widget state), so stored outputs are reproducible and diffs show real changes only; a line on
stderr says which code cell starts. In place,
it regenerates the stored outputs (the contributors' command). With -o OUT, a learner's run:
the executed notebook goes to OUT, a .ipynb file, or a folder (one that exists or a path
ending in /; the only form for several notebooks), leaving the notebook as it was; an OUT that
is a notebook being run is refused, and so is one that exists unless --overwrite is given.
The modules are exported first either way (rewritten only when their cells changed).
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import os
import re
import sys
import tokenize
from pathlib import Path

import nbformat

from shared import BOOK_NAMES_EXTENDED, BOOK_NAMES_REDEFINED, CHAPTER_MODULES
from shared.data import PROJECT_ROOT, prepare_tiktoken_cache
from shared.tooling.command_line import CommandParser, run_main
from shared.tooling.numerics import pin_numerics
from shared.utils import TEXT_PROGRESS_ENV


EXPORT_MARKER = "#| export"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CELL_METADATA_KEPT = ("tags",)
# A code cell that opens folded in JupyterLab: exported machinery of a part beyond the book
# (checks, savers, fast paths), whose prose says what it does (the tag Jupyter Book uses)
HIDE_INPUT_TAG = "hide-input"
# A heading cell whose section opens folded in JupyterLab: a lesson's part beyond the book, so
# that the book's path reads on past it; its heading and opening line stay in view
FOLD_SECTION_TAG = "fold-section"
SOLUTIONS_HEADING = re.compile(r"^##\s+Solutions\b")
EXAMPLE_NOTEBOOK = Path("ch05_pretraining/pretraining.ipynb")


COMPANION_PREFIX = "beyond_"  # beyond_1_<topic>.ipynb: a companion notebook, in reading order


def chapter_notebooks() -> list[Path]:
    """Every notebook of every chapter: lessons and companions."""
    return sorted(PROJECT_ROOT.glob("ch*/*.ipynb"))


def is_companion(notebook: Path) -> bool:
    """A companion notebook (`beyond_N_<topic>.ipynb`): one topic past the book, beside the
    lesson, exporting its own module."""
    return notebook.name.startswith(COMPANION_PREFIX)


def notebook_id(notebook: Path) -> str:
    """`ch05_pretraining/beyond_1_checkpoints`: a notebook's name in test ids."""
    return f"{notebook.parent.name}/{notebook.stem}"


def lesson_notebooks() -> list[Path]:
    """Each chapter's lesson notebook: the book's chapter (the one that is not a companion)."""
    return [nb for nb in chapter_notebooks() if not is_companion(nb)]


def lesson_notebook(chapter: Path) -> Path:
    """The lesson notebook of a chapter folder."""
    (lesson,) = [nb for nb in sorted(chapter.glob("*.ipynb")) if not is_companion(nb)]
    return lesson


def companion_notebooks(chapter: Path) -> list[Path]:
    """A chapter folder's companion notebooks, in reading order (beyond_1_..., beyond_2_...)."""
    def order(path: Path):
        number = path.stem[len(COMPANION_PREFIX):].partition("_")[0]
        return (int(number) if number.isdigit() else 10**6, path.name)
    return sorted((nb for nb in chapter.glob("*.ipynb") if is_companion(nb)), key=order)


def check_notebook_path(path: Path) -> None:
    """Fail, naming `path` and what would do, unless it is a .ipynb file."""
    same_name = path.with_suffix(".ipynb")  # pretraining.py -> pretraining.ipynb
    folder = path if path.is_dir() else path.parent
    found = [same_name] if same_name.is_file() else sorted(  # a lesson before its companions
        folder.glob("*.ipynb"), key=lambda notebook: (is_companion(notebook), notebook.name))
    hint = f"give a .ipynb path, e.g. {found[0] if found else EXAMPLE_NOTEBOOK}"
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a notebook ({hint})")
    if path.suffix != ".ipynb":
        raise ValueError(f"{path} is not a notebook ({hint})")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such notebook ({hint})")


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook in `path`; a ValueError naming the file when it holds something else."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as error:  # not JSON, or not UTF-8
        raise ValueError(f"{path} is not a notebook: not JSON ({error})") from None
    if not (isinstance(data, dict) and isinstance(data.get("cells"), list)):
        raise ValueError(f"{path} is not a notebook: its JSON has no list of \"cells\"")
    try:
        return nbformat.reads(text, as_version=4)
    except (ValueError, nbformat.ValidationError) as error:  # nbformat's messages span lines
        raise ValueError(f"{path} is not a valid notebook: {str(error).splitlines()[0]}") from None


def module_path(notebook: Path, module: str | None = None) -> Path:
    """Where a notebook's cells marked `#| export` (or `#| export <module>`) are written."""
    return notebook.with_suffix(".py") if module is None else notebook.with_name(f"{module}.py")


def is_exported(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(EXPORT_MARKER)


def export_target(notebook: Path, cell, index: int) -> str | None:
    """The module a marked cell goes to: None for the notebook's own, else the name given."""
    marker = cell.source.lstrip().partition("\n")[0].split()
    if marker[:2] != ["#|", "export"] or len(marker) > 3 or (
            len(marker) == 3 and not marker[2].isidentifier()):
        raise ValueError(f"{notebook}: cell {index}: {' '.join(marker)!r}: the marker line is "
                         f"`{EXPORT_MARKER}` or `{EXPORT_MARKER} <module>`, nothing else")
    if len(marker) == 3 and marker[2] != notebook.stem:
        return marker[2]
    return None


def cell_label(cells, index: int) -> str:
    """`cell N, <section>`: the cell's index and the last heading above it."""
    for cell in reversed(cells[:index]):
        headings = [line for line in cell.source.splitlines() if line.startswith("#")]
        if cell.cell_type == "markdown" and headings:
            return f"cell {index}, {headings[-1].lstrip('#').strip()}"
    return f"cell {index}"


def cell_reference(notebook: Path, cells, index: int) -> str:
    """`# %% <notebook> cell N, <section>`: where an exported block came from (as nbdev marks
    it), so that a traceback's line leads to its cell. `# %%` is also the cell separator of
    editors' percent format (VS Code, Jupytext, Spyder)."""
    reference = f"# %% {notebook.name} {cell_label(cells, index)}"
    return reference if len(reference) <= 99 else reference[:96] + "..."  # ruff's line length


def export_sources(notebook: Path) -> dict[Path, str]:
    """The text of every module `notebook` exports, by path (empty if no cell is marked).

    Cells marked `#| export` go to `<notebook>.py`; cells marked `#| export <module>` go to
    `<module>.py` in the same folder, so that one chapter can teach several modules.
    """
    nb = read_notebook(notebook)
    chunks: dict[str | None, list[str]] = {}
    for index, cell in enumerate(nb.cells):
        if "export" in cell.metadata.get("tags", []) and not is_exported(cell):
            raise ValueError(f"{notebook}: cell {index} has the old `export` tag; "
                             f"start it with a `{EXPORT_MARKER}` line instead")
        if not is_exported(cell):
            continue
        target = export_target(notebook, cell, index)
        source = cell.source.lstrip().partition("\n")[2].strip("\n")
        for line in source.splitlines():
            if line.lstrip().startswith(("%", "!")):
                raise ValueError(f"{notebook} {cell_label(nb.cells, index)}: an exported cell "
                                 f"has notebook-only syntax: {line!r}")
        try:  # the whole cell, its marker line a comment: line numbers as the notebook shows
            ast.parse(cell.source)
        except SyntaxError as error:
            lines = cell.source.splitlines()
            line = lines[error.lineno - 1].strip() if 0 < (error.lineno or 0) <= len(lines) else ""
            raise SyntaxError(f"{notebook} {cell_label(nb.cells, index)}, line {error.lineno}: "
                              f"{error.msg}" + (f": {line}" if line else "")) from None
        source = direct_imports(source, f"{notebook} {cell_label(nb.cells, index)}")
        chunks.setdefault(target, []).append(
            f"{cell_reference(notebook, nb.cells, index)}\n\n{source}")
    try:
        relative = notebook.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:  # a notebook outside the project
        relative = notebook.name
    modules = {}
    for target, parts in chunks.items():
        marker = EXPORT_MARKER if target is None else f"{EXPORT_MARKER} {target}"
        header = (
            f"# Generated from {relative}\n"
            "# by `python -m shared.tooling.notebooks export`. "
            "Do not edit: change the notebook's cells\n"
            f"# marked `{marker}`, then export again.\n"
            "# Each `# %%` line names the cell the code below it came from.\n\n"
        )
        body = "\n\n\n".join(parts)
        tree = ast.parse(body, filename=str(notebook))  # a SyntaxError names the notebook
        names = ",\n".join(f"    {name!r}" for name in public_names(tree))
        modules[module_path(notebook, target)] = f"{header}{body}\n\n\n__all__ = [\n{names},\n]\n"
    return modules


def export_source(notebook: Path) -> str | None:
    """The text of the notebook's own module (`<notebook>.py`), or None if it exports none."""
    return export_sources(notebook).get(module_path(notebook))


def public_names(tree: ast.Module) -> list[str]:
    """Top-level classes, functions and assigned names that do not start with `_`."""
    names = []
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.extend(t.id for t in targets if isinstance(t, ast.Name))
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


# Where a module's import goes -------------------------------------------------------------------
# A notebook imports the course through `from shared import X`, as a learner does. Its generated
# module imports X from the module that defines it (`from ch04_gpt_model.final_model import
# GPTModel`, `from shared.checks import check`), so that the modules show their real graph:
# what imports what is read from the files, not hidden behind the facade's lazy lookup.

FACADE_PATH = PROJECT_ROOT / "shared" / "__init__.py"
PROJECT_PACKAGES = {"shared"} | {name.split(".")[0] for name in CHAPTER_MODULES}
_names_cache: dict[Path, tuple[int, dict[str, list[str]]]] = {}


def exported_names(notebook: Path) -> dict[str, list[str]]:
    """The public names each module of `notebook` defines, by module name
    (`ch05_pretraining.checkpoints`), read from its marked cells (cached while the file is
    unchanged)."""
    stamp = notebook.stat().st_mtime_ns
    if notebook in _names_cache and _names_cache[notebook][0] == stamp:
        return _names_cache[notebook][1]
    nb = read_notebook(notebook)
    found: dict[str, list[str]] = {}
    for index, cell in enumerate(nb.cells):
        if not is_exported(cell):
            continue
        target = export_target(notebook, cell, index) or notebook.stem
        try:
            names = public_names(ast.parse(cell.source))
        except SyntaxError:  # export_sources names the cell
            continue
        found.setdefault(f"{notebook.parent.name}.{target}", []).extend(names)
    found = {module: list(dict.fromkeys(names)) for module, names in found.items()}
    _names_cache[notebook] = (stamp, found)
    return found


def shared_origins() -> dict[str, tuple[str, str]]:
    """What `from shared import X` gives: X's defining module and its name there. The facade's
    own imports (`check` from shared.checks) and definitions, then each chapter module's
    exports as its notebook defines them (the book's names redefined later: the first
    chapter's, and a book class a companion extends: the extension, as `shared` gives them)."""
    origins: dict[str, tuple[str, str]] = {}
    for node in ast.parse(FACADE_PATH.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared."):
            for alias in node.names:
                origins[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            origins[node.name] = ("shared", node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    origins[target.id] = ("shared", target.id)
    defined: dict[str, list[str]] = {}
    for notebook in chapter_notebooks():
        defined.update(exported_names(notebook))
    for module in CHAPTER_MODULES:
        for name in defined.get(module, []):
            if name not in origins or name in BOOK_NAMES_EXTENDED or (
                    name not in BOOK_NAMES_REDEFINED and origins[name][0] == "shared"):
                origins[name] = (module, name)
    return origins


def import_name_key(name: str) -> tuple[int, str]:
    """Ruff's (isort's) order of the names in one import: CONSTANTS, Classes, then the rest."""
    bare = name.split(" as ")[0]
    return (0 if bare.isupper() and len(bare) > 1 else 1 if bare[:1].isupper() else 2, bare)


def import_statement(indent: str, module: str, names: list[str], comment: str,
                     split: bool = False) -> str:
    """`from module import a, b` in ruff's format: one line if it fits (a `# noqa` pragma not
    counted) and `split` is False, else one name a line. `split`: the cell wrote these names
    one a line, a layout ruff keeps (its trailing comma), and so does the export."""
    line = f"{indent}from {module} import {', '.join(names)}"
    counted = len(line) + (0 if not comment or comment.startswith("# noqa") else len(comment) + 2)
    if counted <= 100 and not (split and len(names) > 1):
        return line + (f"  {comment}" if comment else "")
    opened = f"{indent}from {module} import (" + (f"  {comment}" if comment else "")
    return "\n".join([opened, *(f"{indent}    {name}," for name in names), f"{indent})"])


def direct_imports(source: str, where: str) -> str:
    """`source` with each `from shared import ...` (at any depth) replaced by imports from the
    modules that define the names, merged and ordered with the block's other imports from the
    course as ruff's isort orders them. `where` names the cell in errors."""
    tree = ast.parse(source)
    if not any(isinstance(node, ast.ImportFrom) and node.module == "shared" and not node.level
               for node in ast.walk(tree)):
        return source
    origins = shared_origins()
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(iter(source.splitlines(keepends=True)).__next__):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string
    lines = source.splitlines()
    replacements = []  # (first line, last line, text), 1-based and inclusive

    def is_course_import(node) -> bool:
        return (isinstance(node, ast.ImportFrom) and not node.level and node.module is not None
                and node.module.split(".")[0] in PROJECT_PACKAGES)

    for parent in ast.walk(tree):
        for value in vars(parent).values():
            if not (isinstance(value, list) and value and isinstance(value[0], ast.stmt)):
                continue
            block: list[ast.ImportFrom] = []
            for statement in [*value, None]:  # runs of the course's imports, back to back
                if statement is not None and is_course_import(statement) and (
                        not block or statement.lineno == block[-1].end_lineno + 1):
                    block.append(statement)
                    continue
                if any(node.module == "shared" for node in block):
                    replacements.append(rewrite_block(block, origins, comments, where))
                block = [statement] if statement is not None and is_course_import(
                    statement) else []
    for first, last, text in sorted(replacements, reverse=True):
        lines[first - 1:last] = [text]
    return "\n".join(lines)


def rewrite_block(block, origins, comments, where) -> tuple[int, int, str]:
    """One run of imports from the course, each name from its defining module (see
    direct_imports)."""
    by_module: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    split: set[str] = set()  # modules given names by an import the cell wrote one name a line
    for node in block:
        inner = [comments[n] for n in range(node.lineno + 1, node.end_lineno + 1)
                 if n in comments]
        if inner:
            raise ValueError(f"{where}: a comment inside `from {node.module} import (...)` "
                             f"({inner[0]}): put it on the import's first line")
        for position, alias in enumerate(node.names):
            module, name = node.module, alias.name
            if module == "shared":
                if name not in origins:
                    raise ValueError(f"{where}: `from shared import {name}`: `shared` has no "
                                     f"{name!r} (is it exported, under that name?)")
                module, name = origins[name]
            if alias.asname:
                name = f"{name} as {alias.asname}"
            by_module.setdefault(module, [])
            if node.end_lineno > node.lineno:
                split.add(module)
            if name not in by_module[module]:
                by_module[module].append(name)
            if position == 0 and node.lineno in comments:  # an alias keeps its own comment
                key = name if alias.asname else module
                notes.setdefault(key, [])
                if comments[node.lineno] not in notes[key]:
                    notes[key].append(comments[node.lineno])
    indent = " " * block[0].col_offset
    statements = []
    for module in sorted(by_module, key=str.lower):
        plain = sorted((n for n in by_module[module] if " as " not in n), key=import_name_key)
        aliased = sorted((n for n in by_module[module] if " as " in n), key=import_name_key)
        # one statement for the plain names, one per alias, ordered as ruff's isort orders
        # them: by their first name (CONSTANTS, Classes, the rest); a comment on the cell's
        # import goes to the module's first statement, an alias's comment stays with it
        parts = ([(plain, "")] if plain else []) + [([name], name) for name in aliased]
        parts.sort(key=lambda part: import_name_key(part[0][0]))
        note = notes.get(module, [])
        for i, (names, alias_key) in enumerate(parts):
            text = "  ".join([*notes.get(alias_key, []), *(note if i == 0 else [])])
            statements.append(import_statement(indent, module, names, text,
                                               bool(plain) and names is plain and module in split))
    return block[0].lineno, block[-1].end_lineno, "\n".join(statements)


STUB_PATH = PROJECT_ROOT / "shared" / "__init__.pyi"


def facade_stub_source() -> str:
    """The text of shared/__init__.pyi: what `shared` holds, spelled out for static tools.

    `shared` imports chapter modules lazily (a module-level __getattr__), which editors cannot
    follow: jedi (IPython's and JupyterLab's completer) and pyright find nothing behind
    `from shared import GPTModel`. This stub states every name as a static re-export, so
    go-to-definition and signature help land in the chapter module that defines it.
    """
    facade = PROJECT_ROOT / "shared" / "__init__.py"
    tree = ast.parse(facade.read_text(encoding="utf-8"))
    lines = []
    for node in tree.body:  # the facade's own static imports and public definitions
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared."):
            names = ", ".join(f"{a.name} as {a.asname or a.name}" for a in node.names)
            lines.append(f"from {node.module} import {names}")
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            signature = copy.copy(node)
            signature.body, signature.decorator_list = [ast.Expr(ast.Constant(...))], []
            lines.append(ast.unparse(signature))
        elif isinstance(node, ast.Assign) and all(
                isinstance(t, ast.Name) and not t.id.startswith("_") for t in node.targets):
            try:
                ast.literal_eval(node.value)
                lines.append(ast.unparse(node))
            except ValueError:  # computed at import: the stub states the value it computes
                import shared

                name = node.targets[0].id
                lines.append(f"{name} = {getattr(shared, name)!r}")
    lines.append("")
    lines.append("# Every chapter's exports, as `from shared import X` finds them at run time.")
    exported: dict[str, list[str]] = {}
    owner: dict[str, str] = {}  # a book name redefined later: `shared` gives the first; a
    for module_name in CHAPTER_MODULES:  # book class a companion extends: the extension
        path = PROJECT_ROOT / Path(*module_name.split(".")).with_suffix(".py")
        if path.exists():
            exported[module_name] = public_names(ast.parse(path.read_text(encoding="utf-8")))
            for name in exported[module_name]:
                if name not in owner or name in BOOK_NAMES_EXTENDED:
                    owner[name] = module_name
    for module_name, public in exported.items():
        names = [name for name in public if owner[name] == module_name]
        lines.append(f"from {module_name} import (")
        lines.extend(f"    {name} as {name}," for name in names)
        lines.append(")")
    header = ("# Generated from shared/__init__.py and the chapter modules by\n"
              "# `python -m shared.tooling.notebooks export`. Do not edit.\n\n")
    return header + "\n".join(lines) + "\n"


def export_stub(check: bool = False) -> bool:
    """Write (or with check=True, compare) shared/__init__.pyi. True when up to date."""
    expected = facade_stub_source()
    actual = STUB_PATH.read_text(encoding="utf-8") if STUB_PATH.exists() else ""
    if actual == expected:
        return True
    if check:
        sys.stdout.writelines(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile="shared/__init__.pyi (export)", tofile=str(STUB_PATH)))
        print(f"\n{STUB_PATH} is out of date: run `python -m shared.tooling.notebooks export`.")
        return False
    STUB_PATH.write_text(expected, encoding="utf-8")
    print(f"wrote {STUB_PATH}")
    return True


def solution_cells(cells) -> list[int]:
    """The cells of the notebook's "## Solutions" section, after its heading."""
    start = next((i for i, cell in enumerate(cells) if cell.cell_type == "markdown"
                  and any(SOLUTIONS_HEADING.match(line) for line in cell.source.splitlines())),
                 None)
    if start is None:
        return []
    inside = []
    for index in range(start + 1, len(cells)):
        if cells[index].cell_type == "markdown" and any(
                line.startswith(("# ", "## ")) for line in cells[index].source.splitlines()):
            break  # a section of its own after the solutions
        inside.append(index)
    return inside


def is_signpost(cell) -> bool:
    """A markdown cell of headings only (`### Solution N.M`)."""
    return cell.cell_type == "markdown" and all(
        line.startswith("#") or not line.strip() for line in cell.source.splitlines())


def collapsed(cell, under_heading: bool = False) -> dict:
    """How a solution cell opens: closed, so that working an exercise does not show the next
    one's answer. A signpost (`### Solution N.M`) stays visible with its section folded
    (JupyterLab's `jp-MarkdownHeadingCollapsed`), and the cells under it need nothing more:
    one click on the heading's arrow opens the whole solution. A cell not under a signpost is
    closed itself (the `jupyter` metadata JupyterLab and VS Code read), code and output."""
    if is_signpost(cell):
        return {"jp-MarkdownHeadingCollapsed": True}
    if under_heading:
        return {}
    if cell.cell_type == "code":
        return {"jupyter": {"source_hidden": True, "outputs_hidden": True}}
    return {"jupyter": {"source_hidden": True}}


def solution_folds(cells) -> dict[int, dict]:
    """collapsed() for each cell of the Solutions section, by index."""
    folds, under_heading = {}, False
    for index in solution_cells(cells):
        under_heading = under_heading or is_signpost(cells[index])
        folds[index] = collapsed(cells[index], under_heading)
    return folds


def normalize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes from run to run or machine to machine but carries no meaning, and
    collapse the Solutions section's cells, the code of cells tagged `hide-input` and the
    sections under headings tagged `fold-section` (JupyterLab's metadata; nbval still executes
    and compares them)."""
    nb.metadata = nbformat.from_dict(
        {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict(
            {k: v for k, v in cell.metadata.items() if k in CELL_METADATA_KEPT}
        )
    for cell in nb.cells:
        if HIDE_INPUT_TAG in cell.metadata.get("tags", []):
            cell.metadata["jupyter"] = nbformat.from_dict({"source_hidden": True})
        if FOLD_SECTION_TAG in cell.metadata.get("tags", []):
            cell.metadata["jp-MarkdownHeadingCollapsed"] = True
    for index, fold in solution_folds(nb.cells).items():
        nb.cells[index].metadata.update(nbformat.from_dict(fold))
    return nb


def is_normalized(notebook: Path) -> bool:
    """True when the file is exactly what `run` writes: no per-run metadata, same layout."""
    text = notebook.read_text(encoding="utf-8")
    expected = nbformat.writes(normalize(read_notebook(notebook)))
    return text.rstrip("\n") == expected.rstrip("\n")


def export(notebook: Path, check: bool = False) -> bool:
    """Write (or with check=True, compare) the modules of `notebook`. True when up to date."""
    ok = True
    for target, expected in export_sources(notebook).items():
        actual = target.read_text() if target.exists() else ""
        if actual and not actual.startswith("# Generated from "):  # a hand-written file
            raise ValueError(f"{notebook}: a cell exports to {target.name}, which export did "
                             "not write: rename the module in the `#| export` line")
        if actual == expected:
            continue
        if check:
            diff = difflib.unified_diff(
                expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                fromfile=f"{notebook.name} (export)", tofile=str(target),
            )
            sys.stdout.writelines(diff)
            print(f"\n{target} differs from {notebook}: run "
                  "`python -m shared.tooling.notebooks export`.")
            ok = False
            continue
        target.write_text(expected)
        print(f"wrote {target}")
    return ok


def progress_reporter(notebook: Path, cells, stream=None):
    """nbclient's on_cell_start hook for `run`: as each code cell starts, one line on stderr
    (never in the stored outputs), `NOTEBOOK: code cell 9 of 16 (cell 14, <section>), 41 s`,
    so that a run of several minutes shows that it works and where."""
    import time

    code = [i for i, cell in enumerate(cells) if cell.cell_type == "code" and cell.source.strip()]
    start = time.perf_counter()

    def on_cell_start(cell, cell_index, **_):  # nbclient calls it for every cell
        if cell_index not in code:  # markdown, or an empty code cell: nothing runs
            return
        print(f"{notebook}: code cell {code.index(cell_index) + 1} of {len(code)} "
              f"({cell_label(cells, cell_index)}), "
              f"{time.perf_counter() - start:.0f} s", file=stream or sys.stderr, flush=True)

    return on_cell_start


def run(notebook: Path, timeout: int = 1800, output: Path | None = None) -> None:
    """Export `notebook`'s module, then execute the notebook (pinned numerics, from its own
    folder) and normalise it, in place or into `output`, saying on stderr which cell runs.
    Exporting first lets a notebook import its own chapter through `shared`; the module depends
    only on the cells' source, so it needs no second export."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor, ExecutePreprocessor

    export(notebook)
    pin_numerics()  # the kernel inherits the environment; see shared/tooling/numerics.py
    os.environ[TEXT_PROGRESS_ENV] = "1"  # stored bars show their last frame: see progress_bar
    prepare_tiktoken_cache()  # tiktoken.get_encoding("gpt2") in the kernel works offline too
    nb = read_notebook(notebook)
    executor = ExecutePreprocessor(timeout=timeout, kernel_name="python3", record_timing=False,
                                   on_cell_start=progress_reporter(notebook, nb.cells))
    executor.preprocess(nb, {"metadata": {"path": str(notebook.parent)}})
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(normalize(nb), output or notebook)
    print(f"executed {notebook}" + (f" into {output}" if output else ""))


def run_outputs(notebooks: list[Path], output: str, overwrite: bool) -> dict[Path, Path]:
    """Where `run -o output` writes each notebook; refuses, naming it, an output that is one of
    the notebooks or, unless `overwrite`, a file that exists."""
    folder = Path(output).expanduser()
    as_folder = output.endswith(("/", os.sep)) or folder.is_dir() or len(notebooks) != 1
    if as_folder and folder.exists() and not folder.is_dir():
        raise ValueError(f"-o {output} is a file: for {len(notebooks)} notebooks give a folder")
    if not as_folder and folder.suffix != ".ipynb":
        raise ValueError(f"-o {output}: a notebook file's name ends with .ipynb (for a "
                         f"folder, end the path with /: {output}/)")
    targets = {nb: folder / nb.name if as_folder else folder for nb in notebooks}
    sources = {nb.resolve(): nb for nb in notebooks}
    for target in targets.values():
        if target.resolve() in sources:
            raise ValueError(f"-o {output}: {target} is the notebook being run "
                             f"({sources[target.resolve()]}); give another path, or leave out "
                             "-o to execute it in place (which rewrites its stored outputs)")
        if target.exists() and not overwrite:
            raise ValueError(f"-o {output}: {target} exists; add --overwrite to replace it, or "
                             "give another path")
    if len(set(targets.values())) < len(targets):
        raise ValueError(f"-o {output}: two notebooks have the same name; run them one by one")
    return targets


def write_standalone(chapter: Path, output: Path | None, overwrite: bool = False) -> int:
    """The `standalone` command: one chapter's self-contained module, to stdout or a file
    (a file that exists only with `overwrite`: it may be the learner's own edited copy)."""
    from shared.tooling.standalone import standalone_source
    from shared.utils import write_atomically

    if output is not None and output.is_dir():
        raise ValueError(f"-o {output} is a folder: give a file path, e.g. "
                         f"{output / (chapter.name + '.py')}")
    if output is not None and not output.parent.is_dir():
        raise FileNotFoundError(f"-o {output}: there is no folder {output.parent} to write it "
                                "in (create it first)")
    if output is not None and output.exists() and not overwrite:
        raise ValueError(f"-o {output}: the file exists; add --overwrite to replace it, or "
                         "give another path")
    source = standalone_source(chapter)
    if output is None:
        sys.stdout.write(source)
    else:
        write_atomically(output, lambda tmp: tmp.write_text(source, encoding="utf-8"))
        print(f"wrote {output} ({len(source.splitlines())} lines)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m shared.tooling.notebooks", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["export", "check", "run", "normalize",
                                                   "standalone"])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks; for standalone, one chapter folder")
    parser.add_argument("-o", "--output",
                        help="run: where the executed notebook goes, a .ipynb file or a folder "
                             "(ending in / or existing), leaving the notebook as it was; "
                             "standalone: the module's file (default: stdout)")
    parser.add_argument("--overwrite", action="store_true",
                        help="run -o, standalone -o: replace an output file that exists "
                             "(default: refuse)")
    args = parser.parse_args(argv)
    if args.overwrite and not (args.command in ("run", "standalone") and args.output is not None):
        parser.error("--overwrite goes with run -o OUT or standalone -o FILE only")
    if args.command == "standalone":
        if len(args.notebooks) != 1:
            parser.error(f"standalone takes one chapter folder, e.g. ch04_gpt_model (got "
                         f"{len(args.notebooks)})")
        output = None if args.output is None else Path(args.output).expanduser()
        return write_standalone(args.notebooks[0], output, args.overwrite)
    if args.output is not None and args.command != "run":
        parser.error(f"-o/--output is for run and standalone only, not {args.command}")
    for notebook in args.notebooks:  # every path before any is written: nothing half-done
        check_notebook_path(notebook)
    notebooks = args.notebooks or chapter_notebooks()
    if args.command == "run":
        outputs = ({} if args.output is None else
                   run_outputs(notebooks, args.output, args.overwrite))
        for notebook in notebooks:
            run(notebook, output=outputs.get(notebook))
        export_stub()
        return 0
    if args.command == "normalize":  # metadata only: the stored outputs stay as they are
        for notebook in notebooks:
            nbformat.write(normalize(read_notebook(notebook)), notebook)
        return 0
    ok = True
    for notebook in notebooks:
        ok &= export(notebook, check=args.command == "check")
        if args.command == "check" and not is_normalized(notebook):
            print(f"{notebook} holds per-run metadata or unfolded cells: run `python -m "
                  "shared.tooling.notebooks normalize` on it (metadata only; `run` re-executes "
                  "it).")
            ok = False
    ok &= export_stub(check=args.command == "check")
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
