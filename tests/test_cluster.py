"""cluster.yaml passes Ray's own cluster-config validation (prepare, then validate, as `ray up`
does: validating the raw file fails on the defaults that prepare fills in)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def prepared(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    out = prepare_config(copy.deepcopy(config))
    validate_config(out)
    return out


def test_cluster_yaml_passes_ray_validation(raw: dict) -> None:
    cfg = prepared(raw)
    assert cfg["provider"]["type"] == "aws"
    workers = cfg["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["max_workers"] >= 1  # autoscaling GPU workers
    assert workers["node_config"]["InstanceType"].startswith(("g", "p"))
    assert cfg["head_node_type"] == "head"
    # the repository is shipped to every node and installed there
    assert "~/dpda" in cfg["file_mounts"]
    assert any("pip install" in c and "~/dpda" in c for c in cfg["setup_commands"])
    # shared storage for results and telemetry: mounted on the host, visible in the container
    assert any("/mnt/efs" in c and "mount" in c for c in cfg["initialization_commands"])
    assert any("/mnt/efs:/mnt/efs" in o for o in cfg["docker"]["run_options"])
    assert "py311" in cfg["docker"]["image"]  # dpda requires Python 3.11


def test_ray_validation_catches_a_typo(raw: dict) -> None:
    import jsonschema

    bad = copy.deepcopy(raw)
    bad["available_node_types"]["gpu_worker"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        prepared(bad)
