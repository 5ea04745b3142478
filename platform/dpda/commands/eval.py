"""`dpda eval MODEL CORPUS...`: ASVspoof-style score files and a metrics table per eval set."""

from __future__ import annotations

import argparse
from pathlib import Path

from dpda.cli import add_deprecated
from dpda.commands.calibrate import add_calibration_options, chosen_calibration


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="a trained model file (RUN_DIR/model.pt) or a released checkpoint (.pth: published DPDA, released AASIST)")
    p.add_argument("corpora", nargs="+", metavar="[NAME=]SPEC",
                   help="eval sets as corpus specs (KIND:PATH[:SUBSET]), optionally named NAME=SPEC")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--batch-size", type=int, default=16, help="utterances scored at once")
    p.add_argument("--loader-workers", type=int, default=2, metavar="N",
                   help="DataLoader processes decoding audio (0 = in this process)")
    add_deprecated(p, "--num-workers", "--loader-workers", "loader_workers", type=int)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--check", choices=["fail", "skip"], default="fail", help="policy for bad audio")
    p.add_argument("--checkpoint-format", choices=["auto", "dpda", "published", "aasist", "nes2net", "sls"],
                   default="auto",
                   help="dpda: a model.pt dpda wrote; published: a state dict of the published DPDA code "
                        "(github ductuantruong/dpda_ga), its model detected from the keys; aasist: a released "
                        "AASIST / AASIST-L / ASVspoof 5 baseline .pth (clovaai/aasist), scored as its main.py "
                        "(logit[1] of the first 64,600 samples); nes2net / sls: a released Nes2Net-X "
                        "(Liu-Tianchi/Nes2Net_ASVspoof_ITW) / XLSR-SLS (QiShanZhang/SLSforADD) checkpoint; "
                        "auto: from the file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config key applied to the model file's config (published: to dpda's defaults), "
                        "e.g. --set data.length=64600 or --set model.name=ssl_conformer_tcm (value parsed as YAML)")
    p.add_argument("--score", choices=["logit_diff", "logit1", "softmax1"], default=None,
                   help="score written: logit[1]-logit[0] (dpda), logit[1] (published; OC-softmax's cosine) or "
                        "softmax(logits)[1] (AM-softmax's); default: the model file's eval.score, else its loss's, "
                        "logit1 for a released checkpoint")
    p.add_argument("--metrics", default="eer", metavar="LIST",
                   help="metrics printed, comma-separated from eer, mindcf, actdcf, cllr, or all (default: eer; "
                        "actDCF and Cllr read the scores as natural-log LLRs); metrics.csv has them all")
    add_calibration_options(p)


def run(args: argparse.Namespace) -> int:
    from dpda.metrics import METRICS, parse_metrics
    from dpda.train.config import SCORE_MEANING
    from dpda.train.evaluation import evaluate_sets
    from dpda.yaml_io import parse_set

    chosen = parse_metrics(args.metrics)
    calibration = chosen_calibration(args)
    rows = evaluate_sets(args.model, args.corpora, args.out, batch_size=args.batch_size,
                         num_workers=args.loader_workers, device=args.device, check=args.check,
                         checkpoint_format=args.checkpoint_format, settings=parse_set(args.set), score=args.score,
                         calibration=calibration)
    width = max(len(r["set"]) for r in rows)
    labels = {name: "EER %" if name == "eer" else METRICS[name][0] for name in chosen}
    print(f"{'set':<{width}}  {'bonafide':>8}  {'spoof':>7}" + "".join(f"  {labels[n]:>7}" for n in chosen))
    for r in rows:
        cells = "".join(f"  {100 * r[n]:>7.2f}" if n == "eer" else f"  {r[n]:>7.4f}" for n in chosen)
        print(f"{r['set']:<{width}}  {r['n_bonafide']:>8}  {r['n_spoof']:>7}" + cells)
    kind = rows[0]["score"]
    print(f"score: {kind} ({SCORE_MEANING[kind]}; a released checkpoint's default is logit1, --score overrides)")
    if calibration is not None:
        from dpda.metrics import read_calibration

        cost = read_calibration(calibration).cost
        print(f"scores: LLRs, calibrated by {calibration}; the decision (actDCF) is at the Bayes threshold "
              f"{cost.bayes_threshold:.4f} of Pspoof {cost.p_spoof:g}, Cmiss {cost.c_miss:g}, Cfa {cost.c_fa:g} "
              "(metrics.csv: score_kind)")
    else:
        print("scores: raw, not calibrated (dpda calibrate makes them LLRs; actDCF and Cllr assume LLRs)")
    print(f"scores and breakdowns in {args.out}")
    return 0
