"""Where telemetry is read from: a local path or any pyarrow filesystem URI (s3://, gs://,
hdfs://, file://), resolved once with `pyarrow.fs.FileSystem.from_uri`.

Why: a cluster that keeps its runs in object storage is analysed where they are, without
copying. Local paths stay exactly as before (DuckDB reads them itself, `glob` lists them). For
any other filesystem, the pyarrow filesystem is registered with the DuckDB connection through
fsspec's `ArrowFSWrapper` under a protocol name of its own, and every path handed to DuckDB
carries that prefix (`duck`), so the SQL (read_parquet, parquet_metadata) is the same.

Paths on the filesystem (`fs_path`, what `RunDir.path` holds) never carry the prefix.
Credentials and endpoints come from the URI and the environment as pyarrow reads them (e.g.
`s3://bucket/exp?endpoint_override=host:9000&scheme=http`, AWS_ACCESS_KEY_ID/..., or
AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import glob as globbing
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs

_PROTOCOLS = itertools.count()


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


@dataclass(frozen=True)
class Location:
    """A filesystem and a root path on it; `protocol` is None for the local filesystem."""

    fs: pafs.FileSystem
    root: str
    protocol: str | None = None
    _fsspec: Any = None

    @property
    def is_local(self) -> bool:
        return self.protocol is None

    def path(self, text: str) -> Path | PurePosixPath:
        """A filesystem path as a path object (local Path, or a POSIX path on the remote fs)."""
        return Path(text) if self.is_local else PurePosixPath(text)

    def duck(self, path: str | os.PathLike) -> str:
        """The path (or glob pattern) as DuckDB reads it on the connection `attach`ed to."""
        return os.fspath(path) if self.is_local else f"{self.protocol}://{os.fspath(path)}"

    def fs_path(self, duck_path: str) -> str:
        """Inverse of `duck`: a DuckDB file name back to the path on the filesystem."""
        return duck_path if self.is_local else duck_path.removeprefix(f"{self.protocol}://")

    def attach(self, con: Any) -> None:
        """Make `duck` paths readable on a DuckDB connection."""
        if not self.is_local:
            con.register_filesystem(self._fsspec)

    def glob(self, duck_pattern: str) -> list[str]:
        """Sorted DuckDB paths matching a `duck` pattern (`*` within one path segment)."""
        if self.is_local:
            return sorted(globbing.glob(duck_pattern))
        return sorted(self.duck(p) for p in self._fsspec.glob(self.fs_path(duck_pattern)))

    def kind(self, path: str | os.PathLike) -> pafs.FileType:
        text = os.path.abspath(path) if self.is_local else os.fspath(path)
        return self.fs.get_file_info(text).type

    def is_dir(self, path: str | os.PathLike) -> bool:
        return self.kind(path) == pafs.FileType.Directory

    def is_file(self, path: str | os.PathLike) -> bool:
        return self.kind(path) == pafs.FileType.File

    def read_text(self, path: str | os.PathLike) -> str | None:
        """The file's text (undecodable bytes replaced), None if it is not a file."""
        if not self.is_file(path):
            return None
        with self.fs.open_input_stream(os.path.abspath(path) if self.is_local else os.fspath(path)) as fh:
            return fh.read().decode("utf-8", errors="replace")

    def walk(self, top: str) -> Iterator[tuple[str, list[str], list[str]]]:
        """Like os.walk (top-down; prune by editing the yielded directory list in place)."""
        if self.is_local:
            yield from os.walk(top)
            return
        stack = [top.rstrip("/")]
        while stack:
            here = stack.pop()
            infos = self.fs.get_file_info(pafs.FileSelector(here, allow_not_found=True))
            dirnames = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
            filenames = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
            yield here, dirnames, filenames
            stack.extend(f"{here}/{d}" for d in reversed(dirnames))


def _fsspec_wrapper(fs: pafs.FileSystem, protocol: str) -> Any:
    """`fs` as an fsspec filesystem answering to `protocol://path` (what DuckDB dispatches on)."""
    from fsspec.implementations.arrow import ArrowFSWrapper

    prefix = f"{protocol}://"

    class _Wrapper(ArrowFSWrapper):
        @classmethod
        def _strip_protocol(cls, path: Any) -> Any:
            if isinstance(path, list):
                return [cls._strip_protocol(p) for p in path]
            return os.fspath(path).removeprefix(prefix).rstrip("/")

    _Wrapper.protocol = protocol
    return _Wrapper(fs, skip_instance_cache=True)


def resolve(path: str | os.PathLike) -> Location:
    """A local path (as before: expanded, absolute) or a filesystem URI, resolved once."""
    text = os.fspath(path)
    if not is_uri(text) or text.startswith("file://"):
        local = text.removeprefix("file://")
        return Location(pafs.LocalFileSystem(), str(Path(local).expanduser().resolve()))
    fs, root = pafs.FileSystem.from_uri(text)
    if isinstance(fs, pafs.LocalFileSystem):
        return Location(fs, str(Path(root).resolve()))
    protocol = f"dpdafs{next(_PROTOCOLS)}"
    return Location(fs, root.rstrip("/"), protocol, _fsspec_wrapper(fs, protocol))
