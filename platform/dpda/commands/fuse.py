"""`dpda fuse SCORES... --dev DEV... -o DIR`: linear logistic fusion of several systems' scores.

The fusion LLR = w1 s1 + ... + wk sk + b is fitted on the systems' dev score files (one per
system, in the same order) by the same prior-weighted logistic regression as `dpda calibrate`
(`dpda.metrics.calibration`), then applied to one test set's score files: DIR gets the fused LLRs
under the first test file's name (`a/eval.scores.txt` -> `DIR/eval.scores.txt`, as `dpda eval`
names them, so one DIR collects the fused test sets) and `fusion.json`, the weights, offset and
what they were fitted on. The files of each group must score the same trials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

FUSION_FILE = "fusion.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scores", nargs="+", type=Path, metavar="SCORES", help="test score files, one per system")
    p.add_argument("--dev", nargs="+", type=Path, required=True, metavar="DEV",
                   help="dev score files of the same systems, in the same order (the fusion is fitted on them)")
    p.add_argument("--keys", metavar="KEYS", help="labels of 2-column dev score files: a corpus spec or an ASVspoof "
                   "protocol / trial_metadata file, as dpda score's KEYS (default: the first dev file's own 4 columns)")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR",
                   help="output folder: the fused LLR scores under the first SCORES file's name, and fusion.json")


def run(args: argparse.Namespace) -> int:
    from dpda.commands.calibrate import labelled_scores
    from dpda.errors import UserError
    from dpda.metrics import compute_cllr, compute_min_dcf, fit_calibration, read_score_columns, write_calibration, write_scores

    if len(args.dev) != len(args.scores):
        raise UserError(f"--dev: {len(args.dev)} dev files for {len(args.scores)} score files; "
                        "give one dev file per system, in the same order")
    dev, is_bona = labelled_scores(args.dev, args.keys)
    fusion = fit_calibration(dev, is_bona, [str(d) for d in args.dev])
    test = read_score_columns(args.scores)
    fused_path = write_scores(args.out / args.scores[0].name, test.index, fusion.apply(test.to_numpy()))
    params = write_calibration(args.out / FUSION_FILE, fusion)
    terms = " ".join(f"{w:+.4g} * s{i}" for i, w in enumerate(fusion.weights, start=1)).lstrip("+")
    fused = fusion.apply(dev)
    alone = ", ".join(f"s{i} {compute_min_dcf(dev[is_bona, i - 1], dev[~is_bona, i - 1])[0]:.4f}"
                      for i in range(1, dev.shape[1] + 1))
    print(f"wrote {fused_path} ({len(test)} fused LLR scores) and {params}: LLR = {terms} {fusion.offset:+.4g} "
          f"(fitted on {fusion.n_bonafide} bona fide, {fusion.n_spoof} spoof dev trials; dev minDCF {alone}, "
          f"fused {compute_min_dcf(fused[is_bona], fused[~is_bona])[0]:.4f}; fused Cllr {compute_cllr(fused[is_bona], fused[~is_bona]):.4f})")
    return 0
