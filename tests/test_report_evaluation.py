"""The report's evaluation views and the fixes of issue 34: DET curves, score histograms, the headline's
test-set metrics, omitted empty views, intervals, colours per trial, confound notes, the trials table."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from synthetic_telemetry import write_synthetic_experiment
from dpda_analysis.det import det_curve, probit, thin
from dpda_analysis.report import FIGURE_ORDER, FIGURES, build_figures, report_inputs, write_report
from dpda_analysis.report.common import is_omitted
from dpda_analysis.report.confounds import confound_notes
from dpda_analysis.store import Telemetry


def _sweep(bona: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DET curve by brute force: every distinct score as the threshold (scikit-learn is not
    installed here; its det_curve with bona fide positive uses the same cut: miss = bona < t,
    false alarm = spoof >= t)."""
    thresholds = np.unique(np.concatenate([bona, spoof]))
    far = np.array([(spoof >= t).mean() for t in thresholds])
    frr = np.array([(bona < t).mean() for t in thresholds])
    return far, frr, thresholds


@pytest.fixture(scope="module")
def exp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 trials, the last (rule none, another RawBoost algorithm) stopped early (no eval/), each
    finished one with scored eval folders."""
    root = tmp_path_factory.mktemp("eval_views")
    write_synthetic_experiment(root, trials=5, steps=60, layers=3, steps_per_epoch=20, restart_trials=0,
                               stopped_trials=1, seed=7, scores=True)
    return root / "synthetic_exp"


@pytest.fixture(scope="module")
def figures(exp: Path) -> dict:
    with Telemetry(exp) as tel:
        inputs = report_inputs(tel)
        return {"figs": build_figures(tel, inputs=inputs, det_by_attack=True), "inputs": inputs}


def _eval_dir(exp: Path, trial_id: str) -> Path:
    return next(exp.glob(f"train_fn_{trial_id}_*")) / "eval"


def _scored(folder: Path, set_name: str) -> pd.DataFrame:
    keys = pd.read_csv(folder / f"{set_name}.keys.csv", keep_default_na=False, dtype=str)
    scores = pd.read_csv(folder / f"{set_name}.scores.txt", sep=" ", header=None, names=["utt", "score"], dtype={"utt": str})
    return keys.merge(scores, on="utt")


@pytest.mark.parametrize("case", ["ties", "tiny", "random"])
def test_det_curve_equals_a_brute_force_threshold_sweep(case: str) -> None:
    rng = np.random.default_rng(1)
    if case == "ties":
        bona, spoof = rng.integers(0, 5, 40).astype(float), rng.integers(-2, 3, 70).astype(float)
    elif case == "tiny":
        bona, spoof = np.array([0.3]), np.array([0.3, -1.0])
    else:
        bona, spoof = rng.normal(1, 1, 300), rng.normal(-1, 1, 500)
    curve = det_curve(bona, spoof)
    far, frr, thresholds = _sweep(bona, spoof)
    np.testing.assert_array_equal(curve.thresholds, thresholds)
    np.testing.assert_allclose(curve.far, far)
    np.testing.assert_allclose(curve.frr, frr)


def test_det_thinning_keeps_the_curve_ends_and_a_subset_of_its_points() -> None:
    rng = np.random.default_rng(2)
    curve = det_curve(rng.normal(1, 1, 20_000), rng.normal(-1, 1, 20_000))
    keep = thin(curve, 500)
    assert keep[0] == 0 and keep[-1] == curve.far.size - 1 and len(keep) <= 503
    assert np.all(np.diff(keep) > 0)  # indices into the curve: its own points, in order


def test_det_figure_points_equal_the_scores_files(exp: Path, figures: dict) -> None:
    """Each curve's points (customdata: false alarm and miss rates in %, threshold) are the brute-force
    sweep of that model's score and key files; x and y are their probits; the EER marker is metrics.csv's."""
    fig = figures["figs"]["det_curves"]
    assert is_omitted(fig) is None
    curves = [t for t in fig.data if t.mode == "lines"]
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(curves) == 4 * 2  # 4 evaluated models x 2 sets
    sets = {"x": "eval", "x2": "in_the_wild"}
    for trace, marker in zip(curves, markers):
        trial_id = trace.name.split()[1]
        folder = _eval_dir(exp, trial_id)
        scored = _scored(folder, sets[trace.xaxis])
        bona = scored.loc[scored["label"] == "bonafide", "score"].to_numpy()
        far, frr, thresholds = _sweep(bona, scored.loc[scored["label"] == "spoof", "score"].to_numpy())
        data = np.asarray(trace.customdata, dtype=float)
        at = np.searchsorted(thresholds, data[:, 2])  # thinned to <= 1500 points: each one of the sweep's
        np.testing.assert_array_equal(thresholds[at], data[:, 2])
        assert at[0] == 0 and at[-1] == len(thresholds) - 1
        np.testing.assert_allclose(data[:, 0], far[at] * 100)
        np.testing.assert_allclose(data[:, 1], frr[at] * 100)
        np.testing.assert_allclose(trace.x, probit(far[at]))
        eer = pd.read_csv(folder / "metrics.csv").set_index("set").loc[sets[trace.xaxis], "eer"]
        assert marker.x[0] == pytest.approx(float(probit(eer)))
    assert f"trial {curves[0].name.split()[1]}" in fig.layout.title.text  # names the models it shows


def test_det_by_attack_pits_each_attack_against_all_bona_fide(exp: Path, figures: dict) -> None:
    fig = figures["figs"]["det_by_attack"]
    first = figures["inputs"].table["trial_id"].iloc[0]  # the best-ranked evaluated trial
    assert f"trial {first}" in fig.layout.title.text
    scored = _scored(_eval_dir(exp, first), "eval")
    bona = scored.loc[scored["label"] == "bonafide", "score"].to_numpy()
    a17 = next(t for t in fig.data if t.name == "eval: A17")
    far, frr, thresholds = _sweep(bona, scored.loc[scored["attack"] == "A17", "score"].to_numpy())
    data = np.asarray(a17.customdata, dtype=float)
    at = np.searchsorted(thresholds, data[:, 2])
    np.testing.assert_allclose(data[:, :2], np.stack([far[at], frr[at]], 1) * 100)
    with Telemetry(exp) as tel:
        off = build_figures(tel)["det_by_attack"]  # not requested: left out, saying how to ask
    assert "--det-by-attack" in is_omitted(off)


def test_score_histograms_and_threshold_placement(exp: Path, tmp_path: Path) -> None:
    """Per class, the fraction of its scores in each of the shared bins; the EER threshold from
    metrics.csv; the Bayes threshold only when the scores are calibrated LLRs."""
    copy = tmp_path / "exp"
    shutil.copytree(exp, copy)
    with Telemetry(copy) as tel:
        fig = build_figures(tel, hist_bins=25)["score_histograms"]
        first = report_inputs(tel).table["trial_id"].iloc[0]
    folder = _eval_dir(copy, first)
    scored = _scored(folder, "eval")
    edges = np.histogram_bin_edges(scored["score"], bins=25)
    for cls, label in (("bona fide", "bonafide"), ("spoof", "spoof")):
        trace = next(t for t in fig.data if t.name == cls and t.xaxis == "x")
        counts, _ = np.histogram(scored.loc[scored["label"] == label, "score"], bins=edges)
        np.testing.assert_allclose(trace.y, counts / counts.sum())
        np.testing.assert_allclose(trace.x, (edges[:-1] + edges[1:]) / 2)
    metrics = pd.read_csv(folder / "metrics.csv")
    lines = [s for s in fig.layout.shapes if s.xref == "x"]
    assert [s.x0 for s in lines] == [pytest.approx(metrics.loc[0, "threshold"])]  # EER only: not calibrated
    assert f"trial {first}" in fig.layout.title.text
    metrics.assign(calibrated=True).to_csv(folder / "metrics.csv", index=False)
    with Telemetry(copy) as tel:
        fig = build_figures(tel)["score_histograms"]
    lines = sorted(s.x0 for s in fig.layout.shapes if s.xref == "x")
    assert lines == pytest.approx(sorted([metrics.loc[0, "threshold"], -np.log(0.95 / 0.5)]))
    assert any("Bayes threshold" in a.text for a in fig.layout.annotations)


def test_headline_gives_the_evaluated_models_test_metrics(exp: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    write_report(exp, out)
    page = out.read_text(encoding="utf-8")
    summary = page[page.index('id="summary"'):page.index("</table>", page.index('id="summary"'))]
    with Telemetry(exp) as tel:
        best = report_inputs(tel).table.iloc[0]
    metrics = pd.read_csv(_eval_dir(exp, best["trial_id"]) / "metrics.csv")
    assert f"test sets of trial {best['trial_id']} ({best['variant']})" in summary
    for r in metrics.itertuples():
        assert (f"{r.set} EER {r.eer * 100:.2f}% [{r.eer_low * 100:.1f}, {r.eer_high * 100:.1f}]%, "
                f"minDCF {r.min_dcf:.4f}, actDCF {r.act_dcf:.4f}, Cllr {r.cllr:.3f}") in summary


def test_the_evaluation_folder_names_its_model_and_empty_views_are_left_out(exp: Path, tmp_path: Path) -> None:
    """A search whose trials kept no eval/ (the quickstart's) and the eval folder of its best model:
    the evaluation views show that model, named after its trial; views with nothing to show are left
    out with one line each, never drawn empty beside full ones."""
    copy = tmp_path / "exp"
    shutil.copytree(exp, copy)
    best = next(copy.glob("train_fn_00001_*"))
    folder = tmp_path / "quickstart_eval"
    shutil.move(best / "eval", folder)
    for other in copy.glob("train_fn_*/eval"):
        shutil.rmtree(other)
    out = tmp_path / "r.html"
    result = write_report(copy, out, evaluation=folder)
    page = out.read_text(encoding="utf-8")
    assert {"test_eer", "det_curves", "score_histograms"} <= set(result.figures)
    with Telemetry(copy) as tel:
        figs = build_figures(tel, inputs=report_inputs(tel, folder))
        assert [t.name for t in figs["test_eer"].data] == ["trial 00001 (pcgrad)"]
        bare = build_figures(tel)  # no evaluated model at all
    for name in ("test_eer", "test_eer_by_attack", "test_eer_by_condition", "det_curves", "score_histograms"):
        assert is_omitted(bare[name]), name
    assert "test sets of trial 00001 (pcgrad)" in page
    # an eval folder without key files (older dpda eval): EER views only, the DET view left out
    for keys in folder.glob("*.keys.csv"):
        keys.unlink()
    result = write_report(copy, out, evaluation=folder)
    page = out.read_text(encoding="utf-8")
    assert "det_curves" not in result.figures and 'id="fig-det_curves"' not in page
    assert re.search(r'<p class="note omitted" id="omitted-det_curves">Not shown: DET curves', page)
    assert "test_eer" in result.figures


def test_rule_chart_has_no_interval_across_non_seed_trials(exp: Path, figures: dict) -> None:
    """Bars: the pooled fraction of each (rule, algo) group's steps with the Wilson interval of those
    pooled counts; points: each trial's fraction, with no interval at all."""
    fig = figures["figs"]["conflict_by_rule_algo"]
    bars = [t for t in fig.data if t.type == "bar"]
    points = [t for t in fig.data if t.type == "scatter"]
    assert len(bars) == 1 and len(points) == 5
    with Telemetry(exp) as tel:
        from dpda_analysis import queries

        pooled = queries.conflict_by(tel, ["variant", "rawboost_algo"])
    bar = bars[0]
    for i, row in enumerate(pooled.itertuples()):
        low, high = stats.binomtest(int(row.conflict_steps), int(row.steps)).proportion_ci(method="wilson")
        assert bar.y[i] == pytest.approx(row.conflict_steps / row.steps)
        assert bar.y[i] - bar.error_y.arrayminus[i] == pytest.approx(low)
        assert bar.y[i] + bar.error_y.array[i] == pytest.approx(high)
    for point in points:
        assert point.error_y.array is None and point.error_x.array is None
    assert "Wilson" in fig.layout.title.text and "not seeds" in fig.layout.title.text


def test_one_colour_per_trial_in_every_figure(figures: dict) -> None:
    figs, inputs = figures["figs"], figures["inputs"]
    seen: dict[str, set[str]] = {}
    for name in ("conflict_by_epoch", "dev_eer_by_epoch", "conflict_by_rule_algo", "eer_vs_conflict", "test_eer",
                 "test_eer_by_attack", "det_curves"):
        for trace in figs[name].data:
            match = re.match(r"trial (\d+)", trace.name or "")
            if match is None:
                continue
            color = trace.line.color if trace.mode == "lines" or name.endswith("epoch") else trace.marker.color
            seen.setdefault(match.group(1), set()).add(color)
    assert len(seen) == 5 and all(len(c) == 1 for c in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == 5  # and no two trials share one
    assert {t: next(iter(c)) for t, c in seen.items()} == {t: inputs.color("synthetic_exp", t) for t in seen}


def test_confound_notes_appear_when_planted_and_not_otherwise(figures: dict) -> None:
    """The demo search plants both: one trial stopped by ASHA, and another RawBoost algorithm for it."""
    fig = figures["figs"]["conflict_by_rule_algo"]
    notes = fig.layout.meta["confounds"]
    table = figures["inputs"].table
    assert notes[0].startswith("Unequal budgets: epochs per rule") and "1 stopped early" in notes[0]
    spans = {v: (int(g.min()), int(g.max())) for v, g in table.groupby("variant")["epochs"]}
    for variant, (lo, hi) in spans.items():
        assert (f"{variant} {lo}" if lo == hi else f"{variant} {lo}-{hi}") in notes[0]
    assert any(n.startswith("rawboost_algo differs between rules") for n in notes)
    assert any("Not a controlled comparison" in a.text for a in fig.layout.annotations)
    for name in ("eer_vs_conflict", "cosine_histogram", "layer_conflict"):
        assert figures["figs"][name].layout.meta["confounds"] == notes
    assert "confounds" not in (figures["figs"]["test_eer"].layout.meta or {})
    controlled = pd.DataFrame({"variant": ["none", "none", "pcgrad", "pcgrad"], "epochs": [4, 4, 4, 4],
                               "status": ["completed"] * 4, "rawboost_algo": [3, 4, 3, 4],
                               "param.rule": ["none", "none", "pcgrad", "pcgrad"], "param.lr": [1e-4, 2e-4, 3e-4, 4e-4],
                               "param.align.options.c": [None, None, 0.5, 0.4]})
    assert confound_notes(controlled) == []
    assert confound_notes(controlled.assign(rawboost_algo=[3, 3, 4, 4])) == [
        "rawboost_algo differs between rules: none {3}, pcgrad {4}."]


def test_trials_table_default_is_narrow_without_repeats(exp: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    write_report(exp, out)
    page = out.read_text(encoding="utf-8")
    table = page[page.index('id="trials-table"'):]
    table = table[:table.index("</table>")]
    heads = re.findall(r'<th title="([^"]*)"( class="extra")?>', table)
    default = [h for h, extra in heads if not extra]
    assert len(default) <= 14 and len(set(default)) == len(default)
    assert "param.rule" not in default and "param.rawboost_algo" not in default and "param.strength" in default
    assert "strength" not in [h for h, _ in heads]  # the searched key's column holds it once
    assert 'id="trials-all-columns"' in page and "mean_cos" in [h for h, extra in heads if extra]
    assert set(FIGURE_ORDER) >= {"det_curves", "score_histograms", "test_eer_by_condition"}


def test_cli_report_evaluation_and_det_by_attack(exp: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dpda.cli import main as cli_main

    out = tmp_path / "cli.html"
    folder = _eval_dir(exp, "00001")
    assert cli_main(["report", str(exp), "--html", str(out), "--evaluation", str(folder), "--det-by-attack"]) == 0
    always = [f for f in FIGURES if f.when is None]  # dual-path trials: no path matrix
    assert f"({len(always) - 1} figures)" in capsys.readouterr().out  # all but the transform view
    page = out.read_text(encoding="utf-8")
    assert 'id="fig-det_by_attack"' in page and "test sets of trial 00001 (pcgrad)" in page
