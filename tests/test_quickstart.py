"""The README's main command, scaled down: synth -> demo search -> eval -> report, then rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dpda.cli import main
from dpda.metrics import read_scores

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_quickstart_end_to_end_and_rerun_reuses(ray_instance, tmp_path: Path, capsys) -> None:
    out, data = tmp_path / "out", tmp_path / "data"
    # the default quickstart scaled down (2 trials of 3 epochs on 480 training utterances) still learns
    argv = ["quickstart", "--out", str(out), "--data", str(data), "--corpus-size", "480", "120", "120", "48",
            "--num-samples", "2", "--epochs", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "quickstart.json").read_text())
    report = Path(summary["report"])
    assert str(report) in printed  # the report's path is printed at the end
    # it learns (measured here: dev 36.5% [27.6, 46.8], eval 39.1% [27.6, 52.6]): dev below chance
    # by its whole 95% interval, the unseen attacks of eval by its point estimate
    for name in ("dev", "eval"):
        low, high = summary["eer_interval"][name]
        assert low <= summary["eer"][name] <= high
        assert f"{name} {100 * summary['eer'][name]:.1f}% [{100 * low:.1f}, {100 * high:.1f}]" in printed
    assert summary["eer_interval"]["dev"][1] < 0.5 and summary["eer"]["eval"] < 0.45, summary

    # the corpus, in the ASVspoof 2019 layout and the In-the-Wild-style layout
    assert (data / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.eval.trl.txt").exists()
    assert (data / "itw/meta.csv").exists()
    # the search: both trials ran and wrote telemetry; results and the best config are kept
    exp = Path(summary["experiment"])
    results = pd.read_csv(exp / "results.csv")
    assert len(results) == 2
    assert (exp / "best_config.yaml").exists()
    assert len(list(exp.glob("trial_*/telemetry/steps"))) == 2
    # the best model evaluated on every set: score files that parse back, and the metrics table
    for name in ("dev", "eval", "itw"):
        scores = read_scores(out / "eval" / f"{name}.scores.txt")
        assert len(scores) > 0 and scores.notna().all()
        assert 0.0 <= summary["eer"][name] <= 1.0
    metrics = json.loads((out / "eval/metrics.json").read_text())
    assert [m["set"] for m in metrics] == ["dev", "eval", "itw"]
    # the report: one self-contained file with plotly.js inline
    html = report.read_text()
    assert "plotly" in html.lower() and '<script src="http' not in html

    # running it again reuses the corpus and the finished search
    mtime = (exp / "results.csv").stat().st_mtime
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "reusing the synthetic corpus" in again and "reusing the finished search" in again
    assert (exp / "results.csv").stat().st_mtime == mtime

    # and under --quiet it prints its results only: the EERs and where the report is
    assert main(["-q", *argv]) == 0
    quiet = capsys.readouterr()
    assert [line.split()[0] for line in quiet.out.split("\n") if line] == ["EER", "Total"]
    assert "==>" not in quiet.out and "scoring:" not in quiet.err
