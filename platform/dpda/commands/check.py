"""`dpda check CORPUS...`: validate corpora before training (missing, special, unreadable,
truncated, empty, non-finite or far too loud audio, implausible sample rates, unknown labels,
duplicate ids within a corpus and across the corpora given, paths escaping the corpus root).
Noise and RIR banks (`musan:`, `rirs:`, `csv:` without a label column; `dpda.data.banks`) get
the same checks, at 16 kHz only."""

from __future__ import annotations

import argparse

from dpda.cli import add_deprecated
from dpda.data.audio_file import MAX_PEAK, SAMPLE_RATE_RANGE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpora", nargs="+", metavar="CORPUS",
                        help="corpus spec KIND:PATH[:SUBSET] (KIND: asvspoof2019, asvspoof2021la, "
                             "asvspoof2021df, asvspoof5, itw, for, mlaad, mailabs, spoofceleb, csv) or a path "
                             "to a .csv; or a bank spec musan:PATH, "
                             "rirs:PATH, csv:FILE (path[,category], no label column), checked at 16 kHz only")
    parser.add_argument("--policy", choices=("fail", "skip"), default="fail",
                        help="fail: exit non-zero on any problem; skip: report and drop bad rows")
    parser.add_argument("--decode", choices=("all", "float", "none"), default="all",
                        help="decode every file (all), only float-format files that can hold "
                             "NaN/Inf (float), or read headers only (none)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="threads reading audio")
    add_deprecated(parser, "--workers", "--threads", "threads", type=int)
    parser.add_argument("--max-problems", type=int, default=20, help="problems listed per corpus")
    parser.add_argument("--sample-rates", metavar="MIN-MAX", default="{}-{}".format(*SAMPLE_RATE_RANGE),
                        help="sample rates (Hz) accepted in corpus headers (default: %(default)s; banks: 16000 only)")
    parser.add_argument("--max-peak", type=float, default=MAX_PEAK, metavar="X",
                        help="largest accepted |sample| of float audio; full scale is 1.0 (default: %(default)g)")


def summary_table(manifest) -> str:
    """Counts per attack (rows) and label (columns), with totals."""
    import pandas as pd

    if not len(manifest):
        return "  (no rows)"
    table = pd.crosstab(manifest["attack"], manifest["label"], margins=True, margins_name="total")
    return "\n".join("  " + line for line in table.to_string().splitlines())


def run(args: argparse.Namespace) -> int:
    from dpda.data.audio_file import parse_rate_range
    from dpda.data.banks import BANK_RATES, category_counts, index_bank, is_bank_spec
    from dpda.data.check import duplicates_across, inspect_manifest
    from dpda.data.readers import load_corpus
    from dpda.errors import UserError

    rates = parse_rate_range(args.sample_rates)
    if not args.max_peak > 0:
        raise UserError(f"--max-peak: must be > 0, got {args.max_peak!r}")
    status = 0
    loaded = []
    for spec in args.corpora:
        print(f"== {spec}")
        bank = is_bank_spec(spec)
        try:
            manifest = index_bank(spec, args.threads) if bank else load_corpus(spec)
            result = inspect_manifest(manifest, num_workers=args.threads, decode=args.decode,
                                      sample_rates=BANK_RATES if bank else rates, max_peak=args.max_peak)
        except UserError as exc:
            print(f"  error: {exc}")
            status = max(status, 2)
            continue
        if not bank:  # a bank is not part of a set of trials: its ids may repeat a corpus's
            loaded.append(manifest)
        rates_seen = ", ".join(f"{r} Hz: {n}" for r, n in result.audio.get("sample_rates", {}).items())
        print(f"  {result.total} {'files' if bank else 'rows'}, root {manifest.attrs.get('root')}, "
              f"{float(result.audio.get('seconds', 0.0)) / 3600:.2f} h readable audio ({rates_seen or 'none'})")
        if bank:
            print("  " + ", ".join(f"{k}: {v}" for k, v in category_counts(manifest).items()))
        else:
            print(summary_table(manifest))
        if result.ok:
            print("  ok: no problems")
            continue
        print("  problems:")
        print("\n".join("    " + line for line in result.format_problems(args.max_problems).splitlines()))
        if args.policy == "skip":
            print(f"  skip: {len(result.bad_rows)} bad rows would be dropped, {result.total - len(result.bad_rows)} kept")
        else:
            status = max(status, 1)
    shared, total = duplicates_across(loaded, limit=args.max_problems)
    if shared:  # one set must not hold an id twice, whatever the policy: training refuses it
        print("== across corpora")
        print("  problems:")
        print("\n".join(f"    {line}" for line in map(str, shared)))
        if total > len(shared):
            print(f"    ... and {total - len(shared)} more")
        print(f"    {total} utterance id(s) in more than one corpus")
        status = max(status, 1)
    return status
