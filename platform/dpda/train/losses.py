"""The training losses (`loss.name`): class-weighted cross-entropy, OC-softmax and AM-softmax.

OC-softmax (Zhang, Jiang and Duan 2021, "One-class learning towards synthetic voice spoofing
detection") pulls bona fide embeddings to within cosine `m_real` of one learned center and pushes
spoofs below `m_fake`; AM-softmax is the additive-margin softmax over two learned class centers.
Both are defined as in the paper's code (github yzyouzhang/AIR-ASVspoof, loss.py; defaults from
its train.py), which tests/fixtures/air_asvspoof/ runs for the equivalence tests.

Their parameters (the center, the class centers) live in the model, as its `loss_head` module,
and a forward hook passes the detector's (batch, 2) output through it: the embedding is that
output, and the model then returns the head's (batch, 2) logits (index 1 bona fide). So the
optimiser, the dual-path alignment (the head's gradient is part of each path's gradient), the
model file and `dpda eval` take them like any other parameter, and every step mode runs the loss
per path unchanged. The logits are (0, cosine to the center) for OC-softmax, so `logit1` (and
`logit_diff`) is the paper's score, and the two class cosines for AM-softmax, whose paper score
is `softmax1` (`dpda.train.config.LOSS_SCORE`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from dpda.models import build_model
from dpda.train.config import LossConfig, TrainConfig
from dpda.train.step_parts import LossFn




class OCSoftmaxHead(nn.Module):
    """Embedding (B, D) -> (B, 2) logits (0, cosine to the learned bona fide center)."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.center = nn.Parameter(torch.randn(1, dim))
        nn.init.kaiming_uniform_(self.center, 0.25)  # the reference initialisation

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(emb, dim=1) @ F.normalize(self.center, dim=1).T  # (B, 1)
        return torch.cat([torch.zeros_like(cos), cos], dim=1)


class AMSoftmaxHead(nn.Module):
    """Embedding (B, D) -> (B, 2) cosines to the learned class centers (row 0 spoof, 1 bona fide)."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(2, dim))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, dim=1) @ F.normalize(self.centers, dim=1).T


def ocsoftmax_loss(logits: torch.Tensor, target: torch.Tensor, m_real: float, m_fake: float, alpha: float) -> torch.Tensor:
    """mean softplus(alpha (m_real - cos)) over bona fide, softplus(alpha (cos - m_fake)) over spoofs."""
    cos = logits[:, 1]
    margin = torch.where(target == 1, m_real - cos, cos - m_fake)
    return F.softplus(alpha * margin).mean()


def amsoftmax_loss(logits: torch.Tensor, target: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """Cross-entropy of s (cos - m onehot(target)): the true class's cosine must win by m."""
    return F.cross_entropy(s * (logits - m * F.one_hot(target, logits.shape[1]).to(logits.dtype)), target)


HEADS: dict[str, Callable[[], nn.Module]] = {"ocsoftmax": OCSoftmaxHead, "amsoftmax": AMSoftmaxHead}


def loss_function(cfg: LossConfig, device: torch.device) -> LossFn:
    """The mean loss of (logits, target) for `cfg.name` with its options."""
    if cfg.name == "ocsoftmax":
        return lambda logits, y: ocsoftmax_loss(logits, y, cfg.m_real, cfg.m_fake, cfg.alpha)
    if cfg.name == "amsoftmax":
        return lambda logits, y: amsoftmax_loss(logits, y, cfg.s, cfg.m)
    return nn.CrossEntropyLoss(weight=torch.tensor(cfg.class_weights, dtype=torch.float32, device=device))


def _through_head(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return module.loss_head(output)


def attach_loss_head(model: nn.Module, cfg: LossConfig) -> nn.Module:
    """`model` with the loss's parameters as `model.loss_head`, applied to its output (no-op for ce)."""
    if cfg.name in HEADS:
        model.add_module("loss_head", HEADS[cfg.name]())
        model.register_forward_hook(_through_head)
    return model


def build_detector(cfg: TrainConfig, overrides: dict[str, Any] | None = None) -> nn.Module:
    """The model a config trains and scores: `model.*`'s detector with `loss.*`'s head.
    `overrides`: the model's build arguments (default `model.overrides`; training passes
    `model.build_overrides()`, which adds the front end's dropout)."""
    overrides = cfg.model.overrides if overrides is None else overrides
    return attach_loss_head(build_model(cfg.model.name, cfg.model.preset, **overrides), cfg.loss)
