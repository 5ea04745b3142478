"""Find runs below a path: one run dir, a directory of runs, or a Ray Tune experiment dir.

A run is a directory holding `telemetry/` (the writer's layout) and/or Tune's `params.json` /
`result.json` (a trial that may have died before writing telemetry still shows up in the
search views). Tune's params are flattened to `a/b` keys; `result.json` is JSON lines, one
report per line, and a truncated last line (killed trial) is skipped.

`root` is a local path or any pyarrow filesystem URI (s3://, gs://, hdfs://): resolved once to a
`Location` (dpda_analysis.location) that every listing and read below goes through.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs

from dpda_analysis import schema
from dpda_analysis.errors import AnalysisError
from dpda_analysis.location import Location, resolve

TUNE_PARAMS = "params.json"
TUNE_RESULTS = "result.json"
# Ray Train inside Tune nests the trainer's config under this key; drop it from param names.
_TUNE_CONFIG_PREFIXES = ("train_loop_config/",)


@dataclass
class RunDir:
    """One discovered run: where its telemetry is and what Tune recorded about it."""

    path: Path | PurePosixPath  # on the location's filesystem
    telemetry: Path | PurePosixPath | None
    params: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    location: Location = field(default_factory=lambda: resolve("."), repr=False)

    def parts(self, table: str) -> bool:
        """Whether this run has at least one finished part file of `table`."""
        if self.telemetry is None:
            return False
        return bool(self.location.glob(self.glob(table)))

    def glob(self, table: str) -> str:
        """Pattern of `table`'s part files, as DuckDB reads it (see Location.duck)."""
        return self.location.duck(self.telemetry / table / schema.ATTEMPT_GLOB / schema.PART_GLOB)


def _is_telemetry_dir(loc: Location, path: Path | PurePosixPath) -> bool:
    return loc.is_dir(path) and any(loc.is_dir(path / t) for t in schema.TABLES)


def find_runs(root: str | os.PathLike | Location) -> list[RunDir]:
    """All runs below `root` (a local path, a filesystem URI, or a resolved Location), sorted."""
    loc = root if isinstance(root, Location) else resolve(root)
    top = loc.path(loc.root)
    kind = loc.kind(top)
    if kind == pafs.FileType.NotFound:
        raise AnalysisError(f"{root}: no such file or directory")
    if kind != pafs.FileType.Directory:
        raise AnalysisError(f"{root}: expected a run, runs or Tune experiment directory")
    if top.name == schema.TELEMETRY_DIRNAME and _is_telemetry_dir(loc, top):
        return [_load_run(loc, top.parent, top)]
    runs = []
    for dirpath, dirnames, filenames in loc.walk(str(top)):
        here = loc.path(dirpath)
        tdir = here / schema.TELEMETRY_DIRNAME
        has_telemetry = schema.TELEMETRY_DIRNAME in dirnames and _is_telemetry_dir(loc, tdir)
        if has_telemetry or TUNE_PARAMS in filenames or TUNE_RESULTS in filenames:
            runs.append(_load_run(loc, here, tdir if has_telemetry else None))
        # Never descend into telemetry (thousands of parts) or checkpoint directories.
        dirnames[:] = sorted(
            d for d in dirnames if d != schema.TELEMETRY_DIRNAME and not d.startswith("checkpoint_")
        )
    if not runs:
        raise AnalysisError(
            f"{root}: no telemetry/ directory, {TUNE_PARAMS} or {TUNE_RESULTS} found below it"
        )
    return sorted(runs, key=lambda r: str(r.path))


def _check_layout(loc: Location, telemetry: Path | PurePosixPath) -> None:
    """Schema 1's hive-style `attempt=<K>` directories hold 0-based epochs: refuse, naming them."""
    legacy = loc.glob(loc.duck(telemetry / "*" / schema.LEGACY_ATTEMPT_GLOB))
    if legacy:
        raise AnalysisError(
            f"{legacy[0]}: telemetry of schema version 1 (attempt=<K> directories, 0-based epochs); "
            f"this reader reads version {schema.SCHEMA_VERSION} (attempt-<K>, 1-based epochs): use dpda_analysis "
            "of dpda 0.1 or re-run"
        )


def _load_run(loc: Location, path: Path | PurePosixPath, telemetry: Path | PurePosixPath | None) -> RunDir:
    if telemetry is not None:
        _check_layout(loc, telemetry)
    params: dict[str, Any] = {}
    pfile = path / TUNE_PARAMS
    text = loc.read_text(pfile)
    if text is not None:
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnalysisError(f"{pfile}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise AnalysisError(f"{pfile}: expected a JSON object of trial parameters")
        params = flatten_params(raw)
    return RunDir(path=path, telemetry=telemetry, params=params, results=read_results(path / TUNE_RESULTS, loc),
                  location=loc)


def flatten_params(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested Tune params -> {'a/b': scalar}; lists become JSON text so they stay comparable."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, f"{name}/"))
            continue
        for strip in _TUNE_CONFIG_PREFIXES:
            if name.startswith(strip):
                name = name[len(strip) :]
        if isinstance(value, (list, tuple)):
            value = json.dumps(value)
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            value = str(value)
        out[name] = value
    return out


def read_results(path: Path | PurePosixPath, loc: Location | None = None) -> list[dict[str, Any]]:
    """Scalar entries of each line of a Tune `result.json` (missing file -> [])."""
    text = (loc or Location(pafs.LocalFileSystem(), "/")).read_text(path)
    if text is None:
        return []
    rows = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a trial killed mid-write leaves a truncated last line
        if isinstance(record, dict):
            rows.append(
                {
                    k: v
                    for k, v in record.items()
                    if isinstance(v, (str, bool, int)) or (isinstance(v, float) and math.isfinite(v))
                }
            )
    return rows
