"""The `dpda` command line: one subcommand per module in `dpda.commands`.

Subcommand modules are imported only when they run, so `dpda --help` stays fast and does not
pull in torch or Ray. Every command takes `-q/--quiet` and `-v/--verbose`; errors a user can fix
(bad input, a broken install, a path that cannot be written) end in one line and a non-zero exit;
a pipe closed early (`dpda score ... | head`) ends quietly with the conventional status 141.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from dpda import console
from dpda.errors import UserError

# name -> (module under dpda.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write the synthetic ASVspoof-style corpus"),
    "banks": ("banks", "write small offline noise (MUSAN layout) and impulse-response (RIRS_NOISES layout) banks"),
    "realset": ("realset", "build the real-audio set (real speech vs real synthesizers) from installed packages"),
    "check": ("check", "validate corpora before training"),
    "train": ("train", "train a detector from a YAML config"),
    "eval": ("eval", "score corpora with a trained model: score files, EER and per-attack breakdowns"),
    "score": ("score", "compute EER (and min t-DCF with ASV scores) from a score file and keys"),
    "calibrate": ("calibrate", "fit a score -> LLR calibration on dev scores (logistic regression), beside the model"),
    "fuse": ("fuse", "linear logistic fusion of several systems' score files, fitted on their dev scores"),
    "models": ("models", "list models and presets with trainable parameter counts (SSL back ends alone too)"),
    "predict": ("predict", "score single audio files and decide bona fide / spoof"),
    "tune": ("tune", "run a Ray Tune + Optuna search from a search-space YAML"),
    "study": ("study", "a controlled comparison: variants x shared seeds, equal budgets, paired differences"),
    "report": ("report", "write the interactive Plotly conflict-analysis report"),
    "export": ("export", "write one telemetry table, superseded rows removed, as a single Parquet file"),
    "quickstart": ("quickstart", "synth, demo search, eval and report, end to end"),
    "doctor": ("doctor", "print versions and devices; check that this install can run dpda"),
}
SIGPIPE_STATUS = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def _load(module: str):
    return importlib.import_module(f"dpda.commands.{module}")


def _verbosity_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """-q/-v, accepted before and after the command name (the subparser must not reset them)."""
    default = argparse.SUPPRESS if suppress else False
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="print results and errors only (no progress, no Ray/Tune chatter)")
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="more detail: Tune's full trial table, debug logs, tracebacks of errors")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="dpda",
        description="Dual-path data augmentation with gradient alignment for speech deepfake detection.",
    )
    from dpda import __version__

    parser.add_argument("--version", action="version", version=f"dpda {__version__}")
    _verbosity_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _verbosity_options(p, suppress=True)
            _load(module).add_arguments(p)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command on its own (`dpda NAME`'s options, -q/-v included), for code
    that runs a command's logic without the top-level parser (quickstart runs tune's)."""
    parser = argparse.ArgumentParser(prog=f"dpda {name}", description=COMMANDS[name][1])
    _verbosity_options(parser, suppress=False)
    _load(COMMANDS[name][0]).add_arguments(parser)
    return parser


class DeprecatedOption(argparse.Action):
    """An old spelling that still works: stores into the new option's dest and says so once."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated, use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def add_deprecated(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """Keep `old` working for the renamed option `new` (hidden from --help)."""
    parser.add_argument(old, dest=dest, action=DeprecatedOption, new=new, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **kwargs)


def _apply_verbosity(args: argparse.Namespace) -> None:
    level = console.QUIET if args.quiet else console.VERBOSE if args.verbose else console.NORMAL
    console.set_verbosity(level)
    if level == console.VERBOSE:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        for noisy in ("matplotlib", "urllib3", "filelock", "fsspec"):
            logging.getLogger(noisy).setLevel(logging.INFO)


def _quiet_broken_pipe() -> int:
    """The reader went away: silence the flush at exit that would raise again, report 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return SIGPIPE_STATUS


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    prefix = f"dpda {command}" if command in COMMANDS else "dpda"
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        _apply_verbosity(args)
        if args.command is None:
            parser.print_help()
            return 2
        status = int(_load(COMMANDS[args.command][0]).run(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except UserError as exc:  # errors the user can fix (a broken install too): one line, no traceback
        if console.verbosity() == console.VERBOSE:
            traceback.print_exc()
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written: name it, no traceback
        if exc.filename is None:
            raise
        if console.verbosity() == console.VERBOSE:
            traceback.print_exc()
        print(f"{prefix}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
