"""Spectro-temporal graph attention back end of AASIST (Jung et al., ICASSP 2022).

The encoder's feature map (batch, channels, freq, time) becomes two graphs: spectral nodes (one
per frequency bin, max over time) and temporal nodes (one per frame, max over frequency). Each
graph gets a graph attention layer and is pruned by graph pooling. Then heterogeneous layers
(HS-GAL) attend over the union of both node types plus a learnable stack ("master") node that
collects information from all of them. Two such branches run in parallel and are merged by an
element-wise maximum; the read-out concatenates max / mean of each node type and the stack node.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N, D) element-wise products of every node pair."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _attention_vector(dim: int) -> nn.Parameter:
    """A (dim, 1) attention vector, Xavier-normal initialised as in the published AASIST."""
    return nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, 1)))


class _AttentionOutput(nn.Module):
    """The output stage both graph attention layers share. Each layer declares the modules itself
    (`proj_with_att`, `proj_without_att`, `bn`, `act`), in its own order: the names are the
    published checkpoint keys, and the order is that of the parameters in the flat gradient
    buffer and of their seeded initialisation."""

    proj_with_att: nn.Linear
    proj_without_att: nn.Linear
    bn: nn.BatchNorm1d
    act: nn.SELU

    def _combine(self, att: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The attended aggregate `att @ x` plus a skip projection of `x`, then BatchNorm and SELU."""
        out = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return self.act(self.bn(out.transpose(1, 2)).transpose(1, 2))


class GraphAttention(_AttentionOutput):
    """Graph attention layer over a fully connected homogeneous graph.

    Attention between nodes i, j is w . tanh(W (x_i * x_j)), softmax over j with a temperature;
    the output mixes the attended aggregate with a skip projection, then BatchNorm and SELU.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.drop = nn.Dropout(dropout)
        self.act = nn.SELU(inplace=True)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        scores = torch.tanh(self.att_proj(_pairwise(x))) @ self.att_weight
        att = torch.softmax(scores.squeeze(-1) / self.temperature, dim=-1)
        return self._combine(att, x)


class HeteroGraphAttention(_AttentionOutput):
    """Heterogeneous stacking graph attention layer (HS-GAL).

    Two node types are first projected into a shared space; attention weights differ for
    type-1/type-1, type-2/type-2 and cross-type pairs. A stack node attends over all nodes and is
    updated alongside them.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_proj_master = nn.Linear(in_dim, out_dim)
        # One attention vector per pair kind: type1-type1, type2-type2, cross-type (both directions).
        self.att_weight11 = _attention_vector(out_dim)
        self.att_weight22 = _attention_vector(out_dim)
        self.att_weight12 = _attention_vector(out_dim)
        self.att_weight_master = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_att_master = nn.Linear(in_dim, out_dim)
        self.proj_without_att_master = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.drop = nn.Dropout(dropout)
        self.act = nn.SELU(inplace=True)
        self.temperature = temperature

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, master: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n1, n = x1.shape[1], x1.shape[1] + x2.shape[1]
        x = self.drop(torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1))
        # Which of the three attention vectors applies to each (i, j) pair.
        node_type = (torch.arange(n, device=x.device) >= n1).long()
        pair_kind = torch.where(node_type.unsqueeze(1) == node_type.unsqueeze(0), node_type.unsqueeze(1), 2)
        att_weights = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)
        all_scores = torch.tanh(self.att_proj(_pairwise(x))) @ att_weights  # (B, N, N, 3)
        scores = all_scores.gather(-1, pair_kind.expand(x.shape[0], n, n).unsqueeze(-1)).squeeze(-1)
        att = torch.softmax(scores / self.temperature, dim=-1)
        # Stack node: attention over all nodes, keyed by the product with the stack node.
        m_scores = torch.tanh(self.att_proj_master(x * master)) @ self.att_weight_master  # (B, N, 1)
        m_att = torch.softmax(m_scores / self.temperature, dim=1)
        master = self.proj_with_att_master(m_att.transpose(1, 2) @ x) + self.proj_without_att_master(master)
        out = self._combine(att, x)
        return out[:, :n1], out[:, n1:], master


