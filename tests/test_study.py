"""`dpda study SPEC`: a SPEC's errors are one line naming the key, before Ray starts; a 2-variant x
3-seed study on a tiny corpus runs as Ray Tune trials, resumes after an interruption without
rerunning finished runs, and its paired-difference table equals an independent computation from
the runs' files.

One local Ray instance for the module (2 CPUs), one study run (interrupted, then resumed).
"""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from dpda.cli import main

from support import write_tiny_corpus

ROOT = Path(__file__).parents[1]
SEEDS = [0, 1, 2]
BUCKET = "dpda-study"


def tiny_spec(corpus: Path, **changes) -> dict:
    """2 variants x 3 seeds of the demo config scaled down: 0.5-s crops, 2 steps per epoch, 2 epochs."""
    spec = {
        "name": "tiny",
        "base": str(ROOT / "configs/demo.yaml"),
        "set": {
            "device": "cpu", "data.train": [f"asvspoof2019:{corpus}/LA:train"],
            "data.dev": [f"asvspoof2019:{corpus}/LA:dev"],
            "data.eval": {"heldout": [f"asvspoof2019:{corpus}/LA:dev"]},
            "data.length": 8000, "data.num_workers": 0, "eval.length": None,
            # barely trained (2 steps an epoch, a small lr), so that EERs differ between seeds and variants
            "optim.batch_size": 4, "optim.max_steps_per_epoch": 2, "optim.lr": 1e-5, "loss.class_weights": [0.5, 0.5],
            "telemetry.flush_every": 4, "checkpoint.average_best": 1,
        },
        "baseline": "none",
        "variants": {"none": {"align.rule": "none"}, "pcgrad": ["align.rule=pcgrad", "optim.lr=0.001"]},
        "seeds": SEEDS,
        "budget": {"epochs": 2, "patience": 5},
        "metrics": ["dev_eer", "conflict_fraction", "eval_eer.heldout"],
        "max_concurrent": 1,
    }
    spec.update(changes)
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- SPEC errors


