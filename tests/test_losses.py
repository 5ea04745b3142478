"""OC-softmax and AM-softmax (`loss.name`): loss, gradients (wrt the embeddings and the loss's own
parameters) and scores equal the paper's code (AIR-ASVspoof loss.py, run by
tests/fixtures/air_asvspoof/make_loss_fixtures.py); the head trains in every step mode, lives in
the model file, and `eval.score` defaults to each loss's paper score; bad options name the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import pytest
import torch

from dpda.align import make_aligner
from dpda.errors import UserError
from dpda.models import build_model
from dpda.train.baseline_steps import single_path_step
from dpda.train.config import LOSS_SCORE, config_from_dict
from dpda.train.inference import score_from_logits
from dpda.train.losses import AMSoftmaxHead, OCSoftmaxHead, attach_loss_head, build_detector, loss_function
from dpda.train.step import DualPathStep
from step_support import ConvNet, conv_batch

torch.set_num_threads(1)
FIXTURES = torch.load(Path(__file__).parent / "fixtures/air_asvspoof/losses.pt", weights_only=True)
CPU = torch.device("cpu")


def _ours(name: str, fixture: dict) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(head holding the reference's parameters, embeddings needing grad, dpda targets)."""
    dim = fixture["feats"].shape[1]
    if name == "ocsoftmax":
        head = OCSoftmaxHead(dim).double()
        head.center.data.copy_(fixture["center"])
    else:
        head = AMSoftmaxHead(dim).double()
        head.centers.data.copy_(fixture["centers"].flip(0))  # AIR's row 0 is bona fide, dpda's is spoof
    return head, fixture["feats"].clone().requires_grad_(True), 1 - fixture["labels"]  # AIR: 0 = bona fide


