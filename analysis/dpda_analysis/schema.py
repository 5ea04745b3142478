"""The telemetry Parquet contract: table schemas, file layout and the schema version.

Defined only here. The writer (`dpda.telemetry`) and every reader import these objects, so a
column added or retyped in one place changes both sides together. Files carry
`SCHEMA_VERSION` in their key-value metadata so a reader can refuse files it cannot interpret.

Layout of one run (the writer's `uri_or_path` is RUN_DIR)::

    RUN_DIR/telemetry/<table>/attempt-<K>/part-<NNNNN>.parquet

`<table>` is one of `TABLES`. Each part is written to `.part-<NNNNN>.parquet.tmp` and then
renamed, so readers only ever glob `PART_GLOB` and never see a half-written file (pyarrow
datasets skip dot files too). The attempt directory is deliberately not a hive key
(`attempt=<K>`, schema 1): pandas, pyarrow and Polars would add an inferred int32/int64
`attempt` partition column that clashes with the in-file int16 one. Every part file carries all
its ids, so `pd.read_parquet(RUN_DIR/telemetry/steps)`, `pyarrow.dataset.dataset(...)`,
`polars.read_parquet(...)` and DuckDB's `FROM '.../steps/*/*.parquet'` need no options.

Epochs are 1-based (epoch 1 is the first), as in the console, Tune's `epoch` and the report.

Supersession: attempt K+1 that resumes from step S (the first step index it will run) makes
rows of attempts <= K with `step >= S` stale. A row of attempt `a` at step `s` is kept iff no
attempt `b > a` of the same (run_id, trial_id) has `resumed_from_step <= s`.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 5
"""Bumped on any incompatible change (a column removed, renamed or retyped, a changed meaning or
layout). 2: epochs 1-based (were 0-based); attempt directories `attempt-<K>` (were `attempt=<K>`).
3: `augment_mode` (steps, attempts) holds the run's `augment.mode` and `rule` only its alignment
rule; version 2 wrote the mode into `rule` for runs that were not dual-path (readers derive the
mode of those files: `dpda_analysis.variant`).
4: the applied transforms: `augment_leaves` (attempts), `augment_counts` and `augment_combos`
(steps); older parts read them as null.
5: many paths: `paths` (attempts), `path_loss` and `path_cos` (steps), `path_cos` (layers); older
parts read them as null (a dual-path run of an older version is paths ("orig", "aug"), its `cos`
the only pair)."""

AUGMENT_MODES = ("dual", "augmented", "none")
"""`augment_mode` values: both paths (`dual`), the augmented copies only, no augmentation."""

ADDED_IN: dict[str, int] = {
    "augment_mode": 3,
    "augment_leaves": 4,
    "augment_counts": 4,
    "augment_combos": 4,
    "paths": 5,
    "path_loss": 5,
    "path_cos": 5,
}
"""Columns that parts of an older schema version lack, with the version that added them."""

META_VERSION_KEY = b"dpda.telemetry.schema_version"
META_TABLE_KEY = b"dpda.telemetry.table"

TELEMETRY_DIRNAME = "telemetry"
PART_GLOB = "part-*.parquet"

_ID = pa.dictionary(pa.int32(), pa.string())

AUGMENT_COMBO = pa.struct([pa.field("mask", pa.int64(), nullable=False), pa.field("n", pa.int32(), nullable=False)])
"""One entry of a step's `augment_combos`: a mask value (bit j = leaf j of `augment_leaves`) and how
many utterances of the batch had exactly that mask (0: none of the leaves)."""

STEPS = pa.schema(
    [
        pa.field("run_id", _ID, nullable=False),
        pa.field("trial_id", _ID, nullable=False),
        pa.field("attempt", pa.int16(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),  # 1-based
        pa.field("step", pa.int64(), nullable=False),  # 0-based global step index
        pa.field("world_size", pa.int16(), nullable=False),
        pa.field("rule", _ID, nullable=False),
        pa.field("augment_mode", _ID, nullable=False),  # one of AUGMENT_MODES
        pa.field("strength", pa.float32()),
        pa.field("rawboost_algo", pa.int16()),
        # Pairwise statistics: the original path vs "aug", which with several augmented paths
        # (`paths` longer than 2) is the mean of the augmented paths' gradients (`loss_aug` the
        # mean of their losses); the per-path detail is in `path_loss` / `path_cos` below.
        pa.field("cos", pa.float64()),
        pa.field("norm_orig", pa.float64()),
        pa.field("norm_aug", pa.float64()),
        pa.field("conflict", pa.bool_()),
        pa.field("cos_update_orig", pa.float64()),
        pa.field("cos_update_aug", pa.float64()),
        pa.field("update_norm", pa.float64()),
        pa.field("loss_orig", pa.float64()),
        pa.field("loss_aug", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("skipped", pa.bool_()),
        pa.field("wall_time", pa.float64()),  # seconds since the Unix epoch
        # The applied transforms of the step's augmented batch (the pipeline's mask, tallied on
        # the device): per leaf of the attempt's `augment_leaves` the utterances that received it,
        # and the histogram of the mask values (ascending). Empty lists for a run without an
        # augmented path (`augment_mode` none); null where not recorded (older schema).
        pa.field("augment_counts", pa.list_(pa.int32())),
        pa.field("augment_combos", pa.list_(AUGMENT_COMBO)),
        # Many paths (the attempt's `paths`, index 0 the original): each path's loss, and the
        # cosine of every pair of path gradients in `path_pairs` order. For two paths `path_cos`
        # is [cos]. Null where not recorded (older schema).
        pa.field("path_loss", pa.list_(pa.float64())),
        pa.field("path_cos", pa.list_(pa.float64())),
    ]
)
"""One row per optimisation step (whole-model statistics)."""

LAYERS = pa.schema(
    [
        pa.field("run_id", _ID, nullable=False),
        pa.field("trial_id", _ID, nullable=False),
        pa.field("attempt", pa.int16(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("layer", pa.int16(), nullable=False),
        pa.field("cos", pa.float32()),  # null when not finite (a zero gradient has no direction)
        pa.field("norm_orig", pa.float32()),
        pa.field("norm_aug", pa.float32()),
        pa.field("path_cos", pa.list_(pa.float32())),  # per pair, `path_pairs` order (as steps)
    ]
)
"""Long format, one row per (step, parameter tensor): compact enough for 400 layers x 1e5 steps.

