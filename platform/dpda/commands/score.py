"""`dpda score SCORES KEYS`: EER (and min t-DCF with ASV scores) of an existing score file.

KEYS is a corpus spec (`KIND:PATH[:SUBSET]`, see `dpda.data.readers`) or the path of an ASVspoof
key file itself: a 2019 LA CM protocol (`SPEAKER UTT - ATTACK KEY`) or a 2021 LA / DF
`trial_metadata.txt`. Scoring needs only the labels, so no audio has to be present.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dpda.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", help="score file, one 'UTT SCORE' line per trial (higher = bona fide)")
    parser.add_argument("keys", help="corpus spec KIND:PATH[:SUBSET], or an ASVspoof protocol / trial_metadata file")
    parser.add_argument("--asv-scores", metavar="FILE", help="ASVspoof 2019 ASV scores 'SOURCE KEY SCORE' for min t-DCF")
    parser.add_argument("--by", metavar="COLS", help="comma-separated breakdown columns (default: attack and all conditions)")
    parser.add_argument("--ties", choices=("asvspoof", "threshold"), default="asvspoof",
                        help="tie handling of the EER (default: the ASVspoof reference)")
    parser.add_argument("--csv", metavar="FILE", help="also write the breakdown table to this CSV file")


def _protocol_2019(path: Path) -> pd.DataFrame:
    """A 2019 LA CM protocol read directly, without the corpus folder around it."""
    from dpda.data.manifest import make_manifest

    cols: dict[str, list] = {k: [] for k in ("utt", "label", "attack", "speaker", "source_line")}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 5:
            raise UserError(f"{path}:{number}: expected 5 fields 'SPEAKER UTT - ATTACK KEY', got {len(fields)}")
        speaker, utt, _, attack, key = fields
        for name, value in zip(("utt", "label", "attack", "speaker", "source_line"), (utt, key, attack, speaker, number)):
            cols[name].append(value)
    n = len(cols["utt"])
    cols.update(path=[""] * n, corpus=["asvspoof2019la"] * n, subset=["-"] * n, source_file=[str(path)] * n)
    return make_manifest(cols)


def load_keys(keys: str) -> pd.DataFrame:
    """Manifest of KEYS: an existing file is sniffed by its first line; anything else is a spec."""
    from dpda.data.readers import load_corpus

    path = Path(keys).expanduser()
    if not path.is_file() or path.suffix.lower() == ".csv":
        return load_corpus(keys)
    try:
        first = next((ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.split()), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if first is None:
        raise UserError(f"{path}: empty key file")
    if len(first) == 5:
        return _protocol_2019(path)
    if len(first) < 2:
        raise UserError(f"{path}: first line has {len(first)} field; expected an ASVspoof 2019 protocol "
                        "or 2021 trial_metadata.txt (or a corpus spec)")
    track = "df" if first[1].upper().startswith("DF_") else "la"
    return load_corpus(f"asvspoof2021{track}:{path}")


def run(args: argparse.Namespace) -> int:
    from dpda.metrics import breakdown, compute_min_tdcf, read_asv_scores, read_scores
    from dpda.metrics.breakdown import attach_scores

    scores = read_scores(args.scores)
    manifest = load_keys(args.keys)
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    table = breakdown(manifest, scores, by=by, ties=args.ties)
    pooled = table.iloc[0]
    print(f"trials: {pooled.n_bonafide} bona fide, {pooled.n_spoof} spoof ({len(scores) - len(manifest)} extra scores ignored)")
    print(f"EER: {100 * pooled.eer:.4f} %  (threshold {pooled.threshold:.6g})")
    if args.asv_scores:
        asv = read_asv_scores(args.asv_scores)
        scored = attach_scores(manifest, scores, where=str(args.scores))
        bona = scored.loc[scored["target"] == 1, "score"].to_numpy()
        spoof = scored.loc[scored["target"] == 0, "score"].to_numpy()
        min_tdcf, _ = compute_min_tdcf(bona, spoof, asv["target"], asv["nontarget"], asv["spoof"])
        print(f"min t-DCF: {min_tdcf:.6f}")
    shown = table.assign(eer_percent=100 * table["eer"]).drop(columns=["eer"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    return 0
