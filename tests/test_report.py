"""The Plotly report: self-contained HTML, CLI behaviour, and a headless-Chromium render check."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import numpy as np
import pandas as pd
from scipy import stats

import dpda_analysis as A
from dpda.cli import main as cli_main
from synthetic_telemetry import PIPELINE, write_synthetic_experiment
from dpda_analysis.report import FIGURE_ORDER, FIGURES, TRIALS_TABLE, build_figures, write_report
from dpda_analysis.report.common import is_omitted
from dpda_analysis.store import Telemetry
from telemetry_support import pandas_supersede, raw_frame, resolved_epochs

CHROMIUM = "/usr/bin/chromium"
ALWAYS = [f.name for f in FIGURES if f.when is None]  # the figures every report draws
PATH_FIGURES = ["path_matrix", "path_pairs_ranked"]  # drawn when some trial has 3 paths or more
SEARCH_FRONT = "pareto_front"  # drawn for a search with several objectives (tests/test_report_pareto.py)
# left out (empty) of a report without applied-transforms telemetry and without score files
NO_SCORES_OMITTED = ("conflict_by_transform", "test_eer_by_condition", "det_curves", "det_by_attack", "score_histograms")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo scale: 6 trials, two restarted, two stopped early by ASHA after one epoch."""
    root = tmp_path_factory.mktemp("rep")
    write_synthetic_experiment(root, trials=6, steps=120, layers=5, steps_per_epoch=30, restart_trials=2,
                               stopped_trials=2, seed=3, scores=True)
    out = root / "out" / "report.html"
    result = write_report(root / "synthetic_exp", out, det_by_attack=True)
    assert result.figures == DRAWN  # no applied-transforms telemetry here: that view is left out
    return out


