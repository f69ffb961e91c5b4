"""The first code cell of every chapter notebook, which sets the course up on Google Colab.

Colab opens a notebook on its own, with nothing of the course around it, while every notebook
imports `shared` and earlier chapters. So each chapter's notebook has this cell as its first code
cell (right after the chapter's title). On Colab it finds the course (a copy in /content or at
the top of the learner's Google Drive) or clones it from the address the learner writes in it,
installs the part of requirements.txt above its line "# Colab stops here" (Colab's own torch, a
CUDA build, meets `torch>=2.7` and is kept; its own Jupyter is not replaced),
puts the course on sys.path and works from the chapter's folder, as Jupyter does on your own
machine. Anywhere else the cell does nothing: one `if` on a module Python has already loaded.
The cell cannot import the course (it is what brings it), so it uses the standard library only.

    python -m shared.tooling.colab NOTEBOOK ...   insert the cell, or bring it up to date, and
                                                  export

Inserting a cell renumbers the cells after it, so the notebook's modules are exported again
(their `# %% ... cell N` lines follow). shared/test_setup.py checks every chapter notebook.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

from shared.tooling.command_line import CommandParser, run_main


CELL_ID = "colab-setup"
FIRST_LINE = "# Google Colab only (anywhere else this cell does nothing): fetch the course,"
TEMPLATE = FIRST_LINE + '''
# install what it imports, and work from this chapter's folder (README.md, "Google Colab").
import sys

if "google.colab" in sys.modules:
    COURSE_GIT_URL = ""  # your copy's git address, unless a copy is in /content or atop Drive
    import glob
    import os
    import subprocess

    copies = (sorted(glob.glob("/content/*/shared/tooling/colab.py"))  # /content first, then Drive
              + sorted(glob.glob("/content/drive/MyDrive/*/shared/tooling/colab.py")))
    if copies:
        course = os.path.dirname(os.path.dirname(os.path.dirname(copies[0])))
    elif COURSE_GIT_URL:
        name = COURSE_GIT_URL.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]
        course = os.path.join("/content", name)
        subprocess.run(["git", "clone", "--depth", "1", COURSE_GIT_URL, course], check=True)
    else:
        raise RuntimeError("no copy of the course in /content or in a folder at the top of "
                           "your Drive (mounted?): write its git address in COURSE_GIT_URL")
    if course not in sys.path:  # what the course imports; Colab's own Jupyter stays
        with open(os.path.join(course, "requirements.txt")) as file:
            needs = file.read().split("# Colab stops here")[0]
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", "/dev/stdin"],
                       input=needs, text=True, cwd=course, check=True)
        sys.path.insert(0, course)
        print("the course:", course)
    os.chdir(os.path.join(course, "CHAPTER_FOLDER"))'''


def colab_cell(chapter: str) -> str:
    """The cell's source for the notebook in the folder named `chapter`."""
    return TEMPLATE.replace("CHAPTER_FOLDER", chapter)


def first_code_cell(nb: nbformat.NotebookNode) -> int | None:
    return next((i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"), None)


def insert_colab_cell(notebook: Path) -> bool:
    """Make the notebook's first code cell the Colab cell (inserted before the first code cell,
    or its source brought up to date), then export the notebook's modules again. Returns False
    when the notebook already had it. The new cell has no output; in a notebook stored with
    its run (counts 1, 2, ... in order) it counts 1 and the counts after it move up by one."""
    from shared.tooling import notebooks

    notebooks.check_notebook_path(notebook)
    nb = notebooks.read_notebook(notebook)
    source = colab_cell(notebook.resolve().parent.name)
    index = first_code_cell(nb)
    if index is not None and nb.cells[index].source.startswith(FIRST_LINE):
        if nb.cells[index].source == source:
            return False
        nb.cells[index].source = source
    else:
        index = min(1, len(nb.cells)) if index is None else index  # after the title
        code = [c for c in nb.cells if c.cell_type == "code"]
        executed = [c.execution_count for c in code] == list(range(1, len(code) + 1))
        for cell in code if executed else []:
            cell.execution_count += 1
        cell = nbformat.v4.new_code_cell(source, execution_count=1 if executed else None)
        cell.id = CELL_ID
        nb.cells.insert(index, cell)
    nbformat.write(notebooks.normalize(nb), notebook)
    notebooks.export(notebook)  # the stub (names only) needs no update
    return True


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m shared.tooling.colab", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks")
    args = parser.parse_args(argv)
    from shared.tooling import notebooks

    for notebook in args.notebooks:  # every path before any is written: nothing half-done
        notebooks.check_notebook_path(notebook)
    for notebook in args.notebooks:
        changed = insert_colab_cell(notebook)
        print(f"{notebook}: {'Colab cell written' if changed else 'Colab cell already there'}")
    return 0


if __name__ == "__main__":
    run_main(main)
