"""Mirror a run dir (telemetry parts, model.pt, summary.json, eval files) to object storage,
incrementally, so the run's files outlive the node that trained it.

Why: under `dpda tune --storage s3://...` a trial's run dir is node-local scratch and Ray uploads
only what a report hands it (the checkpoints, dpda.train.checkpoint_store). An autoscaled worker
that goes away would take the telemetry with it. The trial calls `RunMirror.sync` before each
report and once at its end, so whatever it reported is in the storage by then.

What a sync uploads: every file below the run dir whose (size, mtime) differs from what this
mirror last uploaded, except hidden names (the writers' `.tmp` files and the run dir lock).
Telemetry parts are immutable once published, so each goes up once; summary.json and the other
small mutable files go up again when rewritten. A new mirror (a restarted trial) first lists the
destination and skips every telemetry part already there with the same size.

Atomicity: the local writers publish each file by rename once it is complete (the telemetry
sink, `run_dir.write_json`, `checkpoint.save_checkpoint`), and hidden files are never read, so
only whole files are uploaded. On object stores (S3, GCS, Azure) an object appears only when its
PUT completes; on any other filesystem a file is written under a hidden temporary name and
moved into place. A reader never sees a half-written file.

A trial restarted on another node starts with an empty run dir, where the telemetry would
number its attempt 0 again (`dpda.telemetry.next_attempt` counts the run dir's attempts) and
overwrite the stored parts of the first start. So `mirrored` first fetches the stored attempts
table (one small part per start) into the run dir: the restart gets a new attempt number, and
its rows supersede the earlier starts' as on one node.

Layout: `<destination>/<path relative to the run dir>`, i.e. the trial's folder in Tune's
storage, beside its params.json / result.json, which is what dpda_analysis.discover reads.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from dpda_analysis import schema as S

# filesystems whose writes are atomic: the object exists only once its upload completed
ATOMIC_PUT: tuple[type, ...] = tuple(
    getattr(pafs, name) for name in ("S3FileSystem", "GcsFileSystem", "AzureFileSystem") if hasattr(pafs, name)
)
_CHUNK = 8 << 20


@dataclass(frozen=True)
class Destination:
    """Where a run dir is mirrored: a directory on a pyarrow filesystem (picklable, so it
    travels to Ray workers)."""

    filesystem: pafs.FileSystem
    path: str

    def join(self, relpath: str) -> str:
        return self.path.rstrip("/") + "/" + relpath


def trial_destination(storage: Any) -> Destination | None:
    """The trial's folder in Ray's storage (a `StorageContext`: `storage_filesystem`,
    `trial_fs_path`), or None when that storage is the local filesystem (where the trial dir
    is already written to, or synced to, the storage by Tune itself)."""
    fs = storage.storage_filesystem
    if isinstance(fs, pafs.LocalFileSystem):
        return None
    return Destination(fs, storage.trial_fs_path)


def is_telemetry_part(relpath: str) -> bool:
    """A published Parquet part of the telemetry (immutable once written)."""
    parts = relpath.split("/")
    return parts[0] == S.TELEMETRY_DIRNAME and Path(parts[-1]).match(S.PART_GLOB)


@dataclass
class RunMirror:
    """Uploads what changed in `run_dir` since the last sync to `destination`."""

    run_dir: Path
    destination: Destination
    _sent: dict[str, tuple[int, int]] = field(default_factory=dict, init=False, repr=False)
    _stored_parts: dict[str, int] | None = field(default=None, init=False, repr=False)
    _dirs: set[str] = field(default_factory=set, init=False, repr=False)

    def sync(self) -> list[str]:
        """Upload new and changed files; returns their paths relative to the run dir."""
        if self._stored_parts is None:
            self._stored_parts = self._list_stored_parts()
        uploaded = []
        for relpath, local in self._files():
            stat = local.stat()
            version = (stat.st_size, stat.st_mtime_ns)
            if self._sent.get(relpath) == version:
                continue
            if is_telemetry_part(relpath) and self._stored_parts.get(relpath) == stat.st_size:
                self._sent[relpath] = version  # uploaded by an earlier mirror of this run
                continue
            self._sent[relpath] = self._upload(local, relpath)
            uploaded.append(relpath)
        return uploaded

    def fetch(self, reldir: str) -> list[str]:
        """Download the stored files below `reldir` that the run dir lacks (hidden ones too are
        skipped); returns their relative paths."""
        fs, root = self.destination.filesystem, self.destination.path.rstrip("/")
        selector = pafs.FileSelector(f"{root}/{reldir}", recursive=True, allow_not_found=True)
        fetched = []
        for info in fs.get_file_info(selector):
            relpath = info.path[len(root) + 1:]
            local = self.run_dir / relpath
            if info.type != pafs.FileType.File or info.base_name.startswith(".") or local.exists():
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.fetch-{os.getpid()}")
            with fs.open_input_stream(info.path) as source, open(tmp, "wb") as sink:
                shutil.copyfileobj(source, sink, _CHUNK)
            os.replace(tmp, local)
            fetched.append(relpath)
        return fetched

    def _files(self) -> Iterator[tuple[str, Path]]:
        """(relative POSIX path, local path) of every visible file, in a stable order."""
        for dirpath, dirnames, filenames in os.walk(self.run_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield (here / name).relative_to(self.run_dir).as_posix(), here / name

    def _list_stored_parts(self) -> dict[str, int]:
        fs, root = self.destination.filesystem, self.destination.path.rstrip("/")
        selector = pafs.FileSelector(f"{root}/{S.TELEMETRY_DIRNAME}", recursive=True, allow_not_found=True)
        return {
            info.path[len(root) + 1:]: info.size
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        }

    def _upload(self, local: Path, relpath: str) -> tuple[int, int]:
        """Copy one file; returns the (size, mtime) of the version uploaded (the one opened:
        a file replaced meanwhile differs and goes up again at the next sync)."""
        fs = self.destination.filesystem
        final = self.destination.join(relpath)
        parent = final.rsplit("/", 1)[0]
        if parent not in self._dirs:
            fs.create_dir(parent, recursive=True)
            self._dirs.add(parent)
        atomic = isinstance(fs, ATOMIC_PUT)
        target = final if atomic else f"{parent}/.{final.rsplit('/', 1)[1]}.sync-{os.getpid()}"
        with open(local, "rb") as source:
            stat = os.fstat(source.fileno())
            with fs.open_output_stream(target) as sink:
                shutil.copyfileobj(source, sink, _CHUNK)
        if not atomic:
            fs.move(target, final)
        return stat.st_size, stat.st_mtime_ns


ATTEMPTS_DIR = f"{S.TELEMETRY_DIRNAME}/attempts"  # one part per start of the run: what next_attempt counts


@contextmanager
def mirrored(mirror: RunMirror | None) -> Iterator[RunMirror | None]:
    """Around a mirrored run: first fetch the stored attempts table (a restart on another node
    numbers its attempt after the earlier starts); when the block ends, sync once more, so the
    final files (model.pt, summary.json, eval) reach the storage, also after a failure (the
    telemetry up to it), without hiding the error."""
    if mirror is not None:
        mirror.fetch(ATTEMPTS_DIR)
    try:
        yield mirror
    except BaseException:
        if mirror is not None:
            try:
                mirror.sync()
            except Exception as exc:  # the training error is the one to report
                print(f"[dpda] could not upload {mirror.run_dir} to {mirror.destination.path}: {exc}",
                      file=sys.stderr, flush=True)
        raise
    if mirror is not None:
        mirror.sync()