@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("name", ["ocsoftmax", "amsoftmax"])
def test_loss_gradients_and_score_equal_the_reference(name, dim):
    fixture = FIXTURES[f"{name[:2]}{dim}"]
    head, x, y = _ours(name, fixture)
    logits = head(x)
    loss = loss_function(config_from_dict({"loss": {"name": name}}).loss, CPU)(logits, y)
    loss.backward()
    # float64 throughout, but AIR's AM-softmax holds its margin in a float32 one-hot (0.9f)
    tol = dict(rtol=1e-10, atol=1e-12) if name == "ocsoftmax" else dict(rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(loss.detach(), fixture["loss"], **tol)
    torch.testing.assert_close(x.grad, fixture["grad_feats"], **tol)
    if name == "ocsoftmax":
        torch.testing.assert_close(head.center.grad, fixture["grad_center"], **tol)
    else:
        torch.testing.assert_close(head.centers.grad, fixture["grad_centers"].flip(0), **tol)
    score = score_from_logits(logits.detach(), LOSS_SCORE[name])  # the paper's score, by default
    torch.testing.assert_close(score, fixture["score"], rtol=1e-12, atol=1e-12)


def test_options_reach_the_loss():
    fixture = FIXTURES["oc16"]
    head, x, y = _ours("ocsoftmax", fixture)
    default = loss_function(config_from_dict({"loss": {"name": "ocsoftmax"}}).loss, CPU)(head(x), y)
    stricter = loss_function(config_from_dict({"loss": {"name": "ocsoftmax", "m_fake": -0.5}}).loss, CPU)(head(x), y)
    assert stricter > default  # spoofs must now stay below cosine -0.5


def _heads(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.startswith("loss_head.")]


@pytest.mark.parametrize("name", ["ocsoftmax", "amsoftmax"])
@pytest.mark.parametrize("mode", ["separate", "joint", "batched", "single"])
def test_a_training_step_trains_the_loss_head_in_every_mode(name, mode):
    cfg = config_from_dict({"loss": {"name": name}})
    model = attach_loss_head(ConvNet(0), cfg.loss)
    assert _heads(model) and model(conv_batch(0)[0]).shape == (6, 2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = loss_function(cfg.loss, CPU)
    x, xa, y = conv_batch(1)
    if mode == "single":
        stats = single_path_step(model, loss_fn, opt, x, y).to_host()
    else:
        step = DualPathStep(model, loss_fn, opt, make_aligner("pcgrad"), mode=mode)
        assert any(n.startswith("loss_head.") for n in step.layer_names)  # in the aligned gradient
        stats = step(x, xa, y).to_host()
    assert not stats["skipped"]
    for n in _heads(model):
        assert not torch.equal(dict(model.named_parameters())[n], before[n]), n


def test_the_head_is_saved_and_rebuilt_from_the_config():
    cfg = config_from_dict({"model": {"name": "aasist", "preset": "tiny"}, "loss": {"name": "ocsoftmax"}})
    torch.manual_seed(0)
    model = build_detector(cfg)
    assert "loss_head.center" in model.state_dict()
    again = build_detector(cfg)
    again.load_state_dict(model.state_dict(), strict=True)
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = again.eval()(wave)
        torch.testing.assert_close(out, model.eval()(wave))
    assert torch.all(out[:, 0] == 0) and torch.all(out[:, 1].abs() <= 1 + 1e-6)  # (0, cosine)
    ce = build_detector(config_from_dict({"model": {"name": "aasist", "preset": "tiny"}}))
    assert set(ce.state_dict()) == set(build_model("aasist", "tiny").state_dict())  # ce: the bare model


def test_eval_score_defaults_to_the_losses_paper_score():
    assert config_from_dict({}).score_kind == "logit_diff"
    assert config_from_dict({"loss": {"name": "ocsoftmax"}}).score_kind == "logit1"
    assert config_from_dict({"loss": {"name": "amsoftmax"}}).score_kind == "softmax1"
    assert config_from_dict({"loss": {"name": "amsoftmax"}, "eval": {"score": "logit_diff"}}).score_kind == "logit_diff"
    dumped = config_from_dict({"loss": {"name": "amsoftmax", "s": 30}}).to_dict()
    assert config_from_dict(dumped).loss.s == 30 and config_from_dict(dumped).score_kind == "softmax1"


@pytest.mark.parametrize("loss, message", [
    ({"name": "arcface"}, r"^c\.yaml: loss\.name: "),
    ({"name": "ce", "m_real": 0.8}, r"^c\.yaml: loss\.m_real: an option of loss\.name: ocsoftmax, not ce"),
    ({"name": "ocsoftmax", "s": 30}, r"^c\.yaml: loss\.s: an option of loss\.name: amsoftmax, not ocsoftmax"),
    ({"name": "ocsoftmax", "m_real": 0.2, "m_fake": 0.5}, r"^c\.yaml: loss\.m_fake: 0\.5 must be < m_real = 0\.2"),
    ({"name": "ocsoftmax", "alpha": 0}, r"^c\.yaml: loss\.alpha: "),
    ({"name": "amsoftmax", "m": -0.1}, r"^c\.yaml: loss\.m: "),
    ({"name": "amsoftmax", "margin": 0.2}, r"^c\.yaml: loss\.margin: "),
])
def test_bad_loss_options_name_the_key(loss, message):
    with pytest.raises(UserError, match=message):
        config_from_dict({"loss": loss}, source="c.yaml")


@pytest.mark.parametrize("name", ["ocsoftmax", "amsoftmax"])
def test_a_run_trains_saves_and_scores_with_the_loss(name, tmp_path):
    """Trainer -> model.pt (with the head) -> `dpda eval`: the loss's dev loss is finite and the
    scores written are the loss's paper score of the saved model."""
    from dpda.cli import main
    from dpda.metrics import read_scores
    from dpda.train.loop import Trainer
    from dpda.train.model_file import load_trained_model
    from support import demo_dict, write_separable_corpus

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=3)
    raw["loss"] = {"name": name}
    summary = Trainer(config_from_dict(raw), tmp_path / "run", progress=False).fit()
    assert np.isfinite(summary["final_dev_loss"])
    model, state = load_trained_model(tmp_path / "run/model.pt", CPU)
    assert _heads(model) and state["config"]["loss"]["name"] == name
    assert main(["-q", "eval", str(tmp_path / "run/model.pt"), f"dev=csv:{corpus}/dev.csv", "-o", str(tmp_path / "ev"),
                 "--device", "cpu", "--loader-workers", "0"]) == 0
    scores = read_scores(tmp_path / "ev/dev.scores.txt").to_numpy()
    low, high = (-1, 1) if name == "ocsoftmax" else (0, 1)  # a cosine; a softmax probability
    assert np.all((scores >= low - 1e-6) & (scores <= high + 1e-6)) and np.ptp(scores) > 0
