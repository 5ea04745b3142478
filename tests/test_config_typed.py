"""Typed config sections (issue 28 A): model preset/overrides checked at load, `augment.rawboost`
a `RawBoostParams`, `align.options` the rule's options model; dumped configs round-trip unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dpda.cli import main
from dpda.errors import UserError
from dpda.train.config import config_from_dict, load_config

ROOT = Path(__file__).parents[1]


def _config_file(tmp_path: Path, model: dict) -> Path:
    """A config whose corpora do not exist: an error about them means the model was not checked first."""
    raw = {"model": model, "data": {"train": [f"csv:{tmp_path}/missing/train.csv"],
                                    "dev": [f"csv:{tmp_path}/missing/dev.csv"]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(("model", "message"), [
    ({"name": "aasist", "preset": "hgue"}, "model.preset: unknown preset 'hgue' of aasist (choose from full, tiny, released, released_l)"),
    ({"name": "lcnn", "preset": "tiny", "overrides": {"dropuot": 0.1}}, "model.overrides.dropuot: unknown parameter"),
])
def test_model_preset_and_overrides_fail_at_load_naming_the_key(tmp_path, capsys, model, message):
    path = _config_file(tmp_path, model)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {message}")
    # the CLI: one line, before any corpus is read (the corpora above do not exist)
    assert main(["train", str(path), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dpda train: error: {path}: {message}") and "\n" not in err and "missing" not in err


def test_overrides_of_the_model_are_accepted():
    cfg = config_from_dict({"model": {"name": "lcnn", "preset": "tiny", "overrides": {"dropout": 0.1}}})
    assert cfg.model.overrides == {"dropout": 0.1}


_REFUSE = """
import sys
from dpda.cli import main
code = main(sys.argv[1:])
print("ray imported" if "ray" in sys.modules else "ray not imported")
sys.exit(code)
"""


@pytest.mark.parametrize(("search", "base_model", "message"), [
    # the base config's preset
    ({"optim.lr": {"loguniform": [1e-5, 1e-3]}}, {"name": "aasist", "preset": "hgue"}, "model.preset: unknown preset"),
    # a preset the space samples
    ({"model.preset": {"choice": ["tiny", "hgue"]}}, {"name": "aasist", "preset": "tiny"}, "model.preset: unknown preset"),
])
def test_tune_refuses_a_bad_model_before_ray(tmp_path, search, base_model, message):
    base = _config_file(tmp_path, base_model)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "bad", "base": str(base), "search": search}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT / "analysis")])}
    proc = subprocess.run([sys.executable, "-c", _REFUSE, "tune", str(space), "--storage", str(tmp_path / "ray")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith(f"dpda tune: error: {space}") and message in err and "\n" not in err
    assert proc.stdout.strip() == "ray not imported"
    assert not (tmp_path / "ray").exists()


# ------------------------------------------------------------------ typed rawboost / align.options
@pytest.mark.parametrize("name", ["demo", "published", "published_baseline"])
def test_shipped_configs_dump_what_they_say_and_round_trip(name):
    path = ROOT / f"configs/{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path)
    dumped = cfg.to_dict()
    assert dumped["augment"]["rawboost"] == raw["augment"]["rawboost"]  # the keys as written, no defaults added
    assert dumped["align"]["options"] == raw["align"].get("options", {})
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(dumped, sort_keys=False)))  # best_config.yaml's way
    assert again == cfg and again.to_dict() == dumped


def test_rawboost_is_typed_once_with_its_default_algorithm_recorded():
    from dpda.augment import RawBoost, RawBoostParams

    default = config_from_dict({})
    assert isinstance(default.augment.rawboost, RawBoostParams) and default.augment.rawboost.algo == 4
    assert default.to_dict()["augment"]["rawboost"] == {"algo": 4}  # as before the section was typed
    assert config_from_dict({"augment": {"rawboost": {}}}).to_dict()["augment"]["rawboost"] == {}
    cfg = load_config(ROOT / "configs/demo.yaml", {"augment.rawboost.SNRmin": 5, "augment.rawboost.algo": 3.0})
    assert (cfg.augment.rawboost.algo, cfg.augment.rawboost.SNRmin, cfg.augment.rawboost.SNRmax) == (3, 5.0, 40.0)
    assert cfg.to_dict()["augment"]["rawboost"] == {"algo": 3, "SNRmin": 5.0}
    module = RawBoost(cfg.augment.rawboost)
    assert module.params is cfg.augment.rawboost and module.algo == 3
    assert RawBoost(3, SNRmin=5).params == cfg.augment.rawboost
    with pytest.raises(TypeError):
        RawBoost(cfg.augment.rawboost, P=1)


def test_rawboost_relations_name_the_key_under_the_section():
    with pytest.raises(UserError, match=r"^c\.yaml: augment\.rawboost\.SNRmin: 50\.0 must be <= SNRmax = 10\.0$"):
        config_from_dict({"augment": {"rawboost": {"SNRmin": 50, "SNRmax": 10}}}, source="c.yaml")


def test_align_options_are_the_rules_model_and_dump_only_the_given_keys():
    from dpda.align.registry import CAGradOptions, GradVacOptions

    cfg = load_config(ROOT / "configs/published.yaml", {"align.rule": "gradvac"})  # option_defaults: published
    assert isinstance(cfg.align.options, GradVacOptions)
    assert (cfg.align.options.beta, cfg.align.options.positive_only_update) == (0.5, True)
    assert cfg.to_dict()["align"]["options"] == {}  # the published values are not written into dumps
    own = load_config(ROOT / "configs/published.yaml", {"align.rule": "gradvac", "align.options.beta": 0.2})
    assert (own.align.options.beta, own.align.options.positive_only_update) == (0.2, True)
    assert own.to_dict()["align"]["options"] == {"beta": 0.2}
    # a dumped config still takes another rule (a search or --set changing align.rule)
    dumped = cfg.to_dict()
    dumped["align"]["rule"] = "cagrad"
    assert config_from_dict(dumped).align.options == CAGradOptions()
    assert config_from_dict(own.to_dict()) == own


def test_the_aligner_uses_the_options_parsed_at_load():
    from dpda.align import aligner_from_spec

    cfg = load_config(ROOT / "configs/published.yaml", {"align.rule": "gradvac"})
    assert aligner_from_spec(cfg.align)._options is cfg.align.options


def test_a_search_space_sets_typed_keys_by_their_published_names():
    from dpda.tune.search_space import load_search_space

    space = load_search_space(ROOT / "search_spaces/demo.yaml")
    trial = space.trial_config({"augment.rawboost.algo": 3, "augment.rawboost.SNRmin": 7,
                                "align.rule": "cagrad", "align.options.c": 0.3})
    cfg = config_from_dict(trial)
    assert (cfg.augment.rawboost.algo, cfg.augment.rawboost.SNRmin, cfg.align.options.c) == (3, 7.0, 0.3)
