"""Which telemetry part files can be read: complete Parquet files of this reader's schema.

Why a pass of its own: DuckDB opens the parts of a glob only when a query reaches them, so a
part cut short (an interrupted copy, a full disk) that is not the first fails some later query
with "No magic bytes", and a part with the wrong columns fails binding without naming the file.
Here every part's footer is read up front, in two DuckDB queries for all parts when all is well
(key-value metadata and column types, from DuckDB's Parquet reader rather than pyarrow.parquet,
whose import alone costs ~10 MB of RSS). A part whose footer cannot be read is left out with an
`AnalysisWarning` naming it; a readable part of a newer schema version, without dpda metadata,
or with a column missing or of another type is an `AnalysisError` naming the file and the
column (a part of an older version may lack the columns added since: `schema.ADDED_IN`). Columns
the schema does not know are allowed (adding one is a compatible change).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from dpda_analysis import schema
from dpda_analysis.errors import AnalysisError, AnalysisWarning

_EXPECTED: dict[str, dict[str, str]] = {}  # table -> column -> DuckDB type, computed once


def plain_schema(table_schema: pa.Schema) -> pa.Schema:
    """Dictionary columns as plain strings (what DuckDB exposes them as)."""
    return pa.schema(
        [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table_schema]
    )


def expected_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column -> DuckDB type name that a part of `table` reads as (DuckDB's own mapping)."""
    if table not in _EXPECTED:
        con.register("_dpda_expected", plain_schema(schema.TABLES[table]).empty_table())
        try:
            rows = con.execute("DESCRIBE SELECT * FROM _dpda_expected").fetchall()
        finally:
            con.unregister("_dpda_expected")
        _EXPECTED[table] = {name: kind for name, kind, *_ in rows}
    return _EXPECTED[table]


def _footers(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
    """(file, key, value) metadata rows and (file, column, DuckDB type) rows of `files`."""
    meta = con.execute("SELECT file_name, key, value FROM parquet_kv_metadata(?)", [list(files)]).fetchall()
    rows = con.execute("SELECT file_name, name, duckdb_type, num_children FROM parquet_schema(?)",
                       [list(files)]).fetchall()
    return meta, _top_level(rows)


def _top_level(rows: list[tuple]) -> list[tuple]:
    """(file, column, DuckDB type) of each file's top-level columns, from `parquet_schema`'s rows
    (each file's schema tree in pre-order, its root first): a list or struct column is one
    column of its nested type, not its leaves."""
    out: list[tuple] = []
    pending: list[int] = []  # children still to visit, per open group; [] before a file's root
    for path, name, kind, children in rows:
        if not pending:  # the root of the next file's tree (a file without columns has no more rows)
            pending = [children] if children else []
            continue
        if len(pending) == 1:
            out.append((path, name, kind))
        pending[-1] -= 1
        if children:
            pending.append(children)
        while len(pending) > 1 and pending[-1] == 0:
            pending.pop()
        if pending == [0]:
            pending = []
    return out


def check_parts(con: duckdb.DuckDBPyConnection,
                parts: dict[str, Sequence[str]]) -> tuple[list[str], dict[str, int]]:
    """(the part files (`parts`: table -> its files) that are left out because their footer
    cannot be read, each with a warning; each other part's schema version); raises AnalysisError
    for a readable part that this reader cannot interpret. Two queries for all parts unless one
    is unreadable."""
    files = [f for table_files in parts.values() for f in table_files]
    if not files:
        return [], {}
    skipped: list[str] = []
    try:
        meta, cols = _footers(con, files)
    except duckdb.Error:  # at least one part is not a whole Parquet file: find which, one by one
        meta, cols = [], []
        for path in files:
            try:
                m, c = _footers(con, [path])
            except duckdb.Error as exc:
                warnings.warn(AnalysisWarning(f"{path}: left out, not a readable Parquet file ({_reason(exc, path)})"),
                              stacklevel=2)
                skipped.append(path)
                continue
            meta += m
            cols += c
    kv: dict[str, dict[bytes, bytes]] = {f: {} for f in files}
    for path, key, value in meta:
        kv[path][bytes(key)] = bytes(value)
    found: dict[str, dict[str, str]] = {f: {} for f in files}
    for path, name, kind in cols:
        found[path][name] = kind
    left_out = set(skipped)
    versions: dict[str, int] = {}
    for table, table_files in parts.items():
        expected = expected_types(con, table)
        for path in table_files:
            if path not in left_out:
                versions[path] = _check_version(path, kv[path])
                _check_columns(path, table, found[path], expected, versions[path])
    return skipped, versions


def _check_columns(path: str, table: str, found: dict[str, str], expected: dict[str, str], version: int) -> None:
    for name, kind in expected.items():
        if name not in found and schema.ADDED_IN.get(name, 0) > version:
            continue  # written before the column existed: the reader fills it in
        if name not in found:
            raise AnalysisError(f"{path}: no column {name!r}, which the {table} table needs")
        if found[name] != kind:
            raise AnalysisError(f"{path}: column {name!r} is {found[name]}, the {table} table needs {kind}")


def _reason(exc: duckdb.Error, path: str) -> str:
    """DuckDB's first line without its error class and the file name the warning already gives."""
    line = str(exc).split("\n", 1)[0]
    line = re.sub(r"^[A-Za-z ]+ Error: ", "", line)
    return line.replace(f" '{path}'", "").replace(f' "{path}"', "").strip()


def _check_version(path: str, meta: dict[bytes, bytes]) -> int:
    version = meta.get(schema.META_VERSION_KEY)
    if version is None:
        raise AnalysisError(f"{path}: no {schema.META_VERSION_KEY.decode()} metadata; not dpda telemetry")
    if not version.isdigit():
        raise AnalysisError(f"{path}: schema version {version!r} in its metadata is not a number")
    if int(version) > schema.SCHEMA_VERSION:
        raise AnalysisError(
            f"{path}: telemetry schema version {int(version)} is newer than this reader "
            f"({schema.SCHEMA_VERSION}); upgrade dpda_analysis"
        )
    return int(version)
