"""Linear logistic calibration and fusion: detection scores -> natural-log likelihood ratios.

Why: actDCF and Cllr read scores as LLRs, and a detector's raw score (a logit difference of a
model trained with a weighted loss) is not one. The field's standard answer (the BOSARIS
toolkit, the ASVspoof 5 baseline, WeDefense) is an affine map fitted by prior-weighted logistic
regression on dev scores: LLR = w . s + b, with (w, b) minimising the cross-entropy of the
posterior log-odds LLR + logit(P), bona fide and spoof terms weighted P and 1 - P, at the
effective prior P of the operating point. One score per trial (w has one entry, the slope) is a
calibration; several systems' scores of the same trials make it a linear fusion: one fit, one
file format, both.

The fit is the convex objective solved by scipy's trust-region Newton method (exact gradient and
Hessian), on standardised columns so that any score scale converges alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import Field
from scipy.optimize import minimize
from scipy.special import expit, logit

from dpda.errors import UserError, read_user_text
from dpda.metrics.dcf import ASVSPOOF5, DcfCost
from dpda.typed import Settings, parse

CALIBRATION_SUFFIX = ".calibration.json"  # model.pt -> model.calibration.json, beside the model
FORMAT = "dpda-llr-map"


class Calibration(Settings):
    """An affine map from k systems' scores to an LLR, and where it came from (the JSON file)."""

    format: Literal["dpda-llr-map"] = FORMAT
    kind: Literal["calibration", "fusion"]
    weights: list[float] = Field(min_length=1)  # one per system; a calibration's is its slope
    offset: float
    prior: float = Field(gt=0.0, lt=1.0)  # effective bona fide prior the fit weighted the classes by
    p_spoof: float = Field(gt=0.0, lt=1.0)  # the operating point (DcfCost) the prior came from
    c_miss: float = Field(gt=0.0)
    c_fa: float = Field(gt=0.0)
    score: str | None = None  # the raw score kind mapped (logit_diff / logit1) where known
    fitted_on: list[str]  # the dev score files or set, one per system
    n_bonafide: int = Field(gt=0)
    n_spoof: int = Field(gt=0)

    @property
    def cost(self) -> DcfCost:
        return DcfCost(self.p_spoof, self.c_miss, self.c_fa)

    def apply(self, scores: ArrayLike) -> np.ndarray:
        """LLRs of (n,) scores (one system) or (n, k) scores (k systems, in `weights` order)."""
        matrix = _matrix(scores)
        if matrix.shape[1] != len(self.weights):
            raise UserError(f"{self.kind}: {len(self.weights)} systems' weights, but {matrix.shape[1]} score columns given")
        return matrix @ np.asarray(self.weights, dtype=np.float64) + self.offset


def _matrix(scores: ArrayLike) -> np.ndarray:
    matrix = np.asarray(scores, dtype=np.float64)
    return matrix[:, None] if matrix.ndim == 1 else matrix


def calibration_path(model: str | Path) -> Path:
    """Where a model's calibration lives: beside it, `model.pt` -> `model.calibration.json`."""
    return Path(model).with_suffix(CALIBRATION_SUFFIX)


def weighted_logistic_loss(params: np.ndarray, x: np.ndarray, is_bona: np.ndarray, prior: float
                           ) -> tuple[float, np.ndarray, np.ndarray]:
    """(loss, gradient, Hessian) of the prior-weighted cross-entropy, in nats, of LLR = x @ w + b
    (params = [w..., b]): P mean over bona fide of log(1 + e^-(LLR + logit P)) + (1 - P) mean over
    spoof of log(1 + e^(LLR + logit P)). Divided by ln 2 at P = 0.5 it is the Cllr."""
    design = np.column_stack([x, np.ones(len(x))])
    z = design @ params + logit(prior)
    weight = np.where(is_bona, prior / is_bona.sum(), (1.0 - prior) / (~is_bona).sum())
    sign = np.where(is_bona, -1.0, 1.0)  # the bona fide term is softplus(-z), the spoof's softplus(z)
    loss = float(weight @ np.logaddexp(0.0, sign * z))
    p = expit(z)
    gradient = design.T @ (weight * (p - is_bona))
    hessian = (design * (weight * p * (1.0 - p))[:, None]).T @ design
    return loss, gradient, hessian


