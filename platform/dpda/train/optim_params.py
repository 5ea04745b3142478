"""Which tensors the optimiser receives (`optim.params`), and the published zero gradients.

`trainable` (dpda): the parameters that require gradients. `published`: every parameter, frozen
ones included, plus the fixed tables a model names in its modules' `frozen_tables` (buffers the
published code holds as Parameters with requires_grad=False, e.g. Conformer-TCM's position
table), as the published main.py hands `model.parameters()` to Adam. The published
gradient-alignment wrappers (PCGrad, GradVac, CAGrad) then write a zero `.grad` into every such
tensor, so Adam's weight decay moves it (the "fixed" table drifts); its baseline (`--ga None`)
leaves their `.grad` None and Adam skips them.
"""

from __future__ import annotations

import torch
from torch import nn

from dpda.train.config import OptimParams


def named_frozen_tables(model: nn.Module) -> dict[str, torch.Tensor]:
    """{dotted buffer name: buffer} of the buffers each module names in its `frozen_tables`."""
    return {f"{prefix}.{name}" if prefix else name: module.get_buffer(name)
            for prefix, module in model.named_modules() for name in getattr(module, "frozen_tables", ())}


def frozen_tables(model: nn.Module) -> list[torch.Tensor]:
    """The buffers each module names in its `frozen_tables` attribute, in module order."""
    return list(named_frozen_tables(model).values())


def table_state(model: nn.Module, which: OptimParams) -> dict[str, torch.Tensor]:
    """What a checkpoint stores beside the state dict under `optim.params: which`: the frozen
    tables (non-persistent buffers, left out of `state_dict()`) where the optimiser moves them."""
    if which == "trainable":
        return {}
    return {name: table.detach().clone() for name, table in named_frozen_tables(model).items()}


@torch.no_grad()
def load_tables(model: nn.Module, tables: dict[str, torch.Tensor]) -> None:
    """Copy stored tables (`table_state`) into the model's buffers of the same names."""
    for name, table in tables.items():
        model.get_buffer(name).copy_(table)


def optimizer_tensors(model: nn.Module, which: OptimParams) -> list[torch.Tensor]:
    """The tensors of `optim.params: which`, in `model.parameters()` order (tables last)."""
    if which == "trainable":
        return [p for p in model.parameters() if p.requires_grad]
    return list(model.parameters()) + frozen_tables(model)


def zero_frozen_grads(tensors: list[torch.Tensor]) -> None:
    """Give every tensor without gradients a zero `.grad`, as the published wrappers' `_set_grad`
    does each step. Set once: backward never writes into them and dpda's steps own only the
    trainable `.grad`s, so the zeros stay (Adam then applies weight decay alone)."""
    for t in tensors:
        if not t.requires_grad:
            t.grad = torch.zeros_like(t)
