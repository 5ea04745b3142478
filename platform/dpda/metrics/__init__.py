"""Detection metrics: EER and min t-DCF (ASVspoof conventions), score files, breakdowns."""

from dpda.metrics.bootstrap import eer_interval
from dpda.metrics.breakdown import attach_scores, breakdown, default_factors
from dpda.metrics.eer import DetCurve, compute_det_curve, compute_eer
from dpda.metrics.scores import read_asv_scores, read_asv_scores_2021, read_score_table, read_scores, write_scores
from dpda.metrics.tdcf import (
    ASVSPOOF2019,
    ASVSPOOF2021,
    TDCF_DEFINITIONS,
    AsvErrorRates,
    CostModel,
    CostModel2021,
    asv_error_rates,
    compute_min_tdcf,
    compute_min_tdcf_2021,
    tdcf_curve,
    tdcf_curve_2021,
)

__all__ = [
    "ASVSPOOF2019",
    "ASVSPOOF2021",
    "TDCF_DEFINITIONS",
    "AsvErrorRates",
    "CostModel",
    "CostModel2021",
    "DetCurve",
    "asv_error_rates",
    "attach_scores",
    "breakdown",
    "compute_det_curve",
    "compute_eer",
    "compute_min_tdcf",
    "compute_min_tdcf_2021",
    "default_factors",
    "eer_interval",
    "read_asv_scores",
    "read_asv_scores_2021",
    "read_score_table",
    "read_scores",
    "tdcf_curve",
    "tdcf_curve_2021",
    "write_scores",
]
