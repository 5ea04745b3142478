"""A run's checkpoints in Ray's storage: each epoch uploads only what changed, and the storage
is pruned to what a resume needs, `last.pt` plus the n best epochs' weights.

Why: Ray copies the directory handed to `report` into a new `checkpoint_*` folder of its
storage (local, NFS, s3://, gs://) and never deletes a file that dpda pruned. Handing it the
whole local checkpoint folder copied (1 + n_best) model-sized files per epoch per trial (for
XLS-R, 1.2 GB each), and every dropped epoch stayed in the storage.

Layout in the storage (`root` is the trial's or the Train run's directory there): each
`root/checkpoint_*/` holds what its report added, `last.pt` and, when that epoch entered the n
best, its `epoch_NNNN.pt`. After `prune`, only the newest `last.pt` and the n best epoch files
are left, wherever they were uploaded; a folder left empty is removed. Ray names the folders so
that their names sort by report order (`checkpoint_000007`, `checkpoint_2026-11-30_03-01-02.5`).

A resume needs nothing but the storage: Ray hands back its latest checkpoint (`last.pt`), and
`restore` fetches the epoch files from the sibling folders.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

LAST = "last.pt"
CHECKPOINT_PREFIX = "checkpoint_"  # Ray's folder names, Tune's and Train's alike
STAGING = ".report"  # inside the local checkpoint folder: what one report uploads


def epoch_file(epoch: int) -> str:
    """File name of a 0-based epoch's weights (the n-best files)."""
    return f"epoch_{epoch:04d}.pt"


def is_epoch_file(name: str) -> bool:
    return name.startswith("epoch_") and name.endswith(".pt")


@dataclass(frozen=True)
class CheckpointUpdate:
    """What one epoch changed: `directory` holds only the new files (last.pt and, if the epoch
    entered the n best, its weights); `keep` names the epoch files still among the n best."""

    directory: Path
    keep: frozenset[str]


def stage_update(checkpoint_dir: Path, names: Iterable[str], keep: Iterable[str]) -> CheckpointUpdate:
    """Hard-link the changed files of `checkpoint_dir` into its staging folder (no copy; the
    Trainer replaces files by rename, so a link keeps the version it was made from)."""
    staging = checkpoint_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in names:
        source = checkpoint_dir / name
        try:
            os.link(source, staging / name)
        except OSError:  # a filesystem without hard links
            shutil.copy2(source, staging / name)
    return CheckpointUpdate(staging, frozenset(keep))


def _parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0]


class StoredCheckpoints:
    """The `checkpoint_*` folders of one run in Ray's storage, on any pyarrow filesystem."""

    def __init__(self, filesystem: pafs.FileSystem, root: str) -> None:
        self.fs = filesystem
        self.root = root.rstrip("/")

    @classmethod
    def of_checkpoint(cls, checkpoint: Any) -> StoredCheckpoints:
        """The folders beside a `ray.train.Checkpoint` (its filesystem and path)."""
        return cls(checkpoint.filesystem, _parent(checkpoint.path))

    def folders(self) -> list[str]:
        """The checkpoint folders' paths, oldest first."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return sorted(i.path for i in infos
                      if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX))

    def files(self) -> dict[str, list[pafs.FileInfo]]:
        """Folder path -> its files, for every checkpoint folder (oldest first)."""
        return {
            folder: [i for i in self.fs.get_file_info(pafs.FileSelector(folder)) if i.type == pafs.FileType.File]
            for folder in self.folders()
        }

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Delete every `last.pt` but the newest and every epoch file not in `keep`, then the
        folders left empty. Returns the deleted files' paths."""
        keep = set(keep)
        listing = self.files()
        newest_last = max((f for f, infos in listing.items() if any(i.base_name == LAST for i in infos)), default=None)
        deleted = []
        for folder, infos in listing.items():
            left = len(infos)
            for info in infos:
                name = info.base_name
                stale = (name == LAST and folder != newest_last) or (is_epoch_file(name) and name not in keep)
                if stale:
                    self.fs.delete_file(info.path)
                    deleted.append(info.path)
                    left -= 1
            if left == 0:
                self.fs.delete_dir(folder)
        return deleted

    def restore(self, latest: str, target: Path, epoch_files: bool = True) -> Path:
        """Copy `latest`'s last.pt and (with `epoch_files`) every stored epoch file, the newest
        copy of each name, into `target`; the Trainer then keeps those its last.pt names among
        the n best.

        If `latest` (the checkpoint Ray registered last) has no last.pt any more, a newer report
        was uploaded and pruned the storage before Ray registered it (Ray Train registers reports
        asynchronously): its last.pt, the newest stored, is complete (a file is deleted only
        after a newer one was uploaded) and is the one resumed from."""
        target.mkdir(parents=True, exist_ok=True)
        local = pafs.LocalFileSystem()
        newest: dict[str, str] = {}
        for infos in self.files().values():  # oldest folder first: later copies win
            for info in infos:
                if (epoch_files and is_epoch_file(info.base_name)) or info.base_name == LAST:
                    newest[info.base_name] = info.path
        registered = latest.rstrip("/") + "/" + LAST
        if self.fs.get_file_info(registered).type == pafs.FileType.File:
            newest[LAST] = registered
        elif LAST not in newest:
            raise FileNotFoundError(f"{registered}: no last.pt in the checkpoint storage {self.root}")
        for name, path in newest.items():
            pafs.copy_files(path, str(target / name), source_filesystem=self.fs, destination_filesystem=local)
        return target


def report_and_prune(ray_api: Any, metrics: dict[str, Any], update: CheckpointUpdate | None,
                     mirror: Any = None, *, storage_path: str) -> None:
    """One epoch's report to Ray, the same under Ray Train and Ray Tune (`ray_api` is `ray.train`
    or `ray.tune`): upload the run dir's new files first when there is a `mirror`
    (dpda.train.run_sync: what is reported is stored), report with only the files the epoch
    changed, then prune the stored checkpoints below `storage_path` (an attribute of Ray's
    storage context: `experiment_fs_path` for a Train run, `trial_fs_path` for a Tune trial) to
    last.pt + the n best epochs."""
    if mirror is not None:
        mirror.sync()
    checkpoint = ray_api.Checkpoint.from_directory(str(update.directory)) if update else None
    ray_api.report(metrics, checkpoint=checkpoint)
    if update is not None:
        storage = ray_api.get_context().get_storage()
        StoredCheckpoints(storage.storage_filesystem, getattr(storage, storage_path)).prune(update.keep)
