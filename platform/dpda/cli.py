"""The `dpda` command line: one subcommand per module in `dpda.commands`.

Subcommand modules are imported only when they run, so `dpda --help` stays fast and does not
pull in torch or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dpda.errors import UserError

# name -> (module under dpda.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write the synthetic ASVspoof-style corpus"),
    "check": ("check", "validate corpora before training"),
    "train": ("train", "train a detector from a YAML config"),
    "eval": ("eval", "score corpora with a checkpoint and compute EER / min t-DCF"),
    "score": ("score", "compute metrics from a score file and keys"),
    "predict": ("predict", "score single audio files and decide bona fide / spoof"),
    "tune": ("tune", "run a Ray Tune + Optuna search from a search-space YAML"),
    "report": ("report", "write the interactive Plotly conflict-analysis report"),
    "quickstart": ("quickstart", "synth, demo search, eval and report, end to end"),
    "doctor": ("doctor", "print versions and devices; check that this install can run dpda"),
}


def _load(module: str):
    return importlib.import_module(f"dpda.commands.{module}")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="dpda",
        description="Dual-path data augmentation with gradient alignment for speech deepfake detection.",
    )
    from dpda import __version__

    parser.add_argument("--version", action="version", version=f"dpda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(_load(COMMANDS[args.command][0]).run(args) or 0)
    except UserError as exc:  # errors the user can fix (a broken install too): one line, no traceback
        print(f"dpda {command or ''}: error: {exc}".replace(" :", ":"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
