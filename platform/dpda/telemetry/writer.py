"""Per-step gradient telemetry -> Parquet, written off the training thread.

`log_step` only appends Python values to column lists (a few microseconds); every N steps or T
seconds the lists are handed to a background thread that builds Arrow tables and publishes one
part file per table through `PartSink` (atomic). Rows up to the last finished flush therefore
survive a hard kill, and a killed write never leaves a file that breaks a reader.

Only rank 0 should write: the caller picks `TelemetryWriter` or `NullTelemetryWriter` (see
`make_writer`). Call `flush(wait=True)` when saving a checkpoint, so a restart that resumes from
that checkpoint finds telemetry for every step before its resume point.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dpda_analysis import schema as S
from dpda_analysis.location import join
from dpda.telemetry.sink import PartSink
from dpda.telemetry.tally import EpochTally

_INT32_MAX = np.iinfo(np.int32).max


class TelemetryError(RuntimeError):
    """The background writer failed (e.g. disk full); raised on the next call into the writer."""


@dataclass
class _Buffer:
    """Column lists of the steps logged since the last flush."""

    n_layers: int
    step: list = field(default_factory=list)
    epoch: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    wall_time: list = field(default_factory=list)
    stats: dict[str, list] = field(default_factory=lambda: {k: [] for k in S.STEP_STAT_KEYS})
    layers: dict[str, list] = field(default_factory=lambda: {k: [] for k in S.LAYER_STAT_KEYS})
    augment: dict[str, list] = field(default_factory=lambda: {k: [] for k in S.AUGMENT_STAT_KEYS})
    path: dict[str, list] = field(default_factory=lambda: {k: [] for k in S.PATH_STAT_KEYS})
    layer_path: dict[str, list] = field(default_factory=lambda: {k: [] for k in S.LAYER_PATH_STAT_KEYS})

    def __len__(self) -> int:
        return len(self.step)

    def rollback(self) -> None:
        """Undo the partial appends of a step whose stats were rejected."""
        for column in (*self.stats.values(), *self.layers.values(), *self.augment.values(), *self.path.values(),
                       *self.layer_path.values()):
            del column[len(self.step) :]


@dataclass
class _Job:
    seq: int
    tables: dict[str, Any]  # table name -> _Buffer (converted on the thread) or pa.Table


def telemetry_root(uri_or_path: str | os.PathLike) -> str:
    """RUN_DIR/telemetry for a local path or a filesystem URI (its query string kept at the end)."""
    return join(uri_or_path, S.TELEMETRY_DIRNAME)


def _dict_column(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


class TelemetryWriter:
    """Buffered, crash-safe Parquet writer for one attempt of one (run, trial).

    Writes below `<uri_or_path>/telemetry/` (a local directory or a pyarrow.fs URI such as
    `s3://bucket/run`). `layer_names` fixes the order of the per-layer lists in the step stats.
    `resumed_from_step` is the first step index this attempt runs after restoring a checkpoint
    (None for a fresh start); rows of earlier attempts at steps >= it are superseded. `rule` is the
    alignment rule and `augment_mode` the run's `augment.mode` (`schema.AUGMENT_MODES`).
    `augment_leaves` names the augmentation pipeline's leaves in mask-bit order
    (`Pipeline.leaf_labels`; [] without an augmented path, None: not recorded); a step's
    `augment_counts` then has one entry per leaf.
    """

    def __init__(
        self,
        uri_or_path: str | os.PathLike,
        run_id: str,
        trial_id: str,
        attempt: int,
        layer_names: Sequence[str],
        *,
        world_size: int = 1,
        rule: str = "none",
        augment_mode: str = "dual",
        strength: float | None = None,
        rawboost_algo: int | None = None,
        resumed_from_step: int | None = None,
        config: Mapping[str, Any] | None = None,
        augment_leaves: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
        flush_every: int = 1000,
        flush_seconds: float = 30.0,
        max_pending: int = 4,
    ) -> None:
        if attempt < 0 or (resumed_from_step is not None and resumed_from_step < 0):
            raise ValueError("attempt and resumed_from_step must be >= 0")
        if flush_every < 1 or flush_seconds <= 0:
            raise ValueError("flush_every must be >= 1 and flush_seconds > 0")
        if augment_mode not in S.AUGMENT_MODES:
            raise ValueError(f"augment_mode must be one of {', '.join(S.AUGMENT_MODES)}, got {augment_mode!r}")
        self.run_id, self.trial_id, self.attempt = str(run_id), str(trial_id), int(attempt)
        self.layer_names = [str(n) for n in layer_names]
        self.static = {
            "world_size": int(world_size),
            "rule": str(rule),
            "augment_mode": augment_mode,
            "strength": None if strength is None else float(strength),
            "rawboost_algo": None if rawboost_algo is None else int(rawboost_algo),
        }
        self.augment_leaves = None if augment_leaves is None else [str(n) for n in augment_leaves]
        self.paths = None if paths is None else [str(n) for n in paths]
        self._flush_every = int(flush_every)
        self._flush_seconds = float(flush_seconds)
        self._sink = PartSink(telemetry_root(uri_or_path))
        self._seq = 1 + max(
            [-1] + [n for t in S.TABLES for n in self._sink.list_part_numbers(S.attempt_dir(t, self.attempt))]
        )
        for table in S.TABLES:
            self._sink.remove_temp_files(S.attempt_dir(table, self.attempt))
        self._buf = _Buffer(len(self.layer_names))
        self._last_flush = time.monotonic()
        self._error: BaseException | None = None
        self._closed = False
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)
        # Run metadata and names go out synchronously: the resume point must be durable before
        # any row of this attempt exists, or a reader could briefly see duplicated steps.
        self._write_now("attempts", self._attempts_table(resumed_from_step, config))
        if self.layer_names:
            self._write_now("layer_names", self._layer_names_table())
        self._thread = threading.Thread(target=self._drain, name="dpda-telemetry", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ---------------------------------------------------------------- training-thread API
    def log_step(self, step: int, epoch: int, stats: Mapping[str, Any], lr: float) -> None:
        """Record one optimisation step (`stats` = `StepStats.to_host()`, `epoch` 1-based, `step`
        the 0-based global index); cheap, non-blocking.

        The per-layer sequences are kept by reference until the next flush: pass fresh ones.
        `stats` without the AUGMENT_STAT_KEYS (no applied-transforms record) stores nulls there.
        """
        if self._error is not None:
            self._raise()
        if epoch < 1:
            raise ValueError(f"telemetry: epochs are 1-based (schema {S.SCHEMA_VERSION}), got epoch {epoch}")
        buf = self._buf
        try:
            for key, column in buf.stats.items():
                column.append(stats[key])
            for key, column in buf.layers.items():
                values = stats[key] if buf.n_layers else ()
                if len(values) != buf.n_layers:
                    raise ValueError(
                        f"telemetry: stats[{key!r}] has {len(values)} entries, expected "
                        f"{buf.n_layers} (one per name in layer_names)"
                    )
                column.append(values)
            for key, column in buf.augment.items():
                column.append(stats.get(key))
            for key, column in buf.path.items():
                column.append(stats.get(key))
            for key, column in buf.layer_path.items():  # one list of pairs per layer, or absent
                values = stats.get(key)
                if values is not None and len(values) != buf.n_layers:
                    raise ValueError(f"telemetry: stats[{key!r}] has {len(values)} entries, expected "
                                     f"{buf.n_layers} (one per name in layer_names)")
                column.append(values)
            counts = stats.get("augment_counts")
            if counts is not None and self.augment_leaves is not None and len(counts) != len(self.augment_leaves):
                raise ValueError(f"telemetry: stats['augment_counts'] has {len(counts)} entries, expected "
                                 f"{len(self.augment_leaves)} (one per name in augment_leaves)")
        except KeyError as exc:
            buf.rollback()
            raise ValueError(f"telemetry: step stats lack key {exc.args[0]!r}") from None
        except ValueError:
            buf.rollback()
            raise
        buf.step.append(step)
        buf.epoch.append(epoch)
        buf.lr.append(lr)
        buf.wall_time.append(time.time())
        if len(buf) >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def log_epoch(
        self,
        epoch: int,
        step: int,
        *,
        tally: EpochTally,
        dev_loss: float | None = None,
        dev_eer: float | None = None,
        lr: float | None = None,
        **extra: Any,
    ) -> None:
        """Record the end of (1-based) `epoch` (`step` = last step index run in it) and flush,
        waiting.

        `tally`: the caller's count of the epoch's steps (the steps it logged here), whose
        train-loss means and conflict fraction the row stores; the caller keeps it because it
        needs the same numbers with or without telemetry. Extra keyword metrics go into
        `extra_json`.
        """
        if epoch < 1:
            raise ValueError(f"telemetry: epochs are 1-based (schema {S.SCHEMA_VERSION}), got epoch {epoch}")
        row = {
            "epoch": int(epoch),
            "step": int(step),
            "n_steps": tally.n,
            "dev_loss": None if dev_loss is None else float(dev_loss),
            "dev_eer": None if dev_eer is None else float(dev_eer),
            **tally.means(),
            "lr": None if lr is None else float(lr),
            "wall_time": time.time(),
            "extra_json": json.dumps(extra, default=float, sort_keys=True) if extra else None,
        }
        table = pa.Table.from_pydict(
            {
                "run_id": _dict_column(self.run_id, 1),
                "trial_id": _dict_column(self.trial_id, 1),
                "attempt": pa.array([self.attempt], pa.int16()),
                **{k: [v] for k, v in row.items()},
            },
            schema=S.with_metadata(S.EPOCHS, "epochs"),
        )
        self.flush(wait=True, extra_tables={"epochs": table})

    def flush(self, wait: bool = False, extra_tables: Mapping[str, pa.Table] | None = None) -> None:
        """Hand buffered rows to the writer thread; with `wait`, return once they are on disk."""
        if self._error is not None:
            self._raise()
        if self._closed:
            raise TelemetryError("telemetry writer is closed")
        tables: dict[str, Any] = dict(extra_tables or {})
        if len(self._buf):
            tables["steps"] = self._buf
            self._buf = _Buffer(len(self.layer_names))
        self._last_flush = time.monotonic()
        if tables:
            self._queue.put(_Job(self._seq, tables))
            self._seq += 1
        if wait:
            self._queue.join()
            if self._error is not None:
                self._raise()

    def close(self) -> None:
        """Flush everything, stop the thread. Idempotent; also runs at interpreter exit."""
        if self._closed:
            return
        try:
            if self._error is None:
                self.flush()
        finally:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            atexit.unregister(self.close)
        if self._error is not None:
            self._raise()

    def __enter__(self) -> TelemetryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- background thread
    def _drain(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    for name, table in self._convert(job.tables).items():
                        self._sink.write(S.attempt_dir(name, self.attempt), S.part_name(job.seq), table)
            except BaseException as exc:  # surfaced on the training thread by _raise
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        raise TelemetryError(f"telemetry writer failed: {self._error!r}") from self._error

    def _convert(self, tables: dict[str, Any]) -> dict[str, pa.Table]:
        out = {}
        for name, value in tables.items():
            if isinstance(value, _Buffer):
                out["steps"] = self._steps_table(value)
                if value.n_layers:
                    out["layers"] = self._layers_table(value)
            else:
                out[name] = value
        return out

    def _ids(self, n: int) -> dict[str, pa.Array]:
        return {
            "run_id": _dict_column(self.run_id, n),
            "trial_id": _dict_column(self.trial_id, n),
            "attempt": pa.array(np.full(n, self.attempt, np.int16)),
        }

    def _steps_table(self, buf: _Buffer) -> pa.Table:
        n = len(buf)
        fields = {f.name: f.type for f in S.STEPS}
        columns = {
            **self._ids(n),
            "epoch": pa.array(np.asarray(buf.epoch, np.int32)),
            "step": pa.array(np.asarray(buf.step, np.int64)),
            "world_size": pa.array(np.full(n, self.static["world_size"], np.int16)),
            "rule": _dict_column(self.static["rule"], n),
            "augment_mode": _dict_column(self.static["augment_mode"], n),
            "strength": pa.array([self.static["strength"]] * n, pa.float32()),
            "rawboost_algo": pa.array([self.static["rawboost_algo"]] * n, pa.int16()),
            **{k: self._numeric(v, fields[k]) for k, v in buf.stats.items()},
            "lr": pa.array(np.asarray(buf.lr, np.float64)),
            "wall_time": pa.array(np.asarray(buf.wall_time, np.float64)),
            **{k: pa.array(v, fields[k]) for k, v in buf.augment.items()},
            **{k: pa.array(v, fields[k]) for k, v in buf.path.items()},
        }
        return pa.Table.from_pydict(columns, schema=S.with_metadata(S.STEPS, "steps"))

    @staticmethod
    def _numeric(values: list, type_: pa.DataType) -> pa.Array:
        dtype = np.bool_ if pa.types.is_boolean(type_) else np.float64
        return pa.array(np.asarray(values, dtype))

    @staticmethod
    def _layer_lists(per_step: list, skipped: np.ndarray, n_layers: int) -> pa.Array:
        """Layer-major list column from per-step [per layer [per pair]] values: null for a step
        without them (not recorded) and, like the other layer statistics, for a skipped step."""
        n = len(per_step)
        present = np.array([v is not None for v in per_step], np.bool_)
        type_ = S.LAYERS.field("path_cos").type
        if not present.any() or n_layers == 0:
            return pa.nulls(n * n_layers, type_)
        pairs = len(per_step[int(np.argmax(present))][0])
        filler = np.full((n_layers, pairs), np.nan, np.float32)
        values = np.stack([np.asarray(v, np.float32).reshape(n_layers, pairs) if v is not None else filler
                           for v in per_step])  # (n, L, pairs)
        flat = pa.array(values.transpose(1, 0, 2).reshape(-1), pa.float32())
        offsets = pa.array(np.arange(n * n_layers + 1, dtype=np.int32) * pairs)
        mask = pa.array(skipped | ~np.tile(present, n_layers))
        return pa.ListArray.from_arrays(offsets, flat, type=type_, mask=mask)

    def _layers_table(self, buf: _Buffer) -> pa.Table:
        n, n_layers = len(buf), buf.n_layers
        steps = np.asarray(buf.step, np.int64)
        if steps.max() > _INT32_MAX or steps.min() < 0:
            raise ValueError("telemetry: layer rows store the step as int32 (0 .. 2**31-1)")
        # Layer-major inside a part: the layer column becomes long runs (RLE) and a
        # per-(trial, layer) scan aggregates contiguous values; both make queries ~2x faster.
        columns = {
            "run_id": _dict_column(self.run_id, n * n_layers),
            "trial_id": _dict_column(self.trial_id, n * n_layers),
            "attempt": pa.array(np.full(n * n_layers, self.attempt, np.int16)),
            "step": pa.array(np.tile(steps.astype(np.int32), n_layers)),
            "layer": pa.array(np.repeat(np.arange(n_layers, dtype=np.int16), n)),
        }
        # A skipped step's layer statistics describe gradients that were never applied, and a
        # non-finite cosine has no direction: both are stored as null, so readers need no filter.
        skipped = np.tile(np.asarray(buf.stats["skipped"], np.bool_), n_layers)
        for key, column in S.LAYER_STAT_KEYS.items():
            values = np.asarray(buf.layers[key], np.float32).T.reshape(-1)
            mask = skipped | ~np.isfinite(values) if column == "cos" else skipped
            columns[column] = pa.array(values, mask=mask if mask.any() else None)
        for key, column in S.LAYER_PATH_STAT_KEYS.items():
            columns[column] = self._layer_lists(buf.layer_path[key], skipped, n_layers)
        return pa.Table.from_pydict(columns, schema=S.with_metadata(S.LAYERS, "layers"))

    def _attempts_table(self, resumed_from_step: int | None, config: Mapping[str, Any] | None) -> pa.Table:
        row = {
            **{k: v.to_pylist() for k, v in self._ids(1).items()},
            "resumed_from_step": [resumed_from_step],
            "world_size": [self.static["world_size"]],
            "rule": [self.static["rule"]],
            "augment_mode": [self.static["augment_mode"]],
            "strength": [self.static["strength"]],
            "rawboost_algo": [self.static["rawboost_algo"]],
            "n_layers": [len(self.layer_names)],
            "started_at": [time.time()],
            "config_json": [None if config is None else json.dumps(config, default=str, sort_keys=True)],
            "augment_leaves": [self.augment_leaves],
            "paths": [self.paths],
        }
        return pa.Table.from_pydict(row, schema=S.with_metadata(S.ATTEMPTS, "attempts"))

    def _layer_names_table(self) -> pa.Table:
        n = len(self.layer_names)
        columns = {
            **self._ids(n),
            "layer": pa.array(np.arange(n, dtype=np.int16)),
            "name": pa.array(self.layer_names, pa.string()),
        }
        return pa.Table.from_pydict(columns, schema=S.with_metadata(S.LAYER_NAMES, "layer_names"))

    def _write_now(self, name: str, table: pa.Table) -> None:
        self._sink.write(S.attempt_dir(name, self.attempt), S.part_name(self._seq), table)
        self._seq += 1


class NullTelemetryWriter:
    """Same interface, writes nothing: what ranks other than 0 (or disabled telemetry) use."""

    def log_step(self, step: int, epoch: int, stats: Mapping[str, Any], lr: float) -> None:
        pass

    def log_epoch(self, epoch: int, step: int, *, tally: EpochTally, **metrics: Any) -> None:
        pass

    def flush(self, wait: bool = False) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullTelemetryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def make_writer(enabled: bool, *args: Any, **kwargs: Any) -> TelemetryWriter | NullTelemetryWriter:
    """`TelemetryWriter(*args, **kwargs)` when `enabled` (e.g. rank == 0), else a no-op writer."""
    return TelemetryWriter(*args, **kwargs) if enabled else NullTelemetryWriter()


def next_attempt(uri_or_path: str | os.PathLike) -> int:
    """The attempt number a restart of the run at `uri_or_path` should use (0 if none yet)."""
    sink = PartSink(telemetry_root(uri_or_path))
    seen = [S.attempt_of_dir(d) for d in sink.list_subdirs("attempts")]
    return 1 + max((a for a in seen if a is not None), default=-1)
