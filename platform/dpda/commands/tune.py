"""`dpda tune SEARCH_SPACE.yaml`: a Ray Tune + Optuna search (ASHA on the trial's result per epoch:
the dev metric of the model it saves, dpda.train.trial_result; several objectives: a Pareto front).

Options scale a search down or up without editing the file (`--num-samples`, `--epochs`,
`--set KEY=VALUE`, `--workers`); `--resume` continues an interrupted experiment.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    p.add_argument("--metric", default=None,
                   help="dev metric of the saved model that ASHA and Optuna optimise: dev_eer, dev_min_dcf, "
                        "dev_act_dcf, dev_cllr or dev_loss (replaces tune.metric / tune.objectives)")
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
    return space_with_options(args.search_space, data=args.data, sets=args.set, epochs=args.epochs,
                              **{field: getattr(args, option) for field, option in _TUNE_OPTIONS.items()})


def space_with_options(search_space: Path, *, data: Path | None = None, sets: Sequence[str] = (),
                       epochs: int | None = None, **tune_options: Any):
    """The search space with `dpda tune`'s options applied and validated, for callers that hold
    the values rather than a command line (quickstart). `tune_options` are TuneSettings fields
    (num_samples, workers, ...); None leaves one as the file sets it. Errors name the option."""
    from dpda.tune.search_space import load_search_space
    from dpda.yaml_io import parse_set

    variables = {"DPDA_DATA": str(data.resolve())} if data else {}
    overrides = parse_set(list(sets))
    if epochs is not None:
        overrides["optim.epochs"] = epochs
    space = load_search_space(search_space, variables=variables, overrides=overrides)
    changes = {field: value for field, value in tune_options.items() if value is not None}
    if "metric" in changes:  # --metric replaces the file's objective(s)
        changes["objectives"] = ()
    if epochs is not None:
        changes["max_t"] = epochs
        changes["grace_period"] = min(space.tune.grace_period, epochs)
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


def check_name(name: str | None) -> None:
    """--name follows the rule of a search space's `name:` (one folder inside --storage)."""
    from dpda.tune.search_space import name_problem

    problem = None if name is None else name_problem(name)
    if problem:
        raise UserError(f"--name {name}: {problem}")


def run(args: argparse.Namespace) -> int:
    # The name, the base config and every distribution's end points are validated first: a bad
    # config or search space is refused before Ray is even imported.
    check_name(args.name)
    space = load_space(args)

    from dpda_analysis.location import is_uri

    from dpda.console import info
    from dpda.tune.session import init_ray, tune_verbosity
    from dpda.tune.study_files import HPARAMS_DIR, dashboard_command
    from dpda.tune.tuner import (check_corpora, check_experiment, experiment_location, experiment_path,
                                 format_outcome, hold_experiment, run_search, storage_location, unfinished_message)

    storage = storage_location(args.storage)  # reachable and writable, before anything slow
    check_corpus_paths(space.base, space.source)
    exp = experiment_location(space, storage, args.name)
    # one driver per experiment, and a resumed one's files vouched for, before Ray starts: a
    # refused driver pays neither Ray's start nor the corpus check
    with hold_experiment(exp):
        check_experiment(space, exp, args.resume)
        checked = check_corpora(space)  # every corpus decoded once, here, before Ray starts
        init_ray(args.address)
        info(f"Search {space.source}: {len(space.params)} parameters, {space.tune.num_samples} trials, "
             f"objective{'s' if len(space.tune.goals) > 1 else ''} "
             f"{', '.join(g.key for g in space.tune.goals)} ({space.tune.mode}), {space.tune.workers} worker(s) per trial")
        outcome = run_search(space, storage=storage, name=args.name, resume=args.resume, verbose=tune_verbosity(),
                             checked=checked, locked=True)
    print(format_outcome(space, outcome), flush=True)
    info(f"TensorBoard: tensorboard --logdir {outcome.experiment_path} (HParams: --logdir "
         f"{experiment_path(outcome.experiment_path, HPARAMS_DIR)})")
    if not is_uri(outcome.experiment_path):
        info(f"Optuna dashboard: {dashboard_command(outcome.experiment_path)}")
    unfinished = unfinished_message(outcome)
    if unfinished:  # an interrupted or partly failed search is not a result: non-zero exit
        raise UserError(unfinished)
    if outcome.best_config is None and not outcome.interrupted:
        raise UserError(f"{outcome.experiment_path}: no trial saved a model with a finite {space.tune.key}; "
                        "each trial's error is in its folder there (error.txt)")
    return 0
