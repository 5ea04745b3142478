"""`dpda study SPEC.yaml`: a controlled comparison, variants x seeds with equal budgets, as Ray
Tune trials; then runs.csv, the paired differences against the baseline (study.csv, study.md)
and study.html in the study folder. `--resume` continues an interrupted study; finished runs
are kept. The SPEC format: dpda.tune.study_spec.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dpda.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="study SPEC YAML (see studies/)")
    p.add_argument("--data", type=Path, default=None,
                   help="corpus root, substituted for ${DPDA_DATA} in the file (default: $DPDA_DATA)")
    p.add_argument("--storage", default=None,
                   help="where the study folder goes: a directory or s3:// URI (default runs/tune)")
    p.add_argument("--name", default=None, help="study folder name (default: the file's `name`)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study; finished runs are kept")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, a running local cluster, or a new one)")


def load(args: argparse.Namespace):
    """The validated SPEC (before Ray is imported), named by --name when given."""
    import dataclasses

    from dpda.commands.tune import check_name
    from dpda.tune.study_spec import load_study

    check_name(args.name)
    variables = {"DPDA_DATA": str(args.data.resolve())} if args.data else {}
    grid = load_study(args.spec, variables=variables)
    return dataclasses.replace(grid, name=args.name) if args.name else grid


def run(args: argparse.Namespace) -> int:
    grid = load(args)  # a bad SPEC is one line naming its key, before Ray starts

    from dpda.commands.tune import check_corpus_paths
    from dpda.console import info
    from dpda.tune.session import init_ray, tune_verbosity
    from dpda.tune.study import STUDY_SNAPSHOT, fingerprint, run_study
    from dpda.tune.tuner import check_corpora, check_experiment, hold_experiment, storage_location

    store = storage_location(args.storage)
    for variant in grid.variant_names:
        check_corpus_paths(grid.run_config(variant, grid.seeds[0]), f"{grid.source}: variants.{variant}")
    exp = store.child(grid.name)
    with hold_experiment(exp):
        check_experiment(grid, exp, args.resume, fingerprint=fingerprint(grid), snapshot=STUDY_SNAPSHOT)
        checked = check_corpora(grid)
        init_ray(args.address)
        info(f"Study {grid.source}: {len(grid.variants)} variants x {len(grid.seeds)} seeds, "
             f"{grid.base['optim']['epochs']} epochs (patience {grid.base['optim']['patience']}), baseline {grid.baseline}")
        outcome = run_study(grid, exp, store, resume=args.resume, verbose=tune_verbosity(), checked=checked,
                            command=f"dpda study {args.spec}")
    from dpda_analysis.location import join
    from dpda_analysis.study import STUDY_MD

    print(outcome.differences.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    print(f"Study table: {join(outcome.experiment_path, STUDY_MD)}", flush=True)
    if outcome.unfinished:
        raise UserError(f"{outcome.experiment_path}: {outcome.unfinished} of {len(grid.variants) * len(grid.seeds)} "
                        "runs did not finish (interrupted, or failed: error.txt in their folders); the tables hold "
                        "the finished ones; continue with --resume")
    return 0
