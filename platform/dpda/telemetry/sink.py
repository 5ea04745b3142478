"""Whole-file Parquet writes that a hard kill can never leave half-done.

Local paths: the file is written to a hidden `.part-N.parquet.tmp`, fsynced, then renamed
(atomic on POSIX), so a reader globbing `part-*.parquet` sees either the whole part or nothing.
Object stores (`s3://`, `gs://`, ... via `dpda_analysis.location`): the bytes are
uploaded in one stream, and an object only appears once its upload completes.
"""

from __future__ import annotations

import os
import re

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dpda_analysis.location import Location, resolve

_PART_RE = re.compile(r"^part-(\d+)\.parquet$")

COMPRESSION = "zstd"
ROW_GROUP_ROWS = 1 << 20
# Cosines are near-random float bits: zstd saves ~7% on them, yet decoding it is most of the
# CPU of the per-(trial, layer) conflict query, the one that reads only `layer` and `cos`.
# Stored plain, that query takes ~40% less CPU on 100 M rows. Other columns keep zstd.
UNCOMPRESSED_COLUMNS = frozenset({"cos"})


def parquet_options(schema: pa.Schema) -> dict[str, object]:
    """`pq.write_table` keyword arguments for a telemetry table (writer and benchmarks).

    Float columns get no dictionary: their values hardly repeat, so pyarrow would build one,
    overflow it and fall back to plain pages, which made parts ~13% larger and writes slower.
    """
    return {
        "compression": {f.name: "none" if f.name in UNCOMPRESSED_COLUMNS else COMPRESSION for f in schema},
        "use_dictionary": [f.name for f in schema if not pa.types.is_floating(f.type)],
        "row_group_size": ROW_GROUP_ROWS,
    }


class PartSink:
    """Writes Parquet part files below one root directory (local or object store)."""

    def __init__(self, uri_or_path: str | os.PathLike | Location) -> None:
        self.location = resolve(uri_or_path)
        self.fs, self.root, self.local = self.location.fs, self.location.root, self.location.is_local

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if not self.local else os.path.join(self.root, *parts)

    def list_part_numbers(self, reldir: str) -> list[int]:
        """Sequence numbers of the finished parts in `reldir` (temp files are not parts)."""
        selector = pafs.FileSelector(self.path(reldir), allow_not_found=True)
        numbers = []
        for info in self.fs.get_file_info(selector):
            match = _PART_RE.match(info.base_name)
            if match and info.type == pafs.FileType.File:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def list_subdirs(self, reldir: str) -> list[str]:
        selector = pafs.FileSelector(self.path(reldir), allow_not_found=True)
        return [i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory]

    def remove_temp_files(self, reldir: str) -> None:
        """Drop `.tmp` leftovers of a killed writer; they were never visible to readers."""
        if not self.local:
            return
        directory = self.path(reldir)
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name.startswith(".") and name.endswith(".tmp"):
                    os.unlink(os.path.join(directory, name))

    def write(self, reldir: str, name: str, table: pa.Table) -> str:
        """Encode `table` and publish it as `reldir/name` in one atomic step; return the path."""
        out = pa.BufferOutputStream()
        pq.write_table(table, out, **parquet_options(table.schema))
        data = out.getvalue()
        final = self.path(reldir, name)
        if self.local:
            directory = self.path(reldir)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{name}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        else:
            self.fs.create_dir(self.path(reldir), recursive=True)
            with self.fs.open_output_stream(final) as stream:
                stream.write(data)
        return final
