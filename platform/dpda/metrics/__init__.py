"""Detection metrics: EER, min t-DCF, and ASVspoof 5 minDCF / actDCF / Cllr, score files, breakdowns,
logistic calibration and fusion of scores into LLRs."""

from dpda.metrics.bootstrap import eer_interval, metric_interval
from dpda.metrics.breakdown import attach_scores, breakdown, default_factors
from dpda.metrics.calibration import Calibration, calibration_path, fit_calibration, read_calibration, write_calibration
from dpda.metrics.dcf import ASVSPOOF5, DcfCost, bayes_decision, compute_act_dcf, compute_cllr, compute_min_dcf
from dpda.metrics.eer import DetCurve, compute_det_curve, compute_eer
from dpda.metrics.scores import (
    read_asv_scores,
    read_asv_scores_2021,
    read_score_columns,
    read_score_table,
    read_scores,
    write_scores,
)
from dpda.metrics.summary import METRICS, metric_values, parse_metrics
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
    "ASVSPOOF5",
    "Calibration",
    "DcfCost",
    "bayes_decision",
    "calibration_path",
    "fit_calibration",
    "read_calibration",
    "read_score_columns",
    "write_calibration",
    "METRICS",
    "compute_act_dcf",
    "compute_cllr",
    "compute_min_dcf",
    "metric_interval",
    "metric_values",
    "parse_metrics",
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
