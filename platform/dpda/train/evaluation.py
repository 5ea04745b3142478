"""Evaluation of a trained model on named eval sets: score files, breakdowns, a metrics table.

Shared by `dpda eval`, the end of `dpda train` (the config's `data.eval`), `dpda quickstart` and
the conflict study.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dpda.console import info
from dpda.train.run_dir import write_json

if TYPE_CHECKING:
    from dpda.metrics.calibration import Calibration


def set_name(arg: str) -> tuple[str, str]:
    """`name=spec`, or a name made from the spec's kind and subset."""
    name, sep, spec = arg.partition("=")
    if sep and ":" not in name:
        return name, spec
    from dpda.data.readers import parse_spec

    parsed = parse_spec(arg)
    return (f"{parsed.kind}_{parsed.subset}" if parsed.subset else parsed.kind), arg


def evaluate_sets(model_path: Path, corpora: list[str] | dict[str, list[str]], out: Path, *,
                  batch_size: int = 16, num_workers: int = 2, device: str = "auto",
                  check: str = "fail", interval_draws: int = 0, checkpoint_format: str = "dpda",
                  settings: dict | None = None, score: str | None = None,
                  calibration: Path | None = None) -> list[dict]:
    """Score each set; write `<name>.scores.txt`, `<name>.keys.csv` (its labels, attacks and
    conditions, for the report's DET curves and histograms), `<name>.breakdown.csv`, `metrics.csv/json`.

    `score` is the score kind (`logit_diff` / `logit1`, see `dpda.train.config.ScoreKind`);
    None takes the model's `eval.score`, else its loss's. Score files have no header (the community scorers read
    every line as a trial), so each metrics row names the kind in its `score` column.

    `corpora` is a list of `[NAME=]SPEC` arguments, or {name: [spec, ...]} as in a config's
    `data.eval` (several specs of one name are scored as one set). With `interval_draws` > 0 each
    set's row, and each row of its breakdown (per attack and condition), also gets a 95% bootstrap
    interval of its EER (`eer_low`, `eer_high`). Rows and breakdowns also carry the ASVspoof 5
    minDCF, actDCF and Cllr (`min_dcf`, `act_dcf`, `cllr`, with intervals likewise), the Bayes
    threshold of their operating point (`bayes_threshold`, meaningful for LLR scores) and the
    evaluated `model` file (so the report can say which model an eval folder holds).
    `checkpoint_format` and `settings` are `load_trained_model`'s (a published checkpoint gets
    dpda's default config, e.g. `data.length` 66,800, with `settings` applied).

    `calibration`: a calibration file (`dpda calibrate`); the score files, metrics and breakdowns
    then hold its LLRs (actDCF: the decision at the Bayes threshold), and each row's `score_kind`
    says `llr (calibrated: FILE)`, else `raw`."""
    import pandas as pd

    from dpda_analysis.layout import EVAL_METRICS, eval_breakdown_file, eval_keys_file, eval_scores_file

    from dpda.metrics import ASVSPOOF5, breakdown, default_factors, write_scores
    from dpda.train.config import config_from_dict
    from dpda.train.inference import resolve_device, score_manifest
    from dpda.data.corpora import load_manifest
    from dpda.train.model_file import load_trained_model

    dev = resolve_device(device)
    model, state = load_trained_model(model_path, dev, checkpoint_format, settings)
    cfg = config_from_dict(state["config"], source=str(model_path))
    length = cfg.scoring_length
    kind = score or cfg.score_kind
    mapping = None if calibration is None else calibration_for(calibration, kind)
    score_kind = "raw" if calibration is None else f"llr (calibrated: {calibration})"
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(corpora, dict):
        grouped: dict[str, list[str]] = {}
        for name, spec in map(set_name, corpora):  # NAME=A NAME=B: one set of both specs
            grouped.setdefault(name, []).append(spec)
        corpora = grouped
    rows = []
    for name, specs in corpora.items():
        spec = " + ".join(specs)
        manifest = load_manifest(specs, check, name)
        result = score_manifest(model, manifest, length=length, batch_size=batch_size, device=dev,
                                num_workers=num_workers, progress=True, score=kind)
        values = result.scores if mapping is None else mapping.apply(result.scores)
        write_scores(out / eval_scores_file(name), manifest["utt"], values)
        manifest[["utt", "label", *default_factors(manifest)]].to_csv(out / eval_keys_file(name), index=False)
        scores = pd.Series(values, index=manifest["utt"].to_numpy(), name="score")
        table = breakdown(manifest, scores, draws=interval_draws)  # its first row is the pooled set
        table.to_csv(out / eval_breakdown_file(name), index=False)
        pooled = {k: v.item() if hasattr(v, "item") else v for k, v in table.iloc[0].items()}
        eer = pooled["eer"]
        rows.append({"set": name, "spec": spec, "n_bonafide": pooled["n_bonafide"], "n_spoof": pooled["n_spoof"],
                     "eer": eer, "threshold": pooled["threshold"], "score": kind, "score_kind": score_kind,
                     "bayes_threshold": ASVSPOOF5.bayes_threshold, "model": str(model_path)}
                    | {k: v for k, v in pooled.items() if k not in ("factor", "value", "n_bonafide", "n_spoof",
                                                                   "eer", "threshold")})
        info(f"[dpda] {name}: EER {100 * eer:.2f}% over {len(manifest)} trials")
    pd.DataFrame(rows).to_csv(out / EVAL_METRICS, index=False)
    write_json(out / "metrics.json", rows)
    return rows


def calibration_for(path: Path, kind: str) -> Calibration:
    """The calibration file at `path`, checked to be one system's map of `kind` scores."""
    from dpda.errors import UserError
    from dpda.metrics import read_calibration

    mapping = read_calibration(path)
    if len(mapping.weights) != 1:
        raise UserError(f"{path}: a fusion of {len(mapping.weights)} systems, not one model's calibration "
                        "(apply it to score files with dpda fuse)")
    if mapping.score is not None and mapping.score != kind:
        raise UserError(f"{path}: fitted on {mapping.score} scores, but these are {kind} scores "
                        f"(--score {mapping.score}, or calibrate again)")
    return mapping
