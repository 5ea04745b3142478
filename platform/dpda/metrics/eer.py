"""Equal error rate with the ASVspoof convention, exact and O(n log n).

The ASVspoof reference sorts the concatenated scores once (stable sort, bona fide first among
equal scores), and takes every cut point of that order as a threshold: FRR is the fraction of bona
fide scores before the cut, FAR the fraction of spoof scores after it. We follow it exactly so our
numbers are comparable with published ones. `ties="threshold"` instead only cuts between distinct
score values (a real threshold cannot split a tie), which matters only when scores are tied.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from dpda.errors import UserError

Ties = Literal["asvspoof", "threshold"]


class DetCurve(NamedTuple):
    """Miss (bona fide rejected) and false alarm (spoof accepted) rates at each cut point.

    `thresholds[k]` is the highest rejected score at cut k (scores <= it are rejected); entry 0
    rejects nothing and has a threshold just below the lowest score.
    """

    frr: np.ndarray
    far: np.ndarray
    thresholds: np.ndarray


def _scores(values: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise UserError(f"{what}: no scores (need at least one)")
    if not np.isfinite(arr).all():
        raise UserError(f"{what}: {int((~np.isfinite(arr)).sum())} scores are NaN or infinite")
    return arr


def compute_det_curve(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, ties: Ties = "asvspoof") -> DetCurve:
    """FRR / FAR at every cut point of the sorted scores (see module docstring for `ties`)."""
    if ties not in ("asvspoof", "threshold"):
        raise UserError(f"ties: expected 'asvspoof' or 'threshold', got {ties!r}")
    bona = _scores(bonafide_scores, "bona fide scores")
    spoof = _scores(spoof_scores, "spoof scores")
    n_bona, n_spoof = bona.size, spoof.size
    all_scores = np.concatenate([bona, spoof])
    labels = np.concatenate([np.ones(n_bona), np.zeros(n_spoof)])
    order = np.argsort(all_scores, kind="mergesort")  # stable: bona fide first among ties
    sorted_scores = all_scores[order]
    bona_below = np.cumsum(labels[order])  # bona fide among the first k+1 sorted scores
    spoof_above = n_spoof - (np.arange(1, bona_below.size + 1) - bona_below)
    frr = np.concatenate([[0.0], bona_below / n_bona])
    far = np.concatenate([[1.0], spoof_above / n_spoof])
    thresholds = np.concatenate([[sorted_scores[0] - 0.001], sorted_scores])
    if ties == "threshold":
        # A cut after position k is a real threshold only where the next score differs.
        keep = np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1], [True]])
        frr, far, thresholds = frr[keep], far[keep], thresholds[keep]
    return DetCurve(frr, far, thresholds)


def compute_eer(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, ties: Ties = "asvspoof") -> tuple[float, float]:
    """(EER, threshold): at the cut where |FRR - FAR| is smallest (first such), EER = mean of the two.

    Higher scores mean more bona fide. The threshold is the highest rejected score at that cut.
    """
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores, ties)
    index = int(np.argmin(np.abs(frr - far)))
    return float((frr[index] + far[index]) / 2.0), float(thresholds[index])
