"""Names of the files a dpda driver writes into run and experiment directories and the analysis
reads back. Why a module of its own: both sides import the names from here (dpda may import
dpda_analysis, never the reverse), so neither imports a figure module for a file name.
"""

SEARCH_SPACE_FILE = "search_space.json"  # `dpda tune`'s snapshot of the searched keys, in the experiment dir
RUN_SUMMARY = "summary.json"  # the Trainer's, beside model.pt: the saved (averaged) model's dev EER
RUN_EVAL_DIR = "eval"  # the Trainer's test-set scoring (data.eval): metrics.csv, <set>.breakdown.csv
