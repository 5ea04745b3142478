"""Conformer-TCM back end: the published XLS-R + Conformer-TCM (Truong et al., Interspeech 2024;
DPDA, 2025), re-implemented with the same forward and, after the key mapping in
`dpda.models.published`, the same state dict.

SSL frames -> Linear(in_dim, d_model) -> BatchNorm over all values (one channel) -> SELU, plus a
fixed sinusoidal position table; a learned class token is prepended and Conformer blocks mix the
sequence; the classifier reads the class token only. Each block is macaron-style (half-step
feed-forward, attention, convolution module, half-step feed-forward, closing LayerNorm). Its
attention adds one *head token* per head (TCM, after "Head Token attention", arXiv 2210.05958):
the time-mean of that head's channel slice, projected to d_model, normalised per head slice, GELU,
plus a learned position embedding, appended to the sequence for the attention only; the class
token then absorbs the means of the head tokens and of the time tokens. The convolution module
widens to `conv_expansion * d_model` channels (pointwise, GLU, depthwise, BatchNorm, SiLU,
pointwise back).
"""

from __future__ import annotations

import copy
import re

import torch
import torch.nn.functional as F
from torch import nn

from dpda.errors import UserError
from dpda.models.ssl_weights import convert_published

# Published position-table length: 10,000 frames (200 s of XLS-R frames at 50 per second).
MAX_FRAMES = 10_000


