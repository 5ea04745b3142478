"""Minimum normalised tandem detection cost function (t-DCF), ASVspoof 2019 definition.

The t-DCF (Kinnunen et al., Odyssey 2018; ASVspoof 2019 evaluation plan) scores a spoofing
countermeasure (CM) by the cost it causes when placed in tandem with a fixed speaker verification
(ASV) system. With the ASV threshold fixed at the ASV EER point, and P_miss_cm(s), P_fa_cm(s) the
CM miss / false alarm rates at CM threshold s:

    C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv
    C2 = Cfa_cm Pspoof (1 - Pmiss_spoof_asv)
    t-DCF_norm(s) = (C1 Pmiss_cm(s) + C2 Pfa_cm(s)) / min(C1, C2)

and the reported figure is its minimum over s. Normalising by min(C1, C2) makes 1.0 the cost of a
CM that always accepts or always rejects, whichever is cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from dpda.errors import UserError
from dpda.metrics.eer import _scores, compute_det_curve, compute_eer


@dataclass(frozen=True)
class CostModel:
    """Priors and costs of the tandem system (ASVspoof 2019 names)."""

    Pspoof: float
    Ptar: float
    Pnon: float
    Cmiss_asv: float
    Cfa_asv: float
    Cmiss_cm: float
    Cfa_cm: float


ASVSPOOF2019 = CostModel(
    Pspoof=0.05,
    Ptar=(1 - 0.05) * 0.99,
    Pnon=(1 - 0.05) * 0.01,
    Cmiss_asv=1.0,
    Cfa_asv=10.0,
    Cmiss_cm=1.0,
    Cfa_cm=10.0,
)


@dataclass(frozen=True)
class AsvErrorRates:
    """ASV error rates at its threshold: false alarms on non-targets, misses on targets and on spoofs."""

    threshold: float
    Pfa_asv: float
    Pmiss_asv: float
    Pmiss_spoof_asv: float


def asv_error_rates(asv_tar: ArrayLike, asv_non: ArrayLike, asv_spoof: ArrayLike, threshold: float | None = None) -> AsvErrorRates:
    """Error rates at `threshold` (default: the ASV EER threshold); accept when score >= threshold."""
    tar = _scores(asv_tar, "ASV target scores")
    non = _scores(asv_non, "ASV nontarget scores")
    spoof = _scores(asv_spoof, "ASV spoof scores")
    if threshold is None:
        threshold = compute_eer(tar, non)[1]
    return AsvErrorRates(
        threshold=float(threshold),
        Pfa_asv=float(np.mean(non >= threshold)),
        Pmiss_asv=float(np.mean(tar < threshold)),
        Pmiss_spoof_asv=float(np.mean(spoof < threshold)),
    )


def tdcf_curve(
    bona_cm: ArrayLike, spoof_cm: ArrayLike, asv: AsvErrorRates, cost_model: CostModel = ASVSPOOF2019
) -> tuple[np.ndarray, np.ndarray]:
    """(normalised t-DCF, CM thresholds) at every CM cut point."""
    cm = cost_model
    for name in ("Pspoof", "Ptar", "Pnon", "Cmiss_asv", "Cfa_asv", "Cmiss_cm", "Cfa_cm"):
        if getattr(cm, name) < 0:
            raise UserError(f"cost model: {name} must be >= 0, got {getattr(cm, name)}")
    if not np.isclose(cm.Ptar + cm.Pnon + cm.Pspoof, 1.0):
        raise UserError(f"cost model: Ptar + Pnon + Pspoof must be 1, got {cm.Ptar + cm.Pnon + cm.Pspoof}")
    c1 = cm.Ptar * (cm.Cmiss_cm - cm.Cmiss_asv * asv.Pmiss_asv) - cm.Pnon * cm.Cfa_asv * asv.Pfa_asv
    c2 = cm.Cfa_cm * cm.Pspoof * (1.0 - asv.Pmiss_spoof_asv)
    if c1 <= 0 or c2 <= 0:
        raise UserError(
            f"t-DCF: degenerate ASV error rates give C1={c1:.4g}, C2={c2:.4g} (both must be > 0); "
            "check that the ASV scores separate targets from nontargets and spoofs"
        )
    miss_cm, fa_cm, thresholds = compute_det_curve(bona_cm, spoof_cm)
    return (c1 * miss_cm + c2 * fa_cm) / min(c1, c2), thresholds


def compute_min_tdcf(
    bona_cm: ArrayLike,
    spoof_cm: ArrayLike,
    asv_tar: ArrayLike,
    asv_non: ArrayLike,
    asv_spoof: ArrayLike,
    cost_model: CostModel = ASVSPOOF2019,
) -> tuple[float, float]:
    """(min normalised t-DCF, CM threshold where it is reached), ASV threshold at the ASV EER."""
    asv = asv_error_rates(asv_tar, asv_non, asv_spoof)
    curve, thresholds = tdcf_curve(bona_cm, spoof_cm, asv, cost_model)
    index = int(np.argmin(curve))
    return float(curve[index]), float(thresholds[index])
