"""The K = 1 regression run of the dual-path step (tests/test_step_paths.py): a few optimizer
steps of every rule x mode x granularity on a small conv net, the parameters afterwards.

`tests/fixtures/multipath/make_k1_reference.py` ran it with the two-path step as it was before
the step took K augmented paths and stored a digest of every tensor's bytes (`digest`); the test
runs it with today's step and compares the digests: bit for bit. Single-threaded, so CPU
reductions do not depend on the thread count.
"""

from __future__ import annotations

import hashlib
import itertools

import torch

from dpda.align import RULES, make_aligner
from dpda.train.step import DualPathStep
from step_support import LOSS, ConvNet, conv_batch

MODES = ("separate", "joint", "batched")
GRANULARITIES = ("model", "layer")
STEPS = 3
CASES = [(r, m, g, c) for r, m, g in itertools.product(("none", "pcgrad", "gradvac", "cagrad", "mgda"), MODES,
                                                        GRANULARITIES) for c in (None, 0.05) if r in RULES]


def case_key(rule: str, mode: str, granularity: str, clip: float | None) -> str:
    return f"{rule}/{mode}/{granularity}/clip={clip}"


def k1_run(rule: str, mode: str, granularity: str, clip: float | None, step_cls=DualPathStep,
           **step_kw) -> dict[str, torch.Tensor]:
    """Parameters, buffers and the last step's cos / update_norm after STEPS Adam steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = ConvNet(seed=3)
        opts = {"beta": 0.3} if rule == "gradvac" else {}
        aligner = make_aligner(rule, strength=0.8 if rule == "pcgrad" else 1.0, granularity=granularity, **opts)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        step = step_cls(model, LOSS, opt, aligner, mode=mode, clip_norm=clip, **step_kw)
        for i in range(STEPS):
            x, xa, y = conv_batch(10 + i)
            stats = step(x, xa, y)
        out = {f"param.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        out["cos"] = stats.cos.detach().clone()
        out["update_norm"] = stats.update_norm.detach().clone()
        return out
    finally:
        torch.set_num_threads(threads)


def digest(t: torch.Tensor) -> str:
    """The tensor's exact bytes (sha256, 128 bits), dtype and shape, as one string."""
    data = t.detach().cpu().contiguous().numpy().tobytes()
    return f"{hashlib.sha256(data).hexdigest()[:32]}:{t.dtype}:{tuple(t.shape)}"