def fit_logistic(scores: ArrayLike, is_bonafide: ArrayLike, prior: float) -> tuple[np.ndarray, float]:
    """(weights, offset) of LLR = scores @ weights + offset minimising `weighted_logistic_loss`.

    UserError when a class is missing, a column is constant, or the dev scores separate the classes
    (perfectly ordered: the loss has no minimum, the weights would grow without bound)."""
    x = _matrix(scores)
    is_bona = np.asarray(is_bonafide, dtype=bool).ravel()
    if len(is_bona) != len(x):
        raise UserError(f"calibration: {len(x)} scores but {len(is_bona)} labels")
    if not is_bona.any() or is_bona.all():
        raise UserError(f"calibration: no {'bona fide' if not is_bona.any() else 'spoof'} dev trials; "
                        "a calibration needs both classes")
    if not np.isfinite(x).all():
        raise UserError("calibration: dev scores must be finite")
    centre, scale = x.mean(axis=0), x.std(axis=0)
    if (scale == 0).any():
        raise UserError(f"calibration: system {int(np.argmax(scale == 0)) + 1}'s dev scores are all equal; nothing to fit")
    standard = (x - centre) / scale
    start = np.zeros(x.shape[1] + 1)
    start[-1] = -logit(prior)  # LLR 0: the posterior at the prior
    result = minimize(lambda p: weighted_logistic_loss(p, standard, is_bona, prior)[:2], start, jac=True,
                      hess=lambda p: weighted_logistic_loss(p, standard, is_bona, prior)[2],
                      method="trust-exact", options={"gtol": 1e-10, "maxiter": 500})
    weights = result.x[:-1] / scale
    offset = float(result.x[-1] - centre @ weights)
    llr = x @ weights + offset
    if llr[is_bona].min() > llr[~is_bona].max():
        raise UserError("calibration: the dev scores separate bona fide from spoof perfectly (EER 0), so a logistic "
                        "fit has no finite slope; calibrate on a larger or harder dev set")
    # trust-exact may stop short of gtol once float64 cannot show a further improvement: the
    # gradient then says whether it had converged
    converged = result.success or float(np.abs(result.jac).max()) < 1e-7
    if not (converged and np.isfinite(result.x).all()):
        raise UserError(f"calibration: the logistic fit did not converge ({result.message})")
    return weights, offset


def fit_calibration(scores: ArrayLike, is_bonafide: ArrayLike, fitted_on: list[str], *,
                    cost: DcfCost = ASVSPOOF5, score: str | None = None) -> Calibration:
    """The calibration (one column / 1-D scores) or fusion (k columns) fitted at `cost`'s
    effective prior, recording what it was fitted on."""
    x = _matrix(scores)
    is_bona = np.asarray(is_bonafide, dtype=bool).ravel()
    weights, offset = fit_logistic(x, is_bona, cost.effective_prior)
    return Calibration(kind="calibration" if x.shape[1] == 1 else "fusion", weights=weights.tolist(), offset=offset,
                       prior=cost.effective_prior, p_spoof=cost.p_spoof, c_miss=cost.c_miss, c_fa=cost.c_fa,
                       score=score, fitted_on=[str(f) for f in fitted_on],
                       n_bonafide=int(is_bona.sum()), n_spoof=int((~is_bona).sum()))


def write_calibration(path: str | Path, calibration: Calibration) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_calibration(path: str | Path) -> Calibration:
    """A calibration / fusion file, or one UserError line naming it and the bad key."""
    text = read_user_text(path, "calibration file")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not JSON ({exc.msg}); expected a file dpda calibrate / dpda fuse wrote") from None
    try:
        return parse(Calibration, raw)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
