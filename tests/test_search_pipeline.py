"""Search spaces reach into `augment.pipeline`: named steps (`augment.pipeline.NAME.KEY`) and
indices (`KEY[i]`) as dotted keys, in search spaces and `--set`; search_spaces/pipeline.yaml
parses, samples, and every sampled trial loads as a TrainConfig with the sampled values in it."""

from __future__ import annotations

import copy

import optuna
import pytest

from dpda.dotted import get_dotted, has_dotted, set_dotted
from dpda.errors import UserError
from dpda.train.config import config_from_dict
from dpda.tune.search_space import load_search_space, parse_search_space
from support import ROOT

TREE = {"augment": {"pipeline": {"steps": [
    {"one_of": {"name": "mix", "steps": [
        {"reverb": {"name": "rir", "bank": "rirs:r"}},
        {"noise": {"name": "musan", "bank": "musan:m", "categories": {"noise": {"snr": [0, 15]}}}}]}},
    {"gain": {"db": [-3, 3]}}]}}}


def test_names_and_indices_address_the_same_values():
    assert get_dotted(TREE, "augment.pipeline.musan.categories.noise.snr[1]") == 15
    assert get_dotted(TREE, "augment.pipeline.steps[0].one_of.steps[1].noise") is get_dotted(TREE, "augment.pipeline.musan")
    assert get_dotted(TREE, "augment.pipeline.steps[1].gain.db[0]") == -3
    assert not has_dotted(TREE, "augment.pipeline.nope.p") and not has_dotted(TREE, "augment.pipeline.steps[5]")
    tree = copy.deepcopy(TREE)
    set_dotted(tree, "augment.pipeline.musan.p", 0.25)
    set_dotted(tree, "augment.pipeline.musan.categories.noise.snr[0]", 5.0)
    set_dotted(tree, "augment.pipeline.steps[1].gain.p", 0.5)
    cfg = config_from_dict(tree)
    noise, gain = [leaf for leaf in cfg.augment.transforms.leaves() if leaf.name in ("noise", "gain")]
    assert noise.p == 0.25 and noise.params.categories["noise"].snr == [5.0, 15.0] and gain.p == 0.5
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()  # names survive the dump
    with pytest.raises(UserError, match=r"steps\[7\].gain.p: no such key"):
        set_dotted(tree, "augment.pipeline.steps[7].gain.p", 1)


def test_step_names_are_unique_and_not_pipeline_keys():
    steps = [{"gain": {"name": "a"}}, {"chain": {"name": "a", "steps": [{"clip": {}}]}}]
    with pytest.raises(UserError, match=r"steps\[1\].chain.name: 'a' already names augment.pipeline.steps\[0\].gain"):
        config_from_dict({"augment": {"pipeline": {"steps": steps}}})
    with pytest.raises(UserError, match=r"steps\[0\].gain.name: .*'steps' is a pipeline key"):
        config_from_dict({"augment": {"pipeline": {"steps": [{"gain": {"name": "steps"}}]}}})


def test_the_pipeline_search_space_samples_configs_that_load():
    space = load_search_space(ROOT / "search_spaces/pipeline.yaml", {"DPDA_DATA": "/data", "DPDA_BANKS": "/banks"})
    assert {p.key for p in space.params} >= {"augment.pipeline.rir.p", "augment.pipeline.musan.p",
                                             "augment.pipeline.musan.categories.noise.snr[0]"}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_off = seen_on = False
    for _ in range(12):
        trial = study.ask()
        assert space(trial) is None  # suggests first: trial.params holds the draws, as used, after it
        params = dict(trial.params)
        cfg = config_from_dict(space.trial_config(params), "trial")
        leaves = {leaf.label: leaf for leaf in cfg.augment.transforms.leaves()}
        assert leaves["musan"].params.bank == "musan:/banks/musan" and leaves["rir"].params.bank == "rirs:/banks/RIRS_NOISES"
        for name in ("rir", "musan", "rawboost"):
            assert leaves[name].p == params[f"augment.pipeline.{name}.p"]
        noise = leaves["musan"].params.categories
        if leaves["musan"].p > 0:
            seen_on = True
            low, high = noise["noise"].snr
            assert low == params["augment.pipeline.musan.categories.noise.snr[0]"] and low <= high
            assert noise["speech"].snr[1] == params["augment.pipeline.musan.categories.speech.snr[1]"]
        else:
            seen_off = True
            assert "augment.pipeline.musan.categories.noise.snr[0]" not in params  # conditional on p > 0
            assert noise["noise"].snr == [0.0, 15.0]
        if leaves["rawboost"].p > 0:
            assert leaves["rawboost"].params.algo == params["augment.pipeline.rawboost.algo"]
        study.tell(trial, 0.0)
    assert seen_on and seen_off


def test_a_search_key_into_a_missing_step_is_refused_at_load():
    raw = {"base": str(ROOT / "search_spaces/../configs/demo.yaml"),
           "set": {"augment": {"mode": "dual", "pipeline": {"steps": [{"gain": {"name": "g"}}]}}},
           "search": {"augment.pipeline.h.p": {"uniform": [0, 1]}}}
    with pytest.raises(UserError, match=r"search.augment.pipeline.h.p: no such config key"):
        parse_search_space(raw, source="s.yaml")
