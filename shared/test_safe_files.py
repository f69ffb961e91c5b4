"""write_model_folder (shared/safe_files.py): a model's folder written whole or not at all, and
never over someone's work. The savers that call it are tested with their formats in chapter 5."""

import json

import pytest
import safetensors.torch
import torch

from shared.safe_files import SAVED_BY, write_model_folder


NAMES = r"config\.json|model\.safetensors"


def writer_of(config, value=0.0, writer="test_saver"):
    def write(tmp):
        safetensors.torch.save_file({"w": torch.full((2,), value)}, tmp / "model.safetensors",
                                    metadata={"format": "pt", SAVED_BY: writer})
        (tmp / "config.json").write_text(json.dumps(config))
    return write


def save(folder, config=None, value=0.0, replace=False, writer="test_saver"):
    config = config or {"width": 4}
    write_model_folder(folder, writer_of(config, value, writer), "test_saver", NAMES,
                       same=config, replace=replace)


def contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_save_replaces_its_own_earlier_save_of_the_same_architecture(tmp_path):
    folder = tmp_path / "model"
    save(folder, value=0.0)
    save(folder, value=1.0)
    assert safetensors.torch.load_file(folder / "model.safetensors")["w"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left


def test_another_architecture_is_replaced_only_when_asked(tmp_path):
    folder, other = tmp_path / "model", {"width": 8}
    save(folder)
    before = contents(folder)
    with pytest.raises(FileExistsError, match=r"holds another model, which test_saver saved: "
                                              r"width=4 \(this model's: 8\)"):
        save(folder, config=other)
    assert contents(folder) == before
    save(folder, config=other, replace=True)
    assert json.loads((folder / "config.json").read_text()) == other


def test_a_folder_of_someone_elses_files_is_refused_and_kept(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds notes.txt, which test_saver did not write"):
        save(folder)
    assert contents(folder) == {"notes.txt": b"mine"}


def test_weights_another_program_wrote_are_refused(tmp_path):
    folder = tmp_path / "model"
    save(folder, writer="another_program")
    with pytest.raises(FileExistsError, match="its metadata does not name test_saver"):
        save(folder)


def test_replace_never_takes_a_sub_folder_it_does_not_write(tmp_path):
    folder = tmp_path / "project"
    (folder / ".git").mkdir(parents=True)
    with pytest.raises(FileExistsError, match=r"holds the folder \.git, which test_saver does "
                                              r"not write"):
        save(folder, replace=True)
    assert (folder / ".git").is_dir()


def test_replace_never_takes_the_current_or_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is the current folder or holds it"):
        save(tmp_path, replace=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(FileExistsError, match="is the home folder"):
        save(home, replace=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_a_write_that_fails_leaves_the_old_save_and_no_temporary_folder(tmp_path):
    folder = tmp_path / "model"
    save(folder)
    before = contents(folder)

    def fails(tmp):
        writer_of({"width": 4}, 1.0)(tmp)
        raise KeyboardInterrupt  # Ctrl-C after the new files are written, before the swap

    with pytest.raises(KeyboardInterrupt):
        write_model_folder(folder, fails, "test_saver", NAMES, same={"width": 4})
    assert contents(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_what_a_killed_save_left_is_named(tmp_path):
    folder = tmp_path / "model"
    save(folder)
    folder.rename(tmp_path / ".model.0123abcd.old")  # killed between its two renames
    with pytest.raises(FileExistsError, match=r"is missing, and .*\.model\.0123abcd\.old holds "
                                              r"what was there"):
        save(folder)
    (tmp_path / ".model.0123abcd.old").rename(folder)
    (tmp_path / ".model.89abcdef.tmp").mkdir()  # killed while writing
    with pytest.warns(UserWarning, match=r"\.model\.89abcdef\.tmp is left by a save"):
        save(folder)
