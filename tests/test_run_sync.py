"""dpda.train.run_sync: a run dir mirrored to an S3 server on 127.0.0.1 (moto's, spoken to over
HTTP by pyarrow's S3 client), checked against the server's own byte count per key:
- each sync uploads only what is new or changed: every telemetry part once, summary.json again
  when rewritten; a restarted mirror re-uploads no part already stored;
- half-written files (the writers' hidden temporaries) and the run dir lock never go up;
- what is stored reads back through dpda_analysis exactly as the local run dir does;
- on a filesystem without atomic writes, every file is written under a hidden name and moved;
- a restart on another node (empty run dir) numbers a new attempt instead of overwriting parts.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

import dpda_analysis as A
from dpda.telemetry.tally import EpochTally
from synthetic_telemetry import layer_names, step_stats
from dpda.telemetry.writer import TelemetryWriter, next_attempt
from dpda.train.run_dir import RunDirLock, write_json
from dpda.train.run_sync import Destination, RunMirror, is_telemetry_part, mirrored

from object_store import LocalS3, bucket_store

BUCKET = "dpda-sync"
STEPS_PER_EPOCH = 8
N_LAYERS = 3


@pytest.fixture(scope="module")
def store():
    with bucket_store(BUCKET) as s3:
        yield s3


def log_epoch(writer: TelemetryWriter, epoch: int, rng: np.random.Generator) -> None:
    """One epoch of steps and its epoch row, as the Trainer logs them (log_epoch flushes, waiting)."""
    stats = step_stats(rng, STEPS_PER_EPOCH, N_LAYERS, 0.0, np.linspace(0, 1, STEPS_PER_EPOCH))
    first = (epoch - 1) * STEPS_PER_EPOCH
    tally = EpochTally()
    for i in range(STEPS_PER_EPOCH):
        row = {k: (v[i].tolist() if v.ndim == 2 else v[i].item()) for k, v in stats.items()}
        tally.add(row)
        writer.log_step(first + i, epoch, row, lr=1e-3)
    writer.log_epoch(epoch, first + STEPS_PER_EPOCH - 1, tally=tally, dev_loss=0.5 / epoch, dev_eer=0.2 / epoch, lr=1e-3)


def local_parts(run_dir: Path) -> set[str]:
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("part-*.parquet")}


def written_since(store: LocalS3, before: collections.Counter, prefix: str) -> dict[str, int]:
    """Bytes PUT per key below `prefix` since `before` (a copy of the server's counter)."""
    return {k[len(prefix):]: n - before[k] for k, n in store.written.items() if k.startswith(prefix) and n > before[k]}


def read_stored(store: LocalS3, key: str) -> bytes:
    with store.filesystem().open_input_stream(f"{BUCKET}/{key}") as fh:
        return fh.read()


def test_incremental_sync_to_s3(store: LocalS3, tmp_path: Path) -> None:
    run_dir = tmp_path / "trial_a"
    dest = "exp/trial_a"
    prefix = f"{BUCKET}/{dest}/"
    mirror = RunMirror(run_dir, Destination(store.filesystem(), f"{BUCKET}/{dest}"))
    rng = np.random.default_rng(0)
    lock = RunDirLock(run_dir).acquire()  # the Trainer holds it while training: never uploaded
    writer = TelemetryWriter(run_dir, "run", "a", 0, layer_names(N_LAYERS), flush_every=4)
    log_epoch(writer, 1, rng)
    write_json(run_dir / "summary.json", {"epochs": 1})

    before = store.written.copy()
    first = mirror.sync()
    parts_1 = local_parts(run_dir)
    assert len(parts_1) >= 5 and set(first) == parts_1 | {"summary.json"}
    sent = written_since(store, before, prefix)
    assert set(sent) == set(first)  # one PUT per file: no temporary keys, nothing else
    assert all(sent[p] == (run_dir / p).stat().st_size for p in first)  # whole files, once each

    # epoch 2: only its parts and the rewritten summary go up; a half-written part does not
    log_epoch(writer, 2, rng)
    write_json(run_dir / "summary.json", {"epochs": 2})
    half = run_dir / "telemetry" / "steps" / "attempt-0" / ".part-00099.parquet.tmp"
    half.write_bytes(b"PAR1 half a part")
    before = store.written.copy()
    second = mirror.sync()
    parts_2 = local_parts(run_dir)
    assert parts_2 > parts_1
    assert set(second) == (parts_2 - parts_1) | {"summary.json"}
    assert set(written_since(store, before, prefix)) == set(second)
    assert json.loads(read_stored(store, f"{dest}/summary.json")) == {"epochs": 2}
    assert mirror.sync() == []  # nothing changed, nothing uploaded

    # the temporary is published by rename (as the telemetry sink does): it goes up next time
    half.rename(half.with_name("part-00099.parquet"))
    assert mirror.sync() == ["telemetry/steps/attempt-0/part-00099.parquet"]
    half.with_name("part-00099.parquet").unlink()
    store.filesystem().delete_file(f"{prefix}telemetry/steps/attempt-0/part-00099.parquet")

    writer.close()
    lock.release()
    stored = set(store.files(f"{BUCKET}/{dest}"))
    assert not [p for p in stored if Path(p).name.startswith(".")]  # no lock, no temporaries
    visible = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert {p[len(prefix):] for p in stored} == visible

    # a restarted trial's fresh mirror: every part is already stored, only mutable files go again
    before = store.written.copy()
    again = RunMirror(run_dir, Destination(store.filesystem(), f"{BUCKET}/{dest}")).sync()
    assert not [p for p in again if is_telemetry_part(p)] and "summary.json" in again
    assert not [k for k in written_since(store, before, prefix) if is_telemetry_part(k)]

    # what is stored reads as the local run does (steps, layers, epochs: every row)
    with A.open_telemetry(run_dir) as here, A.open_telemetry(store.uri(f"{BUCKET}/{dest}")) as there:
        assert not there.location.is_local
        for view, keys in (("steps", ["step"]), ("layers", ["step", "layer"]), ("epochs", ["epoch"])):
            a = here.sql(f"select * from {view} order by {', '.join(keys)}")
            b = there.sql(f"select * from {view} order by {', '.join(keys)}")
            pd.testing.assert_frame_equal(a, b)
        assert len(there.sql("select * from steps")) == 2 * STEPS_PER_EPOCH
        assert list(there.sql("select epoch from epochs order by epoch")["epoch"]) == [1, 2]


def test_final_sync_also_after_a_failure(store: LocalS3, tmp_path: Path) -> None:
    """`mirrored` uploads once more when the trial ends, also when it failed (the error stands)."""
    run_dir = tmp_path / "trial_b"
    run_dir.mkdir()
    mirror = RunMirror(run_dir, Destination(store.filesystem(), f"{BUCKET}/exp/trial_b"))
    with pytest.raises(RuntimeError, match="diverged"):
        with mirrored(mirror):
            (run_dir / "eval").mkdir()
            (run_dir / "eval" / "metrics.csv").write_text("set,eer\nx,0.1\n")
            raise RuntimeError("diverged")
    assert read_stored(store, "exp/trial_b/eval/metrics.csv") == b"set,eer\nx,0.1\n"
    with mirrored(mirror):
        (run_dir / "model.pt").write_bytes(b"weights")
    assert read_stored(store, "exp/trial_b/model.pt") == b"weights"


class _Recording(LocalFileSystem):
    """A local filesystem (no atomic writes as far as run_sync knows) that logs writes and moves."""

    log: list[tuple[str, str]] = []

    def open(self, path, mode="rb", **kwargs):
        if "w" in mode:
            self.log.append(("write", Path(path).name))
        return super().open(path, mode, **kwargs)

    def mv(self, path1, path2, **kwargs):
        self.log.append(("move", f"{Path(path1).name}->{Path(path2).name}"))
        return super().mv(path1, path2, **kwargs)


def test_non_atomic_filesystem_writes_hidden_then_moves(tmp_path: Path) -> None:
    run_dir, target = tmp_path / "run", tmp_path / "stored"
    (run_dir / "telemetry" / "steps").mkdir(parents=True)
    (run_dir / "telemetry" / "steps" / "part-00000.parquet").write_bytes(b"a part")
    write_json(run_dir / "summary.json", {"ok": True})
    _Recording.log = []
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(_Recording(auto_mkdir=True)))
    assert sorted(RunMirror(run_dir, Destination(fs, str(target))).sync()) == [
        "summary.json", "telemetry/steps/part-00000.parquet"]
    writes = [name for op, name in _Recording.log if op == "write"]
    moves = [name for op, name in _Recording.log if op == "move"]
    assert writes and all(name.startswith(".") for name in writes)  # never under the final name
    assert sorted(m.split("->")[1] for m in moves) == ["part-00000.parquet", "summary.json"]
    assert (target / "telemetry" / "steps" / "part-00000.parquet").read_bytes() == b"a part"
    assert json.loads((target / "summary.json").read_text()) == {"ok": True}
    assert sorted(p.name for p in target.rglob("*") if p.is_file()) == ["part-00000.parquet", "summary.json"]


