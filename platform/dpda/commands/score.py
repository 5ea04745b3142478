"""`dpda score SCORES [KEYS]`: EER (and min t-DCF with ASV scores) of an existing score file.

SCORES has `UTT SCORE` lines, or `UTT ATTACK KEY SCORE` lines (ASVspoof 2019 / AASIST), which
carry their labels, so KEYS may then be left out. KEYS is a corpus spec (`KIND:PATH[:SUBSET]`,
see `dpda.data.readers`) or the path of an ASVspoof key file itself: a 2019 LA CM protocol
(`SPEAKER UTT - ATTACK KEY`), a 2021 LA / DF `trial_metadata.txt` or an ASVspoof 5 track 1
protocol (`ASVspoof5.eval.track_1.tsv`). Scoring needs only the labels, so no audio has to be
present. The t-DCF follows the 2021 revision for ASVspoof 2021
keys and the 2019 definition otherwise (`--tdcf`; see `dpda.metrics.tdcf`). `--metrics` adds the
ASVspoof 5 minDCF, actDCF and Cllr (`dpda.metrics.dcf`) to what is printed; the CSV has them all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dpda.errors import UserError, read_user_text

TDCF_CHOICES = ("2019", "2021")  # the keys of dpda.metrics.TDCF_DEFINITIONS (a test checks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", help="score file, 'UTT SCORE' or 'UTT ATTACK KEY SCORE' lines (higher = bona fide)")
    parser.add_argument("keys", nargs="?", help="corpus spec KIND:PATH[:SUBSET], or an ASVspoof protocol / "
                        "trial_metadata file (default: the labels of a 4-column score file)")
    parser.add_argument("--asv-scores", metavar="FILE", help="ASV scores for min t-DCF: 2019 'SOURCE KEY SCORE', "
                        "or 2021 'ASV_SPEAKER TRIAL SCORE' (keys from --asv-keys)")
    parser.add_argument("--asv-keys", metavar="FILE", help="ASVspoof 2021 ASV trial_metadata.txt of 2021 ASV scores "
                        "(default: ASV/trial_metadata.txt beside the CM keys' CM folder)")
    parser.add_argument("--tdcf", choices=TDCF_CHOICES, help="t-DCF definition (default: 2021 for ASVspoof 2021 keys, else 2019)")
    parser.add_argument("--by", metavar="COLS", help="comma-separated breakdown columns (default: attack and all conditions)")
    parser.add_argument("--ties", choices=("asvspoof", "threshold"), default="asvspoof",
                        help="tie handling of the EER (default: the ASVspoof reference)")
    parser.add_argument("--csv", metavar="FILE", help="also write the breakdown table (every metric) to this CSV file")
    parser.add_argument("--metrics", default="eer", metavar="LIST",
                        help="metrics printed, comma-separated from eer, mindcf, actdcf, cllr, or all "
                             "(default: eer; actDCF and Cllr read the scores as natural-log LLRs)")
    parser.add_argument("--draws", type=int, default=0, metavar="N",
                        help="bootstrap resamples for 95%% intervals of each metric (default 0: none)")


def _protocol_2019(path: Path) -> pd.DataFrame:
    """A 2019 LA CM protocol read directly, without the corpus folder around it."""
    from dpda.data.manifest import make_manifest

    cols: dict[str, list] = {k: [] for k in ("utt", "label", "attack", "speaker", "source_line")}
    for number, line in enumerate(read_user_text(path, "key file").splitlines(), start=1):
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
    first = next((ln.split() for ln in read_user_text(path, "key file").splitlines() if ln.split()), None)
    if first is None:
        raise UserError(f"{path}: empty key file")
    if len(first) == 5:
        return _protocol_2019(path)
    if len(first) == 10 and first[1][:2] in ("T_", "D_", "E_"):  # an ASVspoof 5 track 1 protocol
        return load_corpus(f"asvspoof5:{path}")
    if len(first) < 2:
        raise UserError(f"{path}: first line has {len(first)} field; expected an ASVspoof 2019 protocol "
                        "or 2021 trial_metadata.txt (or a corpus spec)")
    track = "df" if first[1].upper().startswith("DF_") else "la"
    return load_corpus(f"asvspoof2021{track}:{path}")


def keys_from_score_table(table: pd.DataFrame) -> pd.DataFrame:
    """The manifest a 4-column score file's own ATTACK and KEY columns describe."""
    from dpda.data.manifest import make_manifest

    source = table.attrs.get("source", "scores")
    if "key" not in table.columns:
        raise UserError(f"{source}: a 2-column score file needs KEYS (a corpus spec or a protocol file)")
    n = len(table)
    return make_manifest({"utt": table["utt"].tolist(), "label": table["key"].tolist(), "attack": table["attack"].tolist(),
                          "path": [""] * n, "speaker": ["-"] * n, "corpus": ["scores"] * n, "subset": ["-"] * n,
                          "source_file": [source] * n, "source_line": table["source_line"].tolist()})


