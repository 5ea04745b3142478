"""Data-parallel training: the reduce path is exact, ranks stay identical, and a run survives
the loss of a worker under Ray Train with every telemetry step recorded exactly once.

The equivalence tests use torch.distributed (gloo) in two local processes, without Ray: they
test the Trainer's reduce path itself. The fault test uses Ray Train (one local Ray instance for
the module, 2 CPUs).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from dpda.align import make_aligner
from dpda.train.step import DualPathStep
from dpda.train.ray_train import WorkerPlan, make_all_reduce_mean, read_summary, run_distributed
from support import write_tiny_corpus

ROOT = Path(__file__).parents[1]
RULES = ("pcgrad", "gradvac", "cagrad", "mgda")
STEPS = 6
HALF = 4  # utterances per rank per step; the single process takes 2 * HALF





def tiny_config(corpus: Path, **optim) -> dict:
    """configs/demo.yaml scaled down: tiny AASIST, half-second inputs, a few steps per epoch."""
    raw = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    raw["device"] = "cpu"
    raw["data"].update(train=[f"asvspoof2019:{corpus}/LA:train"], dev=[f"asvspoof2019:{corpus}/LA:dev"],
                       eval={}, length=8000, num_workers=0)
    raw["optim"].update({"batch_size": 4, "epochs": 3, "patience": 10, **optim})
    raw["checkpoint"]["average_best"] = 2
    raw["telemetry"]["flush_every"] = 1
    return raw


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


# ------------------------------------------------------------------------------ equivalence
class TinyNet(nn.Module):
    """BatchNorm-free: with BatchNorm, per-rank batch statistics differ from full-batch ones,
    so data-parallel training is not exactly the full-batch computation (as with DDP)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 9, stride=4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.conv(x[:, None])).mean(-1))


def _batches() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """STEPS global batches of 2 * HALF; each half has the same class counts, so the mean of the
    two halves' class-weighted losses equals the full batch's weighted loss."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(STEPS, 2 * HALF, 64, generator=g)
    aug = -x + 0.3 * torch.randn(x.shape, generator=g)  # an adversarial "augmentation": paths conflict
    y = torch.tensor([1, 0, 0, 0] * 2).repeat(STEPS, 1)
    return x, aug, y


def _train(rule: str, rank: int, world: int) -> tuple[dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss = nn.CrossEntropyLoss(weight=torch.tensor([0.1, 0.9]))
    reduce_fn = make_all_reduce_mean(world) if world > 1 else None
    step = DualPathStep(model, loss, opt, make_aligner(rule, strength=1.0), reduce_fn=reduce_fn)
    x, aug, y = _batches()
    lo, hi = (rank * HALF, (rank + 1) * HALF) if world > 1 else (0, 2 * HALF)
    conflicts = 0
    for s in range(STEPS):
        stats = step(x[s, lo:hi], aug[s, lo:hi], y[s, lo:hi]).to_host()
        conflicts += int(stats["conflict"])
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, conflicts


def _equivalence_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save({rule: _train(rule, rank, world)[0] for rule in RULES}, f"{out}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while the other still has collectives in flight
    finally:
        dist.destroy_process_group()


def test_two_workers_on_half_batches_match_one_worker_on_the_full_batch(tmp_path: Path) -> None:
    mp.start_processes(_equivalence_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rule in RULES:
        single, conflicts = _train(rule, 0, 1)
        assert conflicts > 0, f"{rule}: no conflicting step, so alignment was not exercised"
        for key, value in single.items():
            # both ranks hold bit-identical weights (one all-reduce of both path gradients) ...
            torch.testing.assert_close(ranks[0][rule][key], ranks[1][rule][key], rtol=0, atol=0)
            # ... equal to the full-batch run up to float summation order
            torch.testing.assert_close(ranks[0][rule][key], value, rtol=1e-5, atol=1e-6)


def _trainer_worker(rank: int, world: int, init_file: str, config: dict, out: str) -> None:
    from dpda.train.config import config_from_dict
    from dpda.train.loop import DistContext, Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank, world, torch.device("cpu"), make_all_reduce_mean(world))
        trainer = Trainer(config_from_dict(config), Path(out) / "run", dist=ctx, progress=False)
        trainer.fit()
        params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
        torch.save({"params": params, "steps": trainer.global_step}, f"{out}/trainer{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_trainer_ranks_keep_identical_weights(corpus: Path, tmp_path: Path) -> None:
    config = tiny_config(corpus, epochs=1, max_steps_per_epoch=3)
    config["telemetry"]["enabled"] = False
    mp.start_processes(_trainer_worker, args=(2, str(tmp_path / "init"), config, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    a, b = (torch.load(tmp_path / f"trainer{r}.pt", weights_only=True) for r in range(2))
    assert a["steps"] == b["steps"] == 3
    for key, value in a["params"].items():
        torch.testing.assert_close(b["params"][key], value, rtol=0, atol=0)
    # BatchNorm running statistics are per rank (not synchronised); only rank 0's are saved
    assert (tmp_path / "run/model.pt").exists()


# ------------------------------------------------------------------------------ Ray: fault
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import ray.cloudpickle

    # worker functions defined here travel by value: the workers cannot import this test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


KILL_AT_STEP = 5  # rank 1 dies at step 5, the 2nd step of epoch 2 (4 steps per epoch), or later
STEPS_PER_EPOCH = 4


def wait_until_persisted(run_dir: Path, step: int, timeout: float = 60.0) -> None:
    """Poll the run's telemetry until `step` is readable; raise if it is not within `timeout` s."""
    from dpda_analysis.store import open_telemetry

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open_telemetry(run_dir) as tel:
            done = int(tel.sql("select coalesce(max(step), -1) as s from raw_steps")["s"][0])
        if done >= step:
            return
        time.sleep(0.1)
    raise TimeoutError(f"step {step} not in {run_dir}'s telemetry after {timeout} s (last: {done})")


