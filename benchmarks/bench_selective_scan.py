"""Benchmark: dpda's pure-PyTorch selective scan (parallel Hillis-Steele scan over time) against
the same math as a loop over time steps (mamba_ssm's `selective_scan_ref` formulation), forward +
backward, at the published XLSR-Mamba size (d_inner 288, d_state 16, ~4 s = 208 frames).

Reports wall time per call and the bytes autograd saves for the backward pass (counted exactly
with saved-tensor hooks), the memory cost of the parallel scan.

    python benchmarks/bench_selective_scan.py                 # batch 10 (5 utterances x 2 paths)
    python benchmarks/bench_selective_scan.py --batch 2 --frames 201 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from dpda.models.mamba import selective_scan_torch


def scan_loop(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """The selective scan with the recurrence run one frame after the other."""
    delta = F.softplus(delta + delta_bias[:, None]) if delta_softplus else delta + delta_bias[:, None]
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    h = torch.zeros_like(decay[:, :, 0])
    ys = []
    for t in range(u.shape[2]):
        h = decay[:, :, t] * h + drive[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return (torch.stack(ys, dim=2) + u * D[:, None]) * F.silu(z)


def measure(fn, inputs, repeats: int) -> tuple[float, int]:
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(**inputs).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(**inputs).sum().backward()
    if inputs["u"].is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--frames", type=int, default=208)
    parser.add_argument("--dim", type=int, default=288)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    b, d, n, length = args.batch, args.dim, args.state, args.frames
    inputs = dict(u=torch.randn(b, d, length, generator=g), delta=torch.randn(b, d, length, generator=g),
                  A=-torch.rand(d, n, generator=g) * 16, B=torch.randn(b, n, length, generator=g),
                  C=torch.randn(b, n, length, generator=g), D=torch.randn(d, generator=g),
                  z=torch.randn(b, d, length, generator=g), delta_bias=torch.randn(d, generator=g))
    inputs = {k: v.to(args.device).requires_grad_() for k, v in inputs.items()}
    inputs["delta_softplus"] = True
    for name, fn in (("parallel scan (dpda)", selective_scan_torch), ("loop over frames", scan_loop)):
        seconds, saved = measure(fn, inputs, args.repeats)
        print(f"{name:22s} {seconds * 1e3:9.1f} ms/call (fwd+bwd)   saved for backward {saved / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
