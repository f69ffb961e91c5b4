"""shared/safe_files.py: write_model_folder (a model's folder written whole or not at all, and
never over someone's work; the savers that call it are tested with their formats in chapter 5),
and one file of torch.save's (read, replaced, its values checked; chapter 5's checkpoints are
tested in ch05_pretraining/test_checkpoints.py). pretrain.py's run folder is tested beside it,
in ch05_pretraining/test_run_folder.py."""

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from shared.safe_files import (
    SAVED_BY,
    check_file_replaceable,
    check_loads_back,
    read_torch_file,
    write_model_folder,
)


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
    for replace in (False, True):  # one rule: what the saver does not write is never replaced
        with pytest.raises(FileExistsError, match="holds notes.txt, which test_saver does not "
                                                  "write: test_saver replaces only what it "
                                                  "writes, even with replace=True"):
            save(folder, replace=replace)
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


# One file of torch.save's: read_torch_file, check_file_replaceable, check_loads_back --------

@pytest.mark.parametrize("mmap", [False, True])
def test_read_torch_file_reads_tensors_and_values_in_either_format(mmap, tmp_path):
    state = {"w": torch.arange(3.0), "step": 7}
    torch.save(state, tmp_path / "new.pt")
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)  # torch < 1.6
    for name in ("new.pt", "old.pt"):  # mmap maps what it can, and reads an old file whole
        read = read_torch_file(tmp_path / name, mmap=mmap)
        assert read["step"] == 7 and torch.equal(read["w"], state["w"])


@pytest.mark.parametrize("write, error", [
    (lambda path: None, FileNotFoundError),
    (lambda path: path.write_text("my notes\n"), ValueError),
    (lambda path: path.mkdir(), ValueError),
    (lambda path: torch.save({"w": torch.zeros(9)}, path) or path.write_bytes(
        path.read_bytes()[:200]), ValueError),  # truncated
    (lambda path: torch.save({"call": print}, path), ValueError),  # code: weights_only refuses
])
def test_read_torch_file_refuses_what_it_cannot_read_naming_the_path(write, error, tmp_path):
    path = tmp_path / "file.pt"
    write(path)
    with pytest.raises(error) as refusal:
        read_torch_file(path, mmap=True)
    assert str(path) in str(refusal.value) and "newer torch" not in str(refusal.value)


def test_check_file_replaceable_refuses_a_folder_and_what_ours_rejects_unless_told(tmp_path):
    seen = []

    def ours(saved):
        seen.append(saved)
        return isinstance(saved, dict) and saved.get("kind") == "mine"

    check_file_replaceable(tmp_path / "new.pt", "my_saver", False, ours)  # nothing there yet
    with pytest.raises(ValueError, match="is a folder: my_saver writes a file"):
        check_file_replaceable(tmp_path, "my_saver", True, ours)  # not even when told
    with pytest.raises(TypeError, match="replace"):
        check_file_replaceable(tmp_path / "new.pt", "my_saver", "yes", ours)
    torch.save({"kind": "mine"}, tmp_path / "mine.pt")
    check_file_replaceable(tmp_path / "mine.pt", "my_saver", False, ours)
    torch.save([1, 2, 3], tmp_path / "other.pt")  # torch.save's, not ours: replaced when told
    with pytest.raises(ValueError, match="what my_saver saves .*: pass replace=True"):
        check_file_replaceable(tmp_path / "other.pt", "my_saver", False, ours)
    assert seen == [{"kind": "mine"}, [1, 2, 3]]
    check_file_replaceable(tmp_path / "other.pt", "my_saver", True, ours)
    (tmp_path / "notes.txt").write_text("my notes\n")
    for replace in (False, True):
        with pytest.raises(ValueError, match="notes.txt is not a file of torch.save's, which "
                                             "my_saver never replaces, even with replace=True"):
            check_file_replaceable(tmp_path / "notes.txt", "my_saver", replace, ours)
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"  # a check writes nothing


@pytest.mark.parametrize("value", [Path("runs/a"), {"ok": [1], "bad": Path("b")}, lambda: None])
def test_check_loads_back_refuses_what_weights_only_cannot_read_naming_it(value):
    check_loads_back("step", {"lr": 0.1, "seen": [1, (2, "a")], "w": torch.zeros(2)}, "reader")
    with pytest.raises(ValueError, match=r"^the extra value note=.* could not be loaded back: "
                                         r"reader's torch.load\(weights_only=True\)"):
        check_loads_back("the extra value note", value, "reader")
