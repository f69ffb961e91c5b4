"""Fixtures of chapter 5's tests (test_pretrain.py, test_bad_inputs.py)."""

import pytest

from shared import read_text


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """A folder of texts for pretrain.py: The Verdict as two documents."""
    folder = tmp_path_factory.mktemp("texts")
    story = read_text("the-verdict")
    (folder / "a.txt").write_text(story[:10_000], encoding="utf-8")
    (folder / "b.txt").write_text(story[10_000:], encoding="utf-8")
    return folder
