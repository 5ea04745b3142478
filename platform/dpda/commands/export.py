"""`dpda export RUN_OR_EXPERIMENT_DIR -o steps.parquet [--table TABLE]`: one telemetry table,
superseded rows of restarted attempts removed, as one Parquet file any tool reads.

Imports only `dpda_analysis` (no torch or Ray), like `dpda report`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from dpda_analysis import AnalysisError, AnalysisWarning
from dpda_analysis.errors import MissingPartsWarning
from dpda_analysis.export import export_table
from dpda_analysis.schema import TABLES
from dpda_analysis.store import Telemetry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a run dir, a directory of runs, or a Ray Tune experiment dir")
    parser.add_argument("-o", "--out", required=True, metavar="OUT",
                        help="the Parquet file to write (its one output, e.g. steps.parquet)")
    parser.add_argument("--table", choices=list(TABLES),
                        help="table to export (default: the output file's name if it is a table, e.g. "
                             "layers.parquet, else steps)")
    parser.add_argument("--allow-missing-parts", action="store_true",
                        help="export even when parts are missing by their numbers (deleted or never copied), "
                             "without their rows; by default that is an error")


def _show(caught: list[warnings.WarningMessage], refused: bool) -> None:
    """Telemetry left out as one `warning:` line each (missing parts not again when they refused)."""
    for w in caught:
        if issubclass(w.category, MissingPartsWarning) and refused:
            continue
        if issubclass(w.category, AnalysisWarning):
            print(f"dpda export: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def run(args: argparse.Namespace) -> int:
    stem = Path(args.out).stem
    table = args.table or (stem if stem in TABLES else "steps")
    tel = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AnalysisWarning)
            with Telemetry(args.path) as tel:
                rows = export_table(tel, table, args.out, allow_missing=args.allow_missing_parts)
    except AnalysisError as exc:
        _show(caught, refused=tel is not None and bool(tel.missing) and not args.allow_missing_parts)
        print(f"dpda export: error: {exc}", file=sys.stderr)
        return 2
    _show(caught, refused=False)
    print(f"wrote {args.out} ({table}, {rows:,} rows, superseded rows removed)")
    return 0
