"""SLS back end (Zhang et al., ACM MM 2024: XLS-R + the sensitive layer selection classifier;
github QiShanZhang/SLSforADD, model.py), on every XLS-R transformer layer.

Each layer's output (B, frames, D) is averaged over time and scored by one shared
Linear(D, 1) + sigmoid; the layers are summed with those gates, then BatchNorm + SELU, a 3x3
max-pool over (frames, D), and two fully connected layers on the flattened map. The first of
them reads a fixed number of frames: 201 for the published 64,600-sample inputs (`frames`, so
`data.length: 64600` for the full preset), which makes the published model 23,399,429
trainable back-end parameters. The output is a log-softmax (the published one; its
cross-entropy equals the logits' and `logit1` is log p(bona fide)).

The layers are fairseq's `layer_results`, every transformer layer's output before the closing
LayerNorm (the SSL front end's `ssl_layers: all`).

`published_to_dpda` maps a published state dict onto dpda's SSLDetector names:

| published (model.py)          | dpda (SSLDetector)                  |
|-------------------------------|-------------------------------------|
| `ssl_model.model.*` (fairseq) | `frontend.wav2vec2.*` (ssl_weights) |
| `fc0`                         | `backend.layer_gate`                |
| `first_bn`                    | `backend.norm`                      |
| `fc1`                         | `backend.hidden`                    |
| `fc3`                         | `backend.classifier`                |
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dpda.errors import UserError
from dpda.models.ssl_weights import convert_published


class SLSHead(nn.Module):
    """All SSL layers (B, layers, frames, in_dim) -> log-softmax logits (B, 2)."""

    def __init__(self, in_dim: int, frames: int, hidden: int = 1024) -> None:
        super().__init__()
        if frames < 3 or in_dim < 3 or hidden < 1:
            raise UserError(f"model ssl_sls: frames ({frames}) and the SSL dimension ({in_dim}) must be >= 3, hidden >= 1")
        self.frames = frames
        self.layer_gate = nn.Linear(in_dim, 1)
        self.norm = nn.BatchNorm2d(1)
        self.hidden = nn.Linear((frames // 3) * (in_dim // 3), hidden)
        self.classifier = nn.Linear(hidden, 2)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.dim() != 4:
            raise UserError("model ssl_sls: the back end reads every SSL layer (model.overrides.ssl_layers: all)")
        if states.shape[2] != self.frames:
            raise UserError(f"model.overrides.frames: the SLS classifier reads {self.frames} SSL frames, the input "
                            f"gave {states.shape[2]} (set data.length to match, e.g. 64600 samples for 201 XLS-R frames)")
        gates = torch.sigmoid(self.layer_gate(states.mean(dim=2)))  # (B, layers, 1)
        x = (states * gates.unsqueeze(-1)).sum(dim=1, keepdim=True)  # (B, 1, frames, in_dim)
        x = F.max_pool2d(F.selu(self.norm(x)), (3, 3)).flatten(1)
        x = F.selu(self.classifier(F.selu(self.hidden(x))))
        return F.log_softmax(x, dim=1)


_RULES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (r"fc0\.(.+)", r"backend.layer_gate.\1"),
    (r"first_bn\.(.+)", r"backend.norm.\1"),
    (r"fc1\.(.+)", r"backend.hidden.\1"),
    (r"fc3\.(.+)", r"backend.classifier.\1"),
]]


def published_to_dpda(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dpda `ssl_sls` state dict from a published XLSR-SLS one (table in the module docstring);
    keys no rule knows keep their published names, so a strict load names them."""
    return convert_published(state, _RULES)
