"""A multi-worker Tune trial on a multi-node Ray cluster (ray.cluster_utils.Cluster: a head and
two 1-CPU raylets on this machine, each a separate node).

Each Train worker needs 1 CPU and no node has more than 1 CPU, so the two workers of the trial
necessarily run on two different nodes. The trial is the Ray Train V2 driver inside Tune:
TuneReportCallback forwards rank 0's per-epoch metrics to Tune.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dpda.cli import command_parser
from dpda.commands import tune as tune_command

from support import write_tiny_corpus

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.mark.ray
def test_two_worker_trial_across_nodes(cluster, tmp_path: Path) -> None:
    import ray

    from dpda.tune.tuner import TRAIN_RUNS, run_search

    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    corpus = write_tiny_corpus(tmp_path / "corpus")
    parser = command_parser("tune")
    args = parser.parse_args([
        str(ROOT / "search_spaces/demo.yaml"), "--data", str(corpus), "--num-samples", "1", "--epochs", "2",
        "--workers", "2", "--cpus-per-worker", "1", "--set", "data.length=8000", "--set", "optim.batch_size=4",
        "--set", "optim.max_steps_per_epoch=3",
    ])
    space = tune_command.load_space(args)
    space = dataclasses.replace(space, tune=space.tune.with_changes(max_concurrent=None))
    outcome = run_search(space, storage=tmp_path / "results", verbose=0)

    assert len(outcome.table) == 1
    row = outcome.table.iloc[0]
    assert row["status"] == "completed" and row["epochs"] == 2, outcome.table
    assert 0.0 <= row["model_dev_eer"] <= 1.0  # the saved model's (dpda.train.trial_result), from rank 0's final report
    trial_dir = Path(outcome.experiment_path) / f"trial_{row['trial_id']}"
    assert (trial_dir / "model.pt").exists()  # rank 0's averaged model, in the trial dir
    # Ray Train's checkpoints of the trial, named by trial id (a restarted trial finds them)
    assert list((Path(outcome.experiment_path) / TRAIN_RUNS / row["trial_id"]).glob("checkpoint_*"))
    assert outcome.best_trial_id == row["trial_id"]

    from dpda_analysis.store import open_telemetry

    with open_telemetry(trial_dir) as tel:
        steps = tel.sql("select step, world_size from steps order by step")
    first = int(steps["step"].iloc[0])
    assert steps["step"].tolist() == list(range(first, first + 2 * 3))  # 2 epochs x 3 steps, rank 0 only
    assert set(steps["world_size"]) == {2}