def is_asvspoof2021(manifest: pd.DataFrame) -> bool:
    return bool(manifest["corpus"].astype(str).str.startswith("asvspoof2021").all())


def read_asv(args: argparse.Namespace, manifest: pd.DataFrame) -> dict:
    """{target, nontarget, spoof: ASV scores} from --asv-scores: 2019 lines carry their keys;
    2021 lines pair with --asv-keys (or the ASV/trial_metadata.txt beside the CM keys), keeping
    the phases (eval / progress / hidden_track) of the CM trials scored."""
    from dpda.metrics import read_asv_scores, read_asv_scores_2021
    from dpda.metrics.scores import ASV_KEYS, data_lines

    lines = data_lines(Path(args.asv_scores), "ASV score file")
    if args.asv_keys is None and lines and len(lines[0][1]) == 3 and lines[0][1][1] in ASV_KEYS:
        return read_asv_scores(args.asv_scores)
    keys = args.asv_keys
    if keys is None:
        cm_keys = Path(str(manifest["source_file"].iloc[0]))
        keys = cm_keys.parent.parent / "ASV" / "trial_metadata.txt"
        if not (cm_keys.parent.name == "CM" and keys.is_file()):
            raise UserError(f"{args.asv_scores}: ASVspoof 2021 ASV scores (no target/nontarget/spoof key on line "
                            f"{lines[0][0] if lines else 1}) need --asv-keys, the ASV trial_metadata.txt")
    phases = sorted(set(manifest["phase"].astype(str))) if "phase" in manifest.columns else None
    return read_asv_scores_2021(args.asv_scores, keys, phases)


def run(args: argparse.Namespace) -> int:
    from dpda.metrics import METRICS, TDCF_DEFINITIONS, breakdown, parse_metrics, read_score_table
    from dpda.metrics.breakdown import attach_scores

    chosen = parse_metrics(args.metrics)
    score_table = read_score_table(args.scores)
    scores = pd.Series(score_table["score"].to_numpy(), index=pd.Index(score_table["utt"], name="utt"), name="score")
    manifest = load_keys(args.keys) if args.keys else keys_from_score_table(score_table)
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    table = breakdown(manifest, scores, by=by, ties=args.ties, draws=args.draws)
    pooled = table.iloc[0]
    print(f"trials: {pooled.n_bonafide} bona fide, {pooled.n_spoof} spoof ({len(scores) - len(manifest)} extra scores ignored)")
    for name in chosen:
        scale, unit = (100, " %") if name == "eer" else (1, "")
        line = f"{METRICS[name][0]}: {scale * pooled[name]:.4f}{unit}"
        if args.draws:
            line += f"  [{scale * pooled[name + '_low']:.4f}, {scale * pooled[name + '_high']:.4f}]"
        print(line + (f"  (threshold {pooled.threshold:.6g})" if name == "eer" else ""))
    if args.asv_scores:
        asv = read_asv(args, manifest)
        definition = args.tdcf or ("2021" if is_asvspoof2021(manifest) else "2019")
        scored = attach_scores(manifest, scores, where=str(args.scores))
        bona = scored.loc[scored["target"] == 1, "score"].to_numpy()
        spoof = scored.loc[scored["target"] == 0, "score"].to_numpy()
        min_tdcf, _ = TDCF_DEFINITIONS[definition](bona, spoof, asv["target"], asv["nontarget"], asv["spoof"])
        print(f"min t-DCF ({definition}): {min_tdcf:.6f}")
    hidden = [c for c in table.columns for m in METRICS if m not in chosen and (c == m or c.startswith(m + "_"))]
    hidden += [] if "eer" in chosen else ["threshold"]  # the EER's threshold
    shown = table.drop(columns=hidden)
    if "eer" in chosen:
        shown = shown.assign(eer_percent=100 * table["eer"]).drop(columns=["eer"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    return 0
