"""Names of the files a dpda driver writes into run and experiment directories and the analysis
reads back. Why a module of its own: both sides import the names from here (dpda may import
dpda_analysis, never the reverse), so neither imports a figure module for a file name.
"""

SEARCH_SPACE_FILE = "search_space.json"  # `dpda tune`'s snapshot of the searched keys, in the experiment dir
SEARCH_RESULTS = "results.csv"  # `dpda tune`'s table of trials (status, each objective's value, searched values)
PARETO_FRONT = "pareto.csv"  # a search with several objectives: the completed trials no other beats on every one
RUN_SUMMARY = "summary.json"  # the Trainer's, beside model.pt: the saved (averaged) model's dev EER
RUN_EVAL_DIR = "eval"  # the Trainer's test-set scoring (data.eval): metrics.csv, <set>.breakdown.csv
EVAL_METRICS = "metrics.csv"  # in an eval folder: one row per set (EER, threshold, minDCF, actDCF, Cllr, intervals)


def eval_scores_file(set_name: str) -> str:
    """A set's score file in an eval folder (`UTT SCORE` lines, as the community scorers read)."""
    return f"{set_name}.scores.txt"


def eval_keys_file(set_name: str) -> str:
    """A set's keys beside its score file (utt, label, attack and condition columns): what the
    report's DET curves and score histograms join the scores with (the score file has no labels)."""
    return f"{set_name}.keys.csv"


def eval_breakdown_file(set_name: str) -> str:
    """A set's per-attack and per-condition metrics in an eval folder."""
    return f"{set_name}.breakdown.csv"
