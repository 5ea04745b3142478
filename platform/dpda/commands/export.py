"""`dpda export RUN_OR_EXPERIMENT_DIR -o steps.parquet [--table TABLE]`: one telemetry table,
superseded rows of restarted attempts removed, as one Parquet file any tool reads.

Imports only `dpda_analysis` (no torch or Ray), like `dpda report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dpda_analysis import AnalysisError
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


def run(args: argparse.Namespace) -> int:
    stem = Path(args.out).stem
    table = args.table or (stem if stem in TABLES else "steps")
    try:
        with Telemetry(args.path) as tel:
            rows = export_table(tel, table, args.out)
    except AnalysisError as exc:
        print(f"dpda export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({table}, {rows:,} rows, superseded rows removed)")
    return 0
