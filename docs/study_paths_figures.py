"""The conflict-matrix tables and the report screenshot of docs/study_paths.md, from a study folder.

    PYTHONPATH=platform:analysis python docs/study_paths_figures.py runs/tune/paths

Prints (Markdown) the four-path variant's conflict matrix pooled over its seeds per third of the
longest run's epochs, with Wilson intervals over the pooled steps
(`dpda_analysis.most_conflicting_pairs(pooled=True)` over each third's epochs), and the pairs ranked
over the whole run; writes docs/report_paths_matrix.png: the report's `path_matrix` and
`path_pairs_ranked` views (what `dpda report FOLDER --html` draws) rendered by headless Chromium as
docs/report_screenshots.py does.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_screenshots import DOCS, screenshot  # noqa: E402
from dpda_analysis.pathmatrix import most_conflicting_pairs, pair_conflicts  # noqa: E402
from dpda_analysis.report import build_figures, render_html, report_inputs  # noqa: E402
from dpda_analysis.store import Telemetry  # noqa: E402

VIEWS = ("path_matrix", "path_pairs_ranked")
SHOT = DOCS / "report_paths_matrix.png"


def _cell(row: pd.Series) -> str:
    return f"{100 * row['fraction']:.1f} [{100 * row['lo']:.1f}, {100 * row['hi']:.1f}]"


def _pooled(tel: Telemetry, span: tuple[int, int] | None) -> pd.DataFrame:
    """The many-path pairs pooled over their trials (the one-path baseline's orig / aug left out)."""
    ranked = most_conflicting_pairs(tel, pooled=True, epochs=span)
    ranked = ranked[~((ranked["path_i"] == "orig") & (ranked["path_j"] == "aug"))].reset_index(drop=True)
    return ranked.assign(rank=range(1, len(ranked) + 1))


def pooled_tables(tel: Telemetry) -> str:
    """Per third of the run, the matrix (upper triangle) of the many-path trials' pairs pooled over
    seeds; then the pairs ranked over the whole run."""
    pairs = pair_conflicts(tel, per="range", ranges=3)
    pairs = pairs[pairs["n_paths"] > 2]
    paths = list(pairs.sort_values("i").drop_duplicates("i")["path_i"]) + [pairs.sort_values("j")["path_j"].iloc[-1]]
    out = []
    # thirds of the longest run's epochs, alike for every trial (a run stopped early by patience has
    # fewer steps in the last third; per trial, pair_conflicts' own thirds would differ by run length)
    thirds = [(int(t[0]), int(t[-1])) for t in np.array_split(np.arange(1, pairs["epoch_hi"].max() + 1), 3) if len(t)]
    for lo, hi in thirds:
        ranked = _pooled(tel, (lo, hi)).set_index(["path_i", "path_j"])
        label = f"epoch {lo}" if lo == hi else f"epochs {lo}-{hi}"
        out.append(f"\n**{label}**: conflict % [95% Wilson interval] over {ranked['n'].iloc[0]} steps "
                   f"({ranked['trials'].iloc[0]} seeds pooled)\n")
        out.append("| | " + " | ".join(paths[1:]) + " |\n|---|" + "---|" * (len(paths) - 1))
        for a, row_path in enumerate(paths[:-1]):
            cells = [_cell(ranked.loc[(row_path, col)]) if b > a else "" for b, col in enumerate(paths[1:], start=1)]
            out.append(f"| {row_path} | " + " | ".join(cells) + " |")
    ranked = _pooled(tel, None)
    out.append(f"\n**Whole run, ranked** ({ranked['trials'].iloc[0]} seeds pooled)\n")
    out.append("| rank | pair | steps | conflict % [95% Wilson] | mean cos |\n|---|---|---|---|---|")
    for _, row in ranked.iterrows():
        out.append(f"| {row['rank']} | {row['path_i']} / {row['path_j']} | {row['n']} | {_cell(row)} | "
                   f"{row['mean_cos']:.3f} |")
    return "\n".join(out)


def main(folder: str) -> int:
    tel = Telemetry(folder)
    print(pooled_tables(tel))
    inputs = report_inputs(tel)
    figures = {k: v for k, v in build_figures(tel, inputs=inputs).items() if k in VIEWS}
    html = render_html(tel, figures, "DPDA gradient-conflict report: studies/paths.yaml", inputs)
    html = html.replace('<table class="summary"', '<table class="summary" style="display:none"')
    html = html.replace('<p class="note">Conflict:', '<p class="note" style="display:none">Conflict:')
    html = html.replace('id="section-trials_table"', 'id="section-trials_table" style="display:none"')
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "paths.html"
        page.write_text(html, encoding="utf-8")
        screenshot(page, SHOT, Path(tmp), height=2000)
    tel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
