"""The book's path never depends on what goes beyond the book.

A learner who follows only the book's sections must be able to skip every subsection marked
"(beyond the book)" and still run each cell they read. The rule, simple enough to state here:

- A heading whose text says "(beyond the book)" opens a region that runs until the next
  heading of the same or a higher level (as many or fewer `#`) that does not say it; its
  subsections belong to it. The book's path is every cell before the chapter's closing part
  (the first `## Summary` or `## Exercises` heading) outside such regions.
- Each outermost region opens, right under its heading, with one line
  `*Beyond the book: <what it adds>. The book's path resumes at <where>.*`
- A book-path code cell must not use a name whose definition, at that point of the notebook,
  lies in a beyond-the-book cell: the last cell that bound the name itself (a `def`, an
  assignment, an import from a library), or, for a name that comes from the course (`from
  shared import name`, `shared.name`), the cell that exports it. Uses are found as in
  `test_first_use.py`: a function's body counts where the function is called.
- A library import repeated in a beyond-the-book cell does not move a name that the book's
  path had already imported.

These rules apply to each chapter's lesson notebook. What goes past the book beyond that lives
in companion notebooks beside the lesson (`beyond_N_<topic>.ipynb`), each exporting its own
module, and three rules keep the two apart:

- a lesson exports only its own module (cells marked plain `#| export`); a companion marks
  every exported cell `#| export <module>`, one module of its own, never the lesson's;
- a companion's module never rebinds a lesson name (their exported names are disjoint);
- a lesson never uses a name that a companion of its own chapter exports, nor imports a
  companion's module: a learner who reads only the lesson runs every cell of it. Later chapters
  may use any module through `shared`.

`python shared/test_book_path.py` prints, per chapter, the book's path (its sections and cell
numbers), the sections beyond the book, and every violation.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest


if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import BOOK_NAMES_EXTENDED  # noqa: E402
from shared.test_first_use import _relative, _Uses, exported_names  # noqa: E402
from shared.tooling import notebooks  # noqa: E402


BEYOND = "(beyond the book)"
OPENING = re.compile(r"^\*Beyond the book: .+ The book's path resumes .+\*$")
CLOSING_PART = re.compile(r"^##\s+(Summary|Exercises)\b")


def headings(cell) -> list[tuple[int, str]]:
    if cell.cell_type != "markdown":
        return []
    found = []
    for line in cell.source.splitlines():
        match = re.match(r"^(#+)\s+(.*)", line)
        if match:
            found.append((len(match.group(1)), match.group(2).strip()))
    return found


def classify(cells) -> list[str]:
    """Each cell's part: 'book', 'beyond', or 'closing' (summary, exercises, solutions)."""
    parts, stack, closing = [], [], False  # stack: (level, is_beyond) of open headings
    for cell in cells:
        for level, text in headings(cell):
            if level == 2 and CLOSING_PART.match("## " + text):
                closing = True
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, BEYOND in text))
        if closing:
            parts.append("closing")
        else:
            parts.append("beyond" if any(beyond for _, beyond in stack) else "book")
    return parts


def opening_line_problems(notebook: Path) -> list[str]:
    """Outermost beyond-the-book headings whose cell lacks the opening line."""
    cells = nbformat.read(notebook, as_version=4).cells
    parts = classify(cells)
    problems = []
    for index, cell in enumerate(cells):
        if parts[index] == "closing" or cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for number, line in enumerate(lines):
            if not line.startswith("#") or BEYOND not in line:
                continue
            # Outermost: the region was not already open above this heading.
            level = len(line) - len(line.lstrip("#"))
            enclosing = [h for h in _open_headings(cells, index, number) if h[0] < level]
            if any(BEYOND in text for _, text in enclosing):
                continue
            following = next((l.strip() for l in lines[number + 1:] if l.strip()), "")
            if not OPENING.match(following):
                problems.append(f"{_relative(notebook)}: cell {index} ({line.strip()}): the "
                                f"first line under the heading should be `*Beyond the book: "
                                f"<what it adds>. The book's path resumes at <where>.*`, "
                                f"got {following[:80]!r}")
            break
    return problems


