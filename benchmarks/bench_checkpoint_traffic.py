"""Bytes a trial writes to Ray's storage per epoch, and what the storage holds at the end: the old
report (the whole checkpoint folder every epoch, Ray keeping `keep_checkpoints` folders) against
the new one (only what changed, storage pruned to last.pt + the n best), for XLS-R + Conformer-TCM.

The sizes are the real ones, from the model definition (built on the `meta` device: no memory):
an epoch file holds the model's state dict, last.pt the model, Adam's two moments for every
trainable tensor, and small run state. A 1.3 GB model cannot be written dozens of times on this
disk, so the files are written at `1/--scale` of those sizes (random bytes), the real code paths
run on them (dpda.train.checkpoint_store.stage_update and StoredCheckpoints.prune, and the
pyarrow.fs.copy_files upload that Ray's storage context performs, into a local folder standing for
the storage), and the byte counts are multiplied back by the scale: every byte count involved is a
sum of file sizes, so the extrapolation is exact up to the per-file constant (headers) it scales.

The dev-loss sequence that decides which epochs enter the n best is a seeded noisy decreasing
curve; `--n-best 5` and 20 epochs are the published setup (5-best averaging, early stopping).

    python benchmarks/bench_checkpoint_traffic.py                # XLS-R + Conformer-TCM, 20 epochs
    python benchmarks/bench_checkpoint_traffic.py --epochs 40 --keep 2 --scale 4096
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import torch

from dpda.models import build_model
from dpda.train.checkpoint_store import LAST, StoredCheckpoints, epoch_file, stage_update

GB = 1e9


def state_sizes(model_name: str, preset: str) -> tuple[int, int]:
    """(epoch file bytes, last.pt bytes) of the model, from its definition on the meta device."""
    with torch.device("meta"):
        model = build_model(model_name, preset)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    adam = sum(2 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights, weights + adam


def dev_losses(epochs: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(0.6 * np.exp(-np.arange(epochs) / 6) + 0.05 + rng.normal(0, 0.02, epochs))


def write(path: Path, size: int, rng: np.random.Generator) -> None:
    path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())


def upload(local_dir: Path, storage: Path, name: str) -> int:
    """Ray's persist step: copy the reported folder into storage/<name>; returns bytes copied."""
    (storage / name).mkdir()  # Ray creates the folder, then copies into it
    pafs.copy_files(str(local_dir), str(storage / name), source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=pafs.LocalFileSystem())
    return sum(f.stat().st_size for f in (storage / name).iterdir())


def run(mode: str, losses: list[float], n_best: int, keep: int, sizes: tuple[int, int], work: Path) -> dict:
    """Train-loop bookkeeping of the n best, reports, and storage; returns per-epoch bytes."""
    epoch_size, last_size = sizes
    local, storage = work / mode / "checkpoints", work / mode / "storage"
    local.mkdir(parents=True)
    storage.mkdir(parents=True)
    rng = np.random.default_rng(0)
    best: list[tuple[float, int]] = []
    written = []
    for epoch, loss in enumerate(losses):
        ranked = sorted(best + [(loss, epoch)])
        best, dropped = ranked[:n_best], ranked[n_best:]
        for _, gone in dropped:
            (local / epoch_file(gone)).unlink(missing_ok=True)
        entered = any(e == epoch for _, e in best)
        if entered:
            write(local / epoch_file(epoch), epoch_size, rng)
        write(local / LAST, last_size, rng)
        name = f"checkpoint_{epoch:06d}"
        if mode == "before":  # the whole folder, Ray keeping the `keep` newest folders
            written.append(upload(local, storage, name))
            for old in sorted(storage.glob("checkpoint_*"))[:-keep]:
                shutil.rmtree(old)
        else:
            keep_names = {epoch_file(e) for _, e in best}
            update = stage_update(local, [LAST] + ([epoch_file(epoch)] if entered else []), keep_names)
            written.append(upload(update.directory, storage, name))
            StoredCheckpoints(pafs.LocalFileSystem(), str(storage)).prune(update.keep)
    held = sum(f.stat().st_size for f in storage.rglob("*") if f.is_file())
    files = sorted(f.name for f in storage.rglob("*.pt"))
    return {"written": written, "held": held, "files": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ssl_conformer_tcm")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-best", type=int, default=5)
    parser.add_argument("--keep", type=int, default=2, help="the old Ray num_to_keep (keep_checkpoints)")
    parser.add_argument("--scale", type=int, default=2048, help="files are written at 1/scale of their real size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    real = state_sizes(args.model, args.preset)
    scaled = (real[0] // args.scale, real[1] // args.scale)
    losses = dev_losses(args.epochs, args.seed)
    work = Path(tempfile.mkdtemp(prefix="dpda-ckpt-bench-"))
    try:
        out = {m: run(m, losses, args.n_best, args.keep, scaled, work) for m in ("before", "after")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.model}:{args.preset}: epoch file {real[0] / GB:.3f} GB, last.pt {real[1] / GB:.3f} GB "
          f"(files written at 1/{args.scale}, byte counts scaled back); {args.epochs} epochs, n_best {args.n_best}")
    summary = {"model": f"{args.model}:{args.preset}", "epoch_file_bytes": real[0], "last_bytes": real[1],
               "epochs": args.epochs, "n_best": args.n_best, "keep": args.keep, "scale": args.scale}
    for mode, r in out.items():
        per_epoch = np.asarray(r["written"], dtype=float) * args.scale
        print(f"  {mode:6s}: per epoch mean {per_epoch.mean() / GB:7.2f} GB, max {per_epoch.max() / GB:7.2f} GB, "
              f"total {per_epoch.sum() / GB:8.1f} GB; storage at the end {r['held'] * args.scale / GB:6.2f} GB "
              f"in {len(r['files'])} files")
        summary[mode] = {"per_epoch_mean": per_epoch.mean(), "per_epoch_max": per_epoch.max(),
                         "total": per_epoch.sum(), "held": r["held"] * args.scale, "files": len(r["files"])}
    bound = (real[0] + real[1]) / GB
    print(f"  after <= epoch file + last.pt = {bound:.2f} GB per epoch: "
          f"{summary['after']['per_epoch_max'] / GB <= bound + 1e-6}")
    print(json.dumps(summary, default=float))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