def test_restart_on_another_node_numbers_a_new_attempt(store: LocalS3, tmp_path: Path) -> None:
    """A restart whose run dir is empty (another node) fetches the stored attempts table first:
    its telemetry is attempt 1, resumed from its checkpoint's step, and no stored part of the
    first start is written again; the reader supersedes the first start's rows after it."""
    dest = Destination(store.filesystem(), f"{BUCKET}/exp/trial_c")
    prefix = f"{BUCKET}/exp/trial_c/"
    rng = np.random.default_rng(1)
    node_a = tmp_path / "node_a" / "trial_c"
    with mirrored(RunMirror(node_a, dest)) as mirror:
        with TelemetryWriter(node_a, "run", "c", next_attempt(node_a), layer_names(N_LAYERS), flush_every=4) as writer:
            log_epoch(writer, 1, rng)
            log_epoch(writer, 2, rng)  # killed after this epoch; its checkpoint was epoch 1's
            mirror.sync()
    first_start = set(store.files(dest.path))

    node_b = tmp_path / "node_b" / "trial_c"
    before = store.written.copy()
    with mirrored(RunMirror(node_b, dest)) as mirror:
        attempt = next_attempt(node_b)
        assert attempt == 1
        with TelemetryWriter(node_b, "run", "c", attempt, layer_names(N_LAYERS), flush_every=4,
                             resumed_from_step=STEPS_PER_EPOCH) as writer:
            log_epoch(writer, 2, rng)
            mirror.sync()
    rewritten = [k for k in written_since(store, before, prefix) if f"{prefix}{k}" in first_start]
    assert rewritten == []
    with A.open_telemetry(store.uri(dest.path)) as there:
        steps = there.sql("select step, attempt from steps order by step")
        assert list(steps["step"]) == list(range(2 * STEPS_PER_EPOCH))
        assert list(steps["attempt"]) == [0] * STEPS_PER_EPOCH + [1] * STEPS_PER_EPOCH
