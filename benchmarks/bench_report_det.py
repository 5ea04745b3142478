"""Time the report's evaluation views on a 10^6-trial eval folder and the page they add.

Usage: OMP_NUM_THREADS=1 PYTHONPATH=platform:analysis python benchmarks/bench_report_det.py
Builds a tiny synthetic experiment and an eval folder as `dpda eval` writes it (one set of 10^6
scores with its keys, 8 attacks), then times the DET curve alone and `write_report` with and
without that folder (`--evaluation`, `--det-by-attack`); prints the page sizes. Not asserted in tests.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic-telemetry helper

from synthetic_telemetry import write_synthetic_experiment  # noqa: E402
from dpda_analysis.det import det_curve, thin  # noqa: E402
from dpda_analysis.report import write_report  # noqa: E402


def eval_folder(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    bona = n // 10
    label = np.where(np.arange(n) < bona, "bonafide", "spoof")
    attack = np.where(label == "bonafide", "-", np.char.add("A", (np.arange(n) % 8 + 10).astype(str)))
    score = np.where(label == "bonafide", rng.normal(2.0, 2.0, n), rng.normal(-2.0, 3.0, n))
    utt = np.char.add("u", np.arange(n).astype(str))
    folder.mkdir(parents=True)
    pd.DataFrame({"utt": utt, "score": score}).to_csv(folder / "big.scores.txt", sep=" ", header=False, index=False)
    pd.DataFrame({"utt": utt, "label": label, "attack": attack}).to_csv(folder / "big.keys.csv", index=False)
    pd.DataFrame([{"set": "big", "spec": "big", "n_bonafide": bona, "n_spoof": n - bona, "eer": 0.2, "threshold": 0.0,
                   "score": "logit_diff", "bayes_threshold": -0.642, "model": str(folder / "model.pt")}]).to_csv(
        folder / "metrics.csv", index=False)


def main(n: int = 1_000_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_synthetic_experiment(root, trials=2, steps=40, layers=3, steps_per_epoch=20, restart_trials=0, seed=1)
        eval_folder(root / "eval", n)
        rng = np.random.default_rng(1)
        bona, spoof = rng.normal(2.0, 2.0, n // 10), rng.normal(-2.0, 3.0, n - n // 10)
        start = time.perf_counter()
        keep = thin(det_curve(bona, spoof))
        print(f"DET curve of {n:,} trials, thinned to {keep.size} points: {time.perf_counter() - start:.2f} s")
        for name, kwargs in (("without the eval folder", {}),
                             ("with it", {"evaluation": root / "eval"}),
                             ("with it and --det-by-attack", {"evaluation": root / "eval", "det_by_attack": True})):
            start = time.perf_counter()
            result = write_report(root / "synthetic_exp", root / "r.html", **kwargs)
            print(f"report {name}: {time.perf_counter() - start:.1f} s, {len(result.figures)} figures, "
                  f"{result.html_path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
