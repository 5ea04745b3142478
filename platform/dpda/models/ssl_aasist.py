"""SSL-AASIST back end (Tak et al., Odyssey 2022), as published with DPDA (nets/aasist.py).

SSL features (B, frames, 1024) -> Linear to 128 -> (B, 1, 128, frames) image -> 3x3 max-pool,
BatchNorm + SELU -> six 2-D residual blocks without pooling -> BatchNorm + SELU -> attention
node pooling -> the AASIST graph back end (dpda.models.graph).

Two details of the published code are kept because they define its numbers: each residual
block's first convolution reads the block input, not its BatchNorm + SELU output
(`preactivate=False`), and the attention map is Conv 1x1, SELU, BatchNorm, Conv 1x1.

`published_to_dpda` maps a published state dict onto dpda's SSLDetector names:

| published (nets/aasist.py)               | dpda (SSLDetector)                             |
|------------------------------------------|------------------------------------------------|
| `ssl_model.model.*` (fairseq)            | `frontend.wav2vec2.*` (ssl_weights.convert_fairseq) |
| `LL`                                     | `backend.proj`                                 |
| `first_bn`                               | `backend.stem.1`                               |
| `encoder.<i>.0.{bn1,conv1,bn2,conv2}`    | `backend.encoder.<i>.{pre.0,conv1,bn2,conv2}`  |
| `encoder.<i>.0.conv_downsample`          | `backend.encoder.<i>.downsample`               |
| `first_bn1`                              | `backend.backend.pre.0`                        |
| `attention.<j>`                          | `backend.backend.attention.<j>`                |
| `pos_S`, `master1`, `master2`            | `backend.backend.{pos_spectral,master1,master2}` |
| `GAT_layer_S`, `GAT_layer_T`             | `backend.backend.gat_{spectral,temporal}`      |
| `HtrgGAT_layer_ST<ab>`                   | `backend.backend.hs_gal<ab>`                   |
|   `.att_projM`, `.att_weightM`           |   `.att_proj_master`, `.att_weight_master`     |
|   `.proj_with_attM`, `.proj_without_attM`|   `.proj_with_att_master`, `.proj_without_att_master` |
| `pool_S`, `pool_T`                       | `backend.backend.pool_{spectral,temporal}`     |
| `pool_h{S,T}{1,2}`                       | `backend.backend.pool_h{s,t}{1,2}`             |
| `out_layer`                              | `backend.backend.out`                          |

Every other name inside these modules (att_proj, att_weight11, proj_type1, bn, ...) is the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from dpda.errors import UserError
from dpda.models.aasist import _check_blocks, residual_encoder
from dpda.models.graph import GraphBackend
from dpda.models.released_aasist import encoder_and_graph_rules
from dpda.models.ssl_weights import convert_published


class AASISTHead(nn.Module):
    """SSL features -> logits: linear projection, 2-D residual encoder, graph attention back end
    with attention-based node pooling (the SSL + AASIST system of Tak et al., Odyssey 2022)."""

    def __init__(self, in_dim: int, proj_dim: int, blocks, gat_dims, pool_ratios, temperatures) -> None:
        super().__init__()
        _check_blocks("ssl_aasist", blocks)
        if proj_dim < 3:
            raise UserError(f"model ssl_aasist: proj_dim must be >= 3, got {proj_dim}")
        self.proj = nn.Linear(in_dim, proj_dim)
        self.stem = nn.Sequential(nn.MaxPool2d(3), nn.BatchNorm2d(1), nn.SELU(inplace=True))
        self.encoder = residual_encoder(blocks, pool_time=False, preactivate=False)
        self.backend = GraphBackend(int(blocks[-1][1]), proj_dim // 3, gat_dims, pool_ratios, temperatures, "attention")

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.proj(feats).transpose(1, 2).unsqueeze(1)  # (B, 1, proj_dim, frames)
        return self.backend(self.encoder(self.stem(x)))


_G = "backend.backend."
_RULES: list[tuple[re.Pattern[str], str]] = [
    *[(re.compile(p), r) for p, r in [
        (r"^LL\.(.+)$", r"backend.proj.\1"),
        (r"^first_bn\.(.+)$", r"backend.stem.1.\1"),
        (r"^first_bn1\.(.+)$", _G + r"pre.0.\1"),
        (r"^attention\.(.+)$", _G + r"attention.\1"),
    ]],
    *encoder_and_graph_rules("backend.encoder.", _G),  # the rows it shares with the released AASIST
]


def published_to_dpda(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dpda `ssl_aasist` state dict from a published SSL-AASIST one (table in the module docstring).

    Keys that fit no rule keep their published names, so a strict load names the first of them.
    """
    return convert_published(state, _RULES)
