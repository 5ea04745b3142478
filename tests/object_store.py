"""A real S3 server on 127.0.0.1 for tests (moto's S3 backend behind werkzeug, as moto's own
ThreadedMotoServer runs it), with a byte count of every upload per object key.

Why not a mock: the code under test talks to it over HTTP through pyarrow's S3 client, exactly
as it would to AWS; the count is how the tests measure what a run writes to its storage.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow.fs as pafs

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class _CountUploads:
    """WSGI middleware: bytes of every PUT body (whole objects and multipart parts) per key."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.written: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" not in environ:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            if not size:  # aws-chunked bodies give the payload size in this header
                size = int(environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH") or 0)
            with self.lock:
                self.written[environ.get("PATH_INFO", "").lstrip("/")] += size
        return self.app(environ, start_response)


class LocalS3:
    """The server, its endpoint and a pyarrow filesystem for it."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.counter = _CountUploads(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, self.counter, threaded=True, request_handler=MotoRequestHandler)
        self.port = self._server.server_address[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def written(self) -> collections.Counter[str]:
        return self.counter.written

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                 region=CREDENTIALS["AWS_DEFAULT_REGION"], endpoint_override=self.endpoint, scheme="http",
                                 allow_bucket_creation=True, allow_bucket_deletion=True)

    def uri(self, path: str) -> str:
        """An s3:// URI for `path` ("bucket/key") that pyarrow resolves to this server
        (credentials come from the environment, see `environment`)."""
        return f"s3://{path}?endpoint_override={self.endpoint}&scheme=http&region={CREDENTIALS['AWS_DEFAULT_REGION']}"

    def files(self, prefix: str) -> dict[str, int]:
        """Path -> size of every object below `prefix` ("bucket/key")."""
        infos = self.filesystem().get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        return {i.path: i.size for i in infos if i.type == pafs.FileType.File}

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@contextmanager
def environment() -> Iterator[None]:
    """Credentials for pyarrow's S3 client (and any process started meanwhile)."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def bucket_store(bucket: str) -> Iterator[LocalS3]:
    """A started LocalS3 server with `bucket` created, credentials set; stopped on exit (the
    body of a module-scoped `store` fixture)."""
    with environment():
        s3 = LocalS3()
        try:
            s3.filesystem().create_dir(bucket)
            yield s3
        finally:
            s3.stop()
