"""dpda.train.checkpoint_store on a local pyarrow filesystem standing for Ray's storage: an
update holds only the changed files, pruning leaves exactly last.pt + the n best, and a restore
finds them from the storage alone, also when Ray's registered folder lost its last.pt to a
newer report that Ray had not registered yet."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

from dpda.train.checkpoint_store import LAST, StoredCheckpoints, epoch_file, stage_update


def report(local: Path, storage: Path, folder: str, epoch: int, best: list[int]) -> None:
    """One epoch as the Trainer + Ray do it: write, stage, upload the staging folder, prune."""
    (local / LAST).write_bytes(f"state after epoch {epoch}".encode())
    names = [LAST]
    if epoch in best:
        (local / epoch_file(epoch)).write_bytes(f"weights {epoch}".encode())
        names.append(epoch_file(epoch))
    update = stage_update(local, names, {epoch_file(e) for e in best})
    assert sorted(p.name for p in update.directory.iterdir()) == sorted(names)
    (storage / folder).mkdir()
    pafs.copy_files(str(update.directory), str(storage / folder))
    StoredCheckpoints(pafs.LocalFileSystem(), str(storage)).prune(update.keep)


def test_prune_keeps_last_and_the_n_best_and_restore_reads_them(tmp_path: Path) -> None:
    local, storage = tmp_path / "local", tmp_path / "storage"
    local.mkdir()
    storage.mkdir()
    # n_best = 2; best lists after each epoch (epoch 2 never enters, epoch 0 is dropped at 3)
    bests = [[0], [0, 1], [0, 1], [1, 3]]
    for epoch, best in enumerate(bests):
        report(local, storage, f"checkpoint_{epoch:06d}", epoch, best)
    held = sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file())
    assert held == ["checkpoint_000001/epoch_0001.pt", "checkpoint_000003/epoch_0003.pt", "checkpoint_000003/last.pt"]
    assert not (storage / "checkpoint_000000").exists() and not (storage / "checkpoint_000002").exists()

    stored = StoredCheckpoints(pafs.LocalFileSystem(), str(storage))
    out = stored.restore(str(storage / "checkpoint_000003"), tmp_path / "restored")
    assert sorted(p.name for p in out.iterdir()) == [epoch_file(1), epoch_file(3), LAST]
    assert (out / LAST).read_bytes() == b"state after epoch 3"
    only_last = stored.restore(str(storage / "checkpoint_000003"), tmp_path / "rank1", epoch_files=False)
    assert [p.name for p in only_last.iterdir()] == [LAST]

    # Ray registered checkpoint_000002 last, but a later report already pruned its last.pt away:
    # the newest complete last.pt is the one resumed from
    again = stored.restore(str(storage / "checkpoint_000002"), tmp_path / "late")
    assert (again / LAST).read_bytes() == b"state after epoch 3"
