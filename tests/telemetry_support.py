"""Independent pandas readings of telemetry for the analysis, report and export tests: every row
as plain pandas reads each run's table directory (no options), and the supersession rule
re-implemented row by row. (pytest puts tests/ on sys.path: `import telemetry_support`.)"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd


def raw_frame(root: Path, table: str) -> pd.DataFrame:
    """Every row of `table` (superseded ones too), each run's table read by plain pandas."""
    dirs = sorted(glob.glob(str(root / "**" / "telemetry" / table), recursive=True))
    frame = pd.concat([pd.read_parquet(d) for d in dirs], ignore_index=True)
    for col in frame.columns[frame.dtypes == "category"]:
        frame[col] = frame[col].astype(str)
    return frame


def pandas_supersede(frame: pd.DataFrame, attempts: pd.DataFrame) -> pd.DataFrame:
    """Independent reference: keep a row iff no later attempt resumed at or before its step."""
    keep = np.ones(len(frame), bool)
    for _, later in attempts[attempts["resumed_from_step"].notna()].iterrows():
        hit = ((frame["run_id"] == later["run_id"]) & (frame["trial_id"] == later["trial_id"])
               & (frame["attempt"] < later["attempt"]) & (frame["step"] >= later["resumed_from_step"]))
        keep &= ~hit.to_numpy()
    return frame[keep]


def resolved_epochs(root: Path) -> pd.DataFrame:
    """The epochs table as a reader should see it: superseded rows out, an epoch logged again by
    a later attempt taken from the highest attempt."""
    epochs = pandas_supersede(raw_frame(root, "epochs"), raw_frame(root, "attempts"))
    return (epochs.sort_values(["run_id", "trial_id", "epoch", "attempt", "step"])
            .groupby(["run_id", "trial_id", "epoch"], as_index=False).last())
