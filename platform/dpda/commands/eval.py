"""`dpda eval MODEL CORPUS...`: ASVspoof-style score files and a metrics table per eval set."""

from __future__ import annotations

import argparse
from pathlib import Path

from dpda.cli import add_deprecated


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="a trained model file (RUN_DIR/model.pt)")
    p.add_argument("corpora", nargs="+", metavar="[NAME=]SPEC",
                   help="eval sets as corpus specs (KIND:PATH[:SUBSET]), optionally named NAME=SPEC")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--batch-size", type=int, default=16, help="utterances scored at once")
    p.add_argument("--loader-workers", type=int, default=2, metavar="N",
                   help="DataLoader processes decoding audio (0 = in this process)")
    add_deprecated(p, "--num-workers", "--loader-workers", "loader_workers", type=int)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--check", choices=["fail", "skip"], default="fail", help="policy for bad audio")
    p.add_argument("--score", choices=["logit_diff", "logit1"], default=None,
                   help="score written: logit[1]-logit[0] (dpda) or logit[1] (published); default: the model's eval.score")


def run(args: argparse.Namespace) -> int:
    from dpda.train.evaluation import evaluate_sets

    rows = evaluate_sets(args.model, args.corpora, args.out, batch_size=args.batch_size,
                         num_workers=args.loader_workers, device=args.device, check=args.check, score=args.score)
    width = max(len(r["set"]) for r in rows)
    print(f"{'set':<{width}}  {'bonafide':>8}  {'spoof':>7}  {'EER %':>7}")
    for r in rows:
        print(f"{r['set']:<{width}}  {r['n_bonafide']:>8}  {r['n_spoof']:>7}  {100 * r['eer']:>7.2f}")
    print(f"scores and breakdowns in {args.out}")
    return 0
