"""The named detection metrics (EER and the ASVspoof 5 set) in one table, with bootstrap intervals.

Why: `dpda score`, `dpda eval` and the breakdowns all report the same metrics under the same
column names; this is the one place that names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dpda.errors import UserError
from dpda.metrics.bootstrap import metric_interval
from dpda.metrics.dcf import compute_act_dcf, compute_cllr, compute_min_dcf
from dpda.metrics.eer import Ties, compute_eer

Metric = Callable[[np.ndarray, np.ndarray, Ties], float]

# column name -> (label printed, point estimate); EER first, as today's output.
METRICS: dict[str, tuple[str, Metric]] = {
    "eer": ("EER", lambda b, s, t: compute_eer(b, s, t)[0]),
    "min_dcf": ("minDCF", lambda b, s, t: compute_min_dcf(b, s, ties=t)[0]),
    "act_dcf": ("actDCF", lambda b, s, t: compute_act_dcf(b, s)[0]),
    "cllr": ("Cllr", lambda b, s, t: compute_cllr(b, s)),
}
NEW_METRICS = ("min_dcf", "act_dcf", "cllr")  # the columns beside the EER's in CSVs
_ALIASES = {"mindcf": "min_dcf", "actdcf": "act_dcf"}


def parse_metrics(text: str, option: str = "--metrics") -> list[str]:
    """Metric column names from 'eer,mindcf,actdcf,cllr' (or 'all'), in the order given."""
    names = [_ALIASES.get(n, n) for n in (p.strip().lower().replace("-", "_") for p in text.split(",")) if n]
    if names == ["all"]:
        return list(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise UserError(f"{option}: unknown metric {', '.join(unknown) or repr(text)}; choose from "
                        "eer, mindcf, actdcf, cllr or all")
    return list(dict.fromkeys(names))


def metric_values(bona: np.ndarray, spoof: np.ndarray, names: Sequence[str] = NEW_METRICS, *,
                  ties: Ties = "asvspoof", draws: int = 0) -> dict[str, float]:
    """{name: value} (and `name_low`, `name_high` with `draws` > 0); NaN where a class is empty."""
    out: dict[str, float] = {}
    for name in names:
        fn = METRICS[name][1]
        value = low = high = float("nan")
        if bona.size and spoof.size:
            value = fn(bona, spoof, ties)
            if draws:
                low, high = metric_interval(lambda b, s: fn(b, s, ties), bona, spoof, draws=draws)
        out[name] = value
        if draws:
            out[f"{name}_low"], out[f"{name}_high"] = low, high
    return out