def sinusoidal_table(rows: int, dim: int) -> torch.Tensor:
    """(1, rows, dim) table: angle p / 10000^(2 (i // 2) / dim), sin on even, cos on odd columns.
    Angles are computed in float64 and rounded to float32 before the sine, as the published table."""
    pos = torch.arange(rows, dtype=torch.float64)[:, None]
    rate = torch.tensor([10000 ** (2 * (i // 2) / dim) for i in range(dim)], dtype=torch.float64)
    angles = (pos / rate).to(torch.float32)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.unsqueeze(0)


class FeedForward(nn.Module):
    """Pre-norm Linear -> SiLU -> Linear (the block scales its output by 0.5)."""

    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * mult)
        self.down = nn.Linear(dim * mult, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.dropout(F.silu(self.up(self.norm(x))))))


class HeadTokenAttention(nn.Module):
    """Multi-head self-attention with one head token per head; the class token (position 0)
    absorbs the head tokens' and the time tokens' mean outputs."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.head_proj = nn.Linear(self.head_dim, dim)
        self.head_norm = nn.LayerNorm(self.head_dim)
        self.head_pos = nn.Parameter(torch.zeros(1, heads, dim))
        self.dropout = dropout
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, d = self.heads, self.head_dim
        tokens = self.head_proj(x.reshape(b, n, h, d).mean(dim=1))  # (B, h, C): one per head
        tokens = F.gelu(self.head_norm(tokens.reshape(b, h, h, d))).flatten(2) + self.head_pos
        x = torch.cat([x, tokens], dim=1)
        q, k, v = self.qkv(x).reshape(b, n + h, 3, h, d).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = self.out(y.transpose(1, 2).reshape(b, n + h, c))
        cls, frames, heads = torch.split(y, [1, n - 1, h], dim=1)
        cls = cls + heads.mean(dim=1, keepdim=True) + frames.mean(dim=1, keepdim=True)
        return self.out_dropout(torch.cat([cls, frames], dim=1))


class ConvModule(nn.Module):
    """LayerNorm -> pointwise to 2 * inner channels -> GLU -> depthwise (same length; an even
    kernel pads one more on the left) -> BatchNorm -> SiLU -> pointwise back to dim."""

    def __init__(self, dim: int, expansion: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        inner = dim * expansion
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * inner, 1)
        self.padding = (kernel_size // 2, kernel_size // 2 - (kernel_size + 1) % 2)
        self.depthwise = nn.Conv1d(inner, inner, kernel_size, groups=inner)
        self.bn = nn.BatchNorm1d(inner)
        self.pointwise_out = nn.Conv1d(inner, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        y = F.silu(self.bn(self.depthwise(F.pad(y, self.padding))))
        return self.dropout(self.pointwise_out(y).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_mult: int, conv_expansion: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.ff1 = FeedForward(dim, ffn_mult, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = HeadTokenAttention(dim, heads, dropout)
        self.conv = ConvModule(dim, conv_expansion, kernel_size, dropout)
        self.ff2 = FeedForward(dim, ffn_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 0.5 * self.ff1(x) + x
        x = self.attn(self.attn_norm(x)) + x
        x = self.conv(x) + x
        x = 0.5 * self.ff2(x) + x
        return self.norm(x)


class ConformerTCMBackend(nn.Module):
    """(B, T, in_dim) SSL features -> logits (B, 2)."""

    # the published code holds this table as a frozen Parameter (`optim.params: published`)
    frozen_tables = ("positions",)

    def __init__(
        self,
        in_dim: int,
        d_model: int = 144,
        num_heads: int = 4,
        num_layers: int = 4,
        kernel_size: int = 31,
        ffn_mult: int = 4,
        conv_expansion: int = 2,
        dropout: float = 0.0,
        identical_blocks: bool = False,
    ) -> None:
        """`identical_blocks`: every block starts as a copy of one (the published `_get_clones`,
        built in the published order: the block before the class token, so a seed gives the
        published initialisation); False (dpda): each block initialised on its own."""
        super().__init__()
        if d_model % num_heads:
            raise UserError(f"model ssl_conformer_tcm: d_model={d_model} must be divisible by num_heads={num_heads}")
        for key, value in (("num_layers", num_layers), ("kernel_size", kernel_size), ("ffn_mult", ffn_mult),
                           ("conv_expansion", conv_expansion)):
            if value < 1:
                raise UserError(f"model ssl_conformer_tcm: {key} must be >= 1, got {value}")
        if not 0 <= dropout < 1:
            raise UserError(f"model ssl_conformer_tcm: dropout must be in [0, 1), got {dropout}")
        self.proj = nn.Linear(in_dim, d_model)
        self.proj_bn = nn.BatchNorm2d(1)  # one channel: statistics over every value of the batch
        self.register_buffer("positions", sinusoidal_table(MAX_FRAMES, d_model), persistent=False)
        block = lambda: ConformerBlock(d_model, num_heads, ffn_mult, conv_expansion, kernel_size, dropout)  # noqa: E731
        if identical_blocks:
            first = block()
            self.blocks = nn.ModuleList(copy.deepcopy(first) for _ in range(num_layers))
            self.cls = nn.Parameter(torch.rand(1, d_model))
        else:
            self.cls = nn.Parameter(torch.rand(1, d_model))
            self.blocks = nn.ModuleList(block() for _ in range(num_layers))
        self.head = nn.Linear(d_model, 2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        frames = feats.shape[1]
        if frames > MAX_FRAMES:
            raise UserError(f"model ssl_conformer_tcm: {frames} frames exceed the position table's {MAX_FRAMES} "
                            f"({MAX_FRAMES / 50:.0f} s of XLS-R frames); crop the input (data.length)")
        x = F.selu(self.proj_bn(self.proj(feats).unsqueeze(1)).squeeze(1))
        x = x + self.positions[:, :frames]
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(x[:, 0])



# Published nets/conformer_tcm.py `Model` back-end keys -> dpda's (`backend.` + the right side);
# `conformer.positional_emb`, the published position table, is not in dpda's state dict (dpda
# recomputes it as the non-persistent buffer `backend.positions`); the loader of released
# checkpoints copies it there (PUBLISHED_TABLES): the published GA runs let Adam's weight decay move it.
PUBLISHED_KEYS: list[tuple[str, str]] = [
    (r"LL\.(weight|bias)", r"proj.\1"),
    (r"first_bn\.(.+)", r"proj_bn.\1"),
    (r"conformer\.class_token", "cls"),
    (r"conformer\.fc5\.(weight|bias)", r"head.\1"),
    (r"conformer\.encoder_blocks\.(\d+)\.(ff[12])\.fn\.norm\.(weight|bias)", r"blocks.\1.\2.norm.\3"),
    (r"conformer\.encoder_blocks\.(\d+)\.(ff[12])\.fn\.fn\.net\.0\.(weight|bias)", r"blocks.\1.\2.up.\3"),
    (r"conformer\.encoder_blocks\.(\d+)\.(ff[12])\.fn\.fn\.net\.3\.(weight|bias)", r"blocks.\1.\2.down.\3"),
    (r"conformer\.encoder_blocks\.(\d+)\.attn\.norm\.(weight|bias)", r"blocks.\1.attn_norm.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.attn\.fn\.qkv\.weight", r"blocks.\1.attn.qkv.weight"),
    (r"conformer\.encoder_blocks\.(\d+)\.attn\.fn\.proj\.(weight|bias)", r"blocks.\1.attn.out.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.attn\.fn\.ht_proj\.(weight|bias)", r"blocks.\1.attn.head_proj.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.attn\.fn\.ht_norm\.(weight|bias)", r"blocks.\1.attn.head_norm.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.attn\.fn\.pos_embed", r"blocks.\1.attn.head_pos"),
    (r"conformer\.encoder_blocks\.(\d+)\.conv\.net\.0\.(weight|bias)", r"blocks.\1.conv.norm.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.conv\.net\.2\.(weight|bias)", r"blocks.\1.conv.pointwise_in.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.conv\.net\.4\.conv\.(weight|bias)", r"blocks.\1.conv.depthwise.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.conv\.net\.5\.(.+)", r"blocks.\1.conv.bn.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.conv\.net\.7\.(weight|bias)", r"blocks.\1.conv.pointwise_out.\2"),
    (r"conformer\.encoder_blocks\.(\d+)\.post_norm\.(weight|bias)", r"blocks.\1.norm.\2"),
]
_PUBLISHED_RULES = [(re.compile(pattern), "backend." + repl) for pattern, repl in PUBLISHED_KEYS]
_PUBLISHED_DROPPED = "conformer.positional_emb"
# published key -> dpda buffer of a table the published code saves and dpda recomputes
PUBLISHED_TABLES: dict[str, str] = {_PUBLISHED_DROPPED: "backend.positions"}


def published_to_dpda(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A published XLS-R + Conformer-TCM state dict with dpda's `ssl_conformer_tcm` keys (front
    end through `split_published_state`); keys no rule knows pass unchanged."""
    return convert_published(state, _PUBLISHED_RULES, frozenset({_PUBLISHED_DROPPED}))
