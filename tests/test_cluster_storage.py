"""A search on a multi-node Ray cluster (ray.cluster_utils.Cluster: a head and one more raylet,
1 CPU each, so two trials run on two nodes) with its storage in an S3 object store on
127.0.0.1 (moto's S3 server, spoken to over HTTP by pyarrow's S3 client, as Ray's RunConfig
`storage_filesystem` would on AWS).

What it shows, from the server's own byte count and listing:
- each report uploads only what the epoch changed: bytes written per epoch per trial <=
  size(epoch file) + size(last.pt) + 1 MB (the old report uploaded last.pt + every n-best file);
- after the search the storage holds exactly last.pt + the n best epoch files per trial;
- a trial whose process is killed (SIGKILL, after its 2nd epoch's report) resumes from the
  storage alone (its node-local working copies are gone) and finishes all epochs;
- the corpora are decoded once per search, in the driver: trials trust its verdicts.

One Ray cluster and one object store for the module.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import torch

from dpda.cli import command_parser
from dpda.commands import tune as tune_command

from object_store import LocalS3, bucket_store
from support import CHECK_LOG_ENV, log_corpus_checks, write_tiny_corpus

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
BUCKET = "dpda-test"
EPOCHS = 4
N_BEST = 2
TRIALS = 3
MB = 1 << 20


@pytest.fixture(scope="module")
def store():
    with bucket_store(BUCKET) as s3:
        yield s3


@pytest.fixture(scope="module")
def cluster(store, tmp_path_factory):
    """Two 1-CPU nodes. Raylets and workers inherit this environment: the S3 credentials, a
    fresh corpus-check cache, the decode log, and tests/ on the path for the setup hook."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    scratch = tmp_path_factory.mktemp("cluster_env")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "DPDA_CACHE_DIR", CHECK_LOG_ENV)}
    tests = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), tests) if p)
    os.environ["DPDA_CACHE_DIR"] = str(scratch / "cache")
    os.environ[CHECK_LOG_ENV] = str(scratch / "checks.log")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "support.log_corpus_checks"})
    from dpda.data import check

    unlogged = check.inspect_manifest
    log_corpus_checks()  # the driver (this process) too
    yield c
    check.inspect_manifest = unlogged
    ray.shutdown()
    c.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def kill_once_after_epoch(epoch: int):
    """A Tune callback: SIGKILL the first trial that reports `epoch` (its process, as when a node
    is lost), once. Returns (callback, list of killed trial ids)."""
    from ray.tune import Callback

    killed: list[str] = []

    class _Kill(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if not killed and result.get("epoch") == epoch:
                killed.append(trial.trial_id)
                os.kill(result["pid"], signal.SIGKILL)

    return _Kill(), killed


def test_search_with_object_storage(cluster, store: LocalS3, tmp_path: Path) -> None:
    import ray

    from dpda.tune.tuner import run_search

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=24, n_dev=16)
    args = command_parser("tune").parse_args([
        str(ROOT / "search_spaces/demo.yaml"), "--data", str(corpus), "--num-samples", str(TRIALS),
        "--epochs", str(EPOCHS), "--max-concurrent", "2", "--metric", "dev_loss",
        "--set", "data.length=8000", "--set", "optim.batch_size=4", "--set", "optim.max_steps_per_epoch=3",
        "--set", "optim.patience=10", "--set", f"checkpoint.average_best={N_BEST}",
        "--set", "checkpoint.select_by=dev_loss", "--set", "telemetry.flush_every=3", "--quiet",
    ])
    space = tune_command.load_space(args)
    # no ASHA stop (every trial runs all epochs), one restart allowed per trial
    space = dataclasses.replace(space, tune=space.tune.with_changes(grace_period=EPOCHS, max_failures=1))
    kill, killed = kill_once_after_epoch(2)
    outcome = run_search(space, storage=f"{BUCKET}/results", storage_filesystem=store.filesystem(),
                         callbacks=[kill], verbose=0)

    table = outcome.table
    assert len(table) == TRIALS and (table["epochs"] == EPOCHS).all(), table
    assert len(killed) == 1

    # ---- storage holds exactly last.pt + the n best epoch files per trial
    exp = f"{BUCKET}/results/demo"
    stored = store.files(exp)
    for trial_id in table["trial_id"]:
        prefix = f"{exp}/trial_{trial_id}/"
        weights = sorted(Path(p).name for p in stored if p.startswith(prefix) and p.endswith(".pt"))
        assert weights.count("last.pt") == 1, weights
        epochs = [w for w in weights if w.startswith("epoch_")]
        assert len(epochs) == N_BEST, weights
    assert not [p for p in stored if p.endswith(".pt") and "/trial_" not in p]

    # ---- bytes written per epoch per trial: the changed files + 1 MB at most
    sizes = {Path(p).name: n for p, n in stored.items() if p.endswith(".pt")}
    last, epoch_file = sizes["last.pt"], max(n for name, n in sizes.items() if name.startswith("epoch_"))
    old_report = last + N_BEST * epoch_file  # what handing Ray the whole folder uploaded, per epoch
    assert old_report - (last + epoch_file) > 0
    for trial_id in table["trial_id"]:
        prefix = f"{exp}/trial_{trial_id}/"
        written = sum(n for key, n in store.written.items() if key.startswith(prefix))
        reports = len(ray_reports(store, prefix))
        assert reports >= EPOCHS
        assert written <= reports * (epoch_file + last + MB), (trial_id, written, reports)
        assert written >= reports * last  # every report did upload its last.pt
        in_checkpoints = sum(n for key, n in store.written.items() if key.startswith(prefix + "checkpoint_"))
        sys.__stdout__.write(f"[storage] trial {trial_id}: {reports} reports, {written} B written "
                             f"({in_checkpoints} B in checkpoint folders); last.pt {last} B, "
                             f"epoch file {epoch_file} B; the whole folder would be {old_report} B per report\n")

    # ---- the killed trial resumed from the storage, not from scratch. It was killed as the driver
    # received epoch 2's report: it resumes from epoch 1's or epoch 2's checkpoint, whichever
    # Tune had registered, and whether the first attempt's lines of result.json reached the
    # storage first depends on Tune's sync timing. So: the last.pt in storage was written by a
    # later attempt than the first (attempts count from 0; a fresh start would be attempt 0 again, its scratch folder
    # being empty), and no epoch was reported twice except the one the kill interrupted.
    history = epochs_reported(store, f"{exp}/trial_{killed[0]}")
    assert history[-1] == EPOCHS and set(history) <= set(range(1, EPOCHS + 1)), history
    assert history.count(1) <= 1 and all(history.count(e) == 1 for e in range(3, EPOCHS + 1)), history
    last_pt = next(p for p in stored if p.startswith(f"{exp}/trial_{killed[0]}/") and p.endswith("/last.pt"))
    with store.filesystem().open_input_stream(last_pt) as fh:
        state = torch.load(io.BytesIO(fh.read()), weights_only=True, map_location="cpu")
    assert state["attempt"] >= 1 and state["epoch"] == EPOCHS, (state["attempt"], state["epoch"])  # 0-based
    others = [p for p in stored if p.endswith("/last.pt") and f"/trial_{killed[0]}/" not in p]
    for path in others:  # the trials nobody killed ran once
        with store.filesystem().open_input_stream(path) as fh:
            assert torch.load(io.BytesIO(fh.read()), weights_only=True, map_location="cpu")["attempt"] == 0

    # ---- one decode per corpus per search, in the driver (train + dev)
    log = Path(os.environ[CHECK_LOG_ENV]).read_text().splitlines()
    assert len(log) == 2, log
    assert {line.split()[0] for line in log} == {str(os.getpid())}
    assert sorted(line.split(" ", 1)[1] for line in log) == sorted(space.base["data"]["train"] + space.base["data"]["dev"])


def ray_reports(store: LocalS3, prefix: str) -> set[str]:
    """The checkpoint folders that reports of this trial uploaded (each uploads one last.pt)."""
    return {m.group(1) for key in store.written if (m := re.match(re.escape(prefix) + r"(checkpoint_[^/]+)/last\.pt$", key))}


def epochs_reported(store: LocalS3, trial_dir: str) -> list[int]:
    """The `epoch` of each epoch's report of a trial, in order, from Tune's result.json in the
    storage (not the saved model's report after the last epoch: `model_saved`, dpda.train.trial_result)."""
    with store.filesystem().open_input_stream(f"{trial_dir}/result.json") as fh:
        records = [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]
    return [int(r["epoch"]) for r in records if not r.get("model_saved")]
