"""One table of a run (or of every run below a path) as a single Parquet file, resolved.

Why: the telemetry directory holds every attempt's rows, and after a restart the rows a later
attempt re-ran are superseded (`dpda_analysis.schema`). A tool that reads the directory directly
sees them twice unless it re-implements that rule; the exported file is the `Telemetry` view,
superseded rows removed and each re-logged epoch once, in plain Parquet types (ids as strings),
which pandas, pyarrow, Polars, DuckDB or Spark read as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from dpda_analysis import schema
from dpda_analysis.errors import AnalysisError
from dpda_analysis.store import Telemetry

META_RESOLVED_KEY = b"dpda.telemetry.resolved"

# Row order of each exported table; `layers` keeps its scan order (layer-major per part), since
# sorting 10^8 rows would cost more than the export itself.
_ORDER = {
    "steps": "run_id, trial_id, step",
    "epochs": "run_id, trial_id, epoch",
    "attempts": "run_id, trial_id, attempt",
    "layer_names": "run_id, trial_id, layer",
    "layers": "",
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _refuse_own_input(tel: Telemetry, out: Path) -> None:
    """An output inside a telemetry folder being read (a part, a file beside the parts, a link to
    one) would replace a part with a resolved table of another schema, or be globbed as one by
    the next reader: refuse, comparing resolved paths so `..` and links cannot slip past."""
    if not tel.location.is_local:
        return  # the output is a local file; the telemetry is on another filesystem
    target = out.expanduser().resolve()
    for run in tel.runs:
        if run.telemetry is not None and target.is_relative_to(Path(run.telemetry).resolve()):
            raise AnalysisError(f"{out}: inside the telemetry it reads ({run.telemetry}); write the export elsewhere")


def export_table(tel: Telemetry, table: str, out: str | os.PathLike, *, allow_missing: bool = False) -> int:
    """Write `table`'s resolved view to the Parquet file `out` (atomically); returns its rows.

    Refused when parts are missing by their numbers (`Telemetry.missing`) unless `allow_missing`:
    unlike a report, which says so beside its figures, the exported file is read later as the
    whole table, with nothing to say rows are absent."""
    if table not in schema.TABLES:
        raise AnalysisError(f"export: unknown table {table!r} (one of {', '.join(schema.TABLES)})")
    if tel.missing and not allow_missing:
        more = f" (and {len(tel.missing) - 1} more run(s))" if len(tel.missing) > 1 else ""
        raise AnalysisError(f"{tel.missing[0]}{more}; not exported (--allow-missing-parts exports the rows that are there)")
    path = Path(out)
    if path.is_dir():
        raise AnalysisError(f"{path}: is a directory; give the .parquet file to write")
    _refuse_own_input(tel, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    columns = ", ".join(f.name for f in schema.TABLES[table])
    order = f" ORDER BY {_ORDER[table]}" if _ORDER[table] else ""
    meta = {schema.META_VERSION_KEY: str(schema.SCHEMA_VERSION), schema.META_TABLE_KEY: table, META_RESOLVED_KEY: "true"}
    kv = ", ".join(f"{_literal(k.decode())}: {_literal(v)}" for k, v in meta.items())
    try:
        tel.con.execute(f"COPY (SELECT {columns} FROM {table}{order}) TO {_literal(str(tmp))} "
                        f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{kv}}})")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return int(tel.sql(f"SELECT count(*) AS n FROM read_parquet({_literal(str(path))})")["n"].iloc[0])