@pytest.fixture(scope="module")
def report_paths(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Many paths: trials of 5, 3 and 2 paths, one restarted, one stopped early."""
    root = tmp_path_factory.mktemp("rep_paths")
    write_synthetic_experiment(root, trials=3, steps=120, layers=4, steps_per_epoch=20, restart_trials=1,
                               stopped_trials=1, seed=6, path_counts=(5, 3, 2))
    out = root / "out" / "report.html"
    result = write_report(root / "synthetic_exp", out)
    assert set(PATH_FIGURES) <= set(result.figures) and set(result.figures) <= set(FIGURE_ORDER)
    return out


DRAWN = [name for name in ALWAYS if name != "conflict_by_transform"]


@pytest.fixture(scope="module")
def report_400(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XLS-R scale: 400 parameter tensors per trial."""
    root = tmp_path_factory.mktemp("rep400")
    write_synthetic_experiment(root, trials=3, steps=60, layers=400, steps_per_epoch=20, restart_trials=1,
                               stopped_trials=1, seed=4)
    out = root / "out" / "report.html"
    write_report(root / "synthetic_exp", out)
    return out


def _cells(page: str) -> pd.DataFrame:
    """The trials table as the page holds it: header titles -> each cell's raw data-v value."""
    table = page[page.index('id="trials-table"'):]
    table = table[: table.index("</table>")]
    heads = re.findall(r'<th title="([^"]*)"', table)
    rows = [re.findall(r'<td data-v="([^"]*)"', row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table)[1:]]
    return pd.DataFrame(rows, columns=heads)


def test_report_numbers_equal_an_independent_pandas_computation(report: Path) -> None:
    exp = report.parent.parent / "synthetic_exp"
    attempts = raw_frame(exp, "attempts")
    steps = pandas_supersede(raw_frame(exp, "steps"), attempts)
    assert len(steps) < len(raw_frame(exp, "steps"))  # the restarts left superseded rows
    ok = steps[~steps["skipped"]]
    epochs = resolved_epochs(exp)
    trial_dirs = {json.loads(p.read_text().splitlines()[0])["trial_id"]: p.parent for p in exp.glob("*/result.json")}
    model = {t: json.loads((d / "summary.json").read_text()) for t, d in trial_dirs.items() if (d / "summary.json").exists()}
    assert len(model) == 4  # two were stopped early
    with Telemetry(exp) as tel:
        figs = build_figures(tel)
    # conflict per epoch: one trace per trial (sorted ids), y = conflicting / non-skipped steps
    per_epoch = ok.groupby(["trial_id", "epoch"])["conflict"].agg(["mean", "sum", "size"])
    for trace, (trial_id, grp) in zip(figs["conflict_by_epoch"].data, per_epoch.groupby(level=0)):
        assert list(trace.x) == grp.index.get_level_values(1).tolist()
        np.testing.assert_allclose(trace.y, grp["mean"])
        low, high = zip(*(stats.binomtest(int(k), int(n)).proportion_ci(method="wilson") for k, n in
                          zip(grp["sum"], grp["size"])))
        np.testing.assert_allclose(np.asarray(trace.y) - trace.error_y.arrayminus, low, rtol=1e-9)
        np.testing.assert_allclose(np.asarray(trace.y) + trace.error_y.array, high, rtol=1e-9)
        assert (trace.line.dash == "dot") == (trial_id not in model)  # early-stopped trials drawn apart
    # dev EER per epoch, 1-based, each epoch once (a re-logged one from the later attempt)
    for trace, (_, grp) in zip(figs["dev_eer_by_epoch"].data, epochs.groupby("trial_id")):
        assert list(trace.x) == grp["epoch"].tolist() and grp["epoch"].iloc[0] == 1
        np.testing.assert_allclose(trace.y, grp["dev_eer"] * 100)
    # best dev EER vs conflict, and Spearman over the completed trials
    frac = ok.groupby("trial_id")["conflict"].mean()
    best = epochs.groupby("trial_id")["dev_eer"].min()
    shown = {}
    for trace in figs["eer_vs_conflict"].data:
        if trace.xaxis == "x":
            shown.update({t: (x, y) for t, x, y in zip(trace.text, trace.x, trace.y)})
    assert sorted(shown) == sorted(frac.index)
    for trial_id, (x, y) in shown.items():
        assert x == pytest.approx(frac[trial_id]) and y == pytest.approx(best[trial_id] * 100)
    done = sorted(model)
    rho, p = stats.spearmanr(frac[done], best[done])
    assert f"rho {rho:+.2f}, p={p:.2g}, n=4" in figs["eer_vs_conflict"].layout.annotations[0].text
    # test-set EERs: every completed model's metrics.csv rows, one trace (colour) per model
    test = figs["test_eer"].data
    for trace in test:
        trial_id = trace.name.split()[1]
        metrics = pd.read_csv(trial_dirs[trial_id] / "eval" / "metrics.csv").set_index("set")
        np.testing.assert_allclose(trace.x, metrics.loc[list(trace.y), "eer"] * 100)
    assert sum(len(t.x) for t in test) == 2 * len(model)
    # the page: headline is the saved model's dev EER, ranking and table cells as computed here
    page = report.read_text(encoding="utf-8")
    top = min(model, key=lambda t: model[t]["final_dev_eer"])
    summary = page[page.index('id="summary"'):page.index("</table>", page.index('id="summary"'))]
    assert f"{top}: {model[top]['final_dev_eer'] * 100:.2f}%" in summary
    assert f"scored {best[top] * 100:.2f}%, lower by selection" in summary
    k, n = int(ok["conflict"].sum()), len(ok)
    assert f"{k / n * 100:.2f}%" in summary
    cells = _cells(page)
    # ranked by the saved model's dev EER, then trials without one by their best epoch's
    assert cells["trial"].tolist() == done_sorted(model) + sorted(set(frac.index) - set(model), key=best.get)
    np.testing.assert_allclose(cells["conflict_fraction"].astype(float), frac[cells["trial"]].to_numpy())
    np.testing.assert_allclose(cells["best_dev_eer"].astype(float), best[cells["trial"]].to_numpy())
    assert (cells["status"] == "stopped early").sum() == 2


def done_sorted(model: dict) -> list[str]:
    """Completed trials in the table's order: by their saved model's dev EER."""
    return sorted(model, key=lambda t: model[t]["final_dev_eer"])


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert "plotly.js v" in page or "Plotly" in page[:2_000_000]
    assert not re.search(r"<script[^>]+src\s*=", page, re.I), "external script reference"
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?https?:", page, re.I), "external stylesheet"
    for name in DRAWN:
        assert f'id="fig-{name}"' in page
    assert not any(f'id="fig-{name}"' in page for name in PATH_FIGURES)
    assert 'id="fig-conflict_by_transform"' not in page and 'id="omitted-conflict_by_transform"' in page
    assert 'id="js-errors"' in page and 'id="summary"' in page and f'id="section-{TRIALS_TABLE}"' in page


def test_the_figure_table_names_titles_and_orders_the_page(report: Path) -> None:
    """Each figure's name and title are written once, in `FIGURES`: the names are FIGURE_ORDER, each
    drawn figure is titled from its entry, and the page holds the sections in the table's order,
    then the trials table."""
    assert FIGURE_ORDER == tuple(f.name for f in FIGURES) and len(set(FIGURE_ORDER)) == len(FIGURES)
    with Telemetry(report.parent.parent / "synthetic_exp") as tel:
        drawn = build_figures(tel, heatmap_trials=1)
    assert list(drawn) == ALWAYS and set(FIGURE_ORDER) - set(ALWAYS) == {*PATH_FIGURES, SEARCH_FRONT}
    for figure in FIGURES:
        if figure.name in drawn:
            assert drawn[figure.name].layout.title.text.startswith(figure.title), figure.name
    page = report.read_text(encoding="utf-8")
    sections = re.findall(r'<section[^>]* id="section-([a-z_]+)"', page)
    assert sections == [*DRAWN, TRIALS_TABLE]  # an empty view is left out, with a one-line note in its place
    assert page.index('id="omitted-conflict_by_transform"') < page.index('id="section-layer_heatmap"')


def test_cli_report_and_png_message(report: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exp = report.parent.parent / "synthetic_exp"
    out = tmp_path / "cli.html"
    assert cli_main(["report", str(exp), "--html", str(out)]) == 0
    assert out.stat().st_size > 1_000_000
    assert cli_main(["report", str(tmp_path / "nothing"), "--html", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    if importlib.util.find_spec("kaleido") is None:
        code = cli_main(["report", str(exp), "--html", str(out), "--png", str(tmp_path / "png")])
        assert code == 1 and "kaleido" in capsys.readouterr().err
        assert out.exists()


def _chromium(page: Path, tmp_path: Path, height: int) -> tuple[str, Path]:
    """(DOM after load, screenshot) from one headless Chromium start."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing on CI (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--virtual-time-budget=8000",
    ]
    shot = tmp_path / "report.png"
    dom = subprocess.run(  # one browser start: dump the DOM and take the screenshot
        [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size=1300,{height}",
         f"--screenshot={shot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=240,
    ).stdout
    return dom, shot


def _check_rendered(dom: str, drawn: list[str] = DRAWN) -> None:
    errors = re.search(r'<pre id="js-errors" data-count="(\d+)"[^>]*>([^<]*)</pre>', dom)
    assert errors is not None, "report page did not load"
    # console.warn and console.error are recorded there too: no JS error and no warning
    assert errors.group(1) == "0" and errors.group(2) == "", f"JavaScript errors or warnings: {errors.group(2)}"
    status = re.search(r'<pre id="render-status"[^>]*>([^<]*)</pre>', dom)
    assert status is not None and status.group(1), "render check script did not run"
    assert json.loads(status.group(1)) == {f"fig-{name}": True for name in drawn}
    # Independent of the page's own check: each figure's div holds Plotly's main svg.
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'id="fig-([a-z_]+)"', dom)]
    for (pos, name), nxt in zip(starts, [p for p, _ in starts[1:]] + [len(dom)]):
        assert 'class="main-svg"' in dom[pos:nxt], f"figure {name} did not render"
    assert 'id="trials-table"' in dom


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom, shot = _chromium(report, tmp_path, 4000)
    _check_rendered(dom)
    assert shot.exists() and shot.stat().st_size > 10_000


@pytest.mark.browser
def test_report_at_400_layers_renders_with_module_labels(report_400: Path, tmp_path: Path) -> None:
    """XLS-R scale: the layer views label modules (not 400 tensor names, not none), every view draws,
    and no JavaScript error or warning appears."""
    dom, shot = _chromium(report_400, tmp_path, 3000)
    _check_rendered(dom, [n for n in ALWAYS if n not in NO_SCORES_OMITTED])
    heat = dom[dom.index('id="fig-layer_heatmap"'):dom.index('id="fig-layer_conflict"')]
    ticks = re.findall(r'class="ytick"[^>]*>.*?<text[^>]*>([^<]+)</text>', heat)
    assert 10 <= len(ticks) <= 60, ticks  # one label per module, thinned: legible
    # the bracketed number is the module's tensor count in both layer views
    assert "ssl.encoder.layers.0 (16)" in ticks and "ssl.feature_extractor.conv_layers.0-6 (7)" in ticks
    modules = dom[dom.index('id="fig-layer_conflict"'):dom.index('id="fig-cosine_histogram"')]
    labels = re.findall(r'class="ytick"[^>]*>.*?<text[^>]*>([^<]+)</text>', modules)
    assert "ssl.encoder.layers.23 (16)" in labels and "head.fc (2)" in labels
    assert {t for t in re.findall(r'class="xtick"[^>]*>.*?<text[^>]*>([^<]+)</text>', modules)} == {"none", "pcgrad", "gradvac"}
    assert shot.stat().st_size > 10_000


def test_parcoords_with_conditional_parameters_missing_in_some_trials() -> None:
    """A search's conditional parameter (e.g. SNRmin only for SSI algos) is absent in other
    trials; the parameter view shows those as 'n/a' instead of failing."""
    import pandas as pd

    from dpda_analysis.report.trials import fig_search_parcoords

    table = pd.DataFrame({
        "param.align.rule": pd.array(["pcgrad", "none", "cagrad"], dtype="str"),
        "param.augment.rawboost.SNRmin": [17.0, float("nan"), 9.0],
        "param.align.options.c": pd.array([None, None, "0.5"], dtype="str"),
        "best_dev_eer": [0.3, 0.35, 0.32],
    })
    fig = fig_search_parcoords(table, title="search")
    dims = {d["label"]: d for d in fig.data[0]["dimensions"]}
    assert list(dims["align.options.c"]["ticktext"]) == ["0.5", "n/a"]
    assert list(dims["align.rule"]["ticktext"]) == ["cagrad", "none", "pcgrad"]
    assert "augment.rawboost.SNRmin" in dims


def test_conflict_by_transform_figure_only_with_the_applied_transforms_record(report: Path, tmp_path: Path) -> None:
    """Runs without the record (here schema-4 runs that did not log one, as older ones) get the
    empty figure; a pipeline run's bars are the per-transform and per-combination fractions
    with their Wilson intervals, one colour per variant."""
    with Telemetry(report.parent.parent / "synthetic_exp") as tel:
        empty = build_figures(tel)["conflict_by_transform"]
    assert not empty.data and "no applied-transforms telemetry" in is_omitted(empty)
    write_synthetic_experiment(tmp_path, trials=2, steps=60, layers=3, steps_per_epoch=30, restart_trials=0, seed=5,
                               leaves=PIPELINE)
    with Telemetry(tmp_path / "synthetic_exp") as tel:
        fig = build_figures(tel)["conflict_by_transform"]
        per = A.conflict_by_transform(tel)
        combos = A.conflict_by_combination(tel)
    left = [t for t in fig.data if t.xaxis == "x"]
    right = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name for t in left] == sorted(per["variant"].unique()) == [t.name for t in right]
    for trace, (variant, grp) in zip(left, per.groupby("variant")):
        assert list(trace.x) == grp["leaf"].tolist() == list(PIPELINE)
        np.testing.assert_allclose(trace.y, grp["conflict_fraction"])
        low, high = zip(*(stats.binomtest(int(k), int(n)).proportion_ci(method="wilson")
                          for k, n in zip(grp["conflict_steps"], grp["steps"])))
        np.testing.assert_allclose(np.asarray(trace.y) - trace.error_y.arrayminus, low, rtol=1e-9)
        np.testing.assert_allclose(np.asarray(trace.y) + trace.error_y.array, high, rtol=1e-9)
    for trace, (variant, grp) in zip(right, combos.groupby("variant")):
        assert set(trace.x) <= set(grp["combination"]) and len(trace.x) == min(len(grp), 12)


def test_path_figures_draw_the_matrix_and_the_ranked_pairs(report_paths: Path) -> None:
    """Each heatmap is one trial's matrix over a third of its run (`pair_conflicts(per='range')`),
    the trial with the most paths shown first and the others behind the dropdown; the ranked bars
    are each trial's pair fractions with their Wilson intervals, pairs ordered by the pooled fraction."""
    with Telemetry(report_paths.parent.parent / "synthetic_exp") as tel:
        figs = build_figures(tel)
        thirds = A.pair_conflicts(tel, per="range")
        ranked = A.most_conflicting_pairs(tel)
    heat = figs["path_matrix"]
    shown = [t for t in heat.data if t.visible]
    assert len(shown) == 3 and all(list(t.x) == ["orig", "lnl", "isd", "ssi", "noise_rir"] for t in shown)
    five = thirds[thirds["n_paths"] == 5]
    for trace, ((lo, hi), span) in zip(shown, five.groupby(["epoch_lo", "epoch_hi"])):
        z = np.asarray(trace.z, dtype=float)
        for row in span.itertuples():
            assert z[row.i, row.j] == z[row.j, row.i] == pytest.approx(row.fraction)
            assert trace.customdata[row.i][row.j][:2] == pytest.approx([row.lo, row.hi])
        assert np.isnan(np.diag(z)).all() and f"epochs {lo}-{hi}" in trace.name
    buttons = heat.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["00000", "00001", "00002"]  # 5, 3, 2 paths
    assert sum(buttons[1].args[0]["visible"]) == len(thirds.loc[thirds["trial_id"] == "00001", ["epoch_lo"]].drop_duplicates())
    bars = {t.name: t for t in figs["path_pairs_ranked"].data}
    for trial_id, grp in ranked.groupby("trial_id"):
        trace = bars[trial_id]
        got = dict(zip(trace.y, trace.x))
        for row in grp.itertuples():
            assert got[f"{row.path_i} / {row.path_j}"] == pytest.approx(row.fraction)
        low, high = zip(*(stats.binomtest(int(k), int(n)).proportion_ci(method="wilson")
                          for k, n in zip(grp["conflicts"], grp["n"])))
        want = dict(zip(grp["path_i"] + " / " + grp["path_j"], zip(low, high)))
        for y, x, minus, plus in zip(trace.y, trace.x, trace.error_x.arrayminus, trace.error_x.array):
            assert (x - minus, x + plus) == pytest.approx(want[y], rel=1e-9)
    order = list(figs["path_pairs_ranked"].layout.yaxis.categoryarray)[::-1]
    pooled = ranked.groupby(ranked["path_i"] + " / " + ranked["path_j"])[["conflicts", "n"]].sum()
    assert order == list((pooled["conflicts"] / pooled["n"]).sort_values(ascending=False).index)


@pytest.mark.browser
def test_report_with_many_paths_renders_in_headless_chromium(report_paths: Path, tmp_path: Path) -> None:
    dom, shot = _chromium(report_paths, tmp_path, 4000)
    _check_rendered(dom, [n for n in FIGURE_ORDER if n not in (*NO_SCORES_OMITTED, SEARCH_FRONT)])
    matrix = dom[dom.index('id="fig-path_matrix"'):dom.index('id="fig-path_pairs_ranked"')]
    assert "noise_rir" in matrix and "epochs 1-2" in matrix
    assert shot.exists() and shot.stat().st_size > 10_000
