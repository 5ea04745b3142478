"""Score files, higher = more bona fide (ASVspoof convention).

CM score files come in two shapes, fixed per file by its first line:
- `UTT SCORE` (written by dpda; what the ASVspoof 2021 package, the In-the-Wild scorer and most
  repositories read), and
- `UTT ATTACK KEY SCORE` (the ASVspoof 2019 LA score files and AASIST's), which carry their own
  labels (`bonafide` / `spoof`), so no key file is needed to score them.
ASV score files: 2019 `SOURCE KEY SCORE` (KEY target / nontarget / spoof), or 2021
`ASV_SPEAKER TRIAL SCORE` beside the ASV `trial_metadata.txt` that holds the keys.

Reading is strict, because a silently skipped or duplicated line changes an EER: every bad line is
reported with its file and line number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dpda.errors import UserError, read_user_text


def write_scores(path: str | Path, utts: Iterable[str], scores: Iterable[float]) -> Path:
    """Write `UTT SCORE` lines; floats use Python's shortest round-trip repr, so reading gives
    back exactly the same values."""
    path = Path(path)
    utt_list = [str(u) for u in utts]
    score_arr = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=np.float64).ravel()
    if len(utt_list) != score_arr.size:
        raise UserError(f"{path}: {len(utt_list)} utterance ids but {score_arr.size} scores")
    for utt in utt_list:
        if not utt or any(ch.isspace() for ch in utt):
            raise UserError(f"{path}: utterance id {utt!r} is empty or contains whitespace")
    if len(set(utt_list)) != len(utt_list):
        dup = pd.Series(utt_list)[pd.Series(utt_list).duplicated()].unique()[:5]
        raise UserError(f"{path}: duplicated utterance ids, e.g. {', '.join(dup)}")
    text = "".join(f"{u} {s!r}\n" for u, s in zip(utt_list, score_arr.tolist()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


SCORE_COLUMNS = {2: ("utt", "score"), 4: ("utt", "attack", "key", "score")}
"""Columns of a CM score file by its number of fields (see the module docstring)."""


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: score {text!r} is not finite")
    return value


def read_score_table(path: str | Path) -> pd.DataFrame:
    """The score file as a frame with the columns of its shape (`SCORE_COLUMNS`), in file order.

    Blank lines and lines starting with `#` are skipped; every other line must have as many
    fields as the first (2 or 4), a finite number last, and ids must be unique.
    """
    path = Path(path)
    lines = read_user_text(path, "score file").splitlines()
    rows: list[list] = []
    first_line: dict[str, int] = {}
    width = 0
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not width:
            if len(fields) not in SCORE_COLUMNS:
                raise UserError(f"{path}:{number}: expected 2 fields 'UTT SCORE' or 4 fields "
                                f"'UTT ATTACK KEY SCORE', got {len(fields)}")
            width = len(fields)
        elif len(fields) != width:
            shape = " ".join(c.upper() for c in SCORE_COLUMNS[width])
            raise UserError(f"{path}:{number}: expected {width} fields '{shape}' as on the first line, got {len(fields)}")
        utt = fields[0]
        if utt in first_line:
            raise UserError(f"{path}:{number}: utterance {utt!r} already scored on line {first_line[utt]}")
        first_line[utt] = number
        rows.append(fields[:-1] + [_number(fields[-1], f"{path}:{number}")])
    if not rows:
        raise UserError(f"{path}: no scores found")
    table = pd.DataFrame(rows, columns=list(SCORE_COLUMNS[width]))
    table["score"] = table["score"].astype("float64")
    table["source_line"] = list(first_line.values())
    table.attrs["source"] = str(path)
    return table


def read_scores(path: str | Path) -> pd.Series:
    """Scores as a float Series indexed by utterance id (name `score`), in file order, from a
    score file of either shape (`read_score_table`)."""
    table = read_score_table(path)
    return pd.Series(table["score"].to_numpy(), index=pd.Index(table["utt"], name="utt"), name="score", dtype="float64")


ASV_KEYS = ("target", "nontarget", "spoof")


def read_asv_scores(path: str | Path) -> dict[str, np.ndarray]:
    """ASVspoof 2019 ASV score file, lines `SOURCE KEY SCORE` (SOURCE a speaker or attack id,
    KEY target / nontarget / spoof), as {key: scores}. Every key must occur."""
    path = Path(path)
    lines = read_user_text(path, "ASV score file").splitlines()
    found: dict[str, list[float]] = {k: [] for k in ASV_KEYS}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3:
            raise UserError(f"{path}:{number}: expected 3 fields 'SOURCE KEY SCORE', got {len(fields)}")
        _, key, text = fields
        if key not in found:
            raise UserError(f"{path}:{number}: key {key!r} is not one of {', '.join(ASV_KEYS)}")
        found[key].append(_number(text, f"{path}:{number}"))
    empty = [k for k, v in found.items() if not v]
    if empty:
        raise UserError(f"{path}: no {', '.join(empty)} trials (t-DCF needs all of {', '.join(ASV_KEYS)})")
    return {k: np.asarray(v, dtype=np.float64) for k, v in found.items()}


ASV2021_KEY_FIELD, ASV2021_PHASE_FIELD = 5, 7
"""0-based fields of the key and of the phase (eval / progress / hidden_track) on a line of the
ASVspoof 2021 ASV trial_metadata.txt: `SPEAKER TRIAL CODEC TRANSMISSION ATTACK KEY TRIM PHASE`."""


def data_lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank, non-comment lines."""
    lines = read_user_text(path, what).splitlines()
    return [(n, f) for n, f in ((n, ln.split()) for n, ln in enumerate(lines, start=1)) if f and not f[0].startswith("#")]


