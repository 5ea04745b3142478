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
    ({"name": "aasist", "preset": "hgue"}, "model.preset: unknown preset 'hgue' of aasist (choose from full, tiny)"),
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
