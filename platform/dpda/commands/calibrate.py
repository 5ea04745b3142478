"""`dpda calibrate MODEL_OR_SCORES --dev DEV`: fit score -> LLR on dev scores (logistic regression).

The map (`dpda.metrics.calibration`: an affine LLR = slope * score + offset, fitted by
prior-weighted logistic regression at the ASVspoof 5 operating point's effective prior) is
written beside the model as `MODEL.calibration.json`, where `dpda eval` and `dpda predict` find
it: they then write LLRs and decide at the Bayes threshold (`--no-calibration` ignores it). For a
score file, the map is written beside it and applied to it (`SCORES.llr.txt`).
DEV is a dev score file (labelled by `--keys` or by its own 4 columns) or, with a model, a set
`[NAME=]KIND:PATH[:SUBSET]` that is scored first (into `calibration/` beside the model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MODEL_SUFFIXES = (".pt", ".pth")  # anything else is read as a score file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", type=Path, metavar="MODEL_OR_SCORES",
                   help="a model file (.pt / .pth): the calibration is written beside it for dpda eval / predict; "
                        "or a score file: the calibration and the calibrated scores (.llr.txt) are written beside it")
    p.add_argument("--dev", required=True, metavar="DEV",
                   help="dev scores: a score file, or (with a model) a set [NAME=]KIND:PATH[:SUBSET] scored with it")
    p.add_argument("--keys", metavar="KEYS", help="labels of a 2-column dev score file: a corpus spec or an ASVspoof "
                   "protocol / trial_metadata file, as dpda score's KEYS (default: a 4-column file's own labels)")
    p.add_argument("--file", type=Path, metavar="FILE",
                   help="the calibration file to write (default: beside MODEL_OR_SCORES, its name with .calibration.json)")
    p.add_argument("--score", choices=["logit_diff", "logit1"], default=None,
                   help="the raw score kind calibrated (a set: what is scored, default the model's eval.score; "
                        "a dev score file: recorded, so dpda eval refuses other scores)")
    p.add_argument("--batch-size", type=int, default=16, help="utterances scored at once (a dev set)")
    p.add_argument("--loader-workers", type=int, default=2, metavar="N", help="DataLoader processes (a dev set)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (a dev set)")
    p.add_argument("--checkpoint-format", choices=["auto", "dpda", "published"], default="auto",
                   help="the model file's format (a dev set), as for dpda eval")


def add_calibration_options(p: argparse.ArgumentParser) -> None:
    """`--calibration FILE` / `--no-calibration` of dpda eval and dpda predict."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--calibration", type=Path, metavar="FILE",
                       help="calibration file of dpda calibrate (default: MODEL.calibration.json beside the model, if there): "
                            "scores become LLRs, decided at the Bayes threshold")
    group.add_argument("--no-calibration", action="store_true", help="raw scores, even with a calibration file beside the model")


def chosen_calibration(args: argparse.Namespace) -> Path | None:
    """The calibration file eval / predict apply: --calibration, else the model's own if present."""
    from dpda.metrics.calibration import calibration_path

    if args.no_calibration:
        return None
    if args.calibration is not None:
        return args.calibration
    beside = calibration_path(args.model)
    return beside if beside.is_file() else None


def labelled_scores(paths: list[Path], keys: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) dev scores of k systems' files and the (n,) bona fide mask, over the keys' trials
    (every one must be scored in every file; other scored trials are ignored)."""
    from dpda import BONAFIDE
    from dpda.commands.score import keys_from_score_table, load_keys
    from dpda.metrics import read_score_columns, read_score_table
    from dpda.metrics.breakdown import attach_scores

    columns = read_score_columns(paths)
    manifest = load_keys(keys) if keys else keys_from_score_table(read_score_table(paths[0]))
    scored = attach_scores(manifest, columns.iloc[:, 0], where=str(paths[0]))
    matrix = columns.reindex(scored["utt"].to_numpy()).to_numpy(dtype=np.float64)
    return matrix, (scored["target"] == BONAFIDE).to_numpy()


def dev_summary(raw: np.ndarray, llr: np.ndarray, is_bona: np.ndarray) -> str:
    """`dev Cllr a -> b, actDCF c -> d, minDCF e` of one system's raw scores and their LLRs."""
    from dpda.metrics import compute_act_dcf, compute_cllr, compute_min_dcf

    def cllr_act(s: np.ndarray) -> tuple[float, float]:
        return compute_cllr(s[is_bona], s[~is_bona]), compute_act_dcf(s[is_bona], s[~is_bona])[0]

    (c0, a0), (c1, a1) = cllr_act(raw), cllr_act(llr)
    return (f"dev Cllr {c0:.4f} -> {c1:.4f}, actDCF {a0:.4f} -> {a1:.4f}, "
            f"minDCF {compute_min_dcf(llr[is_bona], llr[~is_bona])[0]:.4f}")


def _dev_from_set(args: argparse.Namespace) -> tuple[Path, str, str]:
    """Score the dev set with the model: (its score file, its keys spec, the score kind)."""
    from dpda.train.evaluation import evaluate_sets, set_name

    out = args.target.parent / "calibration"
    rows = evaluate_sets(args.target, [args.dev], out, batch_size=args.batch_size, num_workers=args.loader_workers,
                         device=args.device, checkpoint_format=args.checkpoint_format, score=args.score)
    return out / f"{rows[0]['set']}.scores.txt", set_name(args.dev)[1], rows[0]["score"]


def run(args: argparse.Namespace) -> int:
    from dpda.errors import UserError
    from dpda.metrics import fit_calibration, read_scores, write_calibration, write_scores
    from dpda.metrics.calibration import calibration_path

    is_model = args.target.suffix.lower() in MODEL_SUFFIXES
    if not args.target.is_file():
        raise UserError(f"{args.target}: no such {'model' if is_model else 'score'} file")
    dev, keys, kind = Path(args.dev).expanduser(), args.keys, args.score
    if not dev.is_file() or dev.suffix.lower() == ".csv":  # a set spec, as dpda eval takes
        if not is_model:
            raise UserError(f"--dev: {args.dev}: no such score file (a set spec needs a model to score it)")
        dev, keys, kind = _dev_from_set(args)
    matrix, is_bona = labelled_scores([dev], keys)
    mapping = fit_calibration(matrix, is_bona, [str(dev)], score=kind)
    out = args.file or calibration_path(args.target)
    write_calibration(out, mapping)
    cost = mapping.cost
    print(f"wrote {out}: LLR = {mapping.weights[0]:.6g} * score {mapping.offset:+.6g} (fitted on {dev}: "
          f"{mapping.n_bonafide} bona fide, {mapping.n_spoof} spoof, at the effective prior {mapping.prior:.4g} of "
          f"Pspoof {cost.p_spoof:g}, Cmiss {cost.c_miss:g}, Cfa {cost.c_fa:g}); "
          + dev_summary(matrix[:, 0], mapping.apply(matrix), is_bona))
    if not is_model:
        scores = read_scores(args.target)
        llr_path = write_scores(args.target.with_suffix(".llr.txt"), scores.index, mapping.apply(scores.to_numpy()))
        print(f"wrote {llr_path}: {len(scores)} LLR scores (Bayes threshold {cost.bayes_threshold:.4f})")
    return 0