def _open_headings(cells, index, line_number):
    """The headings open just before line `line_number` of cell `index` (level, text)."""
    stack = []
    for i, cell in enumerate(cells[:index + 1]):
        source = cell.source.splitlines()[:line_number] if i == index else None
        for level, text in (headings(cell) if source is None else
                            headings(nbformat.v4.new_markdown_cell("\n".join(source)))):
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
    return stack


def section_of(cells, index: int) -> str:
    for cell in reversed(cells[:index + 1]):
        found = headings(cell)
        if found:
            return found[-1][1]
    return ""


def book_path_violations(notebook: Path) -> list[dict]:
    """Every book-path code cell's use of a name defined, at that point, beyond the book."""
    cells = nbformat.read(notebook, as_version=4).cells
    parts = classify(cells)
    exports: dict[str, int] = {}
    for index, cell in enumerate(cells):
        if notebooks.is_exported(cell):
            for name in exported_names(cell):
                exports.setdefault(name, index)
    defined: dict[str, int | None] = {}  # name -> cell that defined it (None: from the course)
    deferred: dict[str, set[str]] = {}
    violations, reported = [], set()
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        uses = _Uses()
        uses.cell(ast.parse(cell.source))
        if parts[index] == "book":
            loaded, todo = set(), list(uses.now)
            while todo:
                name = todo.pop()
                if name not in loaded:
                    loaded.add(name)
                    todo.extend(deferred.get(name, ()))
            for name in sorted(loaded - reported - uses.bound):  # bound here: its own
                where = defined[name] if name in defined else exports.get(name)
                if name in defined and where is None:
                    where = exports.get(name)  # a course name: taught where it is exported
                if where is not None and parts[where] == "beyond":
                    reported.add(name)
                    violations.append({
                        "notebook": _relative(notebook), "name": name, "use": index,
                        "use_section": section_of(cells, index), "defined": where,
                        "defined_section": section_of(cells, where)})
        for name, body in uses.deferred.items():
            deferred[name] = body
        library_imports = _library_imports(cell.source)
        for name in uses.bound:
            if parts[index] == "beyond" and name in library_imports and name in defined:
                continue  # the same library imported again changes nothing the path sees
            defined[name] = index
        for name in uses.imported:
            defined[name] = None
        if notebooks.is_exported(cell):
            for name in exported_names(cell):
                defined[name] = index
    return violations


EXERCISE = re.compile(r"^#{3,}\s+(Exercise|Solution)\s+(\d+\.\d+)\b")


def book_exercise_cells(cells, parts) -> set[int]:
    """The cells of the book's exercises and their solutions: those under an `### Exercise N.M`
    heading that does not say "beyond the book", and under the matching `### Solution N.M`."""
    beyond_exercises, chosen, current = set(), set(), None
    for index, cell in enumerate(cells):
        for _, text in headings(cell):
            match = EXERCISE.match("### " + text)
            if match:
                kind, number = match.groups()
                if kind == "Exercise" and "beyond the book" in text:
                    beyond_exercises.add(number)
                current = None if number in beyond_exercises else number
            else:
                current = None
        if parts[index] == "closing" and current is not None:
            chosen.add(index)
    return chosen


