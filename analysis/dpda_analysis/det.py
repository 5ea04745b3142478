"""DET curves from score arrays (numpy only), drawn on probit axes as the field draws them.

Why here: the report reads an eval folder's score and key files and must draw the miss / false
alarm trade-off without torch or dpda. Every distinct score is a cut point, and a binary search in
each class's sorted scores gives both rates at all of them at once: at a threshold t, bona fide
trials scoring below t are missed and spoofs scoring t or more are accepted (the convention of
`dpda.metrics` and scikit-learn's `det_curve` with bona fide as the positive class).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import norm

PROBIT_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
"""Rates labelled on a probit axis (the NIST DET plot's ticks)."""


class DetCurve(NamedTuple):
    """One point per distinct score, thresholds ascending: false alarm (spoof accepted) and miss
    (bona fide rejected) rates at that threshold."""

    far: np.ndarray
    frr: np.ndarray
    thresholds: np.ndarray


def det_curve(bonafide: np.ndarray, spoof: np.ndarray) -> DetCurve:
    """The DET curve's cut points. Both classes must be non-empty (the caller skips a set without one)."""
    bona = np.asarray(bonafide, dtype=np.float64).ravel()
    spo = np.asarray(spoof, dtype=np.float64).ravel()
    if bona.size == 0 or spo.size == 0:
        raise ValueError("det_curve: needs both bona fide and spoof scores")
    thresholds = np.unique(np.concatenate([bona, spo]))
    bona_sorted, spoof_sorted = np.sort(bona), np.sort(spo)
    frr = np.searchsorted(bona_sorted, thresholds, side="left") / bona.size
    far = 1.0 - np.searchsorted(spoof_sorted, thresholds, side="left") / spo.size
    return DetCurve(far, frr, thresholds)


def thin(curve: DetCurve, max_points: int = 1500) -> np.ndarray:
    """Indices of at most about `max_points` cut points that keep the curve's shape on probit axes:
    the first and last and evenly spaced ones along the curve's probit arc length.
    A 10^6-trial set would otherwise put 10^6 points in the page."""
    n = curve.far.size
    if n <= max_points:
        return np.arange(n)
    x, y = probit(curve.far), probit(curve.frr)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    keep = np.searchsorted(arc, np.linspace(0.0, arc[-1], max_points))
    return np.unique(np.concatenate([[0, n - 1], np.clip(keep, 0, n - 1)]))


def probit(rate: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """norm.ppf of a rate, rates of 0 and 1 clipped to [floor, 1 - floor] (probit(0) is -inf)."""
    return norm.ppf(np.clip(np.asarray(rate, dtype=np.float64), floor, 1.0 - floor))


def probit_axis(low: float = 0.0005, high: float = 0.8) -> dict:
    """A Plotly axis dict labelled in percent at `PROBIT_TICKS` within [low, high]."""
    ticks = [t for t in PROBIT_TICKS if low <= t <= high]
    return {"tickvals": [float(norm.ppf(t)) for t in ticks], "ticktext": [f"{t * 100:g}" for t in ticks],
            "range": [float(norm.ppf(low)), float(norm.ppf(high))], "zeroline": False}
