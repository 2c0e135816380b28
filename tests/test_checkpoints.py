"""Tests of spgm_lobes.checkpoints: a run killed while saving stays resumable."""

import torch
from speechbrain.utils.checkpoints import Checkpointer

from spgm_lobes.checkpoints import checkpoint_problem, required_recoverables, set_aside_incomplete_checkpoints


def _checkpointer(save):
    model = torch.nn.Linear(3, 2)
    return Checkpointer(save, recoverables={"model": model, "optimizer": torch.optim.Adam(model.parameters())})


def test_complete_checkpoints_stay(tmp_path):
    ckpt = _checkpointer(tmp_path)
    paths = [ckpt.save_checkpoint(name=n).path for n in ("a", "b")]
    assert [checkpoint_problem(p, ckpt.recoverables) for p in paths] == [None, None]
    assert set_aside_incomplete_checkpoints(ckpt) == []
    assert sorted(p.name for p in tmp_path.glob("CKPT+*")) == ["CKPT+a", "CKPT+b"]


def test_cut_short_empty_and_missing_files_are_moved_aside_with_their_contents(tmp_path):
    ckpt = _checkpointer(tmp_path)
    good = ckpt.save_checkpoint(name="good").path
    cut = ckpt.save_checkpoint(name="cut").path
    data = (cut / "optimizer.ckpt").read_bytes()
    (cut / "optimizer.ckpt").write_bytes(data[: len(data) // 2])
    empty = ckpt.save_checkpoint(name="empty").path
    (empty / "model.ckpt").write_bytes(b"")
    missing = ckpt.save_checkpoint(name="missing").path
    (missing / "optimizer.ckpt").unlink()
    assert "cut short" in checkpoint_problem(cut, ckpt.recoverables)
    assert "empty" in checkpoint_problem(empty, ckpt.recoverables)
    assert "missing" in checkpoint_problem(missing, ckpt.recoverables)

    moved = set_aside_incomplete_checkpoints(ckpt)
    assert sorted(p.name for p in moved) == ["CKPT+cut", "CKPT+empty", "CKPT+missing"]
    assert all(p.parent == tmp_path / "incomplete" for p in moved)
    assert (tmp_path / "incomplete" / "CKPT+cut" / "model.ckpt").exists()  # nothing is deleted
    assert [p.name for p in tmp_path.glob("CKPT+*")] == [good.name]
    assert ckpt.recover_if_possible().path == good


def test_unreadable_meta_and_a_second_move_of_the_same_name(tmp_path):
    ckpt = _checkpointer(tmp_path)
    for _ in range(2):
        bad = ckpt.save_checkpoint(name="bad").path
        (bad / "CKPT.yaml").write_text("end-of-epoch: [unclosed", encoding="utf-8")
        assert "CKPT.yaml cannot be read" in checkpoint_problem(bad, ckpt.recoverables)
        set_aside_incomplete_checkpoints(ckpt)
    assert sorted(p.name for p in (tmp_path / "incomplete").iterdir()) == ["CKPT+bad", "CKPT+bad.1"]


def test_a_missing_save_folder_is_fine(tmp_path):
    ckpt = _checkpointer(tmp_path / "save")
    (tmp_path / "save").rmdir()
    assert set_aside_incomplete_checkpoints(ckpt) == []


def test_a_checkpoint_without_an_optional_recoverable_stays_and_recovers(tmp_path):
    # saved by a run without a component that the resumed run has (a warm-up, a gradient scaler)
    saved = _checkpointer(tmp_path).save_checkpoint(name="paper").path
    ckpt = _checkpointer(tmp_path)
    ckpt.add_recoverable("lr_warmup", torch.nn.Linear(1, 1), optional_load=True)
    assert checkpoint_problem(saved, required_recoverables(ckpt)) is None
    assert set_aside_incomplete_checkpoints(ckpt) == []
    assert ckpt.recover_if_possible().path == saved
    # its file, when there, is still checked; a required one still has to be there
    cut = ckpt.save_checkpoint(name="cut").path
    (cut / "lr_warmup.ckpt").write_bytes(b"")
    missing = ckpt.save_checkpoint(name="missing").path
    (missing / "model.ckpt").unlink()
    assert sorted(p.name for p in set_aside_incomplete_checkpoints(ckpt)) == ["CKPT+cut", "CKPT+missing"]