def book_exercise_violations(notebook: Path) -> list[dict]:
    """Names that a code cell of a book exercise, or of its solution, reads from the notebook
    but that only a beyond-the-book cell defines: a learner who skipped those parts gets a
    NameError. A name the book's path also defines (a draft the final version replaced) is
    fine here, and so is anything the exercise cells define or import themselves."""
    cells = nbformat.read(notebook, as_version=4).cells
    parts = classify(cells)
    exercises = book_exercise_cells(cells, parts)
    on_path: set[str] = set()  # bound on the book's path or in the closing part
    beyond: dict[str, int] = {}  # name -> the first beyond-the-book cell that binds it
    violations = []
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        uses = _Uses()
        uses.cell(ast.parse(cell.source))
        if index in exercises:
            for name in sorted(set(uses.now) - uses.bound - uses.imported - on_path):
                if name in beyond:
                    violations.append({
                        "notebook": _relative(notebook), "name": name, "use": index,
                        "use_section": section_of(cells, index), "defined": beyond[name],
                        "defined_section": section_of(cells, beyond[name])})
        bound = set(uses.bound) | set(uses.imported)
        if notebooks.is_exported(cell):
            bound |= set(exported_names(cell))
        for name in bound:
            if parts[index] == "beyond":
                beyond.setdefault(name, index)
            else:
                on_path.add(name)
    return violations


def _library_imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not (
                node.module or "").startswith(("shared", "ch0")):
            names.update(a.asname or a.name for a in node.names)
    return names


def describe(v: dict) -> str:
    return (f"{v['notebook']}: {v['name']} used on the book's path in cell {v['use']} "
            f"({v['use_section']}), defined beyond the book in cell {v['defined']} "
            f"({v['defined_section']})")


def outline(notebook: Path) -> str:
    """The book's path and the beyond-the-book sections of one notebook, with cell numbers."""
    cells = nbformat.read(notebook, as_version=4).cells
    parts = classify(cells)
    closing = parts.index("closing") if "closing" in parts else len(cells)
    lines = [f"{_relative(notebook)}:"]
    for index, cell in enumerate(cells[:closing]):
        found = headings(cell)
        if found:
            level, text = found[0]
            lines.append(f"  {parts[index]:6} cell {index:>3}: {'#' * level} {text}")
    book = [i for i, part in enumerate(parts) if part == "book"]
    code = [i for i in book if cells[i].cell_type == "code"]
    lines.append(f"  the book's path: {len(book)} cells ({len(code)} code) of {closing} before "
                 "the closing part")
    return "\n".join(lines)


def companion_exports(chapter: Path) -> dict[str, tuple[Path, str]]:
    """Each name (and module name) the chapter's companions export -> (companion, module)."""
    found = {}
    for companion in notebooks.companion_notebooks(chapter):
        cells = nbformat.read(companion, as_version=4).cells
        for index, cell in enumerate(cells):
            if notebooks.is_exported(cell):
                module = notebooks.export_target(companion, cell, index) or companion.stem
                found.setdefault(module, (companion, module))
                for name in exported_names(cell):
                    found.setdefault(name, (companion, module))
    return found


