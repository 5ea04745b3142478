"""Benchmark: the conflict matrix of many-path runs (`dpda_analysis.pair_conflicts`) against the
per-layer conflict query of dual-path runs (`conflict_by_layer`) on the same telemetry.

Writes a synthetic experiment with tests/synthetic_telemetry.py (P paths, one trial restarted so
supersession is active), then times each query on one DuckDB thread (best of 3).

    PYTHONPATH=platform:analysis python benchmarks/bench_pathmatrix.py                 # 2 trials x 4000 steps x 50 layers, P = 5
    PYTHONPATH=platform:analysis python benchmarks/bench_pathmatrix.py --steps 20000 --layers 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import dpda_analysis as A  # noqa: E402
from synthetic_telemetry import write_synthetic_experiment  # noqa: E402


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--paths", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_experiment(tmp, trials=args.trials, steps=args.steps, layers=args.layers,
                                   steps_per_epoch=max(1, args.steps // 10), restart_trials=1, seed=0,
                                   path_counts=(args.paths,), flush_every=1000)
        with A.open_telemetry(Path(tmp) / "synthetic_exp", threads=1) as tel:
            rows = int(tel.sql("SELECT count(*) AS n FROM layers")["n"].iloc[0])
            pairs = args.paths * (args.paths - 1) // 2
            print(f"{args.trials} trials, {rows:,} layer rows x {pairs} pairs (P = {args.paths}), 1 thread")
            for label, fn in (("pair_conflicts (whole model, per epoch)", lambda: A.pair_conflicts(tel)),
                              ("pair_conflicts (per layer, per epoch)", lambda: A.pair_conflicts(tel, layers=True)),
                              ("conflict_by_layer (pair 0-1 only, for scale)", lambda: A.conflict_by_layer(tel))):
                print(f"  {label:48s} {_best(fn):7.3f} s")


if __name__ == "__main__":
    main()
