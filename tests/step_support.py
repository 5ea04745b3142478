"""Helpers of the step tests that run on the GPU machine too (benchmarks/gpu_step_check.sh):
no soundfile import (that machine lacks it), the accelerator when present, TF32 off."""

from __future__ import annotations

import torch
from torch import nn

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# fp32 kernels must stay fp32: TF32 convolutions/matmuls would differ from the references by ~1e-3
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
LOSS = nn.CrossEntropyLoss(weight=torch.tensor([0.1, 0.9]))


class ConvNet(nn.Module):
    """Conv1d + BatchNorm (cuDNN on a GPU), a long and a short tensor, no dropout."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv1d(1, 24, 9, stride=2, bias=False)  # a bias before BatchNorm has a zero gradient
        self.bn = nn.BatchNorm1d(24)
        self.conv2 = nn.Conv1d(24, 48, 5, stride=2, bias=False)
        self.bn2 = nn.BatchNorm1d(48, momentum=0.3)
        self.head = nn.Linear(96, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.bn(self.conv(x.unsqueeze(1))))
        h = torch.tanh(self.bn2(self.conv2(h)))
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], 1))


def conv_batch(seed: int, n: int = 6, t: int = 400) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Waveform-like batch whose two paths often conflict (CPU tensors)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, generator=g)
    xa = -0.6 * x + 0.5 * torch.randn(n, t, generator=g)
    return x, xa, torch.tensor([0, 1] * (n // 2))
