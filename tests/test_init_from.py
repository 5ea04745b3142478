"""`model.init_from`: a run starts from a dpda or released checkpoint in every augmentation mode
and rule (the first step's weights are the file's), records where it started (config.json,
summary.json, model.pt), and refuses a file that does not fit its model in one line."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from dpda.errors import UserError
from dpda.models import build_model
from dpda.models.released_aasist import released_to_dpda
from dpda.train.checkpoint import save_checkpoint
from dpda.train.config import config_from_dict
from dpda.train.loop import Trainer
from dpda.train.model_file import MODEL_FORMAT
from support import demo_dict, write_separable_corpus

HERE = Path(__file__).parent / "fixtures" / "aasist"
sys.path.insert(0, str(HERE))
torch.set_num_threads(1)
AASIST_L = torch.load(HERE / "aasist_fixtures.pt", weights_only=True)["AASIST-L"]["state"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_separable_corpus(tmp_path_factory.mktemp("corpus"))


def _first_step_states(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The model's state dict as each run's first training step starts."""
    seen: list[dict[str, torch.Tensor]] = []
    make = Trainer._make_train_step

    def capturing(self):
        step = make(self)

        def first(*args):
            if not getattr(self, "_seen", False):
                self._seen = True
                seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
            return step(*args)
        return first
    monkeypatch.setattr(Trainer, "_make_train_step", capturing)
    return seen


def _raw(corpus: Path, **model) -> dict:
    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=2)
    raw["data"]["eval"] = {}
    raw["model"].update(model)
    return raw


@pytest.mark.parametrize("augment,rule", [({"mode": "augmented"}, "none"), ({"mode": "dual"}, "none"),
                                          ({"mode": "dual"}, "pcgrad")])
def test_runs_start_from_a_dpda_model_file(corpus, tmp_path, monkeypatch, augment, rule):
    start = build_model("lcnn", "tiny", seed=99)
    cfg = config_from_dict(_raw(corpus))
    path = tmp_path / "start.pt"
    save_checkpoint({"format": MODEL_FORMAT, "model": start.state_dict(), "config": cfg.to_dict()}, path)
    raw = _raw(corpus, init_from=str(path))
    raw["augment"].update(augment)
    raw["align"]["rule"] = rule
    seen = _first_step_states(monkeypatch)
    summary = Trainer(config_from_dict(raw), tmp_path / "run", progress=False).fit()
    assert seen and all(torch.equal(seen[0][k], v) for k, v in start.state_dict().items())
    record = {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "format": "dpda"}
    assert summary["init_from"] == record
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["init_from"] == record
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["init_from"] == str(path)
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["init_from"] == record


def test_a_run_starts_from_the_released_aasist_l(corpus, tmp_path, monkeypatch):
    path = tmp_path / "AASIST-L.pth"
    torch.save(AASIST_L, path)
    raw = _raw(corpus, name="aasist", preset="released_l", init_from=str(path))
    raw["optim"]["max_steps_per_epoch"] = 1
    raw["align"]["rule"] = "pcgrad"
    seen = _first_step_states(monkeypatch)
    summary = Trainer(config_from_dict(raw), tmp_path / "run", progress=False).fit()
    expected = released_to_dpda(AASIST_L)
    assert seen[0].keys() == expected.keys() and all(torch.equal(seen[0][k], v) for k, v in expected.items())
    assert summary["init_from"]["format"] == "aasist"


def test_init_from_refusals_name_the_key(corpus, tmp_path):
    path = tmp_path / "AASIST-L.pth"
    torch.save(AASIST_L, path)
    wrong_preset = Trainer(config_from_dict(_raw(corpus, name="aasist", preset="full", init_from=str(path))),
                           tmp_path / "a", progress=False)
    with pytest.raises(UserError, match=r"model\.init_from: .*aasist checkpoints start only aasist:released, "
                                        r"aasist:released_l; this config trains aasist:full"):
        wrong_preset._build()
    lcnn = tmp_path / "lcnn.pt"
    save_checkpoint({"format": MODEL_FORMAT, "model": build_model("lcnn", "tiny").state_dict()}, lcnn)
    wrong_model = Trainer(config_from_dict(_raw(corpus, name="rawnet2", preset="tiny", init_from=str(lcnn))),
                          tmp_path / "b", progress=False)
    with pytest.raises(UserError) as err:
        wrong_model._build()
    assert "\n" not in str(err.value) and str(err.value).startswith(f"model.init_from: {lcnn}: the weights do not fit")
    missing = Trainer(config_from_dict(_raw(corpus, init_from=str(tmp_path / "nope.pt"))), tmp_path / "c", progress=False)
    with pytest.raises(UserError, match="model.init_from: .*nope.pt: no such checkpoint file"):
        missing._build()
    with pytest.raises(UserError, match="model.init_format"):
        config_from_dict(_raw(corpus, init_from=str(path), init_format="clovaai"))
