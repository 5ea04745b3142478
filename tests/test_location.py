"""One location helper (dpda_analysis.location) for every "local path or URI": resolving,
joining a child name (a URI's query string stays at the end), the display string in messages,
and unreachable storage as one line, for the analysis readers, the telemetry writer and
`dpda tune --storage`. The object-store cases run against moto's S3 server on 127.0.0.1
(tests/object_store.py) and against a closed local port (a dead endpoint)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

import dpda_analysis as A
from dpda.cli import main
from dpda.telemetry import TelemetryWriter, telemetry_root
from dpda.telemetry.tally import EpochTally
from dpda.telemetry.sink import PartSink
from dpda.tune.search_space import name_problem, parse_search_space
from dpda.tune.tuner import experiment_path, storage_location
from dpda.errors import UserError
from dpda_analysis.location import S3_CONNECT_TIMEOUT_S, Location, display, join, resolve

from dpda_analysis import schema as S
from object_store import LocalS3, bucket_store, environment

ROOT = Path(__file__).parents[1]
BUCKET = "dpda-location"
QUERY = "endpoint_override=127.0.0.1:9000&scheme=http"


# ------------------------------------------------------------------ resolving and joining

def test_local_and_relative_paths_resolve_absolute_and_display_as_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    loc = resolve("runs/x")
    assert loc.is_local and loc.protocol is None
    assert loc.root == str(tmp_path.resolve() / "runs" / "x")
    assert str(loc) == "runs/x"
    child = loc.child("trial_1")
    assert child.root == str(tmp_path.resolve() / "runs" / "x" / "trial_1") and str(child) == join("runs/x", "trial_1")
    assert resolve(loc) is loc


def test_file_uri_is_the_local_filesystem(tmp_path: Path) -> None:
    (tmp_path / "a b").mkdir()
    for uri in (f"file://{tmp_path}/a%20b", f"file://{tmp_path}/a%20b/"):
        loc = resolve(uri)
        assert loc.is_local and loc.root == str(tmp_path.resolve() / "a b") and loc.is_dir()
        assert str(loc) == uri
    assert join(f"file://{tmp_path}/", "run") == f"file://{tmp_path}/run"
    assert resolve(join(f"file://{tmp_path}", "a b")).root == str(tmp_path.resolve() / "a b")  # percent-encoded, decoded back


def test_s3_uri_with_query_joins_before_the_query_and_round_trips() -> None:
    base = f"s3://bucket/prefix?{QUERY}"
    joined = join(base, "name")
    assert joined == f"s3://bucket/prefix/name?{QUERY}"
    assert join(f"s3://bucket/prefix/?{QUERY}", "a", "b") == f"s3://bucket/prefix/a/b?{QUERY}"
    assert join(f"s3://bucket?{QUERY}", "name") == f"s3://bucket/name?{QUERY}"
    loc = resolve(base)
    child = loc.child("name")
    assert (loc.root, child.root, str(child)) == ("bucket/prefix", "bucket/prefix/name", joined)
    again = resolve(joined)  # what pyarrow makes of the joined URI: the same place, same endpoint
    assert again.root == child.root and again.fs.equals(child.fs)
    _, (options,) = again.fs.__reduce__()
    assert (options["endpoint_override"], options["scheme"]) == ("127.0.0.1:9000", "http")
    assert options["connect_timeout"] == S3_CONNECT_TIMEOUT_S
    # the writer's telemetry root and the tuner's experiment path are the same join
    assert telemetry_root(base) == f"s3://bucket/prefix/telemetry?{QUERY}"
    assert experiment_path(base, "demo") == f"s3://bucket/prefix/demo?{QUERY}"
    assert telemetry_root("runs/a") == os.path.join("runs/a", "telemetry")


def test_display_never_shows_a_repr_or_a_password() -> None:
    loc = resolve(f"s3://bucket/x?{QUERY}")
    assert f"{loc}" == f"s3://bucket/x?{QUERY}" and "Location(" not in f"{loc}"
    assert display("s3://AKIA:s3cr3t@bucket/x") == "s3://AKIA:***@bucket/x"
    assert str(Location(pafs.LocalFileSystem(), "/data")) == "/data"


def test_a_malformed_uri_is_one_location_error() -> None:
    with pytest.raises(A.LocationError, match=r"^file://relative/x: .*hostname"):
        resolve("file://relative/x")


def test_the_sink_resolves_through_the_helper(tmp_path: Path) -> None:
    sink = PartSink(f"file://{tmp_path}")
    assert sink.local and sink.root == str(tmp_path.resolve())


# ------------------------------------------------------------------ experiment names

@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/b", "", "x y"])
def test_an_experiment_name_is_one_folder(name: str) -> None:
    assert name_problem(name) is not None
    raw = {"name": name, "base": {"model": {"name": "rawnet2", "preset": "tiny"}, "optim": {"epochs": 1}},
           "search": {"optim.lr": {"loguniform": [1e-4, 1e-2]}}}
    with pytest.raises(UserError, match="name: must be letters"):
        parse_search_space(raw, source="space.yaml", validate_config=lambda d, s: d)


@pytest.mark.parametrize("name", ["demo", "demo-2.b_c", "..x"])
def test_plain_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_tune_refuses_a_name_outside_the_storage(tmp_path: Path, capsys) -> None:
    status = main(["tune", str(ROOT / "search_spaces/demo.yaml"), "--data", str(tmp_path),
                   "--storage", str(tmp_path / "runs"), "--name", "../../x"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "dpda tune: error: --name ../../x: must be letters" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


# ------------------------------------------------------------------ object storage

@pytest.fixture(scope="module")
def store():
    with bucket_store(BUCKET) as s3:
        yield s3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dead_uri(path: str) -> str:
    return f"s3://{path}?endpoint_override=127.0.0.1:{_closed_port()}&scheme=http&region=us-east-1"


def _stats(rng: np.random.Generator, n_layers: int) -> dict:
    """One step's statistics with the schema's keys (booleans false, numbers random)."""
    types = {f.name: f.type for f in S.STEPS}
    stats = {k: False if str(types[k]) == "bool" else float(rng.random()) for k in S.STEP_STAT_KEYS}
    return {**stats, **{k: rng.random(n_layers).tolist() for k in S.LAYER_STAT_KEYS}}


def test_telemetry_written_to_a_query_uri_is_read_back_from_it(store: LocalS3) -> None:
    uri = store.uri(f"{BUCKET}/runs/run1")
    rng = np.random.default_rng(0)
    tally = EpochTally()
    with TelemetryWriter(uri, "run1", "t0", 0, ["l0", "l1"], flush_every=5) as writer:
        for step in range(12):
            stats = _stats(rng, 2)
            tally.add(stats)
            writer.log_step(step, 1, stats, 0.1)
        writer.log_epoch(1, 11, tally=tally, dev_eer=0.2)
    assert any(p.startswith(f"{BUCKET}/runs/run1/telemetry/steps/attempt-0/") for p in store.files(f"{BUCKET}/runs"))
    with A.open_telemetry(uri) as tel:
        assert tel.sql("select count(*) n from steps")["n"][0] == 12
        assert str(tel.location) == uri


def test_a_missing_bucket_is_one_line_naming_the_uri(store: LocalS3) -> None:
    uri = store.uri("no-such-bucket/runs")
    with pytest.raises(A.AnalysisError) as info:
        A.open_telemetry(uri)
    assert str(info.value) == f"{uri}: no such file or directory"
    with pytest.raises(A.LocationError, match=r"bucket 'no-such-bucket' does not exist"):
        resolve(uri).check_writable()
    resolve(store.uri(f"{BUCKET}/not/yet/there")).check_writable()  # the bucket exists: writable


def test_a_dead_endpoint_is_one_line_naming_the_uri_and_the_cause() -> None:
    uri = _dead_uri("bucket/runs")
    with environment():
        start = time.monotonic()
        with pytest.raises(A.LocationError) as info:
            A.open_telemetry(uri)
        took = time.monotonic() - start
    message = str(info.value)
    assert message.startswith(f"{uri}: cannot reach the storage: ") and "\n" not in message
    assert "Could not connect" in message or "NETWORK_CONNECTION" in message
    print(f"[location] dead endpoint reported after {took:.2f}s")


@pytest.mark.parametrize("command", ["report", "export"])
def test_report_and_export_name_the_uri_not_a_repr(store: LocalS3, tmp_path: Path, capsys, command: str) -> None:
    uri = store.uri("no-such-bucket/runs")
    out = ["--html", str(tmp_path / "r.html")] if command == "report" else ["-o", str(tmp_path / "steps.parquet")]
    assert main([command, uri, *out]) == 2
    err = capsys.readouterr().err
    assert err == f"dpda {command}: error: {uri}: no such file or directory\n"
    with environment():
        dead = _dead_uri("bucket/runs")
        assert main([command, dead, *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dpda {command}: error: {dead}: cannot reach the storage: ") and err.count("\n") == 1


@pytest.mark.parametrize("where", ["missing bucket", "dead endpoint"])
def test_tune_checks_its_storage_before_ray_starts(store: LocalS3, tmp_path: Path, capsys, where: str) -> None:
    ray = pytest.importorskip("ray")
    uri = store.uri("no-such-bucket/exp") if where == "missing bucket" else _dead_uri("bucket/exp")
    start = time.monotonic()
    status = main(["tune", str(ROOT / "search_spaces/demo.yaml"), "--data", str(tmp_path), "--storage", uri])
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"dpda tune: error: storage {uri}: ")
    assert ("does not exist" if where == "missing bucket" else "cannot reach the storage") in err
    assert not ray.is_initialized()
    print(f"[location] dpda tune --storage ({where}) refused after {took:.2f}s")


def test_storage_location_accepts_a_path_on_a_given_filesystem(store: LocalS3) -> None:
    loc = storage_location(f"{BUCKET}/results", store.filesystem())
    assert not loc.is_local and loc.root == f"{BUCKET}/results" and str(loc.child("demo")) == f"{BUCKET}/results/demo"
    with pytest.raises(UserError, match="^storage no-such-bucket/results: bucket 'no-such-bucket' does not exist"):
        storage_location("no-such-bucket/results", store.filesystem())
