"""The Plotly report: self-contained HTML, CLI behaviour, and a headless-Chromium render check."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from dpda.cli import main as cli_main
from dpda.telemetry.synthetic import write_synthetic_experiment
from dpda_analysis.report import FIGURE_ORDER, write_report

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rep")
    write_synthetic_experiment(root, trials=4, steps=120, layers=5, steps_per_epoch=30, restart_trials=1, seed=3)
    out = root / "out" / "report.html"
    result = write_report(root / "synthetic_exp", out)
    assert result.figures == list(FIGURE_ORDER)
    return out


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert "plotly.js v" in page or "Plotly" in page[:2_000_000]
    assert not re.search(r"<script[^>]+src\s*=", page, re.I), "external script reference"
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?https?:", page, re.I), "external stylesheet"
    for name in FIGURE_ORDER:
        assert f'id="fig-{name}"' in page
    assert 'id="js-errors"' in page and 'id="summary"' in page


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


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing on CI (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--virtual-time-budget=5000",
    ]
    shot = tmp_path / "report.png"
    dom = subprocess.run(  # one browser start: dump the DOM and take the screenshot
        [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,4000",
         f"--screenshot={shot}", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=180,
    ).stdout
    errors = re.search(r'<pre id="js-errors" data-count="(\d+)"[^>]*>([^<]*)</pre>', dom)
    assert errors is not None, "report page did not load"
    assert errors.group(1) == "0" and errors.group(2) == "", f"JavaScript errors: {errors.group(2)}"
    status = re.search(r'<pre id="render-status"[^>]*>([^<]*)</pre>', dom)
    assert status is not None and status.group(1), "render check script did not run"
    assert json.loads(status.group(1)) == {f"fig-{name}": True for name in FIGURE_ORDER}
    # Independent of the page's own check: each figure's div holds Plotly's main svg.
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'id="fig-([a-z_]+)"', dom)]
    for (pos, name), nxt in zip(starts, [p for p, _ in starts[1:]] + [len(dom)]):
        assert 'class="main-svg"' in dom[pos:nxt], f"figure {name} did not render"
    assert shot.exists() and shot.stat().st_size > 10_000


def test_parcoords_with_conditional_parameters_missing_in_some_trials() -> None:
    """A search's conditional parameter (e.g. SNRmin only for SSI algos) is absent in other
    trials; the parameter view shows those as 'n/a' instead of failing."""
    import pandas as pd

    from dpda_analysis.report import fig_search_parcoords

    table = pd.DataFrame({
        "param.align.rule": pd.array(["pcgrad", "none", "cagrad"], dtype="str"),
        "param.augment.rawboost.SNRmin": [17.0, float("nan"), 9.0],
        "param.align.options.c": pd.array([None, None, "0.5"], dtype="str"),
        "best_dev_eer": [0.3, 0.35, 0.32],
    })
    fig = fig_search_parcoords(table)
    dims = {d["label"]: d for d in fig.data[0]["dimensions"]}
    assert list(dims["align.options.c"]["ticktext"]) == ["0.5", "n/a"]
    assert list(dims["align.rule"]["ticktext"]) == ["cagrad", "none", "pcgrad"]
    assert "augment.rawboost.SNRmin" in dims
