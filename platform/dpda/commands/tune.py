"""`dpda tune SEARCH_SPACE.yaml`: a Ray Tune + Optuna search (ASHA on dev EER per epoch).

Options scale a search down or up without editing the file (`--num-samples`, `--epochs`,
`--set KEY=VALUE`, `--workers`); `--resume` continues an interrupted experiment.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from dpda.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("search_space", type=Path, help="search-space YAML (see search_spaces/)")
    p.add_argument("--data", type=Path, default=None,
                   help="corpus root, substituted for ${DPDA_DATA} in the file (default: $DPDA_DATA)")
    p.add_argument("--storage", default=None,
                   help="experiment storage: a directory (shared on a cluster) or s3:// URI (default runs/tune)")
    p.add_argument("--name", default=None, help="experiment name (default: the file's `name`)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment; finished trials are kept")
    p.add_argument("--num-samples", type=int, default=None, help="number of trials (overrides tune.num_samples)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (overrides tune.max_concurrent)")
    p.add_argument("--metric", default=None, help="metric that ASHA and Optuna optimise (overrides tune.metric)")
    p.add_argument("--mode", choices=("min", "max"), default=None, help="minimise or maximise --metric")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (sets optim.epochs and ASHA's max_t)")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers per trial (overrides tune.resources.workers)")
    p.add_argument("--cpus-per-worker", type=float, default=None, help="CPUs per trial / per worker")
    p.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per trial / per worker")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a config key for every trial, e.g. --set optim.max_steps_per_epoch=4 (YAML value)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, a running local cluster, or a new one)")


# TuneSettings field -> the option (argparse dest) that overrides it
_TUNE_OPTIONS = {"num_samples": "num_samples", "max_concurrent": "max_concurrent", "metric": "metric",
                 "mode": "mode", "workers": "workers", "cpu": "cpus_per_worker", "gpu": "gpus_per_worker"}


def load_space(args: argparse.Namespace):
    """The search space with the command line's overrides applied and validated."""
    from dpda.tune.search_space import load_search_space
    from dpda.yaml_io import parse_set

    variables = {"DPDA_DATA": str(args.data.resolve())} if args.data else {}
    overrides = parse_set(args.set)
    if args.epochs is not None:
        overrides["optim.epochs"] = args.epochs
    space = load_search_space(args.search_space, variables=variables, overrides=overrides)
    changes = {field: getattr(args, option) for field, option in _TUNE_OPTIONS.items()
               if getattr(args, option) is not None}
    if args.epochs is not None:
        changes["max_t"] = args.epochs
        changes["grace_period"] = min(space.tune.grace_period, args.epochs)
    if changes:
        options = {field: "--" + option.replace("_", "-") for field, option in _TUNE_OPTIONS.items()}
        space = dataclasses.replace(space, tune=space.tune.with_changes(
            options={**options, "max_t": "--epochs", "grace_period": "--epochs"}, **changes))
    return space


def check_corpus_paths(config: dict, source: str) -> None:
    """Every corpus the search trains or evaluates on exists, before Ray and the trials start."""
    from dpda.data.readers import parse_spec

    data = config.get("data", {})
    named = [(f"data.{k}[{i}]", s) for k in ("train", "dev") for i, s in enumerate(data.get(k, []))]
    named += [(f"data.eval.{name}[{i}]", s) for name, specs in data.get("eval", {}).items() for i, s in enumerate(specs)]
    for key, spec in named:
        path = parse_spec(spec).path
        if not path.exists():
            raise UserError(f"{source}: {key}: {path} does not exist (corpus spec {spec!r}; "
                            "--data or $DPDA_DATA sets ${DPDA_DATA})")


def tune_verbosity() -> int:
    """Tune's `verbose` for dpda's -q / default / -v: nothing, the status table, every trial event."""
    from dpda.console import QUIET, VERBOSE, verbosity

    return {QUIET: 0, VERBOSE: 2}.get(verbosity(), 1)


def _init_ray(address: str | None) -> None:
    import logging

    import ray

    from dpda.console import QUIET, info, verbosity

    if ray.is_initialized():
        return
    quiet = verbosity() == QUIET
    # under --quiet the workers' output stays in their log files (Tune still names failed trials)
    context = ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=not quiet,
                       logging_level=logging.WARNING if quiet else logging.INFO)
    url = getattr(context, "dashboard_url", None)
    if url:
        info(f"Ray dashboard: http://{url}")
    else:
        info("Ray dashboard: not available (install ray[default] for it)")


def run(args: argparse.Namespace) -> int:
    from dpda.console import info
    from dpda.tune.study_files import HPARAMS_DIR, dashboard_command
    from dpda.tune.tuner import check_corpora, experiment_path, format_outcome, run_search, unfinished_message

    space = load_space(args)
    check_corpus_paths(space.base, space.source)
    checked = check_corpora(space)  # every corpus decoded once, here, before Ray starts
    _init_ray(args.address)
    info(f"Search {space.source}: {len(space.params)} parameters, {space.tune.num_samples} trials, "
         f"metric {space.tune.metric} ({space.tune.mode}), {space.tune.workers} worker(s) per trial")
    outcome = run_search(space, storage=args.storage, name=args.name, resume=args.resume, verbose=tune_verbosity(),
                         checked=checked)
    print(format_outcome(space, outcome), flush=True)
    info(f"TensorBoard: tensorboard --logdir {outcome.experiment_path} (HParams: --logdir "
         f"{experiment_path(outcome.experiment_path, HPARAMS_DIR)})")
    if "://" not in outcome.experiment_path:
        info(f"Optuna dashboard: {dashboard_command(outcome.experiment_path)}")
    unfinished = unfinished_message(outcome)
    if unfinished:  # an interrupted or partly failed search is not a result: non-zero exit
        raise UserError(unfinished)
    if outcome.best_config is None and not outcome.interrupted:
        raise UserError(f"{outcome.experiment_path}: no trial finished with a finite {space.tune.metric}; "
                        "each trial's error is in its folder there (error.txt)")
    return 0
