"""Each chapter reads as a complete teaching text beside the book: the book's section numbers
in order, its exercises plus ours, a worked Solutions section, figures, and explanation.

The thresholds are the course's promises (README, "Chapters"), not style preferences: a
chapter that drops a section, an exercise or its solution fails here.
"""

import re

import nbformat
import pytest

from shared.data import PROJECT_ROOT
from shared.tooling import notebooks


# chapter folder -> (the book's numbered sections, the book's exercises)
BOOK = {
    "ch02_text_data": (["2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8"], ["2.1", "2.2"]),
    "ch03_attention": (["3.1", "3.2", "3.3", "3.4", "3.5", "3.6"], ["3.1", "3.2", "3.3"]),
    "ch04_gpt_model": (["4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7"], ["4.1", "4.2", "4.3"]),
    "ch05_pretraining": (["5.1", "5.2", "5.3", "5.4", "5.5"],
                         ["5.1", "5.2", "5.3", "5.4", "5.5", "5.6"]),
    "ch06_classification": (["6.1", "6.2", "6.3", "6.4", "6.5", "6.6", "6.7", "6.8"],
                            ["6.1", "6.2", "6.3"]),
    "ch07_instructions": (["7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "7.7", "7.8", "7.9"],
                          ["7.1", "7.2", "7.3", "7.4"]),
}
MIN_OWN_EXERCISES = 2
MIN_FIGURES = 8
MIN_WORDS = 3000
BEYOND = "(beyond the book)"


def read(chapter: str) -> nbformat.NotebookNode:
    return nbformat.read(notebooks.lesson_notebook(PROJECT_ROOT / chapter), as_version=4)


def headings(nb, level: int) -> list[str]:
    marker = "#" * level + " "
    return [line[len(marker):].strip() for cell in nb.cells if cell.cell_type == "markdown"
            for line in cell.source.splitlines() if line.startswith(marker)]


def numbered(titles: list[str]) -> list[tuple[str, str]]:
    return [(m.group(1), title) for title in titles
            if (m := re.match(r"(\d+\.\d+)\s", title))]


@pytest.mark.parametrize("chapter", sorted(BOOK))
def test_sections_carry_the_books_numbers_in_order(chapter):
    sections, _ = BOOK[chapter]
    found = numbered(headings(read(chapter), 2))
    numbers = [number for number, _ in found]
    assert numbers[:len(sections)] == sections, f"{chapter}: sections {numbers}"
    for number, title in found[len(sections):]:  # what we add after the book's sections
        assert BEYOND in title, f"{chapter}: section {number} follows the book's; mark it {BEYOND}"


def exercises_of(nb) -> list[str]:
    return [m.group(1) for t in headings(nb, 3) if (m := re.match(r"Exercise (\d+\.\d+)", t))]


def check_exercises_and_solutions(name: str, nb) -> list[str]:
    """A notebook's exercises: both closing sections, one solution each in the same order, and
    a `check_answer` for each. Returns the exercise numbers."""
    level2 = headings(nb, 2)
    assert level2[-2:] == ["Exercises", "Solutions"], f"{name} must end with both sections"
    exercises = exercises_of(nb)
    solutions = [m.group(1) for t in headings(nb, 3) if (m := re.match(r"Solution (\d+\.\d+)", t))]
    assert solutions == exercises, f"{name}: every exercise gets one solution, in the same order"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for exercise in exercises:  # each has a check that says right or wrong
        assert f'check_answer("{exercise}"' in text, f"{name}: no check_answer for {exercise}"
    return exercises


@pytest.mark.parametrize("chapter", sorted(BOOK))
def test_exercises_are_the_books_and_ours_each_with_a_solution(chapter):
    """The lesson holds the book's exercises first; with its companions' exercises (each in the
    notebook it exercises), the chapter adds at least MIN_OWN_EXERCISES of ours."""
    _, book_exercises = BOOK[chapter]
    exercises = check_exercises_and_solutions(chapter, read(chapter))
    assert exercises[:len(book_exercises)] == book_exercises
    for companion in notebooks.companion_notebooks(PROJECT_ROOT / chapter):
        nb = nbformat.read(companion, as_version=4)
        if exercises_of(nb):
            exercises += check_exercises_and_solutions(companion.name, nb)
    assert len(set(exercises)) == len(exercises), f"{chapter}: an exercise number twice"
    assert len(exercises) >= len(book_exercises) + MIN_OWN_EXERCISES


@pytest.mark.parametrize("chapter", sorted(BOOK))
def test_enough_figures_and_explanation(chapter):
    nb = read(chapter)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    words = sum(len(re.sub(r"```.*?```", "", m, flags=re.S).split()) for m in markdown)
    diagrams = sum(len(re.findall(r"!\[[^\]]*\]\(figures/[^)]+\.svg\)", m)) for m in markdown)
    plots = sum(1 for c in nb.cells for o in c.get("outputs", [])
                if "image/png" in o.get("data", {}))
    assert words >= MIN_WORDS, f"{chapter}: {words} words of explanation"
    assert diagrams + plots >= MIN_FIGURES, f"{chapter}: {diagrams} diagrams, {plots} plots"


@pytest.mark.parametrize("notebook", notebooks.chapter_notebooks(), ids=notebooks.notebook_id)
def test_stored_run_shows_no_error(notebook):
    errors = [i for i, c in enumerate(nbformat.read(notebook, as_version=4).cells)
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == [], f"{notebook.name}: cells {errors} store an error (Run All would show it)"


def exercise_cells(nb) -> list[str]:
    """The code cells between the Exercises and the Solutions headings."""
    cells, inside = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            level2 = [line[3:].strip() for line in cell.source.splitlines()
                      if line.startswith("## ")]
            if "Solutions" in level2:
                break
            inside = inside or "Exercises" in level2
        elif inside:
            cells.append(cell.source)
    return cells


@pytest.mark.parametrize("notebook", notebooks.chapter_notebooks(), ids=notebooks.notebook_id)
def test_exercise_cells_hold_no_answer(notebook):
    """An exercise cell asks and checks: it neither holds nor computes the expected value."""
    import ast

    from shared.exercises import exercise_spec
    from shared.test_exercises import revealing_strings

    chapter = notebook.name
    cells = exercise_cells(nbformat.read(notebook, as_version=4))
    if notebooks.is_companion(notebook) and not cells:
        pytest.skip("a companion without exercises")
    assert cells, f"{chapter} has no exercise cells"
    for source in cells:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check_answer":
                assert len(node.args) == 2, f"check_answer with an expected value: {source}"
                assert all(isinstance(k.value, ast.Name) for k in node.keywords), (
                    f"check_answer is given an expression, not one of the learner's "
                    f"objects: {source}")
            names = [t for t in ast.walk(node) if isinstance(t, ast.Name)
                     and isinstance(t.ctx, ast.Store)]
            for name in names:
                assert not re.match(r"_*(expected|solution|correct)", name.id), (
                    f"{name.id} computes the answer in view: {source}")
    text = "\n".join(cells)
    for number in re.findall(r'check_answer\("(\d+\.\d+)"', text):
        spec = exercise_spec(number)
        if spec.check is None and not (spec.examples and spec.examples().get("given")):
            for shown in revealing_strings(spec.expected()):
                assert not re.search(rf"(?<![\d.]){re.escape(shown)}(?!\d)", text), (
                    f"exercise {number}'s answer ({shown}) is in view")


# Text that narrates the course's own history instead of saying what is true now.
HISTORY = re.compile(
    r"stored before|earlier stored|previously stored|superseded|measured before the|"
    r"the (?:chart|output|table) stored before|used to (?:print|show|say)|"
    r"earlier version of this|before (?:the|this) fix|"
    r"(?:was|were) fixed\b|no longer (?:prints|shows|says)", re.I)


@pytest.mark.parametrize("notebook", notebooks.chapter_notebooks(), ids=notebooks.notebook_id)
def test_no_passage_narrates_the_courses_own_history(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    found = [(index, match.group(0)) for index, cell in enumerate(cells)
             if cell.cell_type == "markdown" for match in [HISTORY.search(cell.source)] if match]
    assert not found, (f"{notebook.name}: cells narrating an earlier output or a fix (say what is "
                       f"true now, with one machine and date): {found}")
