"""`dpda predict MODEL FILE...`: a score and a bona fide / spoof decision per audio file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dpda.cli import add_deprecated


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="a trained model file (RUN_DIR/model.pt)")
    p.add_argument("files", nargs="+", type=Path, help="audio files (any rate; resampled to 16 kHz)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--threshold", type=float, help="decision threshold on the score")
    src.add_argument("--threshold-from", type=Path, metavar="METRICS_JSON",
                     help="metrics.json written by `dpda eval`; use the EER threshold of --eval-set")
    p.add_argument("--eval-set", metavar="NAME", help="eval set name in --threshold-from")
    add_deprecated(p, "--set", "--eval-set", "eval_set")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")


def pick_threshold(args: argparse.Namespace, state: dict) -> tuple[float, str]:
    """Explicit value, else an eval set's EER threshold, else the dev threshold saved in training."""
    from dpda.errors import UserError

    if args.threshold is not None:
        return args.threshold, "--threshold"
    if args.threshold_from is not None:
        rows = json.loads(args.threshold_from.read_text())
        names = [r["set"] for r in rows]
        if args.eval_set is None and len(rows) == 1:
            return float(rows[0]["threshold"]), f"{args.threshold_from}:{names[0]}"
        for r in rows:
            if r["set"] == args.eval_set:
                return float(r["threshold"]), f"{args.threshold_from}:{r['set']}"
        raise UserError(f"{args.threshold_from}: --eval-set must be one of {', '.join(names)}")
    if state.get("dev_threshold") is None:
        raise UserError(f"{args.model}: no dev threshold stored in this model file; pass --threshold or --threshold-from")
    return float(state["dev_threshold"]), "dev EER threshold"


def run(args: argparse.Namespace) -> int:
    import torch

    from dpda.data.audio import fix_length, load_audio
    from dpda.train.inference import require_finite_scores, resolve_device
    from dpda.train.model_file import load_trained_model

    device = resolve_device(args.device)
    model, state = load_trained_model(args.model, device)
    threshold, source = pick_threshold(args, state)
    length = state["config"]["data"]["length"]
    batch = torch.stack([fix_length(load_audio(f), length) for f in args.files]).to(device)
    with torch.no_grad():
        logits = model(batch).float()
    scores = (logits[:, 1] - logits[:, 0]).cpu().tolist()
    require_finite_scores(scores, args.files)
    print(f"# threshold {threshold:.6g} ({source}); score > threshold means bona fide")
    for f, s in zip(args.files, scores):
        print(f"{f}\t{s:.6f}\t{'bonafide' if s > threshold else 'spoof'}")
    return 0
