"""ASVspoof 5 countermeasure metrics: minDCF, actDCF and Cllr, as the official evaluation package.

Why: since ASVspoof 5 (2024) the field reports minDCF (primary), actDCF, Cllr and EER for a
standalone countermeasure. The detection cost weighs a missed bona fide trial (Cmiss, prior
1 - Pspoof) against an accepted spoof (Cfa, prior Pspoof) and is normalised by the cost of the
better of the two trivial systems (accept all, reject all), so 1.0 means "no better than a
constant decision". minDCF takes the best cut point of the DET sweep (`compute_det_curve`, the
one sort shared with the EER); actDCF decides at the Bayes threshold -ln(beta), which is only
right when scores are calibrated log-likelihood ratios (natural log); Cllr (bits) scores the
LLRs themselves, 1.0 being a system that always says "no idea" (LLR 0).
Higher scores mean more bona fide, as everywhere in dpda.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from dpda.errors import UserError
from dpda.metrics.eer import Ties, _scores, compute_det_curve


class DcfCost(NamedTuple):
    """Operating point of the detection cost function."""

    p_spoof: float
    c_miss: float
    c_fa: float

    @property
    def normaliser(self) -> float:
        """Cost of the best trivial system (accept all or reject all)."""
        return min(self.c_miss * (1.0 - self.p_spoof), self.c_fa * self.p_spoof)

    @property
    def effective_prior(self) -> float:
        """The bona fide prior that, with unit costs, makes the same decisions:
        Cmiss (1 - Pspoof) / (Cmiss (1 - Pspoof) + Cfa Pspoof); calibration weighs the classes by it."""
        bona = self.c_miss * (1.0 - self.p_spoof)
        return bona / (bona + self.c_fa * self.p_spoof)

    @property
    def bayes_threshold(self) -> float:
        """-logit(effective prior) = -ln(Cmiss (1 - Pspoof) / (Cfa Pspoof)): the Bayes decision on LLR scores."""
        prior = self.effective_prior
        return float(-np.log(prior / (1.0 - prior)))


ASVSPOOF5 = DcfCost(p_spoof=0.05, c_miss=1.0, c_fa=10.0)  # ASVspoof 5 evaluation plan, track 1


def both_classes(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The two score arrays, or one UserError line naming the missing class."""
    bona = np.asarray(bonafide_scores, dtype=np.float64).ravel()
    spoof = np.asarray(spoof_scores, dtype=np.float64).ravel()
    for arr, name in ((bona, "bona fide"), (spoof, "spoof")):
        if arr.size == 0:
            raise UserError(f"{metric}: no {name} scores; it needs both bona fide and spoof trials")
    return _scores(bona, "bona fide scores"), _scores(spoof, "spoof scores")


def compute_min_dcf(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, cost: DcfCost = ASVSPOOF5,
                    ties: Ties = "asvspoof") -> tuple[float, float]:
    """(normalised minDCF, threshold): the lowest cost over the DET cut points (first such)."""
    bona, spoof = both_classes(bonafide_scores, spoof_scores, "minDCF")
    frr, far, thresholds = compute_det_curve(bona, spoof, ties)
    p_bona = 1.0 - cost.p_spoof
    c_det = cost.c_miss * frr * p_bona + cost.c_fa * far * (1.0 - p_bona)
    index = int(np.argmin(c_det))
    return float(c_det[index] / cost.normaliser), float(thresholds[index])


def bayes_decision(llr: ArrayLike, cost: DcfCost = ASVSPOOF5) -> np.ndarray:
    """True (bona fide) where an LLR is at or above the Bayes threshold: the decision actDCF costs."""
    return np.asarray(llr, dtype=np.float64) >= cost.bayes_threshold


def compute_act_dcf(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, cost: DcfCost = ASVSPOOF5) -> tuple[float, float]:
    """(normalised actDCF, threshold): the cost when scores, taken as LLRs, are cut at the Bayes
    threshold (bona fide below it are missed, spoofs at or above it accepted)."""
    bona, spoof = both_classes(bonafide_scores, spoof_scores, "actDCF")
    miss = np.count_nonzero(~bayes_decision(bona, cost)) / bona.size
    fa = np.count_nonzero(bayes_decision(spoof, cost)) / spoof.size
    dcf = cost.c_miss * (1.0 - cost.p_spoof) * miss + cost.c_fa * cost.p_spoof * fa
    return float(dcf / cost.normaliser), cost.bayes_threshold


def compute_cllr(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> float:
    """Cllr in bits of scores taken as natural-log LLRs: the mean of -log2 P(correct class),
    averaged over the two classes. `logaddexp` keeps it finite where log1p(exp(.)) overflows."""
    bona, spoof = both_classes(bonafide_scores, spoof_scores, "Cllr")
    bits = np.logaddexp(0.0, -bona).mean() + np.logaddexp(0.0, spoof).mean()
    return float(0.5 * bits / np.log(2.0))
