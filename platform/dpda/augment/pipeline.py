"""The augmentation pipeline at run time: draw everything, then apply, batched.

Draw order is fixed by the tree alone (pre-order): for each node, its gate (`p` < 1: one uniform
per utterance), for `one_of` its choice (one uniform per utterance), for each leaf the transform's
draws for the whole batch, whether or not an utterance then takes that branch. So what one
utterance receives never changes which random numbers another one gets, and a pipeline of one
RawBoost leaf with p = 1 draws exactly what `RawBoost` draws (bit-identical training).

Applying visits the leaves in the same order: a leaf every utterance reaches by construction (p = 1
all the way up, no `one_of` above it) runs on the whole batch; any other runs on the rows that
reached it (one host sync to find them). Each utterance's applied leaves come back as a bitmask
(int64, bit j = leaf j in pre-order, see `Pipeline.leaf_names`), for telemetry's conflict
fraction per transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dpda.augment.draws import Workspace
from dpda.augment.registry import TRANSFORMS, select_rows
from dpda.augment.spec import Compose, Leaf

_SECTION = "augment."  # the config section every leaf key starts with


@dataclass
class PipelineDraws:
    """Per leaf (pre-order): the rows that reach it (None: all of them) and its draws."""

    active: list[Tensor | None]
    draws: list[Any]


class Pipeline(nn.Module):
    """The configured augmentation on `(batch, time)` (or `(time,)`) float waveforms."""

    def __init__(self, root: Compose) -> None:
        super().__init__()
        self.root = root
        self.leaves: tuple[Leaf, ...] = tuple(root.leaves())
        self._workspaces = [Workspace() for _ in self.leaves]

    @property
    def leaf_names(self) -> tuple[str, ...]:
        """The transform name of each mask bit (bit j = `leaf_names[j]`)."""
        return tuple(leaf.name for leaf in self.leaves)

    @property
    def leaf_keys(self) -> tuple[str, ...]:
        """The dotted config key of each mask bit's leaf (unique where names repeat)."""
        return tuple(leaf.where for leaf in self.leaves)

    @property
    def leaf_labels(self) -> tuple[str, ...]:
        """Each mask bit's leaf key below the `augment` section (`rawboost` for `augment.rawboost`,
        `pipeline.steps[0].gain`): telemetry's `augment_leaves`, short and still unique."""
        return tuple(key.removeprefix(_SECTION) for key in self.leaf_keys)

    def loader_leaves(self) -> tuple[Leaf, ...]:
        """Leaves that run on CPU arrays, one utterance at a time (the DataLoader's job)."""
        return loader_leaves(self.root)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (to DataLoader workers, Ray) without the scratch storage."""
        state = dict(self.__dict__)
        state["_workspaces"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._workspaces = [Workspace() for _ in self.leaves]

    def extra_repr(self) -> str:
        return ", ".join(self.leaf_names)

    # ------------------------------------------------------------------ draws
    def draw(self, batch: int, time: int, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> PipelineDraws:
        """Every random number of one call, in the tree's pre-order."""
        device = torch.device(device)
        drawn = PipelineDraws([], [])
        self._visit(self.root, None, batch, time, generator, device, drawn)
        return drawn

    def _visit(self, node: Compose | Leaf, active: Tensor | None, batch: int, time: int,
               gen: torch.Generator | None, device: torch.device, out: PipelineDraws) -> None:
        if node.p < 1:
            gate = _uniform(batch, gen, device) < node.p
            active = gate if active is None else active & gate
        if isinstance(node, Leaf):
            j = len(out.draws)
            out.active.append(active)
            out.draws.append(TRANSFORMS[node.name].draw(node.params, batch, time, gen, device, self._workspaces[j]))
            return
        if node.kind == "chain":
            for step in node.steps:
                self._visit(step, active, batch, time, gen, device, out)
            return
        weights = torch.tensor(node.weights, dtype=torch.float64, device=device)
        edges = torch.cumsum(weights, 0) / weights.sum()
        choice = torch.searchsorted(edges, _uniform(batch, gen, device), right=True).clamp_max(len(node.steps) - 1)
        for k, step in enumerate(node.steps):
            chosen = choice == k
            self._visit(step, chosen if active is None else active & chosen, batch, time, gen, device, out)

    # ------------------------------------------------------------------ apply
    def apply(self, x: Tensor, drawn: PipelineDraws) -> tuple[Tensor, Tensor]:
        """Deterministic part: (augmented batch, applied-transforms mask (batch,) int64)."""
        batch = x.shape[0]
        mask = torch.zeros(batch, dtype=torch.long, device=x.device)
        y = x
        for j, (leaf, active, draws) in enumerate(zip(self.leaves, drawn.active, drawn.draws)):
            transform = TRANSFORMS[leaf.name]
            if active is None:
                y = transform.apply(leaf.params, y, draws)
                mask |= 1 << j
                continue
            rows = active.nonzero().squeeze(1)
            if rows.numel():
                part = transform.apply(leaf.params, y.index_select(0, rows), select_rows(draws, rows))
                y = y.index_copy(0, rows, part.to(y.dtype))
            mask |= active.long() << j
        return (y.clone() if y is x else y), mask

    def augment(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Augment a `(batch, time)` batch: (augmented batch, applied-transforms mask)."""
        _check(x)
        return self.apply(x, self.draw(x.shape[0], x.shape[1], generator, x.device))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment `(batch, time)` or `(time,)`; same shape, dtype and device (the loader's call)."""
        _check(x)
        y = x.unsqueeze(0) if x.dim() == 1 else x
        y, _ = self.augment(y, generator)
        return y.squeeze(0) if x.dim() == 1 else y


def loader_leaves(root: Compose) -> tuple[Leaf, ...]:
    """Leaves that run on CPU arrays, one utterance at a time (the DataLoader's job)."""
    return tuple(leaf for leaf in root.leaves() if TRANSFORMS[leaf.name].where(leaf.params) == "loader")


def prepare_transforms(root: Compose, policy: str = "fail") -> dict[str, Any]:
    """Open and check what the transforms read (banks) before training, under the run's
    `data.check` policy; one UserError line naming the key on a bad bank. Returns the checks'
    verdicts (fingerprint -> dict), for a driver to hand to trials and ranks."""
    verdicts: dict[str, Any] = {}
    for leaf in root.leaves():
        prepare = TRANSFORMS[leaf.name].prepare
        if prepare is not None:
            verdicts.update(prepare(leaf.params, leaf.where, policy))
    return verdicts


def _check(x: Tensor) -> None:
    if not x.is_floating_point():
        raise TypeError(f"augmentation expects a float waveform tensor, got {x.dtype}")
    if x.dim() not in (1, 2):
        raise ValueError(f"augmentation expects (batch, time) or (time,), got shape {tuple(x.shape)}")


def _uniform(batch: int, gen: torch.Generator | None, device: torch.device) -> Tensor:
    where = gen.device if gen is not None else device
    return torch.rand((batch,), generator=gen, device=where, dtype=torch.float64).to(device)
