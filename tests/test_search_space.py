"""Search-space YAML: validation errors name the file and key, conditionals and ordered pairs
are real in the define-by-run space, variables expand, and the shipped spaces are valid."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
import yaml

from dpda.errors import UserError
from dpda.train.config import config_from_dict
from dpda.dotted import get_dotted, has_dotted
from dpda.tune.search_space import load_search_space

ROOT = Path(__file__).parents[1]
BASE = {"model": {"name": "aasist", "preset": "tiny"}, "device": "cpu", "optim": {"epochs": 3},
        "data": {"train": ["asvspoof2019:/corpora/LA:train"], "dev": ["asvspoof2019:/corpora/LA:dev"]}}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write(tmp_path: Path, doc: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def space_doc(search: dict, **extra) -> dict:
    return {"base": BASE, "search": search, **extra}


@pytest.mark.parametrize(
    ("search", "extra", "where", "message"),
    [
        ({"optim.lr": {"uniform": [0.1, 0.01]}}, {}, "search.optim.lr.uniform", "low must be below high"),
        ({"optim.lr": {"loguniform": [0.0, 0.1]}}, {}, "search.optim.lr.loguniform", "log range must be > 0"),
        ({"optim.lr": {"normal": [0, 1]}}, {}, "search.optim.lr", "needs exactly one of"),
        ({"optim.batch_size": {"int": [2, 8.5]}}, {}, "search.optim.batch_size.int[1]", "an integer"),
        ({"optim.lrr": {"uniform": [0.1, 0.2]}}, {}, "search.optim.lrr", "optim.lrr: unknown key"),
        ({"optimm.lr": {"uniform": [0.1, 0.2]}}, {}, "search.optimm.lr", "no such config key"),
        ({"optim.lr": {"choice": []}}, {}, "search.optim.lr.choice", "non-empty list"),
        ({"align.rule": {"choice": ["pcgrad", "pcgard"]}}, {}, "search.align.rule", "rejected by the training config"),
        ({"align.strength": {"uniform": [0.5, 2.0]}}, {}, "search.align.strength", "rejected by the training config"),
        ({"align.rule": {"choice": ["pcgrad", "gradvac"]},
          "align.options.beta": {"uniform": [0.1, 0.5], "when": {"align.rule": ["gradvak"]}}},
         {}, "search.align.options.beta.when.align.rule", "not one of the choices"),
        ({"augment.rawboost.SNRmax": {"int": [10, 40], "offset_from": "augment.rawboost.SNRmin"}},
         {}, "search.augment.rawboost.SNRmax.offset_from", "earlier search key"),
        ({"augment.rawboost.minF": {"uniform": [20, 3000]}, "augment.rawboost.maxF": {"uniform": [1000, 7000]}},
         {}, "search.augment.rawboost.minF", "can exceed augment.rawboost.maxF"),
        ({"optim.lr": {"uniform": [0.1, 0.2], "colour": "red"}}, {}, "search.optim.lr.colour", "unknown option"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"mode": "maximise"}}, "tune.mode", "must be one of min, max"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"scheduler": {"reduction_factor": 1}}},
         "tune.scheduler.reduction_factor", "> 1"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"resources": {"gpus": 1}}}, "tune.resources.gpus", "unknown key"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"set": {"data.train": ["asvspoof2019:${NO_SUCH_DPDA_VAR}/LA"]}},
         "set.data.train[0]", "${NO_SUCH_DPDA_VAR} is not set"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"searchh": {}}, "searchh", "unknown key"),
        # objectives (dpda.tune.objectives): a dev metric of the saved model, on dev
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"metric": "train_loss"}}, "tune.metric",
         "not a dev metric of the saved model"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"objectives": [{"metric": "eer"}, {"metric": "mindcf"}]}},
         "tune.objectives[1].metric", "must be one of loss, eer, min_dcf, act_dcf, cllr"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"objectives": [{"metric": "eer", "set": "eval"}]}},
         "tune.objectives[0].set", "must be dev (data.dev pooled) or dev[INDEX] (one entry of data.dev)"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"objectives": [{"metric": "eer", "set": "dev[1]"}]}},
         "tune.objectives[0].set", "dev[1] is not one of the entries scored on their own (data.dev has 1 corpus spec"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"objectives": [{"metric": "eer"}, {"metric": "eer"}]}},
         "tune", "listed twice"),
        ({"optim.lr": {"uniform": [0.1, 0.2]}}, {"tune": {"metric": "dev_eer", "objectives": [{"metric": "cllr"}]}},
         "tune", "tune.metric or tune.objectives, not both"),
        ({"augment.rawboost.SNRmin": {"int": [1, 10]},
          "augment.rawboost.SNRmax": {"int": [1, 40], "log": True, "offset_from": "augment.rawboost.SNRmin"}},
         {}, "search.augment.rawboost.SNRmax.int", "linear scale"),
    ],
)
def test_bad_search_space_names_file_and_key(tmp_path: Path, search, extra, where, message) -> None:
    path = write(tmp_path, space_doc(search, **extra))
    with pytest.raises(UserError) as info:
        load_search_space(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {where}: "), text
    assert message in text, text


@pytest.mark.parametrize(
    ("search", "where", "message"),
    [
        # Optuna would lower high to 0.4 (or 8) with only a warning
        ({"optim.lr": {"uniform": [0.1, 0.5], "step": 0.15}}, "search.optim.lr.uniform", "must be a multiple of step"),
        ({"optim.batch_size": {"int": [2, 9], "step": 2}}, "search.optim.batch_size.int", "must be a multiple of step"),
        # these crashed with AttributeError instead of naming the key
        ({"augment.rawboost.SNRmin": {"int": [0, 10]},
          "augment.rawboost.SNRmax": {"int": [1, 40], "offset_from": 5}},
         "search.augment.rawboost.SNRmax.offset_from", "must be a string"),
        ({"optim.lr": {"uniform": [0.1, 0.2], "when": {5: [1]}}}, "search.optim.lr.when[5]", "must be a string"),
        # a list where a value belongs reached the training config as the compared value
        ({"optim.lr": {"uniform": [0.1, 0.2], "when": {"optim.epochs": [[3]]}}},
         "search.optim.lr.when.optim.epochs[0]", "must be a scalar"),
    ],
)
def test_distribution_checks_added_with_the_pydantic_models(tmp_path: Path, search, where, message) -> None:
    path = write(tmp_path, space_doc(search))
    with pytest.raises(UserError) as info:
        load_search_space(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {where}: "), text
    assert message in text, text


def test_every_accepted_distribution_form_parses_to_its_values() -> None:
    from dpda.tune.search_space import parse_search_space

    search = {
        "optim.lr": {"uniform": [0.1, 0.7], "step": 0.2},
        "optim.weight_decay": {"loguniform": [1e-6, 1e-3]},
        "optim.batch_size": {"int": [2, 8], "step": 3, "log": False},
        "optim.epochs": {"int": [1, 4], "log": True},
        "align.rule": {"choice": ["pcgrad", "gradvac"]},
        "align.options.beta": {"uniform": [0.1, 0.5], "when": {"align.rule": "gradvac"}},
        "augment.rawboost.SNRmin": {"int": [0, 10]},
        "augment.rawboost.SNRmax": {"int": [5, 20], "offset_from": "augment.rawboost.SNRmin"},
    }
    space = parse_search_space({"base": BASE, "search": search})
    got = {p.key: (p.kind, p.low, p.high, p.choices, p.log, p.step, p.when, p.offset_from) for p in space.params}
    assert got == {
        "optim.lr": ("uniform", 0.1, 0.7, (), False, 0.2, (), None),
        "optim.weight_decay": ("loguniform", 1e-6, 1e-3, (), False, None, (), None),
        "optim.batch_size": ("int", 2, 8, (), False, 3, (), None),
        "optim.epochs": ("int", 1, 4, (), True, None, (), None),
        "align.rule": ("choice", None, None, ("pcgrad", "gradvac"), False, None, (), None),
        "align.options.beta": ("uniform", 0.1, 0.5, (), False, None, (("align.rule", ("gradvac",)),), None),
        "augment.rawboost.SNRmin": ("int", 0, 10, (), False, None, (), None),
        "augment.rawboost.SNRmax": ("int", 5, 20, (), False, None, (), "augment.rawboost.SNRmin"),
    }


def test_bad_base_config_is_reported_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"base": {**BASE, "optim": {"lr": -1}}, "search": {"align.strength": {"uniform": [0.1, 1]}}})
    with pytest.raises(UserError, match=r"space\.yaml \(base \+ set\): optim\.lr: must be > 0"):
        load_search_space(path)


def test_base_path_variables_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/base.yaml").write_text(yaml.safe_dump(BASE))
    doc = {
        "base": "cfg/base.yaml",  # relative to the search-space file
        "set": {"data.train": ["asvspoof2019:${DPDA_DATA}/LA:train"], "data.length": 8000,
                "data.dev": ["asvspoof2019:${DPDA_DATA}/LA:dev"]},
        "search": {"optim.lr": {"loguniform": [1e-5, 1e-3]}},
    }
    space = load_search_space(write(tmp_path, doc), variables={"DPDA_DATA": "/corpora"},
                              overrides={"optim.epochs": 2})
    assert space.base["data"]["train"] == ["asvspoof2019:/corpora/LA:train"]
    assert space.base["data"]["length"] == 8000 and space.base["model"]["preset"] == "tiny"
    assert space.max_epochs() == 2  # ASHA's max_t follows optim.epochs unless set


def sample(space, n: int, seed: int = 0) -> list[dict]:
    """n define-by-run draws through optuna directly; returns what Tune would pass a trial (the
    study's params: every key is stored under its config key, as used)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        assert space(trial) is None
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def test_conditionals_and_offsets_in_the_rawboost_space() -> None:
    space = load_search_space(ROOT / "search_spaces/rawboost.yaml")
    draws = sample(space, 60)
    algos = {d["augment.rawboost.algo"] for d in draws}
    assert len(algos) >= 6
    for d in draws:
        algo = d["augment.rawboost.algo"]
        # SNR only for algorithms with SSI (3, 4, 6, 7); ISD parameters only with ISD; N_f only with LnL
        assert ("augment.rawboost.SNRmin" in d) == (algo in (3, 4, 6, 7))
        assert ("augment.rawboost.P" in d) == (algo in (2, 4, 5, 7, 8))
        assert ("augment.rawboost.N_f" in d) == (algo in (1, 4, 5, 6, 8))
        cfg = space.trial_config(d)
        rb = get_dotted(cfg, "augment.rawboost")
        for (lo, hi), (w_lo, w_hi) in zip((("minF", "maxF"), ("minBW", "maxBW"), ("minCoeff", "maxCoeff"), ("SNRmin", "SNRmax")),
                                          ((1000, 6900), (100, 1500), (10, 50), (5, 30))):  # the file's widths
            if lo in rb:
                # an offset key is stored as the value used: its partner's plus a width from the file's range
                assert w_lo <= rb[hi] - rb[lo] <= w_hi, (lo, rb)
                assert d[f"augment.rawboost.{hi}"] == rb[hi]
        assert not [k for k in d if ":" in k]  # no internal names (the old `:offset` widths)
        assert rb.get("maxF", 0) < 8000
        # inactive parameters keep the base value (here: absent, i.e. RawBoost's default)
        if algo == 2:
            assert not has_dotted(cfg, "augment.rawboost.minF")
        config_from_dict(cfg)  # every draw is a valid training config


def test_define_by_run_space_pickles_and_is_deterministic() -> None:
    space = load_search_space(ROOT / "search_spaces/demo.yaml")
    again = pickle.loads(pickle.dumps(space))  # Ray saves it with the searcher state
    assert sample(again, 8, seed=3) == sample(space, 8, seed=3)
    for d in sample(space, 30):
        assert ("align.options.beta" in d) == (d["align.rule"] == "gradvac")
        assert ("align.options.c" in d) == (d["align.rule"] == "cagrad")
        assert ("align.strength" in d) == (d["align.rule"] != "none")


@pytest.mark.parametrize("name", ["demo", "paper", "rawboost", "nes2net_x", "sls"])
def test_shipped_search_spaces_are_valid(name: str) -> None:
    space = load_search_space(ROOT / f"search_spaces/{name}.yaml")
    assert space.name == name and space.params
    assert space.tune.key == "model_dev_eer" and space.tune.mode == "min"
    if name == "paper":
        assert space.base["model"]["name"] == "ssl_conformer_tcm"
        assert space.base["augment"]["rawboost"]["algo"] == 4
        lr = next(p for p in space.params if p.key == "optim.lr")
        assert lr.low < 1e-6 < lr.high and lr.kind == "loguniform"
        assert space.tune.workers == 2 and space.tune.gpu == 1
    if name in ("nes2net_x", "sls"):  # the published setups, the model's own input length
        assert space.base["model"] == {**space.base["model"], "name": f"ssl_{name}", "preset": "full"}
        assert space.base["data"]["length"] == 64600
    if name == "demo":
        assert space.base["device"] == "cpu" and space.base["model"]["preset"] == "tiny"
        assert space.max_epochs() <= 10 and space.tune.gpu == 0  # CPU-sized: ASHA stops most trials early


@pytest.mark.parametrize(("argv", "message"), [
    (["--num-samples", "0"], "--num-samples: must be >= 1, got 0"),
    (["--mode", "max", "--metric", ""], "--metric: must not be empty, got ''"),
    (["--metric", "train_loss"], "--metric: 'train_loss' is not a dev metric of the saved model; choose from "
     "dev_loss, dev_eer, dev_min_dcf, dev_act_dcf, dev_cllr (or tune.objectives for several), got 'train_loss'"),
    (["--cpus-per-worker", "0"], "--cpus-per-worker: a trial (or each worker) needs cpu > 0 or gpu > 0"),
    (["--gpus-per-worker", "-1"], "--gpus-per-worker: must be >= 0, got -1.0"),
])
def test_tune_command_line_overrides_are_validated_like_the_file(tmp_path: Path, argv, message) -> None:
    from dpda.cli import command_parser
    from dpda.commands.tune import load_space

    path = write(tmp_path, space_doc({"optim.lr": {"loguniform": [1e-5, 1e-3]}}))
    args = command_parser("tune").parse_args([str(path), *argv])
    with pytest.raises(UserError) as info:
        load_space(args)
    assert str(info.value) == message


def test_options_held_as_values_give_the_space_the_command_line_gives(tmp_path: Path) -> None:
    """What quickstart builds directly (no argv) equals what `dpda tune` parses."""
    from dpda.cli import command_parser
    from dpda.commands.tune import load_space, space_with_options

    space = ROOT / "search_spaces/demo.yaml"
    parsed = load_space(command_parser("tune").parse_args([
        str(space), "--data", str(tmp_path), "--num-samples", "3", "--epochs", "2", "--set", "data.length=8000"]))
    direct = space_with_options(space, data=tmp_path, sets=["data.length=8000"], epochs=2, num_samples=3)
    assert direct == parsed
    assert (direct.tune.num_samples, direct.tune.max_t, direct.base["data"]["length"]) == (3, 2, 8000)


def test_tune_section_cross_checks_name_the_section(tmp_path: Path) -> None:
    doc = space_doc({"optim.lr": {"loguniform": [1e-5, 1e-3]}},
                    tune={"scheduler": {"grace_period": 3, "max_t": 2}})
    with pytest.raises(UserError, match=r"space\.yaml: tune: scheduler max_t \(2\) must be >= grace_period \(3\)$"):
        load_search_space(write(tmp_path, doc))
    loaded = load_search_space(write(tmp_path, space_doc({"optim.lr": {"loguniform": [1e-5, 1e-3]}},
                                                         tune={"resources": {"cpu": 2, "workers": 2}})))
    assert (loaded.tune.cpu, loaded.tune.workers, loaded.tune.grace_period) == (2.0, 2, 1)


def test_objectives_name_the_saved_models_dev_metrics(tmp_path: Path) -> None:
    """One objective (tune.metric, any spelling of a dev metric) or several (tune.objectives):
    each is read from the key the trainer reports for the model it saves."""
    search = {"optim.lr": {"uniform": [0.1, 0.2]}}
    one = load_search_space(write(tmp_path, space_doc(search, tune={"metric": "dev_min_dcf"})))
    assert [g.key for g in one.tune.goals] == ["model_dev_min_dcf"] and one.tune.key == "model_dev_min_dcf"
    default = load_search_space(write(tmp_path, space_doc(search)))
    assert default.tune.key == "model_dev_eer"
    several = load_search_space(write(tmp_path, space_doc(
        search, tune={"objectives": [{"metric": "eer"}, {"metric": "min_dcf", "set": "dev"}]})))
    assert [g.key for g in several.tune.goals] == ["model_dev_eer", "model_dev_min_dcf"]
    assert pickle.loads(pickle.dumps(several)) == several  # Ray keeps it with the searcher state
    # --metric on the command line replaces the file's objectives
    from dpda.commands.tune import space_with_options

    path = write(tmp_path, space_doc(search, tune={"objectives": [{"metric": "eer"}, {"metric": "min_dcf"}]}))
    assert [g.key for g in space_with_options(path, metric="dev_cllr").tune.goals] == ["model_dev_cllr"]
