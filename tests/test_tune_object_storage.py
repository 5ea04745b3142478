"""A tiny search with its storage in an S3 object store on 127.0.0.1 (moto's S3 server): every
file of each trial's run dir reaches the storage, and what was reported is there by the report.
A multi-worker run (Ray Train, as a trial with tune.resources.workers > 1 runs) mirrors its
rank 0's run dir the same way.

- At each trial result the driver receives (a Tune callback), the trial's telemetry in the
  storage already holds that epoch's row and its steps (the trial uploads before reporting).
- After the search, every node-local trial folder is deleted (as when an autoscaled node goes
  away); `dpda report` and `dpda export` read from the bucket alone: every step and epoch of
  every trial, and each trial `completed` (its summary.json is in the storage, beside model.pt).

One local Ray instance (2 CPUs) and one object store for the module.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import sys
import time
from pathlib import Path

import yaml

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import dpda_analysis as A
from dpda.cli import command_parser, main
from dpda.commands import tune as tune_command

from object_store import LocalS3, bucket_store
from support import write_tiny_corpus

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
BUCKET = "dpda-tune"
EPOCHS = 2
STEPS = 2  # per epoch
TRIALS = 2


@pytest.fixture(scope="module")
def store():
    with bucket_store(BUCKET) as s3:
        yield s3


@pytest.fixture(scope="module")
def ray_local(store):
    """Started after the store: the workers inherit its credentials."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def stored_rows(fs: pafs.FileSystem, trial_dir: str, table: str) -> list:
    """The part files of a trial's `table` in the storage (all attempts), as pyarrow Tables."""
    infos = fs.get_file_info(pafs.FileSelector(f"{trial_dir}/telemetry/{table}", recursive=True, allow_not_found=True))
    paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.startswith("part-"))
    tables = []
    for path in paths:
        with fs.open_input_file(path) as fh:
            tables.append(pq.read_table(io.BytesIO(fh.read())))
    return tables


