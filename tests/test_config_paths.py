"""`augment.paths`: named augmented paths in the config, validated at load, dumped as given."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dpda.errors import UserError
from dpda.train.config import config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
PATHS = {"lnl": {"rawboost": {"algo": 1}}, "isd": {"rawboost": {"algo": 2, "P": 5}},
         "mix": {"pipeline": {"steps": [{"gain": {"name": "level", "p": 0.5}}]}}}


def test_paths_parse_in_order_and_round_trip_through_a_dump() -> None:
    cfg = config_from_dict({"augment": {"mode": "dual", "paths": PATHS}})
    assert list(cfg.augment.path_transforms) == ["lnl", "isd", "mix"]
    leaves = [leaf.where for root in cfg.augment.path_transforms.values() for leaf in root.leaves()]
    assert leaves == ["augment.paths.lnl.rawboost", "augment.paths.isd.rawboost",
                      "augment.paths.mix.pipeline.steps[0].gain"]
    assert cfg.augment.paths["isd"].rawboost.P == 5
    dumped = cfg.to_dict()
    assert "rawboost" not in dumped["augment"] and "pipeline" not in dumped["augment"]
    assert dumped["augment"]["paths"]["lnl"] == {"rawboost": {"algo": 1}}  # the keys as given
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(dumped, sort_keys=False)))  # best_config.yaml's way
    assert again == cfg and again.to_dict() == dumped
    assert cfg.augment.rawboost_algo is None


def test_without_paths_the_one_augmented_path_is_aug_and_dumps_unchanged() -> None:
    cfg = load_config(ROOT / "configs/demo.yaml")
    assert list(cfg.augment.path_transforms) == ["aug"]
    assert cfg.augment.path_transforms["aug"] == cfg.augment.transforms
    assert "paths" not in cfg.to_dict()["augment"]


def test_the_shipped_paths_config_and_set_overrides(tmp_path: Path) -> None:
    from dpda.yaml_io import parse_set

    sets = parse_set(["augment.paths.isd.rawboost.P=7", "augment.paths.ssi.rawboost.SNRmin=20"])  # dpda train --set
    cfg = load_config(ROOT / "configs/paths_rawboost.yaml", sets)
    assert list(cfg.augment.path_transforms) == ["lnl", "isd", "ssi"]
    assert [p.rawboost.algo for p in cfg.augment.paths.values()] == [1, 2, 3]
    assert (cfg.augment.paths["isd"].rawboost.P, cfg.augment.paths["ssi"].rawboost.SNRmin) == (7, 20)
    named = config_from_dict({"augment": {"paths": PATHS}}, source="c.yaml")
    raw = named.to_dict()
    from dpda.dotted import set_dotted

    set_dotted(raw, "augment.paths.mix.pipeline.level.p", 0.25)  # a named step inside a path
    assert config_from_dict(raw).augment.paths["mix"].pipeline.leaves().__next__().p == 0.25
    # a config with augment.rawboost switches to paths by setting the section whole
    whole = parse_set(["augment={mode: dual, paths: {lnl: {rawboost: {algo: 1}}}}"])
    assert list(load_config(ROOT / "configs/demo.yaml", whole).augment.path_transforms) == ["lnl"]


@pytest.mark.parametrize("augment, message", [
    ({"paths": {}}, r"augment\.paths: must be a non-empty mapping"),
    ({"paths": ["lnl"]}, r"augment\.paths: must be a non-empty mapping"),
    ({"paths": {"orig": {"rawboost": {}}}}, r"augment\.paths\.orig: 'orig' names the original"),
    ({"paths": {"a-b": {"rawboost": {}}}}, r"augment\.paths\.a-b: a path name must be an identifier"),
    ({"paths": {"a": {}}}, r"augment\.paths\.a\.rawboost: give exactly one of rawboost"),
    ({"paths": {"a": {"rawboost": {}, "pipeline": {"steps": [{"gain": {}}]}}}}, r"augment\.paths\.a\.rawboost: give exactly one"),
    ({"paths": {"a": {"rawboost": {"algo": 99}}}}, r"augment\.paths\.a\.rawboost\.algo: must be in \[0, 8\]"),
    ({"paths": {"a": {"pipeline": {"steps": [{"nope": {}}]}}}}, r"augment\.paths\.a\.pipeline\.steps\[0\]: unknown transform"),
    ({"paths": {"a": {"noise": 1}}}, r"augment\.paths\.a\.noise: unknown key"),
    ({"paths": {"a": {"rawboost": {}}}, "rawboost": {"algo": 3}}, r"augment\.paths: give augment\.paths or augment\.rawboost"),
    ({"mode": "augmented", "paths": {"a": {"rawboost": {}}}}, r"augment\.paths: several augmented paths need augment\.mode dual"),
])
def test_bad_paths_fail_at_load_naming_the_key(augment, message) -> None:
    with pytest.raises(UserError, match="^c\\.yaml: " + message):
        config_from_dict({"augment": augment}, source="c.yaml")


def test_loader_transforms_in_a_path_need_augment_before_crop() -> None:
    paths = {"g722": {"pipeline": {"steps": [{"codec": {"kind": "g722"}}]}}}
    with pytest.raises(UserError, match=r"augment\.paths\.g722\.pipeline\.steps\[0\]\.codec: runs on CPU arrays"):
        config_from_dict({"augment": {"paths": paths}})
    assert config_from_dict({"data": {"augment_before_crop": True}, "augment": {"paths": paths}})