def flaky_worker(loop_config: dict) -> None:
    """train_worker, except that rank 1's process dies abruptly (os._exit: no cleanup, as when
    a node is lost) in the middle of an epoch, never at its first step, once Ray has registered a
    checkpoint (the controller records reports asynchronously, so on a slow machine that can be
    an epoch later than step 5). Steps are counted by the gradient all-reduces, on the (2, P)
    buffer of both paths (the model's float buffers, BatchNorm statistics and the LFCC matrices,
    are reduced too, once per epoch). Rank 0 logged the previous step before entering this
    reduce but publishes telemetry in the background, so rank 1 waits until that step is on disk:
    attempt 0 then surely leaves a row that attempt 1 redoes. It dies once: a marker file
    remembers."""
    import ray.train

    import dpda.train.ray_train as d

    run_dir = Path(loop_config["run_dir"])
    marker = run_dir / "rank1-was-killed"
    registered = run_dir / d.TRAIN_STORAGE_DIR / "train" / "checkpoint_manager_snapshot.json"
    if ray.train.get_context().get_world_rank() == 1 and not marker.exists():
        real = d.make_all_reduce_mean

        def dying(world: int):
            reduce = real(world)
            steps = [0]  # gradient reduces so far = index of the step being reduced

            def wrapped(tensor) -> None:
                if tensor.dim() == 2 and tensor.shape[0] == 2:  # the (2, P) gradient buffer
                    step = steps[0]
                    steps[0] += 1
                    mid_epoch = step % STEPS_PER_EPOCH != 0
                    if step >= KILL_AT_STEP and mid_epoch and registered.exists():
                        wait_until_persisted(run_dir, step=step - 1)
                        marker.touch()
                        os._exit(1)
                reduce(tensor)

            return wrapped

        d.make_all_reduce_mean = dying
    d.train_worker(loop_config)


@pytest.mark.ray
def test_worker_lost_mid_run_resumes_from_checkpoint_and_steps_are_counted_once(
    ray_local, corpus: Path, tmp_path: Path
) -> None:
    from dpda_analysis.store import open_telemetry

    run_dir = tmp_path / "run"
    config = tiny_config(corpus, epochs=3)
    result = run_distributed(config, run_dir, plan=WorkerPlan(workers=2), max_failures=1,
                             worker_fn=flaky_worker, run_id="fault", trial_id="t0")
    assert result.metrics["epoch"] == 3
    summary = read_summary(run_dir)
    assert summary is not None and summary["epochs"] == 3
    steps_per_epoch = 32 // (2 * 4)  # DistributedSampler shards 32 items over 2 ranks, batch 4
    with open_telemetry(run_dir) as tel:
        steps = tel.sql("select step, epoch from steps order by step")
        attempts = tel.sql("select distinct attempt from raw_steps order by attempt")["attempt"].tolist()
        raw = int(tel.sql("select count(*) as n from raw_steps")["n"][0])
    # the restart happened (attempt 0 died mid-epoch, attempt 1 resumed from the last registered
    # checkpoint, normally epoch 1's)
    assert attempts == [0, 1]
    assert raw > len(steps)  # attempt 0 wrote steps of its last epoch that attempt 1 redid
    # ... and the reader sees each step exactly once, for all 3 epochs
    first = int(steps["step"].iloc[0])
    assert steps["step"].tolist() == list(range(first, first + 3 * steps_per_epoch))
    assert steps.groupby("epoch").size().tolist() == [steps_per_epoch] * 3
