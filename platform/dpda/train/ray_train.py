"""One training run on N Ray Train workers (TorchTrainer, Ray Train V2 API).

Each worker builds the same `dpda.train.loop.Trainer`; distribution enters only through a
`DistContext`: the worker's rank, world size, device and an all-reduce-mean over
torch.distributed (gloo on CPU, NCCL on GPU). The Trainer applies that reduction once per step
to the stacked pair of path gradients before alignment, so no DDP wrapper is used and every
rank aligns the same averaged gradients (see tests/test_distributed.py for the equivalence with
one worker on the full batch).

Fault tolerance: every epoch each rank calls `ray.train.report`; rank 0 attaches what the epoch
changed (`last.pt`, and the epoch's weights if they entered the n best), which Ray copies to the
run's storage, and then prunes the storage to last.pt + the n best (dpda.train.checkpoint_store).
After a worker is lost Ray restarts the group (FailureConfig.max_failures) and hands the latest
checkpoint to `ray.train.get_checkpoint()`; every rank fetches it, rank 0 also the n-best epoch
files beside it, and resumes (`Trainer(resume_from=...)`). Only rank 0 writes telemetry; its
working checkpoint copies are node-local scratch. Relaunching with the same storage path and name also
resumes (Train V2 restores its checkpoint manager from storage).

The command line for it is `dpda train CONFIG --workers N` (`dpda tune` runs it per trial).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpda_analysis.layout import RUN_SUMMARY

from dpda.errors import UserError
from dpda.train.checkpoint_store import CheckpointUpdate, StoredCheckpoints, report_and_prune
from dpda.train.run_sync import Destination, RunMirror, mirrored

TRAIN_STORAGE_DIR = "ray_train"  # under the run dir, unless a storage path is given


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers and what each one gets."""

    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UserError(f"--workers: must be >= 1, got {self.workers}")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise UserError("--cpus-per-worker / --gpus-per-worker: must be >= 0")
        if self.cpus_per_worker == 0 and self.gpus_per_worker == 0:
            raise UserError("a worker needs --cpus-per-worker > 0 or --gpus-per-worker > 0")

    @property
    def backend(self) -> str:
        return "nccl" if self.gpus_per_worker > 0 else "gloo"

    def resources(self) -> dict[str, float]:
        out = {"CPU": self.cpus_per_worker}
        if self.gpus_per_worker:
            out["GPU"] = self.gpus_per_worker
        return out


# ----------------------------------------------------------------------------- worker side

def make_all_reduce_mean(world_size: int) -> Callable[[Any], None]:
    """In-place mean over ranks via torch.distributed (SUM then divide: gloo has no AVG op)."""
    import torch.distributed as dist

    def all_reduce_mean(tensor) -> None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world_size)

    return all_reduce_mean


