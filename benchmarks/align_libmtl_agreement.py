"""How close dpda's P-path rules come to LibMTL's, on the committed LibMTL fixture.

Usage: PYTHONPATH=platform python benchmarks/align_libmtl_agreement.py

For each rule (and CAGrad's c), over the fixture's gradient sets (P = 2..5; see
tests/fixtures/libmtl/README.md): the largest and median difference of the updates, relative to
the largest path-gradient norm (PCGrad and GradVac: LibMTL's sum divided by P, dpda averages),
and for the solvers the objective LibMTL reached minus dpda's (min-norm |g_w|^2 for MGDA, the
dual g_w.g0 + c|g0||g_w| for CAGrad; on G / max |g_p|^2; > 0: dpda's is lower) with how many sets
each solution was the better one (ties within 1e-15). `guards`: LibMTL on the sets as given
against LibMTL on them scaled by a power of two, the largest relative difference (what its 1e-8
guards change at these norms; `failed`: sets where it raised).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dpda.align import path_rules
from dpda.align.multipath import path_coeffs
from dpda.align.registry import get_rule

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "libmtl" / "libmtl_fixtures.pt"


def objective(method: str, gram: torch.Tensor, w: torch.Tensor, c: float) -> float:
    g = gram / gram.diagonal().max()
    if method == "mgda":
        return float(w @ g @ w)
    return float(w @ g.mean(1) + c * g.mean().sqrt() * (w @ g @ w).clamp_min(0).sqrt())


def main() -> None:
    fixture = torch.load(FIXTURE, weights_only=True)
    rows: dict[str, dict[str, list[float]]] = {}
    for case in fixture["cases"]:
        method = case["method"]
        opts = {k: v for k, v in case["options"].items() if k != "group_type"}
        label = method + "".join(f" {k}={v}" for k, v in case["options"].items())
        options = get_rule(method).parse_options(opts)
        bounds = torch.tensor([0, *case["segments"]]).cumsum(0).tolist()
        state: dict = {}
        row = rows.setdefault(label, {"err": [], "gain": [], "guard": [], "failed": []})
        row["failed"].append(bool(case["raw_error"]))
        for t, g in enumerate(case["grads"]):
            parts = [g[:, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
            gram = torch.stack([x @ x.T for x in parts])
            order = case["order"][t] if case["order"].numel() else None
            c = path_coeffs(method, gram, options=options, state=state, order=order)
            update = torch.cat([c[u] @ parts[u] for u in range(len(parts))])
            if method in ("pcgrad", "gradvac"):
                update = update * case["paths"]
            row["err"].append(float((update - case["update"][t]).norm() / g.norm(dim=1).max()))
            if not case["raw_error"]:
                row["guard"].append(float((case["update_raw"][t] - case["update"][t]).norm() / g.norm(dim=1).max()))
            if method in ("mgda", "cagrad"):
                cc = opts.get("c", 0.0)
                ours = path_rules.mgda_weights(gram)[0] if method == "mgda" else path_rules.cagrad_weights(gram, cc)[0]
                row["gain"].append(objective(method, gram[0], case["weights"][t], cc) - objective(method, gram[0], ours, cc))
    print(f"LibMTL {fixture['libmtl_commit'][:12]}: {len(fixture['cases'])} gradient sets")
    print(f"{'rule':32} {'n':>3} {'max rel diff':>12} {'median':>9} {'obj LibMTL-dpda: max':>21} {'dpda better/tie/worse':>22} {'guards':>8} failed")
    for label, row in rows.items():
        err = torch.tensor(row["err"])
        line = f"{label:32} {len(err):>3} {err.max():>12.1e} {err.median():>9.1e}"
        if row["gain"]:
            gain = torch.tensor(row["gain"])
            better, worse = int((gain > 1e-15).sum()), int((gain < -1e-15).sum())
            line += f" {gain.max():>21.1e} {f'{better}/{len(gain) - better - worse}/{worse}':>22}"
        else:
            line += " " * 44
        line += f" {max(row['guard']):>8.1e} {sum(row['failed']):>6}"
        print(line)


if __name__ == "__main__":
    main()
