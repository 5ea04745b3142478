"""cluster.yaml passes Ray's own cluster-config validation (prepare, then validate, as `ray up`
does: validating the raw file fails on the defaults that prepare fills in), and its versions agree
with the lock: the image's CUDA with the CUDA torch was built for, the AMI's driver with that
CUDA, the Ray the nodes run with the Ray the lock pins."""

from __future__ import annotations

import copy
import re
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
    assert any("pip install" in c and "--no-deps" in c and "~/dpda" in c for c in cfg["setup_commands"])
    # shared storage for results and telemetry: mounted on the host, visible in the container
    assert any("/mnt/efs" in c and "mount" in c for c in cfg["initialization_commands"])
    assert any("/mnt/efs:/mnt/efs" in o for o in cfg["docker"]["run_options"])
    # the Ray 2.60 token: shipped to every node, required by every `ray start`
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts if "ray start" in c)


# What each CUDA major version needs of the NVIDIA driver (Linux), from NVIDIA's CUDA
# compatibility table: CUDA 12.x >= 525, CUDA 13.x >= 580.
MIN_DRIVER = {12: 525, 13: 580}


def lock_version(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==([^\s;]+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert match, f"{name} is not pinned in requirements.lock"
    return match.group(1)


def torch_cuda() -> tuple[int, int]:
    """The CUDA version the lock's torch is built for: its CUDA runtime wheel's version."""
    major, minor = lock_version("nvidia-cuda-runtime").split(".")[:2]
    return int(major), int(minor)


def test_the_lock_pins_torch_with_the_cuda_runtime_it_was_built_for() -> None:
    import torch

    assert lock_version("torch") == torch.__version__.split("+")[0]
    if torch.version.cuda:  # this venv was installed from the lock
        assert tuple(int(x) for x in torch.version.cuda.split(".")[:2]) == torch_cuda()


def test_image_cuda_matches_torch_and_python_is_311() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+nvidia/cuda:(\d+)\.(\d+)\.\d+-[\w.-]+$", dockerfile, re.MULTILINE)
    assert base, "the Dockerfile's base must be an nvidia/cuda:X.Y.Z-... image"
    assert (int(base.group(1)), int(base.group(2))) == torch_cuda()
    assert "python3.11 -m venv" in dockerfile  # dpda requires Python 3.11
    assert "pip install -r /opt/dpda/requirements.lock" in dockerfile  # dependencies from the lock


def test_nodes_boot_an_image_and_ami_that_fit_the_pinned_torch(raw: dict) -> None:
    from ray.autoscaler._private.aws.config import DEFAULT_AMI

    cfg = prepared(raw)
    major, minor = torch_cuda()
    assert cfg["docker"]["image"].endswith(f"-cu{major}{minor}")  # the tag says which CUDA
    for name, node in cfg["available_node_types"].items():
        image = node["node_config"]["ImageId"]
        # Ray's `latest_dlami` (its DEFAULT_AMI table: Ubuntu 18.04, CUDA 11.2) cannot run it
        assert image.lower() != "latest_dlami" and image not in DEFAULT_AMI.values(), name
        assert image.startswith("resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-"), name
    # every GPU node refuses to start on a driver too old for that CUDA, with one line
    check = [c for c in cfg["initialization_commands"] if "driver_version" in c]
    assert len(check) == 1 and f'-ge {MIN_DRIVER[major]} ]' in check[0]


def test_nodes_run_the_ray_the_lock_pins(raw: dict) -> None:
    import ray

    pinned = lock_version("ray")
    assert ray.__version__ == pinned
    cfg = prepared(raw)
    assert any(f"ray.__version__ == '{pinned}'" in c for c in cfg["setup_commands"])
    # the lock is installed in the image; a node reinstalls only if the repository's lock differs
    assert any(c.startswith("cmp -s ~/dpda/requirements.lock /opt/dpda/requirements.lock ||") for c in cfg["setup_commands"])


def test_ray_validation_catches_a_typo(raw: dict) -> None:
    import jsonschema

    bad = copy.deepcopy(raw)
    bad["available_node_types"]["gpu_worker"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        prepared(bad)