def _course_names_used(source: str) -> set[str]:
    """Names a cell takes from the course: `from shared import X`, `shared.X`, and the modules
    of `from chNN_folder import module` / `import chNN_folder.module` / `from chNN_folder.module
    import X` (the module's name)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "shared" and len(parts) == 1:
                names.update(alias.name for alias in node.names)
            elif parts[0].startswith("ch0"):
                names.update(parts[1:2] or [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("ch0") and "." in alias.name)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "shared"):
            names.add(node.attr)
    return names


def lesson_companion_violations(chapter: Path) -> list[str]:
    """Every place where the lesson of `chapter` uses what a companion of its own chapter
    exports, and every export marker that breaks the one-module-each rule."""
    lesson = notebooks.lesson_notebook(chapter)
    exported = companion_exports(chapter)
    lesson_names = set(notebooks.public_names(ast.parse(
        notebooks.export_source(lesson) or "")))
    problems = []
    for index, cell in enumerate(nbformat.read(lesson, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        if notebooks.is_exported(cell) and notebooks.export_target(lesson, cell, index):
            problems.append(f"{_relative(lesson)}: cell {index} exports to "
                            f"{notebooks.export_target(lesson, cell, index)}.py: a lesson "
                            "exports only its own module (plain `#| export`)")
        for name in sorted(_course_names_used(cell.source) & set(exported) - lesson_names):
            companion, module = exported[name]
            problems.append(f"{_relative(lesson)}: cell {index} uses {name}, which "
                            f"{_relative(companion)} exports ({module}.py): the lesson must "
                            "run without its companions")
    for companion in notebooks.companion_notebooks(chapter):
        modules = set()
        for index, cell in enumerate(nbformat.read(companion, as_version=4).cells):
            if not notebooks.is_exported(cell):
                continue
            module = notebooks.export_target(companion, cell, index)
            if module is None or module == lesson.stem:
                problems.append(f"{_relative(companion)}: cell {index}: a companion marks its "
                                "exported cells `#| export <its module>`, not the lesson's")
            modules.add(module)
            # a book class the companion extends keeps the book's name (BOOK_NAMES_EXTENDED)
            for name in sorted(set(exported_names(cell)) & lesson_names
                               - set(BOOK_NAMES_EXTENDED)):
                problems.append(f"{_relative(companion)}: cell {index} rebinds the lesson's "
                                f"{name}: give the companion's version a name of its own")
        if len(modules) > 1:
            problems.append(f"{_relative(companion)} exports to {sorted(map(str, modules))}: "
                            "one module per companion")
    return problems


CHAPTERS = notebooks.lesson_notebooks()
CHAPTER_FOLDERS = sorted({nb.parent for nb in notebooks.chapter_notebooks()})


@pytest.mark.parametrize("notebook", CHAPTERS, ids=notebooks.notebook_id)
def test_no_book_path_cell_uses_a_name_defined_beyond_the_book(notebook):
    violations = book_path_violations(notebook)
    assert not violations, ("the book's path depends on a beyond-the-book cell:\n"
                            + "\n".join(map(describe, violations)))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=notebooks.notebook_id)
def test_the_books_exercises_and_their_solutions_run_on_the_books_path_alone(notebook):
    violations = book_exercise_violations(notebook)
    assert not violations, ("a book exercise or its solution needs a beyond-the-book cell "
                            "(mark the exercise '(ours, beyond the book)', or define what it "
                            "needs on the path or in the exercise):\n"
                            + "\n".join(map(describe, violations)))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=notebooks.notebook_id)
def test_each_beyond_the_book_part_opens_saying_what_it_adds_and_where_the_path_resumes(
        notebook):
    problems = opening_line_problems(notebook)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", CHAPTERS, ids=notebooks.notebook_id)
def test_the_book_path_is_most_of_the_chapter_up_to_its_exercises(notebook):
    parts = classify(nbformat.read(notebook, as_version=4).cells)
    assert "closing" in parts, f"{notebook.name}: no '## Summary' or '## Exercises' heading"
    assert parts.count("book") >= 20, f"{notebook.name}: the book's path has too few cells"


MAX_BEYOND_SHARE = 0.15  # of a lesson's source lines; the rest lives in companion notebooks


@pytest.mark.parametrize("notebook", CHAPTERS, ids=notebooks.notebook_id)
def test_at_most_15_percent_of_a_lesson_goes_beyond_the_book(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    lines = [len(cell.source.splitlines()) for cell in cells]
    beyond = sum(n for n, part in zip(lines, classify(cells)) if part == "beyond")
    assert beyond <= MAX_BEYOND_SHARE * sum(lines), (
        f"{notebook.name}: {beyond} of {sum(lines)} source lines sit in parts marked "
        f"{BEYOND!r}, more than {MAX_BEYOND_SHARE:.0%}: move a topic to a companion notebook")


@pytest.mark.parametrize("chapter", CHAPTER_FOLDERS, ids=lambda p: p.name)
def test_a_lesson_never_uses_what_its_own_companions_export(chapter):
    problems = lesson_companion_violations(chapter)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", notebooks.chapter_notebooks(), ids=notebooks.notebook_id)
def test_only_exported_code_beyond_the_book_opens_collapsed(notebook):
    """A cell tagged hide-input opens collapsed in JupyterLab: never a cell of the book's path,
    only the exported code of a part beyond the book (a companion is beyond the book
    throughout), and JupyterLab's metadata says so."""
    cells = nbformat.read(notebook, as_version=4).cells
    parts = (["beyond"] * len(cells) if notebooks.is_companion(notebook) else classify(cells))
    folded = 0
    for index, (cell, part) in enumerate(zip(cells, parts)):
        if notebooks.HIDE_INPUT_TAG not in cell.metadata.get("tags", []):
            continue
        folded += 1
        assert part == "beyond" and notebooks.is_exported(cell), (
            f"{notebook.name}: cell {index} is tagged {notebooks.HIDE_INPUT_TAG} but is not "
            "exported code beyond the book")
        assert cell.metadata.get("jupyter") == {"source_hidden": True}, (
            f"{notebook.name}: cell {index} is not collapsed: run "
            "`python -m shared.tooling.notebooks normalize`")
    says_so = "open folded" in cells[0].source  # the introduction tells the learner
    assert says_so == (folded > 0), (
        f"{notebook.name}: {folded} folded cells, and the introduction "
        f"{'says' if says_so else 'does not say'} that some open folded")


