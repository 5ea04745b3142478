"""`dpda report RUN_OR_EXPERIMENT_DIR -o report.html [--png DIR]`.

Imports only `dpda_analysis`, the standard library and dpda's light CLI helpers, so the report can be made on a machine
without torch or Ray (the report module is plain pyarrow/DuckDB/pandas/plotly).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from dpda_analysis import AnalysisError, AnalysisWarning
from dpda_analysis.report import FIGURE_ORDER, write_report

from dpda.cli import add_deprecated
from dpda.console import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a run dir, a directory of runs, or a Ray Tune experiment dir; a local "
                        "path or a filesystem URI (s3://, gs://, hdfs://)")
    parser.add_argument("--html", default="report.html", metavar="FILE", help="HTML file to write (default: %(default)s)")
    add_deprecated(parser, "-o", "--html", "html")
    add_deprecated(parser, "--output", "--html", "html")
    parser.add_argument("--png", metavar="DIR", help="also export each figure as PNG into DIR (needs kaleido)")
    parser.add_argument("--title", help="page title")
    parser.add_argument("--heatmap-bins", type=int, default=60, help="step bins of the layer heatmap")
    parser.add_argument("--heatmap-trials", type=int, default=8,
                        help="trials selectable in the layer heatmap, best dev EER first")
    parser.add_argument("--evaluation", metavar="DIR",
                        help="an eval folder (dpda eval -o DIR) whose model joins the evaluation views")
    parser.add_argument("--det-by-attack", action="store_true",
                        help="also draw the first evaluated model's DET curve per attack")


def _show(caught: list[warnings.WarningMessage]) -> None:
    """Telemetry left out as one `warning:` line each; other warnings as Python shows them."""
    for w in caught:
        if issubclass(w.category, AnalysisWarning):
            print(f"dpda report: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def run(args: argparse.Namespace) -> int:
    if args.heatmap_bins < 1 or args.heatmap_trials < 1:
        print("dpda report: error: --heatmap-bins and --heatmap-trials must be >= 1", file=sys.stderr)
        return 2
    total = len(FIGURE_ORDER) + bool(args.evaluation)  # the real-set figure, when the folder has one
    try:
        with warnings.catch_warnings(record=True) as caught, Progress(total, "report", "figures") as bar:
            warnings.simplefilter("always", AnalysisWarning)
            result = write_report(args.path, args.html, png_dir=args.png, title=args.title,
                                  heatmap_bins=args.heatmap_bins, heatmap_trials=args.heatmap_trials,
                                  on_figure=lambda _name: bar.update(), evaluation=args.evaluation,
                                  det_by_attack=args.det_by_attack)
    except AnalysisError as exc:
        _show(caught)
        print(f"dpda report: error: {exc}", file=sys.stderr)
        return 2
    _show(caught)
    print(f"wrote {result.html_path} ({len(result.figures)} figures)")
    for path in result.png_paths:
        print(f"wrote {path}")
    if result.png_message:
        print(f"dpda report: {result.png_message}", file=sys.stderr)
        return 1
    return 0
