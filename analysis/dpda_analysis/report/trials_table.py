"""The trials as a sortable HTML table (every column, never truncated), shown after the figures."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from dpda_analysis.evaluation import STOPPED
from dpda_analysis.report.common import interval, trial_label

TRIALS_TABLE = "trials_table"  # its section's name on the page
TRIALS_TABLE_TITLE = "Trials (click a column to sort)"


_TABLE_COLUMNS = [
    ("rank", "rank"), ("trial", "trial"), ("status", "status"), ("variant", "rule"), ("rawboost_algo", "RawBoost algo"),
    ("strength", "strength"), ("model_dev_eer", "saved model dev EER"), ("model_dev_eer_ci", "95% interval"),
    ("best_dev_eer", "best epoch dev EER"), ("best_epoch", "best epoch"), ("epochs", "epochs"),
    ("conflict_fraction", "conflict fraction"), ("conflict_ci", "95% interval (steps)"), ("mean_cos", "mean cos"),
    ("steps", "steps"), ("attempts", "attempts"),
]


def trials_table_html(table: pd.DataFrame, multi_run: bool, tests: pd.DataFrame) -> str:
    """The trials as an HTML table: full headers, every column, click-to-sort (raw values sort,
    formatted values show), early-stopped rows greyed; each test set's EER as a column."""
    if table.empty:
        return '<p class="note">no trials</p>'
    show = table.copy()
    show["trial"] = [trial_label(r, t, multi_run) for r, t in zip(show["run_id"], show["trial_id"])]
    show["model_dev_eer_ci"] = [interval(lo, hi).strip() for lo, hi in
                                zip(show.get("model_dev_eer_low", np.nan), show.get("model_dev_eer_high", np.nan))]
    show["conflict_ci"] = [interval(lo, hi).strip() for lo, hi in zip(show["conflict_low"], show["conflict_high"])]
    columns = [(c, h) for c, h in _TABLE_COLUMNS if c in show]
    sets = tests[tests["factor"] == "all"]
    for set_name, grp in sets.groupby("set", sort=True):
        col = f"test.{set_name}"
        by = {(r, t): (e, lo, hi) for r, t, e, lo, hi in
              zip(grp["run_id"], grp["trial_id"], grp["eer"], grp["eer_low"], grp["eer_high"])}
        show[col] = [by.get((r, t), (np.nan,) * 3)[0] for r, t in zip(show["run_id"], show["trial_id"])]
        show[col + "_ci"] = [interval(*by.get((r, t), (np.nan,) * 3)[1:]).strip()
                             for r, t in zip(show["run_id"], show["trial_id"])]
        columns += [(col, f"{set_name} EER"), (col + "_ci", f"{set_name} 95% interval")]
    columns += [(c, c.removeprefix("param.")) for c in show.columns if c.startswith("param.") and ":" not in c]
    percent = {"model_dev_eer", "best_dev_eer", *(c for c, _ in columns if c.startswith("test.")
                                                   and not c.endswith("_ci"))}

    def cell(col: str, v: object) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or (not isinstance(v, str) and pd.isna(v)):
            return '<td data-v=""></td>'
        raw = html.escape(str(v), quote=True)
        if col in percent:
            text = f"{float(v) * 100:.2f}%"
        elif isinstance(v, (float, np.floating)):
            text = f"{float(v):.4g}"
        else:
            text = str(v)
        return f'<td data-v="{raw}">{html.escape(text)}</td>'

    head = "".join(f'<th title="{html.escape(c)}">{html.escape(h)}</th>' for c, h in columns)
    body = []
    for _, row in show.iterrows():
        cls = ' class="stopped"' if row.get("status") == STOPPED else ""
        body.append(f"<tr{cls}>" + "".join(cell(c, row[c]) for c, _ in columns) + "</tr>")
    return (f'<div class="table-wrap"><table class="sortable" id="trials-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')