@pytest.mark.parametrize("notebook", notebooks.chapter_notebooks(), ids=notebooks.notebook_id)
def test_only_a_lessons_parts_beyond_the_book_open_folded(notebook):
    """A heading tagged fold-section folds its section in JupyterLab: only the outermost heading
    of a lesson's part beyond the book, whose opening line (in view) says where the book's path
    resumes; JupyterLab's metadata says so."""
    cells = nbformat.read(notebook, as_version=4).cells
    parts = classify(cells)
    for index, cell in enumerate(cells):
        if notebooks.FOLD_SECTION_TAG not in cell.metadata.get("tags", []):
            continue
        first = cell.source.splitlines()[0] if cell.source else ""
        assert (not notebooks.is_companion(notebook) and cell.cell_type == "markdown"
                and first.startswith("#") and BEYOND in first
                and (index == 0 or parts[index - 1] != "beyond")), (
            f"{notebook.name}: cell {index} is tagged {notebooks.FOLD_SECTION_TAG} but is not the "
            "heading of a lesson's part beyond the book")
        assert cell.metadata.get("jp-MarkdownHeadingCollapsed") is True, (
            f"{notebook.name}: cell {index} is not folded: run "
            "`python -m shared.tooling.notebooks normalize`")


def code(source):
    return nbformat.v4.new_code_cell(source)


def markdown(source):
    return nbformat.v4.new_markdown_cell(source)


def test_the_rule_sees_uses_of_beyond_the_book_definitions_and_nothing_else(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        markdown("# Chapter 9"),
        code("import math\nfrom shared import final, other"),             # 1
        markdown("## 9.1 Drafts"),
        code("def final(x):\n    return x\nvalue = final(1)"),           # 3: the draft
        markdown("### 9.1.1 The final version (beyond the book)\n\n*Beyond the book: the "
                 "checks. The book's path resumes at 9.2.*"),
        code("#| export\ndef final(x):\n    return x\n\ndef other():\n    return 2\n"
             "import math\nvalue = 5\nhelper_value = 7"),                # 5
        markdown("#### A detail"),
        code("def uses_helper():\n    return helper_value"),            # 7
        markdown("## 9.2 Back on the path"),
        code("math.sqrt(final(4))"),           # 9: final is now the beyond export
        code("print(value)"),                  # 10: rebound beyond the book
        code("uses_helper()"),                 # 11: through a function defined beyond
        code("value = 3\nprint(value)\n"
             "def own(helper_value):\n    final = 2\n    return helper_value + final\n"
             "own(1)"),                        # 12: bound here first, and locals: fine
        code("shared.other()"),                # 13: a course name exported beyond the book
        markdown("## 9.3 Opening\n\n### 9.3.1 Checks (beyond the book)\n\nno opening line"),
        code("shared.other()"),                # 15: beyond the book itself
        markdown("## Exercises"),
        code("final(1), helper_value"),        # 17: closing part, not checked
    ]
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    assert classify(nb.cells) == (["book"] * 4 + ["beyond"] * 4 + ["book"] * 6 + ["beyond"] * 2
                                  + ["closing"] * 2)
    found = [(v["name"], v["use"], v["defined"]) for v in book_path_violations(path)]
    assert found == [("final", 9, 5), ("value", 10, 5), ("helper_value", 11, 5),
                     ("uses_helper", 11, 7), ("other", 13, 5)]
    problems = opening_line_problems(path)
    assert len(problems) == 1 and "cell 14" in problems[0] and "9.3.1" in problems[0]


