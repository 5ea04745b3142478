"""`dpda train CONFIG`: one single-process training run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="training config (YAML)")
    p.add_argument("-o", "--run-dir", type=Path, default=None,
                   help="output directory (default: runs/<config name>); an existing run resumes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=1e-4 (value parsed as YAML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_overrides(items: list[str]) -> dict:
    from dpda.errors import UserError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from dpda.train.config import load_config
    from dpda.train.loop import Trainer

    cfg = load_config(args.config, parse_overrides(args.set))
    run_dir = args.run_dir or Path("runs") / args.config.stem
    summary = Trainer(cfg, run_dir, progress=not args.no_progress).fit()
    print(json.dumps(summary, indent=2))
    return 0
