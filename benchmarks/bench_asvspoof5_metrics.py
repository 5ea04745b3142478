"""Time EER, minDCF, actDCF and Cllr on 10^6 trials on one core (issue 33: each < 1 s).

Usage: OMP_NUM_THREADS=1 PYTHONPATH=platform:analysis python benchmarks/bench_asvspoof5_metrics.py
Not asserted in tests (no wall-clock assertions); prints the best of 3 runs per metric.
"""

from __future__ import annotations

import time

import numpy as np

from dpda.metrics import compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf


def main(n: int = 1_000_000, repeats: int = 3) -> None:
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(2.0, 2.0, n // 10), rng.normal(-2.0, 3.0, n - n // 10)
    for name, fn in (("EER", compute_eer), ("minDCF", compute_min_dcf),
                     ("actDCF", compute_act_dcf), ("Cllr", compute_cllr)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(bona, spoof)
            best = min(best, time.perf_counter() - start)
        print(f"{name:7s} {n:,} trials: {best:.4f} s")


if __name__ == "__main__":
    main()