def test_a_book_exercise_may_use_drafts_but_not_what_only_a_beyond_part_defines(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        markdown("## 9.1 Drafts"),
        code("def final(x):\n    return x"),                                      # 1
        markdown("### 9.1.1 Final (beyond the book)\n\n*Beyond the book: x. The book's path "
                 "resumes at the exercises.*"),
        code("def final(x):\n    return x\nonly_beyond = 3\nalso_beyond = 4"),     # 3
        markdown("## Exercises\n\n### Exercise 9.1: the book's"),
        code("final(1), only_beyond"),                                          # 5: flagged
        markdown("### Exercise 9.2: ours (ours, beyond the book)"),
        code("only_beyond"),                                                    # 7: marked
        markdown("### Exercise 9.3: the book's, importing what it needs"),
        code("from shared import only_beyond\nmine = only_beyond"),             # 9
        markdown("## Solutions\n\n### Solution 9.1"),
        code("also_beyond + mine"),                                             # 11: flagged
        markdown("### Solution 9.2"),
        code("only_beyond"),                                                    # 13: marked
    ]
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    found = [(v["name"], v["use"]) for v in book_exercise_violations(path)]
    assert found == [("only_beyond", 5), ("also_beyond", 11)]


def test_the_rule_catches_a_lesson_that_uses_its_companion(tmp_path):
    """A deliberate violation of each companion rule, in a chapter folder made here."""
    chapter = tmp_path / "ch09_demo"
    chapter.mkdir()

    def write(name, sources):
        nb = nbformat.v4.new_notebook()
        nb.cells = [markdown("# Chapter 9")] + [code(source) for source in sources]
        nbformat.write(nb, chapter / name)

    write("lesson.ipynb", ["#| export\ndef lesson_name():\n    return 1",
                           "from shared import lesson_name\nlesson_name()"])
    write("beyond_1_extra.ipynb", ["#| export extra\ndef extra_name():\n    return 2"])
    assert lesson_companion_violations(chapter) == []

    write("lesson.ipynb", ["#| export\ndef lesson_name():\n    return 1",
                           "from shared import extra_name\nextra_name()",  # 2
                           "import shared\nshared.extra_name()",              # 3
                           "from ch09_demo import extra",                      # 4
                           "#| export extra\nmore = 1"])                        # 5
    write("beyond_1_extra.ipynb", ["#| export extra\ndef extra_name():\n    return 2",
                                   "#| export\nloose = 1",                      # 2
                                   "#| export extra\ndef lesson_name():\n    return 3"])  # 3
    problems = lesson_companion_violations(chapter)
    assert [p.split(": ", 1)[1][:7] for p in problems[:6]] == [
        "cell 2 ", "cell 3 ", "cell 4 ", "cell 5 ", "cell 2:", "cell 3 "], problems
    assert "extra_name" in problems[0] and "beyond_1_extra.ipynb" in problems[0]
    assert "rebinds the lesson's lesson_name" in problems[5]
    assert problems[6].startswith("beyond_1_extra.ipynb exports to") and len(problems) == 7


if __name__ == "__main__":
    chosen = [Path(a) for a in sys.argv[1:]] or CHAPTERS
    for nb in chosen:
        print(outline(nb))
        found = book_path_violations(nb)
        found += book_exercise_violations(nb)
        for line in [*map(describe, found), *opening_line_problems(nb),
                     *lesson_companion_violations(nb.parent)]:
            print("  VIOLATION", line)
        print()
