"""The chapters' diagrams: drawn from code, stored as small SVGs, all of them shown."""

import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import nbformat
import pytest

from shared.data import PROJECT_ROOT
from shared.tooling import notebooks


DRAWING_SCRIPTS = sorted(PROJECT_ROOT.glob("ch*/draw_figures.py"))
MAX_SVG_BYTES = 60 * 1024
MAX_PNG_OUTPUT_BYTES = 120 * 1024  # base64 text of one stored plot
FIGURE_LINK = re.compile(r"!\[[^\]]*\]\((figures/[^)\s]+)\)")


def load_figures(script: Path) -> dict:
    spec = importlib.util.spec_from_file_location(f"{script.parent.name}_draw_figures", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FIGURES


def matplotlib_version_of(svg: Path) -> str | None:
    match = re.search(r"Matplotlib v([\w.]+)", svg.read_text(encoding="utf-8"))
    return match and match.group(1)


@pytest.mark.parametrize("script", DRAWING_SCRIPTS, ids=lambda p: p.parent.name)
def test_stored_svgs_are_what_the_code_draws(script, tmp_path):
    from shared.tooling.diagrams import draw_all

    drawn = draw_all(load_figures(script), tmp_path)
    stored = sorted((script.parent / "figures").glob("*.svg"))
    assert [p.name for p in drawn] == [p.name for p in stored], (
        f"figures/ and {script.name} disagree: run `python {script.relative_to(PROJECT_ROOT)}` "
        "and delete SVGs no figure function draws")
    for new, old in zip(drawn, stored):
        ET.parse(new)  # well-formed
        assert old.stat().st_size <= MAX_SVG_BYTES, f"{old} is {old.stat().st_size} bytes"
        # Matplotlib's SVG writer changes between versions; bytes compare under the one
        # that drew the stored file (CI installs the same), shapes otherwise.
        if matplotlib_version_of(old) == matplotlib.__version__:
            assert new.read_bytes() == old.read_bytes(), (
                f"{old.relative_to(PROJECT_ROOT)} is stale: run "
                f"`python {script.relative_to(PROJECT_ROOT)}`")


def chapter_notebooks_with_figures():
    return [script.parent for script in DRAWING_SCRIPTS]


@pytest.mark.parametrize("chapter", chapter_notebooks_with_figures(), ids=lambda p: p.name)
def test_every_figure_is_shown_and_every_link_resolves(chapter):
    """The chapter's figures folder serves its lesson and its companion notebooks: each link
    in any of them resolves, and each stored figure is shown in one of them."""
    linked = set()
    for notebook in sorted(chapter.glob("*.ipynb")):
        nb = nbformat.read(notebook, as_version=4)
        links = {link for cell in nb.cells if cell.cell_type == "markdown"
                 for link in FIGURE_LINK.findall(cell.source)}
        stored = {f"figures/{p.name}" for p in (chapter / "figures").glob("*.svg")}
        assert links - stored == set(), f"{notebook.name} links to missing figures"
        linked |= links
    stored = {f"figures/{p.name}" for p in (chapter / "figures").glob("*.svg")}
    assert stored - linked == set(), f"figures shown in no notebook of {chapter.name}"


@pytest.mark.parametrize("notebook", sorted(PROJECT_ROOT.glob("ch*/*.ipynb")),
                         ids=notebooks.notebook_id)
def test_stored_plots_are_small(notebook):
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png", "")
            assert len(png) <= MAX_PNG_OUTPUT_BYTES, (
                f"{notebook.name} cell {index}: a {len(png) // 1024} KiB plot; "
                "draw it smaller or at a lower dpi")