Within a part file rows are layer-major (all steps of layer 0, then layer 1, ...)."""

LAYER_NAMES = pa.schema(
    [
        pa.field("run_id", _ID, nullable=False),
        pa.field("trial_id", _ID, nullable=False),
        pa.field("attempt", pa.int16(), nullable=False),
        pa.field("layer", pa.int16(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
    ]
)
"""Maps `layers.layer` (index into the run's fixed parameter order) to the parameter name."""

EPOCHS = pa.schema(
    [
        pa.field("run_id", _ID, nullable=False),
        pa.field("trial_id", _ID, nullable=False),
        pa.field("attempt", pa.int16(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),  # 1-based
        pa.field("step", pa.int64(), nullable=False),  # last step index run in this epoch
        pa.field("n_steps", pa.int64(), nullable=False),  # steps this attempt logged in the epoch
        pa.field("dev_loss", pa.float64()),
        pa.field("dev_eer", pa.float64()),
        pa.field("train_loss_orig", pa.float64()),  # mean over the epoch's logged steps
        pa.field("train_loss_aug", pa.float64()),
        pa.field("conflict_fraction", pa.float64()),  # over the epoch's non-skipped steps
        pa.field("lr", pa.float64()),
        pa.field("wall_time", pa.float64()),
        pa.field("extra_json", pa.string()),  # any further metrics, JSON object
    ]
)
"""One row per finished epoch, with the dev metrics."""

ATTEMPTS = pa.schema(
    [
        pa.field("run_id", _ID, nullable=False),
        pa.field("trial_id", _ID, nullable=False),
        pa.field("attempt", pa.int16(), nullable=False),
        pa.field("resumed_from_step", pa.int64()),  # null for a fresh start
        pa.field("world_size", pa.int16(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("augment_mode", pa.string(), nullable=False),
        pa.field("strength", pa.float32()),
        pa.field("rawboost_algo", pa.int16()),
        pa.field("n_layers", pa.int32(), nullable=False),
        pa.field("started_at", pa.float64(), nullable=False),
        pa.field("config_json", pa.string()),  # run configuration, JSON object
        # The augmentation pipeline's leaves in mask-bit order, each its config key below
        # `augment.` (`rawboost` for a RawBoost-only config, `pipeline.steps[1].one_of.steps[0].codec`);
        # empty without an augmented path, null where not recorded.
        pa.field("augment_leaves", pa.list_(pa.string())),
        # The step's paths in gradient order: "orig" first, then the augmented paths' names
        # ("aug" for the single augmented path of a dual-path run); empty for a single-path run.
        pa.field("paths", pa.list_(pa.string())),
    ]
)
"""One row per (re)start: the run metadata and the resume point that drives supersession."""

TABLES: dict[str, pa.Schema] = {
    "steps": STEPS,
    "layers": LAYERS,
    "layer_names": LAYER_NAMES,
    "epochs": EPOCHS,
    "attempts": ATTEMPTS,
}

STEP_STAT_KEYS: tuple[str, ...] = (
    "cos",
    "norm_orig",
    "norm_aug",
    "conflict",
    "cos_update_orig",
    "cos_update_aug",
    "update_norm",
    "loss_orig",
    "loss_aug",
    "skipped",
)
"""Keys of `StepStats.to_host()` that become `steps` columns of the same name."""

LAYER_STAT_KEYS: dict[str, str] = {
    "layer_cos": "cos",
    "layer_norm_orig": "norm_orig",
    "layer_norm_aug": "norm_aug",
}
"""Per-layer keys of `StepStats.to_host()` -> `layers` column."""

AUGMENT_STAT_KEYS: tuple[str, ...] = ("augment_counts", "augment_combos")
"""Keys of `StepStats.to_host(applied)` that become `steps` columns of the same name: the counts a
list of ints (one per leaf), the combos a list of {"mask": int, "n": int}. A step whose stats lack
them (no applied-transforms record) stores null."""


PATH_STAT_KEYS: tuple[str, ...] = ("path_loss", "path_cos")
"""Keys of `StepStats.to_host()` that become the `steps` list columns of the same name."""

LAYER_PATH_STAT_KEYS: dict[str, str] = {"layer_path_cos": "path_cos"}
"""Per-layer list keys of `StepStats.to_host()` -> `layers` column."""

ORIGINAL_PATH = "orig"
"""Name of path 0, the un-augmented batch, in `paths`."""


def path_pairs(n_paths: int) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, of `n_paths` paths in the order `path_cos` stores them (row-major
    upper triangle: (0,1), (0,2), ..., (1,2), ...)."""
    return [(i, j) for i in range(n_paths) for j in range(i + 1, n_paths)]


def with_metadata(schema: pa.Schema, table: str) -> pa.Schema:
    """Schema carrying the version and table name, as every part file stores it."""
    return schema.with_metadata(
        {META_VERSION_KEY: str(SCHEMA_VERSION).encode(), META_TABLE_KEY: table.encode()}
    )


def part_name(seq: int) -> str:
    """File name of the `seq`-th part of one (table, attempt) directory."""
    return f"part-{seq:05d}.parquet"


ATTEMPT_PREFIX = "attempt-"
ATTEMPT_GLOB = ATTEMPT_PREFIX + "*"
LEGACY_ATTEMPT_GLOB = "attempt=*"  # schema 1's hive-style directories


def attempt_dir(table: str, attempt: int) -> str:
    """Directory of one attempt's parts, relative to RUN_DIR/telemetry."""
    return f"{table}/{ATTEMPT_PREFIX}{attempt}"


def attempt_of_dir(name: str) -> int | None:
    """The attempt number of an attempt directory's name; None for any other name."""
    if not name.startswith(ATTEMPT_PREFIX) or not name[len(ATTEMPT_PREFIX):].isdigit():
        return None
    return int(name[len(ATTEMPT_PREFIX):])
