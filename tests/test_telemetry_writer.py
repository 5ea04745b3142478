"""TelemetryWriter: round trip, schema contract, crash safety (kill -9) and input checks."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpda_analysis import open_telemetry
from dpda_analysis import schema as S
from dpda.telemetry import NullTelemetryWriter, TelemetryError, TelemetryWriter, make_writer, next_attempt
from dpda.telemetry.sink import PartSink
from dpda.telemetry.tally import EpochTally

LAYERS = ["conv.weight", "conv.bias", "fc.weight"]


def fake_stats(rng: np.random.Generator, n_layers: int = len(LAYERS), skipped: bool = False) -> dict:
    cos = float(rng.uniform(-1, 1))
    return {
        "loss_orig": float(rng.random()), "loss_aug": float(rng.random()), "cos": cos,
        "norm_orig": float(rng.random()), "norm_aug": float(rng.random()), "conflict": cos < 0,
        "cos_update_orig": float(rng.random()), "cos_update_aug": float(rng.random()),
        "update_norm": float(rng.random()), "skipped": skipped,
        "layer_cos": rng.uniform(-1, 1, n_layers).tolist(),
        "layer_norm_orig": rng.random(n_layers).tolist(),
        "layer_norm_aug": rng.random(n_layers).tolist(),
    }


def read(run_dir: Path, table: str) -> pa.Table:
    files = sorted(glob.glob(str(run_dir / "telemetry" / table / "attempt-*" / S.PART_GLOB)))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else S.TABLES[table].empty_table()


def test_round_trip_types_counts_and_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    logged = []
    with TelemetryWriter(tmp_path, "run-a", "t1", 0, LAYERS, world_size=2, rule="pcgrad", strength=0.7,
                         rawboost_algo=4, config={"lr": 1e-4}, flush_every=7) as writer:
        tally = EpochTally()
        for step in range(23):
            stats = fake_stats(rng, skipped=step == 5)
            if step == 5:
                stats["layer_cos"][1] = float("nan")  # stored as null
            logged.append(stats)
            writer.log_step(step, step // 10 + 1, stats, lr=1e-4)
            tally.add(stats)
            if step == 9:
                writer.log_epoch(1, 9, tally=tally, dev_loss=0.5, dev_eer=0.12, lr=1e-4, dev_acc=0.9)
    steps, layers = read(tmp_path, "steps"), read(tmp_path, "layers")
    for name in S.TABLES:
        files = glob.glob(str(tmp_path / "telemetry" / name / "attempt-0" / S.PART_GLOB))
        assert files, name
        for f in files:
            schema = pq.read_schema(f)
            assert schema.metadata[S.META_VERSION_KEY] == str(S.SCHEMA_VERSION).encode()
            assert schema.metadata[S.META_TABLE_KEY] == name.encode()
            assert schema.remove_metadata().equals(S.TABLES[name]), name
    assert steps.num_rows == 23 and layers.num_rows == 23 * len(LAYERS)
    df = steps.to_pandas().sort_values("step")
    assert df["step"].tolist() == list(range(23))
    for key in S.STEP_STAT_KEYS:
        np.testing.assert_array_equal(df[key].to_numpy(), [s[key] for s in logged])
    assert set(df["rule"]) == {"pcgrad"} and set(df["world_size"]) == {2} and set(df["rawboost_algo"]) == {4}
    ldf = layers.to_pandas().sort_values(["step", "layer"])
    for src, col in S.LAYER_STAT_KEYS.items():
        expect = np.asarray([s[src] for s in logged], np.float32)
        expect[5] = np.nan  # the skipped step: its gradients were never applied, stored as null
        np.testing.assert_array_equal(ldf[col].to_numpy(), expect.reshape(-1))
    assert layers.column("cos").null_count == len(LAYERS) and layers.column("norm_orig").null_count == len(LAYERS)
    # a non-finite cosine of a step that was not skipped is null too
    with TelemetryWriter(tmp_path / "b", "run-b", "t1", 0, LAYERS, flush_every=100) as writer:
        stats = fake_stats(rng)
        stats["layer_cos"][1] = float("nan")
        writer.log_step(0, 1, stats, lr=1e-4)
    assert read(tmp_path / "b", "layers").column("cos").null_count == 1
    epochs = read(tmp_path, "epochs").to_pandas()
    assert len(epochs) == 1 and epochs["dev_eer"].iloc[0] == 0.12
    ok = [s for s in logged[:10] if not s["skipped"]]
    assert epochs["n_steps"].iloc[0] == 10
    assert epochs["train_loss_orig"].iloc[0] == pytest.approx(np.mean([s["loss_orig"] for s in ok]))
    assert epochs["conflict_fraction"].iloc[0] == pytest.approx(np.mean([s["conflict"] for s in ok]))
    assert '"dev_acc": 0.9' in epochs["extra_json"].iloc[0]
    names = read(tmp_path, "layer_names").to_pandas()
    assert names.sort_values("layer")["name"].tolist() == LAYERS
    attempts = read(tmp_path, "attempts").to_pandas()
    assert attempts["config_json"].iloc[0] == '{"lr": 0.0001}' and attempts["resumed_from_step"].isna().all()


def test_flush_every_and_seconds(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    with TelemetryWriter(tmp_path, "r", "t", 0, LAYERS, flush_every=4, flush_seconds=3600) as writer:
        for step in range(10):
            writer.log_step(step, 1, fake_stats(rng), 0.1)
        writer.flush(wait=True)
        assert len(glob.glob(str(tmp_path / "telemetry/steps/attempt-0/part-*.parquet"))) == 3  # 4 + 4 + 2
    with TelemetryWriter(tmp_path / "b", "r", "t", 0, LAYERS, flush_every=10**6, flush_seconds=1e-9) as writer:
        for step in range(3):
            writer.log_step(step, 1, fake_stats(rng), 0.1)
        writer.flush(wait=True)
        assert len(glob.glob(str(tmp_path / "b/telemetry/steps/attempt-0/part-*.parquet"))) == 3


def test_epoch_row_stores_the_callers_tally(tmp_path: Path) -> None:
    """One tally per epoch, kept by the caller (the Trainer): the writer stores its numbers and
    keeps no count of its own (a step the caller did not count is not in the row)."""
    rng = np.random.default_rng(4)
    steps = [fake_stats(rng) for _ in range(6)]
    tally = EpochTally()
    for s in steps[:4]:
        tally.add(s)
    with TelemetryWriter(tmp_path, "r", "t", 0, LAYERS) as writer:
        for i, s in enumerate(steps):
            writer.log_step(i, 1, s, 0.1)
        writer.log_epoch(1, 5, tally=tally)
    row = read(tmp_path, "epochs").to_pylist()[0]
    assert row["n_steps"] == 4 and row["train_loss_orig"] == pytest.approx(np.mean([s["loss_orig"] for s in steps[:4]]))
    assert {k: row[k] for k in ("train_loss_orig", "train_loss_aug", "conflict_fraction")} == tally.means()


def test_rejects_bad_stats_without_corrupting_buffer(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with TelemetryWriter(tmp_path, "r", "t", 0, LAYERS) as writer:
        writer.log_step(0, 1, fake_stats(rng), 0.1)
        with pytest.raises(ValueError, match="layer_cos"):
            writer.log_step(1, 1, fake_stats(rng, n_layers=2), 0.1)
        bad = fake_stats(rng)
        del bad["update_norm"]
        with pytest.raises(ValueError, match="update_norm"):
            writer.log_step(1, 1, bad, 0.1)
        writer.log_step(1, 1, fake_stats(rng), 0.1)
    assert read(tmp_path, "steps").num_rows == 2 and read(tmp_path, "layers").num_rows == 2 * len(LAYERS)


def test_background_failure_surfaces(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    writer = TelemetryWriter(tmp_path, "r", "t", 0, LAYERS, flush_every=10**6)
    writer.log_step(0, 1, {**fake_stats(rng), "cos": "not a number"}, 0.1)
    with pytest.raises(TelemetryError):
        writer.flush(wait=True)
    with pytest.raises(TelemetryError):
        writer.close()


def test_null_writer_and_next_attempt(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with make_writer(False, tmp_path, "r", "t", 0, LAYERS) as writer:
        assert isinstance(writer, NullTelemetryWriter)
        writer.log_step(0, 1, fake_stats(rng), 0.1)
        writer.log_epoch(1, 0, tally=EpochTally(), dev_eer=0.1)
    assert not (tmp_path / "telemetry").exists()
    assert next_attempt(tmp_path) == 0
    make_writer(True, tmp_path, "r", "t", 0, LAYERS).close()
    TelemetryWriter(tmp_path, "r", "t", 1, LAYERS, resumed_from_step=0).close()
    assert next_attempt(tmp_path) == 2


def test_object_store_branch_writes_whole_file(tmp_path: Path) -> None:
    sink = PartSink(tmp_path)
    sink.local = False  # the pyarrow.fs stream path used for s3:// and gs:// URIs
    table = pa.table({"a": [1, 2, 3]})
    path = sink.write("steps/attempt-0", S.part_name(0), table)
    assert pq.read_table(path).equals(table) and not glob.glob(str(tmp_path / "steps/attempt-0/.*"))
    assert PartSink(f"file://{tmp_path}").list_part_numbers("steps/attempt-0") == [0]


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from dpda.telemetry import TelemetryWriter
    rng = np.random.default_rng(0)
    L = 50
    names = [f"l{i}" for i in range(L)]
    w = TelemetryWriter(sys.argv[1], "run", "t0", 0, names, flush_every=10**9, flush_seconds=1e9)
    step = 0
    while True:
        for _ in range(200):
            c = rng.uniform(-1, 1, L).tolist()
            w.log_step(step, 1, dict(loss_orig=1.0, loss_aug=1.0, cos=0.1, norm_orig=1.0, norm_aug=1.0,
                       conflict=False, cos_update_orig=1.0, cos_update_aug=1.0, update_norm=1.0,
                       skipped=False, layer_cos=c, layer_norm_orig=c, layer_norm_aug=c), 0.1)
            step += 1
        if step % 1000 == 0:
            w.flush(wait=True)
            print(step, flush=True)
        else:
            w.flush()
    """
)