@pytest.mark.parametrize("change, key", [
    ({"baseline": "missing"}, "baseline: 'missing' is not one of the variants"),
    ({"seeds": [0]}, "seeds: must have at least 2 items"),
    ({"seeds": [0, 0]}, "seeds: must be distinct"),
    ({"budget": {"epochs": 0}}, "budget.epochs:"),
    ({"budget": {"epochs": 2, "patiense": 1}}, "budget.patiense: unknown key"),
    ({"variants": {"none": {"align.rule": "none"}, "bad": ["align.rule"]}}, "variants.bad[0]: expected KEY=VALUE"),
    ({"variants": {"none": {}, "late": {"optim.epochs": 5}}}, "variants.late.optim.epochs: optim.epochs is the study's"),
    ({"variants": {"none": {}, "typo": ["align.rul=pcgrad"]}}, "variants.typo"),
    ({"metrics": ["dev_eer", "eval_eer.nope"]}, "metrics[1]: unknown metric 'eval_eer.nope'"),
    ({"set": {"seed": 3}}, "set.seed: is set by the study"),
    ({"colour": "red"}, "colour: unknown key"),
])
def test_spec_errors_name_the_key_before_ray_starts(tmp_path: Path, monkeypatch, capsys, change, key) -> None:
    import dpda.tune.session

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started")

    monkeypatch.setattr(dpda.tune.session, "init_ray", no_ray)
    spec = write_spec(tmp_path / "s.yaml", tiny_spec(tmp_path / "corpus", **change))
    assert main(["study", str(spec), "--storage", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and str(spec) in err, err
    assert "Traceback" not in err


def test_variants_share_seeds_and_budget(tmp_path: Path) -> None:
    from dpda.tune.study_spec import parse_study

    grid = parse_study(tiny_spec(tmp_path), source="s.yaml")
    a, b = grid.run_config("none", 2), grid.run_config("pcgrad", 2)
    assert (a["seed"], a["optim"]["epochs"], a["optim"]["patience"]) == (b["seed"], b["optim"]["epochs"], b["optim"]["patience"]) == (2, 2, 5)
    assert (a["align"]["rule"], b["align"]["rule"], a["optim"]["lr"], b["optim"]["lr"]) == ("none", "pcgrad", 1e-5, 1e-3)
    for config in (a, b):  # all else alike
        config.pop("align"), config["optim"].pop("lr")
    assert a == b
    assert grid.trial_config({"variant": "pcgrad", "seed": 1})["seed"] == 1


# ----------------------------------------------------------------------------- one study on Ray


@pytest.fixture(scope="module")
def store():
    from object_store import bucket_store

    with bucket_store(BUCKET) as s3:
        yield s3


@pytest.fixture(scope="module")
def ray_local(store):
    """Started after the object store: the workers inherit its credentials."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def interrupt_after(n: int, marker: Path):
    """A Tune callback that interrupts the study as Ctrl-C would once `n` runs have finished."""
    from ray.tune import Callback

    class _Interrupt(Callback):
        def __init__(self) -> None:
            self.done = 0

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.done += 1
            if self.done == n and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGUSR1)

    return _Interrupt()


def independent_table(exp: Path, baseline: str, metrics: list[str]) -> pd.DataFrame:
    """The paired differences from the run folders, computed here with pandas and scipy only."""
    from dpda_analysis import conflict_by, open_telemetry

    rows = []
    for trial in sorted(exp.glob("trial_*")):
        params = json.loads((trial / "params.json").read_text())
        summary = json.loads((trial / "summary.json").read_text())
        fraction = conflict_by(open_telemetry(trial), "trial")["conflict_fraction"].iloc[0]
        rows.append({"variant": params["variant"], "seed": params["seed"], "dev_eer": summary["final_dev_eer"],
                     "conflict_fraction": fraction, "eval_eer.heldout": summary["eval_eer"]["heldout"]})
    runs = pd.DataFrame(rows)
    base = runs[runs.variant == baseline].set_index("seed").sort_index()
    out = []
    for variant in [v for v in runs.variant.unique() if v != baseline]:
        other = runs[runs.variant == variant].set_index("seed").sort_index()
        for metric in metrics:
            d = (other[metric] - base[metric]).to_numpy(float)
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            p = stats.ttest_rel(other[metric], base[metric]).pvalue if d.std() > 0 else (1.0 if d[0] == 0 else 0.0)
            out.append({"variant": variant, "metric": metric, "diff": d.mean(), "low": d.mean() - half,
                        "high": d.mean() + half, "p": p})
    table = pd.DataFrame(out)
    # Holm, step-down, written out: sorted p_(i) x (m - i), running maximum, capped at 1
    order = np.argsort(table["p"].to_numpy())
    m = len(table)
    adjusted, running = np.empty(m), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * table["p"].iloc[i]))
        adjusted[i] = running
    table["p_holm"] = adjusted
    return table


@pytest.mark.ray
def test_study_runs_resumes_and_tabulates(ray_local, tmp_path: Path, capsys) -> None:
    from dpda.tune.study import STUDY_SNAPSHOT, fingerprint, run_study
    from dpda.tune.study_spec import load_study
    from dpda.tune.tuner import check_experiment, hold_experiment, storage_location

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=16, n_dev=24)
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec(corpus))
    grid = load_study(spec)
    store = storage_location(tmp_path / "studies")
    exp_loc = store.child(grid.name)
    exp = Path(exp_loc.root)

    # ---- first run: interrupted once two runs finished
    with hold_experiment(exp_loc):
        check_experiment(grid, exp_loc, False, fingerprint=fingerprint(grid), snapshot=STUDY_SNAPSHOT)
        first = run_study(grid, exp_loc, store, verbose=0, callbacks=[interrupt_after(2, tmp_path / "interrupted")])
    assert 0 < first.unfinished < 6
    # a finished run's files as they were (summary.json holds its wall time: a rerun changes it);
    # Tune copies trial folders again at each sync, so modification times say nothing here
    done = {t.parent.name: ((t.parent / "result.json").read_bytes(), t.read_bytes())
            for t in exp.glob("trial_*/summary.json")}
    assert len(done) >= 2

    # ---- a second start without --resume refuses; --resume finishes without rerunning the finished runs
    capsys.readouterr()
    assert main(["study", str(spec), "--storage", str(tmp_path / "studies"), "-q"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["study", str(spec), "--storage", str(tmp_path / "studies"), "--resume", "-q"]) == 0
    for name, (result, summary) in done.items():
        assert (exp / name / "result.json").read_bytes() == result, name
        assert (exp / name / "summary.json").read_bytes() == summary, name
        # one training attempt: a rerun would have written its telemetry as attempt-1
        assert {p.name for p in (exp / name / "telemetry/steps").iterdir()} == {"attempt-0"}, name

    # ---- one run per variant x seed, every seed shared by both variants
    runs = pd.read_csv(exp / "runs.csv")
    assert len(runs) == 6 and runs["finished"].all()
    assert sorted(zip(runs.variant, runs.seed)) == sorted((v, s) for v in ("none", "pcgrad") for s in SEEDS)
    assert (runs["epochs"] == 2).all()
    for trial in exp.glob("trial_*"):  # each run trained its grid point's config
        params = json.loads((trial / "params.json").read_text())
        model = __import__("torch").load(trial / "model.pt", weights_only=True)
        assert model["config"]["seed"] == params["seed"] and model["config"]["align"]["rule"] == params["variant"]

    # ---- the table equals the independent computation
    metrics = ["dev_eer", "conflict_fraction", "eval_eer.heldout"]
    got = pd.read_csv(exp / "study.csv")
    want = independent_table(exp, "none", metrics)
    assert got[["variant", "metric"]].values.tolist() == want[["variant", "metric"]].values.tolist()
    assert (got["seeds"] == 3).all()
    for col in ("diff", "low", "high", "p", "p_holm"):
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9, atol=1e-12,
                                   err_msg=col)
    md = (exp / "study.md").read_text()
    assert "| pcgrad | conflict % | 3 |" in md and "Holm" in md
    assert "fig-study" in (exp / "study.html").read_text()


@pytest.mark.ray
def test_study_on_object_storage(ray_local, store, tmp_path: Path, capsys) -> None:
    """The same command with --storage s3://...: the runs' files and the study's tables are in the
    bucket, read from there (2 variants x 2 seeds, 1 epoch)."""
    import pyarrow.fs as pafs

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=16, n_dev=24)
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec(corpus, seeds=[0, 1], budget={"epochs": 1}))
    assert main(["study", str(spec), "--storage", store.uri(f"{BUCKET}/studies"), "-q"]) == 0
    capsys.readouterr()
    fs = store.filesystem()
    exp = f"{BUCKET}/studies/tiny"

    def text(name: str) -> str:
        with fs.open_input_stream(f"{exp}/{name}") as fh:
            return fh.read().decode()

    runs = pd.read_csv(io.StringIO(text("runs.csv")))
    assert len(runs) == 4 and runs["finished"].all()
    assert runs[["dev_eer", "conflict_fraction", "eval_eer.heldout"]].notna().all().all(), runs
    got = pd.read_csv(io.StringIO(text("study.csv")))
    assert got["metric"].tolist() == ["dev_eer", "conflict_fraction", "eval_eer.heldout"] and (got["seeds"] == 2).all()
    assert "Paired differences" in text("study.md") and fs.get_file_info(f"{exp}/study.html").type == pafs.FileType.File


def test_conflict_spec_runs_what_the_benchmark_ran(tmp_path: Path) -> None:
    """studies/conflict.yaml is benchmarks/conflict_study.py's study (the RawBoost variants): the
    same variants, seeds and budget, and each run's config the benchmark's on the keys that matter."""
    import importlib.util

    from dpda.dotted import get_dotted
    from dpda.train.config import config_from_dict
    from dpda.tune.study_spec import load_study

    spec_file = importlib.util.spec_from_file_location("conflict_study", ROOT / "benchmarks/conflict_study.py")
    bench = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(bench)
    grid = load_study(ROOT / "studies/conflict.yaml", variables={"DPDA_DATA": str(tmp_path)})
    rawboost_only = [v for v, settings in bench.VARIANTS.items() if "augment.pipeline" not in settings]
    assert grid.variant_names == rawboost_only and grid.baseline == bench.BASELINE
    assert list(grid.seeds) == list(bench.DEFAULT_SEEDS)
    keys = ["augment.mode", "augment.rawboost", "align.rule", "align.mode", "align.strength", "data.length", "model",
            "optim.lr", "optim.batch_size", "optim.epochs", "optim.patience", "checkpoint", "eval.length", "seed", "loss"]
    for variant in grid.variant_names:
        ours = grid.run_config(variant, 3)
        theirs = bench.variant_config(str(tmp_path), 20, 3, variant, seed=3)
        for key in keys:
            assert get_dotted(ours, key) == get_dotted(config_from_dict(theirs).to_dict(), key), (variant, key)


def test_paths_spec_differs_only_in_the_split_into_paths(tmp_path: Path) -> None:
    """studies/paths.yaml (docs/study_paths.md): its four-path variant has configs/paths_rawboost.yaml's
    paths, its baseline the demo's mixed RawBoost, and the two runs of a seed differ in nothing but
    `augment` (same rule, model, budget, data, seed)."""
    from dpda.train.config import config_from_dict
    from dpda.tune.study_spec import load_study
    from dpda.yaml_io import read_yaml

    grid = load_study(ROOT / "studies/paths.yaml", variables={"DPDA_DATA": str(tmp_path)})
    assert grid.baseline == "mixed, one path" and grid.variant_names == ["mixed, one path", "four paths"]
    shipped = config_from_dict(read_yaml(ROOT / "configs/paths_rawboost.yaml", "config")).to_dict()
    four, mixed = (config_from_dict(grid.run_config(v, 2)).to_dict() for v in ("four paths", "mixed, one path"))
    assert list(four["augment"]["paths"]) == ["lnl", "isd", "ssi"]
    assert four["augment"]["paths"] == shipped["augment"]["paths"] and not mixed["augment"].get("paths")
    assert mixed["augment"]["rawboost"]["algo"] == 4
    assert {k: v for k, v in four.items() if k != "augment"} == {k: v for k, v in mixed.items() if k != "augment"}
