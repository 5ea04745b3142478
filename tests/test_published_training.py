"""The published training behaviours beyond the step (docs/published.md), against fixtures recorded
from the published code (tests/fixtures/published/make_training_fixtures.py): the dev loss."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dpda.train.config import load_config
from dpda.train.dev_loss import PUBLISHED_DEV_BATCH, dev_loss

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "published"
sys.path.insert(0, str(FIXTURES))
import step_model as M  # noqa: E402

torch.set_num_threads(1)
FIX = torch.load(FIXTURES / "training_fixtures.pt", weights_only=True)


def _terms(logits: torch.Tensor, labels: torch.Tensor, weights=(0.1, 0.9)) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor(weights)
    return F.cross_entropy(logits, labels, weight=w, reduction="none").double(), w[labels].double()


def test_published_dev_loss_equals_the_published_evaluate_accuracy():
    dev = FIX["dev"]
    terms, weights = _terms(dev["logits"], dev["labels"])
    assert len(terms) % PUBLISHED_DEV_BATCH  # the fixture has a short last batch
    assert dev_loss(terms, weights, "published") == pytest.approx(dev["value"], rel=1e-6)
    pooled = dev_loss(terms, weights, "pooled")
    assert pooled == pytest.approx(float(F.cross_entropy(dev["logits"], dev["labels"], weight=torch.tensor([0.1, 0.9]))), rel=1e-6)
    assert abs(pooled - dev["value"]) > 1e-3  # the two definitions differ on this set


def test_dev_loss_definitions_agree_on_one_batch_and_with_equal_weights():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(8, 2, generator=gen), torch.tensor([0, 1, 0, 0, 1, 0, 0, 0])
    terms, weights = _terms(logits, labels)
    assert dev_loss(terms, weights, "published") == pytest.approx(dev_loss(terms, weights, "pooled"), rel=1e-12)
    logits, labels = torch.randn(30, 2, generator=gen), torch.randint(0, 2, (30,), generator=gen)
    terms, weights = _terms(logits, labels, (1.0, 1.0))  # unweighted: both are the plain mean
    assert dev_loss(terms, weights, "published") == pytest.approx(float(terms.mean()), rel=1e-12)