def test_kill_minus_9_keeps_flushed_rows_and_readable_files(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        durable = 0
        deadline = time.monotonic() + 60
        while durable < 3000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            durable = int(line)
        assert durable >= 3000, "writer subprocess did not report flushes"
        time.sleep(0.05)  # land the kill while later parts are being encoded or written
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # A leftover temp file like the one a kill mid-write leaves must be ignored by readers.
    (tmp_path / "telemetry/layers/attempt-0/.part-99999.parquet.tmp").write_bytes(b"PAR1 truncated")
    with open_telemetry(tmp_path) as tel:
        steps = tel.sql("SELECT step FROM steps ORDER BY step")["step"].to_numpy()
        layer_steps = tel.sql("SELECT step, count(*) AS n FROM layers GROUP BY step ORDER BY step")
    assert len(steps) >= durable
    np.testing.assert_array_equal(steps, np.arange(len(steps)))  # a gap-free prefix, each step once
    assert len(steps) % 200 == 0  # whole flushes only
    assert (layer_steps["n"] == 50).all() and len(layer_steps) >= durable
    np.testing.assert_array_equal(layer_steps["step"].to_numpy(), np.arange(len(layer_steps)))


def test_epochs_are_1_based(tmp_path: Path) -> None:
    """Schema 2: epoch 1 is the first; a 0-based caller is stopped at its first row."""
    rng = np.random.default_rng(0)
    with TelemetryWriter(tmp_path, "run", "t", 0, LAYERS) as writer:
        with pytest.raises(ValueError, match="1-based"):
            writer.log_step(0, 0, fake_stats(rng), 0.1)
        with pytest.raises(ValueError, match="1-based"):
            writer.log_epoch(0, 0, tally=EpochTally())
        writer.log_step(0, 1, fake_stats(rng), 0.1)
    assert read(tmp_path, "steps").column("epoch").to_pylist() == [1]


def test_round_trip_of_the_applied_transforms(tmp_path: Path) -> None:
    """Schema 4: the attempt's leaves and each step's counts and mask histogram come back as
    logged (a 62-bit mask included); a step without the record stores nulls; [] stays []."""
    rng = np.random.default_rng(5)
    leaves = ["rawboost", "pipeline.steps[1].one_of.steps[0].codec"]
    logged = [
        {"augment_counts": [3, 0], "augment_combos": [{"mask": 0, "n": 5}, {"mask": 1, "n": 3}]},
        {"augment_counts": [8, 8], "augment_combos": [{"mask": 3 | 1 << 62, "n": 8}]},
        {},  # not recorded
        {"augment_counts": [0, 0], "augment_combos": [{"mask": 0, "n": 8}]},
    ]
    with TelemetryWriter(tmp_path, "r", "t", 0, LAYERS, augment_leaves=leaves, flush_every=3) as writer:
        for step, record in enumerate(logged):
            writer.log_step(step, 1, {**fake_stats(rng), **record}, lr=0.1)
    steps = read(tmp_path, "steps").to_pandas().sort_values("step")
    assert read(tmp_path, "attempts").column("augment_leaves").to_pylist() == [leaves]
    for key in S.AUGMENT_STAT_KEYS:
        got = [None if v is None else list(v) for v in steps[key]]
        assert got == [r.get(key) for r in logged], key
    with TelemetryWriter(tmp_path / "none", "n", "t", 0, LAYERS, augment_mode="none", augment_leaves=[]) as writer:
        writer.log_step(0, 1, {**fake_stats(rng), "augment_counts": [], "augment_combos": []}, lr=0.1)
    steps = read(tmp_path / "none", "steps")
    assert steps.column("augment_counts").to_pylist() == [[]] and steps.column("augment_combos").to_pylist() == [[]]
    assert read(tmp_path / "none", "attempts").column("augment_leaves").to_pylist() == [[]]
    with open_telemetry(tmp_path) as tel:  # the reader's view: the same values
        combos = tel.sql("SELECT step, augment_combos FROM steps WHERE run_id = 'r' ORDER BY step")
    assert combos["augment_combos"].iloc[1].tolist() == [{"mask": 3 | 1 << 62, "n": 8}]


def test_counts_must_match_the_leaves(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    with TelemetryWriter(tmp_path, "r", "t", 0, LAYERS, augment_leaves=["a", "b"]) as writer:
        with pytest.raises(ValueError, match=r"augment_counts'\] has 1 entries, expected 2"):
            writer.log_step(0, 1, {**fake_stats(rng), "augment_counts": [1], "augment_combos": []}, lr=0.1)
        writer.log_step(0, 1, {**fake_stats(rng), "augment_counts": [1, 0], "augment_combos": [{"mask": 1, "n": 1}]},
                        lr=0.1)  # the rejected step left nothing behind
    assert read(tmp_path, "steps").column("augment_counts").to_pylist() == [[1, 0]]


def test_layer_path_cos_is_stored_layer_major_with_nulls_as_cos(tmp_path: Path) -> None:
    """`layers.path_cos` holds each step's per-layer pair cosines (`stats['layer_path_cos']`, one list
    per layer): null for a skipped step or a step without them, a null entry where not finite."""
    rng = np.random.default_rng(7)
    logged = []
    with TelemetryWriter(tmp_path, "run-p", "t1", 0, LAYERS, paths=["orig", "a", "b"], flush_every=4) as writer:
        for step in range(6):
            stats = fake_stats(rng, skipped=step == 2)
            stats["layer_path_cos"] = None if step == 4 else rng.uniform(-1, 1, (len(LAYERS), 3)).tolist()
            if step == 1:
                stats["layer_path_cos"][2][1] = float("nan")
            logged.append(stats)
            writer.log_step(step, 1, stats, lr=1e-4)
        with pytest.raises(ValueError, match="layer_path_cos"):
            writer.log_step(6, 1, {**fake_stats(rng), "layer_path_cos": [[0.1, 0.2, 0.3]]}, lr=1e-4)
    layers = read(tmp_path, "layers").to_pandas().sort_values(["step", "layer"])
    assert len(layers) == 6 * len(LAYERS)
    for (step, layer), got in zip(zip(layers["step"], layers["layer"]), layers["path_cos"]):
        stats = logged[step]
        if stats["skipped"] or stats["layer_path_cos"] is None:
            assert got is None, (step, layer)
            continue
        expect = np.asarray(stats["layer_path_cos"][layer], np.float32)
        np.testing.assert_array_equal(np.asarray(got, np.float64), expect)
    flat = pa.concat_arrays([c.flatten() for c in read(tmp_path, "layers").column("path_cos").chunks])
    assert flat.null_count == 1  # the non-finite entry
    # stats without the key (a dual-path step of today) store null, as before
    with TelemetryWriter(tmp_path / "b", "run-q", "t1", 0, LAYERS) as writer:
        writer.log_step(0, 1, fake_stats(rng), lr=1e-4)
    assert read(tmp_path / "b", "layers").column("path_cos").null_count == len(LAYERS)
