"""Minimum normalised tandem detection cost function (t-DCF): the ASVspoof 2019 definition and
its revision used by ASVspoof 2021, one function each, the cost parameters of both below.

The t-DCF scores a spoofing countermeasure (CM) by the cost it causes when placed in tandem with
a fixed speaker verification (ASV) system, whose threshold is fixed at its EER point (target vs
nontarget). P_miss_cm(s), P_fa_cm(s) are the CM miss / false alarm rates at CM threshold s; the
reported figure is the minimum over s of the normalised t-DCF.

2019 (Kinnunen et al., Odyssey 2018; ASVspoof 2019 evaluation plan):

    C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv
    C2 = Cfa_cm Pspoof (1 - Pmiss_spoof_asv)
    t-DCF_norm(s) = (C1 Pmiss_cm(s) + C2 Pfa_cm(s)) / min(C1, C2)

2021 (Kinnunen et al., "Tandem assessment of spoofing countermeasures and automatic speaker
verification: fundamentals", IEEE/ACM TASLP 2020; the ASVspoof 2021 evaluation package): the
costs are those of the tandem system's decisions, and an error-free CM still pays the ASV's own
errors (C0):

    C0 = Ptar Cmiss Pmiss_asv + Pnon Cfa Pfa_asv
    C1 = Ptar Cmiss - C0
    C2 = Pspoof Cfa_spoof Pfa_spoof_asv
    t-DCF_norm(s) = (C0 + C1 Pmiss_cm(s) + C2 Pfa_cm(s)) / (C0 + min(C1, C2))

In both, 1.0 is the cost of a CM that always accepts or always rejects, whichever is cheaper.
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


@dataclass(frozen=True)
class CostModel2021:
    """Priors and costs of the tandem system (ASVspoof 2021 names): the costs of the tandem
    system falsely rejecting a target, accepting a nontarget, accepting a spoof."""

    Pspoof: float
    Ptar: float
    Pnon: float
    Cmiss: float
    Cfa: float
    Cfa_spoof: float


PSPOOF = 0.05  # prior of a spoofing attack, both definitions; targets are 99% of the rest

ASVSPOOF2019 = CostModel(
    Pspoof=PSPOOF,
    Ptar=(1 - PSPOOF) * 0.99,
    Pnon=(1 - PSPOOF) * 0.01,
    Cmiss_asv=1.0,
    Cfa_asv=10.0,
    Cmiss_cm=1.0,
    Cfa_cm=10.0,
)

ASVSPOOF2021 = CostModel2021(
    Pspoof=PSPOOF,
    Ptar=(1 - PSPOOF) * 0.99,
    Pnon=(1 - PSPOOF) * 0.01,
    Cmiss=1.0,
    Cfa=10.0,
    Cfa_spoof=10.0,
)


@dataclass(frozen=True)
class AsvErrorRates:
    """ASV error rates at its threshold: false alarms on non-targets, misses on targets and on
    spoofs, and spoofs accepted (1 - Pmiss_spoof_asv)."""

    threshold: float
    Pfa_asv: float
    Pmiss_asv: float
    Pmiss_spoof_asv: float
    Pfa_spoof_asv: float


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
        Pfa_spoof_asv=float(np.mean(spoof >= threshold)),
    )


def _checked(cost_model: CostModel | CostModel2021):
    """The cost model, if its costs and priors are >= 0 and the priors sum to 1."""
    for name, value in vars(cost_model).items():
        if value < 0:
            raise UserError(f"cost model: {name} must be >= 0, got {value}")
    total = cost_model.Ptar + cost_model.Pnon + cost_model.Pspoof
    if not np.isclose(total, 1.0):
        raise UserError(f"cost model: Ptar + Pnon + Pspoof must be 1, got {total}")
    return cost_model


def tdcf_curve(
    bona_cm: ArrayLike, spoof_cm: ArrayLike, asv: AsvErrorRates, cost_model: CostModel = ASVSPOOF2019
) -> tuple[np.ndarray, np.ndarray]:
    """(normalised 2019 t-DCF, CM thresholds) at every CM cut point."""
    cm = _checked(cost_model)
    c1 = cm.Ptar * (cm.Cmiss_cm - cm.Cmiss_asv * asv.Pmiss_asv) - cm.Pnon * cm.Cfa_asv * asv.Pfa_asv
    c2 = cm.Cfa_cm * cm.Pspoof * (1.0 - asv.Pmiss_spoof_asv)
    if c1 <= 0 or c2 <= 0:
        raise _degenerate(f"C1={c1:.4g}, C2={c2:.4g}", "both must be > 0")
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
    """(min normalised 2019 t-DCF, CM threshold where it is reached), ASV threshold at the ASV EER."""
    return _minimum(tdcf_curve(bona_cm, spoof_cm, asv_error_rates(asv_tar, asv_non, asv_spoof), cost_model))


def _degenerate(costs: str, condition: str) -> UserError:
    """The one refusal of both definitions when the ASV error rates leave no usable cost weights."""
    return UserError(
        f"t-DCF: degenerate ASV error rates give {costs} ({condition}); "
        "check that the ASV scores separate targets from nontargets and spoofs"
    )


def _minimum(curve_and_thresholds: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(lowest value of a t-DCF curve, the CM threshold where it is reached)."""
    curve, thresholds = curve_and_thresholds
    index = int(np.argmin(curve))
    return float(curve[index]), float(thresholds[index])


def tdcf_curve_2021(
    bona_cm: ArrayLike, spoof_cm: ArrayLike, asv: AsvErrorRates, cost_model: CostModel2021 = ASVSPOOF2021
) -> tuple[np.ndarray, np.ndarray]:
    """(normalised 2021 t-DCF, CM thresholds) at every CM cut point."""
    cm = _checked(cost_model)
    c0 = cm.Ptar * cm.Cmiss * asv.Pmiss_asv + cm.Pnon * cm.Cfa * asv.Pfa_asv
    c1 = cm.Ptar * cm.Cmiss - c0
    c2 = cm.Pspoof * cm.Cfa_spoof * asv.Pfa_spoof_asv
    if c1 < 0 or c0 + min(c1, c2) <= 0:
        raise _degenerate(f"C0={c0:.4g}, C1={c1:.4g}, C2={c2:.4g}", "need C1 >= 0 and C0 + min(C1, C2) > 0")
    miss_cm, fa_cm, thresholds = compute_det_curve(bona_cm, spoof_cm)
    return (c0 + c1 * miss_cm + c2 * fa_cm) / (c0 + min(c1, c2)), thresholds


def compute_min_tdcf_2021(
    bona_cm: ArrayLike,
    spoof_cm: ArrayLike,
    asv_tar: ArrayLike,
    asv_non: ArrayLike,
    asv_spoof: ArrayLike,
    cost_model: CostModel2021 = ASVSPOOF2021,
) -> tuple[float, float]:
    """(min normalised 2021 t-DCF, CM threshold where it is reached), ASV threshold at the ASV EER."""
    return _minimum(tdcf_curve_2021(bona_cm, spoof_cm, asv_error_rates(asv_tar, asv_non, asv_spoof), cost_model))


TDCF_DEFINITIONS = {"2019": compute_min_tdcf, "2021": compute_min_tdcf_2021}
"""min t-DCF by definition name: f(bona_cm, spoof_cm, asv_tar, asv_non, asv_spoof) -> (value, threshold)."""
