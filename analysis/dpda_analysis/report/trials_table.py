"""The trials as a sortable HTML table, shown after the figures: a narrow default view, every
other column behind "show all columns"."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from dpda_analysis.evaluation import STOPPED
from dpda_analysis.report.common import interval, trial_label

TRIALS_TABLE = "trials_table"  # its section's name on the page
TRIALS_TABLE_TITLE = "Trials (click a column to sort)"

# (column, header, interval columns or None): the default view; a value's interval is in its cell
_DEFAULT_COLUMNS = [
    ("rank", "rank", None), ("trial", "trial", None), ("status", "status", None), ("variant", "rule", None),
    ("rawboost_algo", "RawBoost algo", None),
    ("model_dev_eer", "saved model dev EER [95%]", ("model_dev_eer_low", "model_dev_eer_high")),
    ("epochs", "epochs", None),
    ("conflict_fraction", "conflict fraction [95%, steps]", ("conflict_low", "conflict_high")),
]
# shown with "show all columns"
_EXTRA_COLUMNS = [
    ("strength", "strength"), ("best_dev_eer", "best epoch dev EER"), ("best_epoch", "best epoch"),
    ("epochs_to_best", "epochs to best"), ("last_epoch_dev_eer", "last epoch dev EER"), ("mean_cos", "mean cos"),
    ("steps", "steps"), ("conflict_steps", "conflicting steps"), ("skipped_steps", "skipped steps"),
    ("attempts", "attempts"), ("world_size", "workers"), ("augment_mode", "augment mode"), ("n_layers", "tensors"),
]
_PERCENT = {"model_dev_eer", "best_dev_eer", "last_epoch_dev_eer"}


def _same(a: pd.Series, b: pd.Series) -> bool:
    """Whether two columns hold the same values (numbers to float32 precision, the rest as text)."""
    x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
    if x.notna().equals(a.notna()) and y.notna().equals(b.notna()) and a.notna().any():
        return bool(np.allclose(x.to_numpy(float), y.to_numpy(float), rtol=1e-6, equal_nan=True))
    return a.astype(str).equals(b.astype(str))


def trials_table_html(table: pd.DataFrame, multi_run: bool, tests: pd.DataFrame) -> str:
    """The trials as an HTML table: click-to-sort (raw values sort, formatted values show), early-stopped
    rows greyed; each test set's EER as a column. A searched parameter that repeats a shown column
    (the rule, the RawBoost algorithm) is not shown twice; the less-read columns are hidden until
    "show all columns" is ticked."""
    if table.empty:
        return '<p class="note">no trials</p>'
    show = table.copy()
    show["trial"] = [trial_label(r, t, multi_run) for r, t in zip(show["run_id"], show["trial_id"])]
    columns: list[tuple[str, str, tuple[str, str] | None, bool]] = [
        (c, h, ci, False) for c, h, ci in _DEFAULT_COLUMNS if c in show]
    sets = tests[tests["factor"] == "all"]
    for set_name, grp in sets.groupby("set", sort=True):
        col = f"test.{set_name}"
        by = {(r, t): (e, lo, hi) for r, t, e, lo, hi in
              zip(grp["run_id"], grp["trial_id"], grp["eer"], grp["eer_low"], grp["eer_high"])}
        values = [by.get((r, t), (np.nan,) * 3) for r, t in zip(show["run_id"], show["trial_id"])]
        show[col], show[col + "_low"], show[col + "_high"] = zip(*values) if values else ([], [], [])
        columns.append((col, f"{set_name} EER [95%]", (col + "_low", col + "_high"), False))
    for col in (c for c in show.columns if c.startswith("param.") and ":" not in c):
        if not any(_same(show[col], show[c]) for c, *_ in columns):  # not a repeat of a shown column
            columns.append((col, col.removeprefix("param."), None, False))
    params = [c for c, *_ in columns if c.startswith("param.")]
    columns += [(c, h, None, True) for c, h in _EXTRA_COLUMNS
                if c in show and not any(_same(show[c], show[p]) for p in params)]
    percent = _PERCENT | {c for c, *_ in columns if c.startswith("test.")}

    def cell(col: str, v: object, ci: tuple[str, str] | None, row: pd.Series, extra: bool) -> str:
        cls = ' class="extra"' if extra else ""
        if v is None or (isinstance(v, float) and np.isnan(v)) or (not isinstance(v, str) and pd.isna(v)):
            return f'<td data-v=""{cls}></td>'
        raw = html.escape(str(v), quote=True)
        if col in percent:
            text = f"{float(v) * 100:.2f}%"
        elif isinstance(v, (float, np.floating)):
            text = f"{float(v):.4g}"
        else:
            text = str(v)
        if ci is not None and col in percent:
            text += interval(row.get(ci[0]), row.get(ci[1])).replace("]%", "]")
        elif ci is not None and pd.notna(row.get(ci[0])) and pd.notna(row.get(ci[1])):
            text += f" [{float(row[ci[0]]):.3f}, {float(row[ci[1]]):.3f}]"
        return f'<td data-v="{raw}"{cls}>{html.escape(text)}</td>'

    extra_class = ' class="extra"'
    head = "".join(f'<th title="{html.escape(c)}"{extra_class if extra else ""}>{html.escape(h)}</th>'
                   for c, h, _, extra in columns)
    body = []
    for _, row in show.iterrows():
        cls = ' class="stopped"' if row.get("status") == STOPPED else ""
        body.append(f"<tr{cls}>" + "".join(cell(c, row[c], ci, row, extra) for c, _, ci, extra in columns) + "</tr>")
    n_extra = sum(extra for *_, extra in columns)
    toggle = (f'<label class="note"><input type="checkbox" id="trials-all-columns" onchange="document.getElementById('
              f"'trials-table').classList.toggle('show-all', this.checked)\"> show all columns ({n_extra} more)</label>"
              if n_extra else "")
    return (f'{toggle}<div class="table-wrap"><table class="sortable" id="trials-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')
