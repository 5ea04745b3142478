"""Conformer back end with a class token, after Truong et al. (Interspeech 2024, Conformer-TCM).

SSL frames are projected to `d_model`, a learnable CLS token is prepended, and Conformer blocks
(macaron feed-forwards around multi-head self-attention and a depthwise temporal convolution
module) mix them; the classifier reads the CLS token only, so the utterance-level decision is
learned by attention instead of a fixed pooling. The blocks are torchaudio's Conformer.
"""

from __future__ import annotations

import torch
from torch import nn
from dpda._torchaudio import torchaudio  # noqa: F401  one-line error if torch and torchaudio cannot load together
from torchaudio.models import Conformer

from dpda.errors import UserError


class ConformerTCMBackend(nn.Module):
    """(B, T, in_dim) SSL features -> logits (B, 2)."""

    def __init__(
        self,
        in_dim: int,
        d_model: int = 144,
        num_heads: int = 4,
        num_layers: int = 4,
        kernel_size: int = 31,
        ffn_mult: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise UserError(f"model ssl_conformer_tcm: d_model={d_model} must be divisible by num_heads={num_heads}")
        if kernel_size % 2 == 0:
            raise UserError(f"model ssl_conformer_tcm: kernel_size must be odd (same-length depthwise conv), got {kernel_size}")
        self.proj = nn.Linear(in_dim, d_model)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.conformer = Conformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_mult * d_model,
            num_layers=num_layers,
            depthwise_conv_kernel_size=kernel_size,
            dropout=dropout,
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.proj(feats)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        x, _ = self.conformer(x, lengths)
        return self.head(self.norm(x[:, 0]))