def read_asv_scores_2021(path: str | Path, keys: str | Path, phases: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """ASVspoof 2021 ASV scores (`ASV_SPEAKER TRIAL SCORE`) with their keys from the ASV
    `trial_metadata.txt`, as {key: scores}, keeping the trials whose phase is in `phases` (all
    when None).

    A trial id recurs in the ASV protocol (one test utterance, several claimed speakers), so the
    two files pair line by line, as in the ASVspoof 2021 evaluation package; unlike the package,
    a line whose trial differs from its key line is an error naming both lines.
    """
    path, keys = Path(path), Path(keys)
    score_lines = data_lines(path, "ASV score file")
    key_lines = data_lines(keys, "ASV trial_metadata file")
    if len(score_lines) != len(key_lines):
        raise UserError(f"{path}: {len(score_lines)} ASV scores but {keys} has {len(key_lines)} trials (the two pair line by line)")
    wanted = None if phases is None else set(phases)
    found: dict[str, list[float]] = {k: [] for k in ASV_KEYS}
    for (number, fields), (key_number, key_fields) in zip(score_lines, key_lines):
        if len(fields) != 3:
            raise UserError(f"{path}:{number}: expected 3 fields 'ASV_SPEAKER TRIAL SCORE', got {len(fields)}")
        if len(key_fields) <= ASV2021_PHASE_FIELD:
            raise UserError(f"{keys}:{key_number}: expected {ASV2021_PHASE_FIELD + 1} fields "
                            f"'SPEAKER TRIAL CODEC TRANSMISSION ATTACK KEY TRIM PHASE', got {len(key_fields)}")
        if fields[1] != key_fields[1]:
            raise UserError(f"{path}:{number}: trial {fields[1]!r}, but {keys}:{key_number} is trial {key_fields[1]!r}")
        key = key_fields[ASV2021_KEY_FIELD]
        if key not in found:
            raise UserError(f"{keys}:{key_number}: key {key!r} is not one of {', '.join(ASV_KEYS)}")
        value = _number(fields[2], f"{path}:{number}")
        if wanted is None or key_fields[ASV2021_PHASE_FIELD] in wanted:
            found[key].append(value)
    empty = [k for k, v in found.items() if not v]
    if empty:
        chosen = "" if wanted is None else f" in phase {', '.join(sorted(wanted))}"
        raise UserError(f"{path}: no {', '.join(empty)} trials{chosen} (t-DCF needs all of {', '.join(ASV_KEYS)})")
    return {k: np.asarray(v, dtype=np.float64) for k, v in found.items()}


def read_score_columns(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Several systems' score files of the same trials as one frame (index utt, in the first file's
    order; one column per file, named by its path), e.g. for fusion. Every file must score exactly
    the first file's trials: one UserError line names the file and a trial it lacks or adds."""
    paths = [Path(p) for p in paths]
    twice = next((p for i, p in enumerate(paths) if p in paths[:i]), None)
    if twice is not None:
        raise UserError(f"{twice}: given twice; each system's score file once")
    columns = [read_scores(p) for p in paths]
    first = columns[0].index
    for path, column in zip(paths[1:], columns[1:]):
        missing = first.difference(column.index, sort=False)
        if len(missing):
            raise UserError(f"{path}: no score for trial {missing[0]!r}, which {paths[0]} scores "
                            f"({len(missing)} of {len(first)} trials missing)")
        extra = column.index.difference(first, sort=False)
        if len(extra):
            raise UserError(f"{path}: scores trial {extra[0]!r}, which {paths[0]} does not "
                            f"({len(extra)} such trials); the files must score the same trials")
    return pd.DataFrame({str(p): c.reindex(first).to_numpy() for p, c in zip(paths, columns)}, index=first)