def check_at_each_result(fs: pafs.FileSystem, exp: str):
    """A Tune callback recording, for each result the driver receives, the trial's stored
    epochs and step count at that moment (it holds only picklable state: Tune saves it)."""
    from ray.tune import Callback

    seen: list[dict] = []

    class _Check(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            trial_dir = f"{exp}/trial_{trial.trial_id}"
            epochs = [e for t in stored_rows(fs, trial_dir, "epochs") for e in t.column("epoch").to_pylist()]
            steps = sum(t.num_rows for t in stored_rows(fs, trial_dir, "steps"))
            seen.append({"trial": trial.trial_id, "epoch": result["epoch"], "stored_epochs": epochs,
                         "stored_steps": steps, "saved": bool(result.get("model_saved"))})

    return _Check(), seen


def node_local_trial_dirs() -> list[Path]:
    """The trial folders Ray keeps on this node (run dirs and the driver's staging copies)."""
    from ray._private.worker import _global_node

    artifacts = Path(_global_node.get_session_dir_path()) / "artifacts"
    return sorted(p for p in artifacts.glob("*/*/*/trial_*") if p.is_dir())


def test_search_files_reach_object_storage(ray_local, store: LocalS3, tmp_path: Path, capsys) -> None:
    from dpda.tune.tuner import run_search

    started = time.monotonic()
    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=16, n_dev=16)
    args = command_parser("tune").parse_args([
        str(ROOT / "search_spaces/demo.yaml"), "--data", str(corpus), "--num-samples", str(TRIALS),
        "--epochs", str(EPOCHS), "--max-concurrent", "1", "--metric", "dev_loss",
        "--set", "data.length=8000", "--set", "optim.batch_size=4", "--set", f"optim.max_steps_per_epoch={STEPS}",
        "--set", "telemetry.flush_every=1", "--quiet",
    ])
    space = tune_command.load_space(args)
    space = dataclasses.replace(space, tune=space.tune.with_changes(grace_period=EPOCHS))  # no ASHA stop
    exp = f"{BUCKET}/results/demo"
    check, seen = check_at_each_result(store.filesystem(), exp)
    outcome = run_search(space, storage=f"{BUCKET}/results", storage_filesystem=store.filesystem(),
                         callbacks=[check], verbose=0)
    searched = time.monotonic() - started
    assert len(outcome.table) == TRIALS and (outcome.table["epochs"] == EPOCHS).all(), outcome.table
    assert outcome.best_model == f"{exp}/trial_{outcome.best_trial_id}/model.pt"  # found in the storage

    # ---- what a trial reported was in the storage when the driver received it: each epoch, and
    # the saved model's report after the last (dpda.train.trial_result)
    assert len(seen) == TRIALS * (EPOCHS + 1) and sum(r["saved"] for r in seen) == TRIALS, seen
    for record in seen:
        assert record["epoch"] in record["stored_epochs"], record
        assert record["stored_steps"] >= record["epoch"] * STEPS, record

    # ---- the node goes away: its trial folders are deleted; report and export read the bucket
    local = node_local_trial_dirs()
    assert local, "no node-local trial folder found to delete"
    for path in local:
        shutil.rmtree(path)
    uri = store.uri(exp)
    stored = store.files(exp)
    for trial_id in outcome.table["trial_id"]:
        names = {p.removeprefix(f"{exp}/trial_{trial_id}/") for p in stored}
        assert {"model.pt", "summary.json", "config.json", "result.json", "params.json"} <= names, sorted(names)
    capsys.readouterr()
    out = tmp_path / "steps.parquet"
    assert main(["export", uri, "-o", str(out)]) == 0
    steps = pq.read_table(out).to_pandas()
    assert steps.groupby("trial_id", observed=True).size().to_dict() == {t: EPOCHS * STEPS for t in outcome.table["trial_id"]}
    html = tmp_path / "report.html"
    assert main(["report", uri, "--html", str(html)]) == 0 and html.stat().st_size > 0
    with A.open_telemetry(uri) as tel:
        trials = A.trial_summary(tel).set_index("trial_id")
        assert sorted(trials.index) == sorted(outcome.table["trial_id"])
        assert (trials["status"] == "completed").all() and trials["model_dev_eer"].notna().all(), trials
        epochs = tel.sql("select trial_id, count(*) n from epochs group by trial_id")
        assert set(epochs["n"]) == {EPOCHS}
    sys.__stdout__.write(f"[timing] search of {TRIALS} trials x {EPOCHS} epochs on S3: {searched:.1f} s; "
                         f"whole test {time.monotonic() - started:.1f} s\n")


def test_two_worker_run_mirrors_rank0_run_dir(ray_local, store: LocalS3, tmp_path: Path) -> None:
    from dpda.train.ray_train import WorkerPlan, run_distributed
    from dpda.train.run_sync import Destination

    started = time.monotonic()
    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=16, n_dev=16)
    raw = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    raw["device"] = "cpu"
    raw["data"].update(train=[f"asvspoof2019:{corpus}/LA:train"], dev=[f"asvspoof2019:{corpus}/LA:dev"],
                       eval={}, length=8000, num_workers=0)
    raw["optim"].update(batch_size=2, epochs=EPOCHS, patience=10, max_steps_per_epoch=STEPS)
    raw["telemetry"]["flush_every"] = 1
    run_dir = tmp_path / "run"
    target = f"{BUCKET}/train/run"
    result = run_distributed(raw, run_dir, plan=WorkerPlan(workers=2), storage_path=f"{BUCKET}/train/ray",
                             storage_filesystem=store.filesystem(), run_id="dist", trial_id="t0",
                             mirror=Destination(store.filesystem(), target))
    assert result.metrics["epoch"] == EPOCHS
    shutil.rmtree(run_dir)  # rank 0's node goes away
    names = {p.removeprefix(target + "/") for p in store.files(target)}
    assert {"model.pt", "summary.json", "config.json"} <= names, sorted(names)
    with A.open_telemetry(store.uri(target)) as tel:
        steps = tel.sql("select epoch, count(*) n from steps group by epoch order by epoch")
        assert steps["epoch"].tolist() == list(range(1, EPOCHS + 1)) and set(steps["n"]) == {STEPS}
        assert A.trial_summary(tel)["status"].tolist() == ["completed"]
    sys.__stdout__.write(f"[timing] 2-worker run of {EPOCHS} epochs on S3: {time.monotonic() - started:.1f} s\n")