def dist_context():
    """DistContext for this Ray Train worker (process group already set up by TorchTrainer)."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    from dpda.train.loop import DistContext

    ctx = ray.train.get_context()
    world = ctx.get_world_size()
    if world > 1 and not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised in this Ray Train worker")
    return DistContext(
        rank=ctx.get_world_rank(),
        world_size=world,
        device=ray.train.torch.get_device(),
        all_reduce_mean=make_all_reduce_mean(world) if world > 1 else None,
    )


def report_epoch(metrics: dict[str, Any], update: CheckpointUpdate | None, mirror: RunMirror | None = None) -> None:
    """Trainer report_fn under Ray Train: called on every rank (report is a barrier); rank 0
    passes what the epoch changed, which Ray persists to the run's storage, then prunes it.
    Rank 0 first uploads the run dir's new files, when it has a `mirror` (dpda.train.run_sync)."""
    import ray.train

    report_and_prune(ray.train, _finite(metrics), update, mirror, storage_path="experiment_fs_path")


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN (e.g. conflict_fraction without a dual path) is fine for Ray; keep plain scalars only."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def restore_checkpoint(scratch: Path, rank: int) -> Path | None:
    """Fetch `ray.train.get_checkpoint()` from the storage into `scratch`: last.pt on every rank,
    on rank 0 also the n-best epoch files stored beside it (the final averaging reads them).
    Returns the dir to resume from, None on a first start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    stored = StoredCheckpoints.of_checkpoint(checkpoint)
    return stored.restore(checkpoint.path, scratch / "restored", epoch_files=rank == 0)


def train_worker(loop_config: dict[str, Any]) -> None:
    """Per-worker entry point for TorchTrainer (`train_loop_config` as built by run_distributed)."""
    from dpda.train.config import config_from_dict
    from dpda.train.loop import Trainer

    _enter_workdir(loop_config.get("cwd"))
    cfg = config_from_dict(loop_config["config"], source=loop_config.get("source", "<distributed run>"))
    ctx = dist_context()
    run_dir = Path(loop_config["run_dir"])
    destination = loop_config.get("mirror")
    mirror = RunMirror(run_dir, destination) if destination is not None and ctx.rank == 0 else None
    scratch = Path(tempfile.mkdtemp(prefix=f"dpda-rank{ctx.rank}-"))  # node-local working copies
    try:
        resume = restore_checkpoint(scratch, ctx.rank)
        if resume is None:
            resume = _existing_run(run_dir, ctx)
        with mirrored(mirror):
            Trainer(
                cfg, run_dir, dist=ctx, report_fn=functools.partial(report_epoch, mirror=mirror),
                run_id=loop_config.get("run_id"), trial_id=loop_config.get("trial_id"), resume_from=resume,
                progress=False, checkpoint_dir=scratch / "checkpoints", checked=loop_config.get("checked"),
            ).fit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _existing_run(run_dir: Path, ctx) -> Path | None:
    """Without a Ray checkpoint, every rank must agree on whether to resume an earlier run's
    `last.pt` (e.g. a single-process run continued on more workers): a rank that started fresh
    while rank 0 restored would never re-synchronise its weights. All ranks must see the file
    (shared run dir) or none; otherwise this is a user error."""
    import torch

    last = run_dir / "checkpoints" / "last.pt"
    seen = last.exists()
    if ctx.world_size == 1:
        return last.parent if seen else None
    import torch.distributed as dist

    flag = torch.tensor([float(seen)], device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    count = int(flag.item())
    if count == 0:
        return None
    if count < ctx.world_size:
        raise UserError(
            f"{last}: visible to {count} of {ctx.world_size} workers; put the run dir on storage "
            "shared by all nodes, or start a new run dir"
        )
    return last.parent


def _enter_workdir(cwd: str | None) -> None:
    """Run where the driver ran, so relative corpus paths mean what they mean in `dpda train`."""
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


# ----------------------------------------------------------------------------- driver side

def run_distributed(
    config: Any,
    run_dir: str | Path,
    *,
    plan: WorkerPlan = WorkerPlan(),
    max_failures: int = 0,
    storage_path: str | None = None,
    storage_filesystem: Any = None,
    name: str = "train",
    run_id: str | None = None,
    trial_id: str | None = None,
    callbacks: Sequence[Any] = (),
    mirror: Destination | None = None,
    worker_fn: Callable[[dict[str, Any]], None] = train_worker,
    source: str = "<distributed run>",
    checked: Any = None,
):
    """Train `config` (TrainConfig or nested dict) on `plan.workers` Ray Train workers.

    `run_dir` must be reachable at the same path from the node running rank 0 (shared storage on
    a multi-node cluster), unless `mirror` is given (rank 0 then uploads it there). Ray's checkpoints go to `storage_path/name` (default: run_dir/ray_train);
    a rerun with the same storage and name resumes; the storage keeps last.pt + the n best epochs
    (`storage_filesystem`: a pyarrow filesystem `storage_path` is on, as in Ray's RunConfig).
    `checked`: corpus-check verdicts from the driver (dpda.data.check_cache), or None to check
    here, once, before the workers start. `callbacks` are Ray Train UserCallbacks (the
    Tune integration passes TuneReportCallback). `mirror`: where rank 0 uploads the run dir's
    files at each report and at the end (dpda.train.run_sync; a Tune trial's folder in object
    storage). Returns the ray.train.Result; a UserError raised
    in any worker (bad data, bad config) is re-raised here as UserError.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg_dict = config if isinstance(config, dict) else config.to_dict()
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if storage_path is None:
        storage_path = str(run_dir / TRAIN_STORAGE_DIR)
    if checked is None:
        from dpda.train.preflight import check_inputs

        checked = check_inputs(cfg_dict)
    loop_config = {
        "config": cfg_dict, "run_dir": str(run_dir), "run_id": run_id, "trial_id": trial_id,
        "cwd": os.getcwd(), "source": source, "checked": checked, "mirror": mirror,
    }
    trainer = TorchTrainer(
        worker_fn,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend=plan.backend),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers, use_gpu=plan.gpus_per_worker > 0, resources_per_worker=plan.resources(),
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            # None: dpda prunes the storage itself (an older folder may hold an n-best epoch)
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=None),
            callbacks=list(callbacks) or None,
        ),
    )
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        user = _user_error(exc)
        if user is not None:
            raise user from None
        raise


def _user_error(exc: BaseException) -> UserError | None:
    """The first UserError among the failed workers' exceptions, as a plain UserError."""
    for failure in getattr(exc, "worker_failures", {}).values():
        cause = failure
        while cause is not None:
            if isinstance(cause, UserError):
                text = str(cause.args[0]) if cause.args else str(cause)
                return UserError(text.strip().splitlines()[-1] if "Traceback" in text else text)
            cause = getattr(cause, "cause", None) or cause.__cause__
    return None


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary rank 0 wrote at the end (averaged model, final dev EER), if visible here."""
    path = Path(run_dir) / RUN_SUMMARY
    return json.loads(path.read_text()) if path.exists() else None
