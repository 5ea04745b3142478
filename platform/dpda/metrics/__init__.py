"""Detection metrics: EER and min t-DCF (ASVspoof conventions), score files, breakdowns."""

from dpda.metrics.bootstrap import eer_interval
from dpda.metrics.breakdown import attach_scores, breakdown, default_factors
from dpda.metrics.eer import DetCurve, compute_det_curve, compute_eer
from dpda.metrics.scores import read_asv_scores, read_scores, write_scores
from dpda.metrics.tdcf import ASVSPOOF2019, AsvErrorRates, CostModel, asv_error_rates, compute_min_tdcf, tdcf_curve

__all__ = [
    "ASVSPOOF2019",
    "AsvErrorRates",
    "CostModel",
    "DetCurve",
    "asv_error_rates",
    "attach_scores",
    "breakdown",
    "compute_det_curve",
    "compute_eer",
    "compute_min_tdcf",
    "default_factors",
    "eer_interval",
    "read_asv_scores",
    "read_scores",
    "tdcf_curve",
    "write_scores",
]
