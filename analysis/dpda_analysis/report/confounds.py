"""What makes a side-by-side comparison of rules unfair, computed from the trials, written on the figure.

Why: a search is not an experiment. When the trials of one rule ran fewer epochs (stopped by ASHA)
or used other settings (another RawBoost algorithm) than those of another rule, a figure that sets
the rules side by side shows the budget or the setting as much as the rule, and says nothing. The
figures that compare rules (`Figure.compares_rules`) carry these notes as an annotation.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dpda_analysis.evaluation import STOPPED
from dpda_analysis.report.common import is_omitted

CONFOUND_COLOR = "#a33"


def _values(values: pd.Series) -> str:
    items = sorted({str(v) for v in values.dropna()}, key=lambda v: (len(v), v))
    return "{" + ", ".join(items) + "}"


def _budget_note(table: pd.DataFrame) -> str | None:
    """Unequal budgets: the trials did not all run the same number of epochs."""
    if "epochs" not in table or table["epochs"].dropna().nunique() <= 1:
        return None
    per = table.groupby("variant", sort=True)["epochs"].agg(["min", "max"])
    spans = [f"{v} {int(lo)}" if lo == hi else f"{v} {int(lo)}-{int(hi)}" for v, (lo, hi) in per.iterrows()]
    stopped = int((table["status"] == STOPPED).sum()) if "status" in table else 0
    why = f"; {stopped} stopped early" if stopped else ""
    return f"Unequal budgets: epochs per rule {', '.join(spans)}{why}."


def _looks_discrete(values: pd.Series) -> bool:
    """Without the search-space snapshot: text, or a few whole numbers (an algorithm's number)."""
    numbers = pd.to_numeric(values.dropna(), errors="coerce")
    if numbers.isna().any():
        return True
    return bool((numbers == numbers.round()).all() and numbers.nunique() <= 6)


def _setting_columns(table: pd.DataFrame, space: dict[str, dict] | None) -> list[str]:
    """Discrete settings that could differ between rules: the RawBoost algorithm and every searched
    choice (not the rule itself, not a column repeating another one, not a rule's own option that
    other rules lack, not a continuous draw, which differs between any two trials)."""
    candidates = [c for c in ("rawboost_algo", "augment_mode") if c in table]
    for col in (c for c in table.columns if c.startswith("param.") and ":" not in c):
        key = col.removeprefix("param.")
        spec = (space or {}).get(key)
        discrete = spec.get("kind") == "choice" if spec is not None else _looks_discrete(table[col])
        if discrete:
            candidates.append(col)
    out: list[str] = []
    for col in candidates:
        shown = table[col].astype(str)
        if shown.equals(table["variant"].astype(str)) or any(shown.equals(table[c].astype(str)) for c in out):
            continue
        if table.groupby("variant")[col].apply(lambda v: v.isna().all()).any():
            continue  # a rule-specific option, absent in other rules' trials
        out.append(col)
    return out


def confound_notes(table: pd.DataFrame, space: dict[str, dict] | None = None) -> list[str]:
    """One line per confound between the rules' trials (empty with one rule or none)."""
    if table.empty or "variant" not in table or table["variant"].nunique() <= 1:
        return []
    notes = [n for n in [_budget_note(table)] if n]
    for col in _setting_columns(table, space):
        per = table.groupby("variant", sort=True)[col].apply(lambda v: frozenset(v.dropna().astype(str)))
        if per.nunique() > 1:
            name = col.removeprefix("param.")
            notes.append(f"{name} differs between rules: "
                         + ", ".join(f"{v} {_values(table.loc[table['variant'] == v, col])}" for v in per.index) + ".")
    return notes


def annotate(fig: go.Figure, notes: list[str]) -> None:
    """The notes under the figure (and in `layout.meta['confounds']`); a left-out figure gets none."""
    if not notes or is_omitted(fig):
        return
    text = "Not a controlled comparison:<br>" + "<br>".join(notes)
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0, y=0, yshift=-48, xanchor="left", yanchor="top",
                       showarrow=False, align="left", font={"size": 11, "color": CONFOUND_COLOR})
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    fig.update_layout(meta={**meta, "confounds": notes}, margin={"b": 70 + 16 * (len(notes) + 1)})
