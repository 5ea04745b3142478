"""Where runs live, for reading and writing: a local path, a `file://` URI, or any pyarrow
filesystem URI (s3://, gs://, hdfs://), resolved once with `pyarrow.fs.FileSystem.from_uri`.

Why one helper: the telemetry writer, the Tune driver's storage and the analysis readers all
take "a local path or a URI"; resolved in one place, `file://`, query parameters
(`s3://bucket/exp?endpoint_override=host:9000&scheme=http`) and error messages behave the same
everywhere. `join` appends a child name to the URI's path and keeps the query string at the end;
`str(location)` is the location as the user wrote it (never a repr), for messages.

Object stores fail fast: an S3 filesystem resolved here gets a short connect timeout and few,
quick retries (`S3_CONNECT_TIMEOUT_S`, `S3_RETRY`), so a dead endpoint is an error in about a
second, not after a quarter of a minute of backoff. Unreachable storage (dead endpoint, bad
credentials, a bucket that does not exist) raises `LocationError`: one line naming the URI and
the cause. Credentials and endpoints come from the URI and the environment as pyarrow reads
them (AWS_ACCESS_KEY_ID/..., AWS_ENDPOINT_URL).

Reading with DuckDB: local paths stay plain (DuckDB reads them itself, `glob` lists them). For
any other filesystem, the pyarrow filesystem is registered with the DuckDB connection through
fsspec's `ArrowFSWrapper` under a protocol name of its own, and every path handed to DuckDB
carries that prefix (`duck`), so the SQL (read_parquet, parquet_metadata) is the same. Paths on
the filesystem (`root`, `fs_path`, what `RunDir.path` holds) never carry the prefix.
"""

from __future__ import annotations

import glob as globbing
import itertools
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pyarrow.fs as pafs

from dpda_analysis.errors import LocationError

_PROTOCOLS = itertools.count()
S3_CONNECT_TIMEOUT_S = 1.0  # the AWS SDK's default, stated: a refused or silent endpoint fails per try
S3_REQUEST_TIMEOUT_S = 10.0  # socket reads (pyarrow applies it on Windows and macOS only)
# Exponential backoff from 25 ms (the standard strategy's jittered backoff took ~6 s per
# operation on a dead endpoint); 4 tries still ride out a transient 5xx or throttling.
S3_RETRY = pafs.AwsDefaultS3RetryStrategy(max_attempts=4)


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def join(location: str | os.PathLike, *names: str) -> str:
    """`location` with `names` appended: os.path.join for a local path; for a URI, the names go
    at the end of its path and the query string stays after them (percent-encoded as needed)."""
    text = os.fspath(location)
    if not is_uri(text):
        return os.path.join(text, *names)
    parts = urlsplit(text)
    path = parts.path.rstrip("/")
    for name in names:
        path += "/" + quote(name.strip("/"), safe="/")
    return urlunsplit(parts._replace(path=path))


