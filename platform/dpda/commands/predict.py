"""`dpda predict MODEL FILE...`: a score and a bona fide / spoof decision per audio file.

With a calibration (`dpda calibrate`; MODEL.calibration.json beside the model is used unless
`--no-calibration`) the score is an LLR and the decision is the Bayes decision at the operating
point the calibration states; `--threshold` / `--threshold-from` then apply to the LLR."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from dpda.cli import add_deprecated
from dpda.commands.calibrate import add_calibration_options, chosen_calibration


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="a trained model file (RUN_DIR/model.pt) or a released checkpoint (.pth: published DPDA, released AASIST)")
    p.add_argument("files", nargs="+", type=Path, help="audio files (any rate; resampled to 16 kHz)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--threshold", type=float, help="decision threshold on the score")
    src.add_argument("--threshold-from", type=Path, metavar="METRICS_JSON",
                     help="metrics.json written by `dpda eval`; use the EER threshold of --eval-set")
    p.add_argument("--eval-set", metavar="NAME", help="eval set name in --threshold-from")
    add_deprecated(p, "--set", "--eval-set", "eval_set")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--checkpoint-format", choices=["auto", "dpda", "published", "aasist", "nes2net", "sls"],
                   default="auto",
                   help="dpda: a model.pt dpda wrote; published: a state dict of the published DPDA code "
                        "(its model detected from the keys, dpda's default input length; needs --threshold); "
                        "aasist: a released AASIST / AASIST-L / ASVspoof 5 baseline .pth (64,600 samples, "
                        "logit[1]; needs --threshold); nes2net / sls: a released Nes2Net-X "
                        "(Liu-Tianchi/Nes2Net_ASVspoof_ITW) / XLSR-SLS (QiShanZhang/SLSforADD) checkpoint; "
                        "auto: from the file")
    add_calibration_options(p)


def given_threshold(args: argparse.Namespace, calibrated: bool = False) -> tuple[float, str] | None:
    """(threshold, where it came from) of --threshold or --threshold-from, checked before the
    model is loaded; None: use the dev EER threshold saved in training (or, `calibrated`, the
    Bayes threshold)."""
    from dpda.errors import UserError

    if args.threshold is not None:
        if not math.isfinite(args.threshold):
            raise UserError(f"--threshold: must be a finite number, got {args.threshold!r}")
        return args.threshold, "--threshold"
    if args.threshold_from is not None:
        return threshold_from(args.threshold_from, args.eval_set, calibrated)
    return None


def threshold_from(path: Path, eval_set: str | None, calibrated: bool = False) -> tuple[float, str]:
    """An eval set's EER threshold from the metrics.json `dpda eval` writes (a list of objects
    with `set` and `threshold`); one UserError line naming the file for anything else, or for a
    threshold on the other scale (its `score_kind` LLR where these scores are raw, or the reverse)."""
    from dpda.errors import UserError, read_user_text

    expected = "the metrics.json of dpda eval, a list of objects with 'set' and 'threshold'"
    try:
        rows = json.loads(read_user_text(path, "metrics file"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not JSON ({exc.msg}); expected {expected}") from None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and {"set", "threshold"} <= r.keys() for r in rows):
        raise UserError(f"{path}: expected {expected}")
    names = [str(r["set"]) for r in rows]
    if eval_set is None and len(rows) == 1:
        row = rows[0]
    else:
        row = next((r for r, name in zip(rows, names) if name == eval_set), None)
        if row is None:
            raise UserError(f"{path}: --eval-set must be one of {', '.join(names)}")
    kind = row.get("score_kind")
    if isinstance(kind, str) and kind.startswith("llr") != calibrated:
        now = "LLRs (a calibration applies; --no-calibration for raw scores)" if calibrated else "raw (no calibration applies)"
        raise UserError(f"{path}: set {row['set']!r}: its threshold is on {kind} scores, but these scores are {now}")
    value = row["threshold"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{path}: set {row['set']!r}: threshold {value!r} is not a finite number")
    return float(value), f"{path}:{row['set']}"


def saved_threshold(model: Path, state: dict) -> tuple[float, str]:
    """The dev EER threshold training stored beside the weights."""
    from dpda.errors import UserError

    if state.get("dev_threshold") is None:
        raise UserError(f"{model}: no dev threshold stored in this model file; pass --threshold or --threshold-from")
    return float(state["dev_threshold"]), "dev EER threshold"


def run(args: argparse.Namespace) -> int:
    calibration = chosen_calibration(args)
    given = given_threshold(args, calibration is not None)  # before torch and the model: a bad option fails at once
    import torch

    from dpda.data.audio import fix_length, load_audio
    from dpda.train.config import config_from_dict
    from dpda.metrics import bayes_decision
    from dpda.train.evaluation import calibration_for
    from dpda.train.inference import require_finite_scores, resolve_device, score_from_logits
    from dpda.train.model_file import load_trained_model

    device = resolve_device(args.device)
    model, state = load_trained_model(args.model, device, args.checkpoint_format)
    cfg = config_from_dict(state["config"], source=str(args.model))
    mapping = None if calibration is None else calibration_for(calibration, cfg.score_kind)
    if mapping is None:
        threshold, source = given or saved_threshold(args.model, state)
    else:
        cost = mapping.cost
        threshold, source = given or (cost.bayes_threshold, f"the Bayes threshold of Pspoof {cost.p_spoof:g}, "
                                                           f"Cmiss {cost.c_miss:g}, Cfa {cost.c_fa:g}")
    length = cfg.scoring_length
    batch = torch.stack([fix_length(load_audio(f, max_samples=length), length) for f in args.files]).to(device)
    with torch.no_grad():
        logits = model(batch).float()
    scores = score_from_logits(logits, cfg.score_kind).cpu().numpy()  # as the dev threshold was
    require_finite_scores(scores, args.files, model)
    if mapping is not None:
        scores = mapping.apply(scores)
    bayes = mapping is not None and given is None  # the decision actDCF costs
    bona = bayes_decision(scores, mapping.cost) if bayes else scores > threshold
    kind = "raw scores" if mapping is None else f"LLR scores, calibrated by {calibration}"
    print(f"# {kind}; threshold {threshold:.6g} ({source}); score {'>=' if bayes else '>'} threshold means bona fide")
    for f, s, b in zip(args.files, scores.tolist(), bona.tolist()):
        print(f"{f}\t{s:.6f}\t{'bonafide' if b else 'spoof'}")
    return 0
