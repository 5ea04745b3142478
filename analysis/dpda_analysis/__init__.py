"""dpda_analysis: read dpda telemetry Parquet, analyse gradient conflicts, write the report.

Depends on pyarrow, DuckDB, pandas, SciPy and plotly only (never torch or Ray), so it runs on a laptop
against a copied run or Tune experiment directory.
"""

from dpda_analysis.errors import AnalysisError, AnalysisWarning, LocationError
from dpda_analysis.export import export_table
from dpda_analysis.pathmatrix import (
    conflict_matrix,
    cosine_matrix,
    most_conflicting_pairs,
    pair_conflicts,
    pair_matrix,
)
from dpda_analysis.queries import (
    comparison_table,
    conflict_across_trials,
    conflict_by,
    conflict_by_combination,
    conflict_by_epoch,
    conflict_by_layer,
    conflict_by_module_and_rule,
    conflict_by_rawboost_algo,
    conflict_by_rule,
    conflict_by_trial,
    conflict_by_transform,
    conflict_fraction,
    cosine_histogram,
    eer_vs_conflict,
    epoch_metrics,
    layer_heatmap,
    layer_names,
    module_of,
    spearman,
    summary,
    trial_summary,
)
from dpda_analysis.schema import SCHEMA_VERSION
from dpda_analysis.store import Telemetry, open_telemetry

__all__ = [
    "SCHEMA_VERSION",
    "AnalysisError",
    "AnalysisWarning",
    "LocationError",
    "Telemetry",
    "comparison_table",
    "conflict_across_trials",
    "conflict_by",
    "conflict_by_combination",
    "conflict_by_epoch",
    "conflict_by_layer",
    "conflict_by_module_and_rule",
    "conflict_by_rawboost_algo",
    "conflict_by_rule",
    "conflict_by_trial",
    "conflict_by_transform",
    "conflict_fraction",
    "conflict_matrix",
    "cosine_matrix",
    "cosine_histogram",
    "eer_vs_conflict",
    "epoch_metrics",
    "export_table",
    "layer_heatmap",
    "layer_names",
    "module_of",
    "most_conflicting_pairs",
    "open_telemetry",
    "pair_conflicts",
    "pair_matrix",
    "spearman",
    "summary",
    "trial_summary",
]