def display(location: str | os.PathLike) -> str:
    """The location as written, with a password in the URI (`s3://key:secret@bucket`) hidden."""
    text = os.fspath(location)
    if not is_uri(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def _cause(exc: BaseException) -> str:
    """The error's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class Location:
    """A filesystem and a root path on it; `uri` is how the user named it (shown in messages)."""

    fs: pafs.FileSystem
    root: str
    uri: str = ""
    _local: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_local", isinstance(self.fs, pafs.LocalFileSystem))

    def __str__(self) -> str:
        return display(self.uri or self.root)

    @property
    def is_local(self) -> bool:
        return self._local

    @cached_property
    def protocol(self) -> str | None:
        """The protocol name DuckDB reads this filesystem under; None for the local filesystem."""
        return None if self.is_local else f"dpdafs{next(_PROTOCOLS)}"

    @cached_property
    def _fsspec(self) -> Any:
        return None if self.is_local else _fsspec_wrapper(self.fs, self.protocol)

    def child(self, *names: str) -> Location:
        """The location `names` below this one, on the same filesystem."""
        root = os.path.join(self.root, *names) if self.is_local else posixpath.join(self.root, *names)
        return Location(self.fs, root, join(self.uri or self.root, *names))

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

    def kind(self, path: str | os.PathLike | None = None) -> pafs.FileType:
        """What is at `path` (default: the root). An object store that cannot be reached raises
        LocationError naming this location and the cause."""
        text = self._on_fs(path)
        if self.is_local:
            return self.fs.get_file_info(text).type
        try:
            return self.fs.get_file_info(text).type
        except OSError as exc:
            raise LocationError(f"{self}: cannot reach the storage: {_cause(exc)}") from None

    def _on_fs(self, path: str | os.PathLike | None) -> str:
        if path is None:
            return self.root
        return os.path.abspath(path) if self.is_local else os.fspath(path)

    def is_dir(self, path: str | os.PathLike | None = None) -> bool:
        return self.kind(path) == pafs.FileType.Directory

    def is_file(self, path: str | os.PathLike | None = None) -> bool:
        return self.kind(path) == pafs.FileType.File

    def read_text(self, path: str | os.PathLike | None = None) -> str | None:
        """The text of the file at `path` (default: the root; undecodable bytes replaced), None
        if it is not a file."""
        if not self.is_file(path):
            return None
        with self.fs.open_input_stream(self._on_fs(path)) as fh:
            return fh.read().decode("utf-8", errors="replace")

    def write_text(self, text: str, path: str | os.PathLike | None = None) -> None:
        """Write a whole file (UTF-8) at `path` (default: the root), making its parent directories."""
        where = self._on_fs(path)
        parent = os.path.dirname(where) if self.is_local else posixpath.dirname(where)
        if parent:
            self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(where) as fh:
            fh.write(text.encode("utf-8"))

    def check_writable(self) -> None:
        """Raise LocationError unless a run can be written here: the nearest existing ancestor of
        the root is a directory (on an object store: the bucket exists) and, locally, writable.
        Costs one request per missing level on an object store."""
        split = os.path.dirname if self.is_local else posixpath.dirname
        here = self.root
        while True:
            kind = self.kind(here)
            if kind == pafs.FileType.Directory:
                break
            if kind != pafs.FileType.NotFound:
                raise LocationError(f"{self}: {here} is a file, not a directory")
            parent = split(here.rstrip("/"))
            if not parent or parent == here:
                what = f"bucket {here.strip('/')!r}" if not self.is_local else here
                raise LocationError(f"{self}: {what} does not exist (or these credentials cannot see it)")
            here = parent
        if self.is_local and not os.access(here, os.W_OK | os.X_OK):
            raise LocationError(f"{self}: {here} is not writable")

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


def _fail_fast(fs: pafs.FileSystem) -> pafs.FileSystem:
    """An S3 filesystem with dpda's timeouts and retries (where the URI did not set its own);
    other filesystems unchanged."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    _, (options,) = fs.__reduce__()
    if options.get("connect_timeout", -1) < 0:
        options["connect_timeout"] = S3_CONNECT_TIMEOUT_S
    if options.get("request_timeout", -1) < 0:
        options["request_timeout"] = S3_REQUEST_TIMEOUT_S
    return pafs.S3FileSystem(**options, retry_strategy=S3_RETRY)


def resolve(path: str | os.PathLike | Location, filesystem: pafs.FileSystem | None = None) -> Location:
    """A local path (expanded, absolute), a `file://` URI or a filesystem URI, resolved once; with
    `filesystem`, `path` is a path on it (as in Ray's RunConfig). A Location is returned as is.
    A URI pyarrow cannot resolve (malformed, or an unreachable region lookup) raises LocationError."""
    if isinstance(path, Location):
        return path
    text = os.fspath(path)
    if filesystem is not None:
        return Location(filesystem, text.rstrip("/") or text, text)
    if not is_uri(text):
        return Location(pafs.LocalFileSystem(), str(Path(text).expanduser().resolve()), text)
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except OSError as exc:  # e.g. the bucket's region could not be looked up
        raise LocationError(f"{display(text)}: cannot reach the storage: {_cause(exc)}") from None
    except ValueError as exc:  # ArrowInvalid: not a URI pyarrow knows
        raise LocationError(f"{display(text)}: {_cause(exc)}") from None
    if isinstance(fs, pafs.LocalFileSystem):
        return Location(fs, str(Path(root).resolve()), text)
    return Location(_fail_fast(fs), root.rstrip("/"), text)