class GraphPool(nn.Module):
    """Keep the top `ratio` of nodes by a learned sigmoid score, scaling each kept node by it."""

    def __init__(self, in_dim: int, ratio: float, dropout: float = 0.3) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = torch.sigmoid(self.proj(self.drop(x)))  # (B, N, 1)
        k = max(int(x.shape[1] * self.ratio), 1)
        index = torch.topk(score.squeeze(-1), k, dim=1).indices
        return torch.gather(x * score, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class GraphBackend(nn.Module):
    """From an encoder map (B, C, F, T) to logits (B, 2).

    `node_pooling`: how the map becomes nodes. "max": max of |x| over time (spectral nodes) and
    over frequency (temporal nodes), as AASIST; "attention": softmax-weighted sums from a 1x1-conv
    attention map, as the SSL + AASIST system of Tak et al. (Odyssey 2022).
    """

    def __init__(
        self,
        channels: int,
        freq_nodes: int,
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        node_pooling: str = "max",
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        d0, d1 = gat_dims
        self.node_pooling = node_pooling
        if node_pooling == "attention":
            self.pre = nn.Sequential(nn.BatchNorm2d(channels), nn.SELU(inplace=True))
            # SELU before BatchNorm, as the published SSL-AASIST.
            self.attention = nn.Sequential(
                nn.Conv2d(channels, 2 * channels, kernel_size=1),
                nn.SELU(inplace=True),
                nn.BatchNorm2d(2 * channels),
                nn.Conv2d(2 * channels, channels, kernel_size=1),
            )
        self.pos_spectral = nn.Parameter(torch.randn(1, freq_nodes, channels))
        self.master1 = nn.Parameter(torch.randn(1, 1, d0))
        self.master2 = nn.Parameter(torch.randn(1, 1, d0))
        self.gat_spectral = GraphAttention(channels, d0, temperatures[0])
        self.gat_temporal = GraphAttention(channels, d0, temperatures[1])
        self.pool_spectral = GraphPool(d0, pool_ratios[0])
        self.pool_temporal = GraphPool(d0, pool_ratios[1])
        self.hs_gal11 = HeteroGraphAttention(d0, d1, temperatures[2])
        self.hs_gal12 = HeteroGraphAttention(d1, d1, temperatures[2])
        self.hs_gal21 = HeteroGraphAttention(d0, d1, temperatures[2])
        self.hs_gal22 = HeteroGraphAttention(d1, d1, temperatures[2])
        self.pool_hs1 = GraphPool(d1, pool_ratios[2])
        self.pool_ht1 = GraphPool(d1, pool_ratios[2])
        self.pool_hs2 = GraphPool(d1, pool_ratios[3])
        self.pool_ht2 = GraphPool(d1, pool_ratios[3])
        self.drop_way = nn.Dropout(0.2)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(5 * d1, num_classes)

    def _nodes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.node_pooling == "attention":
            x = self.pre(x)
            w = self.attention(x)
            spectral = (x * torch.softmax(w, dim=-1)).sum(dim=-1)
            temporal = (x * torch.softmax(w, dim=-2)).sum(dim=-2)
        else:
            spectral = x.abs().amax(dim=3)
            temporal = x.abs().amax(dim=2)
        return spectral.transpose(1, 2), temporal.transpose(1, 2)

    def _branch(self, first: HeteroGraphAttention, second: HeteroGraphAttention, pool_t: GraphPool,
                pool_s: GraphPool, t: torch.Tensor, s: torch.Tensor, master: torch.Tensor):
        t, s, master = first(t, s, master)
        s, t = pool_s(s), pool_t(t)
        t_aug, s_aug, m_aug = second(t, s, master)
        return t + t_aug, s + s_aug, master + m_aug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectral, temporal = self._nodes(x)
        if spectral.shape[1] != self.pos_spectral.shape[1]:
            raise ValueError(f"graph back end built for {self.pos_spectral.shape[1]} spectral nodes, got {spectral.shape[1]}")
        s = self.pool_spectral(self.gat_spectral(spectral + self.pos_spectral))
        t = self.pool_temporal(self.gat_temporal(temporal))
        b = x.shape[0]
        t1, s1, m1 = self._branch(self.hs_gal11, self.hs_gal12, self.pool_ht1, self.pool_hs1, t, s, self.master1.expand(b, -1, -1))
        t2, s2, m2 = self._branch(self.hs_gal21, self.hs_gal22, self.pool_ht2, self.pool_hs2, t, s, self.master2.expand(b, -1, -1))
        t = torch.maximum(self.drop_way(t1), self.drop_way(t2))
        s = torch.maximum(self.drop_way(s1), self.drop_way(s2))
        master = torch.maximum(self.drop_way(m1), self.drop_way(m2))
        readout = torch.cat(
            [t.abs().amax(dim=1), t.mean(dim=1), s.abs().amax(dim=1), s.mean(dim=1), master.squeeze(1)], dim=1
        )
        return self.out(self.drop(readout))
