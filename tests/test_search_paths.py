"""A search space chooses the set of augmented paths (and so K): a `choice` among named values."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import optuna
import pytest

from dpda.errors import UserError
from dpda.train.config import config_from_dict
from dpda.tune.search_space import load_search_space, parse_search_space

ROOT = Path(__file__).resolve().parents[1]


def _draws(space, n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        assert space(trial) is None  # every value, offsets included, is a trial param as used
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def test_the_paths_space_parses_and_every_path_set_resolves_to_a_valid_config() -> None:
    space = load_search_space(ROOT / "search_spaces/paths.yaml", variables={"DPDA_DATA": "data/synth"})
    paths = next(p for p in space.params if p.key == "augment.paths")
    assert paths.kind == "choice" and paths.choices == ("mixed", "lnl_isd", "lnl_isd_ssi")
    seen = {}
    for params in _draws(pickle.loads(pickle.dumps(space)), 24, seed=1):  # Ray pickles the space
        assert params["augment.paths"] in paths.choices  # the sampler sees names only
        cfg = config_from_dict(space.trial_config(params))
        seen[params["augment.paths"]] = list(cfg.augment.path_transforms)
    assert seen == {"mixed": ["mixed"], "lnl_isd": ["lnl", "isd"], "lnl_isd_ssi": ["lnl", "isd", "ssi"]}
    again = load_search_space(ROOT / "search_spaces/paths.yaml", variables={"DPDA_DATA": "data/synth"})
    # what `dpda tune --resume` compares (dpda.tune.tuner._fingerprint; that module imports Ray)
    assert _fingerprint(again) == _fingerprint(space)


def _fingerprint(space) -> str:
    return json.dumps({"base": space.base, "params": [dataclasses.asdict(p) for p in space.params]}, default=str)


def test_named_choices_are_checked_like_other_values(tmp_path: Path) -> None:
    base = {"augment": {"mode": "dual", "paths": {"a": {"rawboost": {"algo": 1}}}}, "data": {"train": [], "dev": []}}
    bad = {"base": base, "search": {"augment.paths": {"choice": {"ok": {"a": {"rawboost": {}}},
                                                                   "broken": {"orig": {"rawboost": {}}}}}}}
    with pytest.raises(UserError, match=r"search\.augment\.paths: value 'broken' is rejected.*augment\.paths\.orig"):
        parse_search_space(bad, source="s.yaml")
    with pytest.raises(UserError, match=r"search\.augment\.paths\.choice: .*non-empty"):
        parse_search_space({"base": base, "search": {"augment.paths": {"choice": {}}}}, source="s.yaml")
    when = {"base": base, "search": {
        "augment.paths": {"choice": {"one": {"a": {"rawboost": {}}}, "two": {"a": {"rawboost": {}}, "b": {"rawboost": {}}}}},
        "optim.lr": {"loguniform": [1e-4, 1e-2], "when": {"augment.paths": "two"}}}}
    space = parse_search_space(when, source="s.yaml")
    for params in _draws(space, 12):
        assert ("optim.lr" in params) == (params["augment.paths"] == "two")
