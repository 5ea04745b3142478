"""`dpda train CONFIG`: one training run, in this process or on Ray Train workers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dpda.yaml_io import parse_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="training config (YAML)")
    p.add_argument("-o", "--out", "--run-dir", dest="run_dir", type=Path, default=None,
                   help="output directory (default: runs/<config name>); an existing run resumes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=1e-4 (value parsed as YAML)")
    p.add_argument("--workers", type=int, default=0,
                   help="Ray Train workers (data parallel; 0 = this process, no Ray)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (NCCL if > 0, else gloo)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--max-failures", type=int, default=3, help="worker-group restarts from the last checkpoint")
    p.add_argument("--storage", default=None, help="Ray checkpoint storage path or URI (default: in the run dir)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local instance)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (also implied by --quiet)")


def run(args: argparse.Namespace) -> int:
    from dpda.train.config import load_config
    from dpda.train.run_dir import json_safe

    cfg = load_config(args.config, parse_set(args.set))
    run_dir = args.run_dir or Path("runs") / args.config.stem
    if args.workers > 0:
        import ray

        from dpda.train.ray_train import WorkerPlan, read_summary, run_distributed

        if not ray.is_initialized():
            ray.init(address=args.address)
        plan = WorkerPlan(args.workers, args.cpus_per_worker, args.gpus_per_worker)
        run_distributed(cfg, run_dir, plan=plan, max_failures=args.max_failures,
                        storage_path=args.storage, source=str(args.config))
        summary = read_summary(run_dir)
    else:
        from dpda.train.loop import Trainer

        summary = Trainer(cfg, run_dir, progress=not args.no_progress).fit()
    print(json.dumps(json_safe(summary), indent=2, allow_nan=False, default=str))
    return 0
