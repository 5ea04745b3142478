"""Score files: one `UTT SCORE` line per trial, higher = more bona fide (ASVspoof convention).

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


def read_scores(path: str | Path) -> pd.Series:
    """Scores as a float Series indexed by utterance id (name `score`), in file order.

    Blank lines and lines starting with `#` are skipped; anything else must be exactly two
    fields with a finite number second, and ids must be unique.
    """
    path = Path(path)
    lines = read_user_text(path, "score file").splitlines()
    utts: list[str] = []
    values: list[float] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise UserError(f"{path}:{number}: expected 2 fields 'UTT SCORE', got {len(fields)}")
        utt, text = fields
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{path}:{number}: score {text!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{path}:{number}: score {text!r} is not finite")
        if utt in first_line:
            raise UserError(f"{path}:{number}: utterance {utt!r} already scored on line {first_line[utt]}")
        first_line[utt] = number
        utts.append(utt)
        values.append(value)
    if not utts:
        raise UserError(f"{path}: no scores found")
    return pd.Series(values, index=pd.Index(utts, name="utt"), name="score", dtype="float64")


ASV_KEYS = ("target", "nontarget", "spoof")


def read_asv_scores(path: str | Path) -> dict[str, np.ndarray]:
    """ASVspoof 2019 ASV score file, lines `SOURCE KEY SCORE` (SOURCE a speaker or attack id,
    KEY target / nontarget / spoof), as {key: scores}. Every key must occur."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: ASV score file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
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
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{path}:{number}: score {text!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{path}:{number}: score {text!r} is not finite")
        found[key].append(value)
    empty = [k for k, v in found.items() if not v]
    if empty:
        raise UserError(f"{path}: no {', '.join(empty)} trials (t-DCF needs all of {', '.join(ASV_KEYS)})")
    return {k: np.asarray(v, dtype=np.float64) for k, v in found.items()}
