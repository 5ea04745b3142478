"""Noise and impulse-response banks: the audio the `noise` and `reverb` augmentations draw from,
indexed like a corpus and checked like one.

Why a corpus: a bank is thousands of files nobody listens to (MUSAN is 109 h, RIRS_NOISES 60k
RIRs); a truncated, 8 kHz or linked-out-of-tree file found on step 80,000 kills a run as surely
as a bad training file. So a bank becomes a manifest (one row per file: `path`, `category`,
`frames`, `sample_rate`, plus the manifest columns with `label` bonafide and `attack` the
category, which carry no meaning here but let `dpda.data.check` and `dpda.data.check_cache`
take it unchanged) and goes through the same check and verdict cache, accepting 16 kHz only
(`BANK_RATES`: a bank is mixed into 16 kHz waveforms sample for sample, never resampled).

Indexing reads file headers only (`sf.info`), never samples: the sampler
(`dpda.data.bank_sampler`) then reads just the frames each draw needs.

Specs: `musan:PATH` (PATH holds `noise/`, `music/`, `speech/`, each a category, with any
sub-folders of wavs), `rirs:PATH` (the RIRS_NOISES layout: `simulated_rirs/<size>/rir_list`,
category the room size, and `real_rirs_isotropic_noises/rir_list`, category `real`; PATH is
`RIRS_NOISES` or its parent), `csv:FILE` (`path[,category]`, paths relative to the CSV).
docs/augmentation_banks.md has the layouts.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import soundfile as sf

from dpda import SAMPLE_RATE
from dpda.data.audio_file import RateRange, not_regular
from dpda.data.check_cache import Verdict, checked_corpus
from dpda.data.manifest import NOT_APPLICABLE, make_manifest
from dpda.data.readers import _csv_rows  # the one CSV parser with file:line errors
from dpda.errors import UserError

BANK_RATES: RateRange = (SAMPLE_RATE, SAMPLE_RATE)
"""The only sample rate a bank file may have (Hz, inclusive range as the check takes it)."""

MUSAN_CATEGORIES: tuple[str, ...] = ("noise", "music", "speech")
RIR_SIZES: tuple[str, ...] = ("smallroom", "mediumroom", "largeroom")
REAL_RIRS = "real_rirs_isotropic_noises"
BANK_KINDS: tuple[str, ...] = ("musan", "rirs", "csv")
_AUDIO_SUFFIXES = {".wav", ".flac"}


@dataclass(frozen=True)
class BankSpec:
    """A parsed `KIND:PATH` bank spec."""

    kind: str
    path: Path
    text: str


def parse_bank_spec(spec: str) -> BankSpec:
    """Split `KIND:PATH` with KIND in musan, rirs, csv; one UserError line otherwise."""
    text = spec.strip()
    kind, sep, path = text.partition(":")
    if not sep or kind.lower() not in BANK_KINDS or not path:
        raise UserError(f"bank spec {spec!r}: expected KIND:PATH with KIND in {', '.join(BANK_KINDS)}")
    return BankSpec(kind.lower(), Path(path).expanduser(), text)


def is_bank_spec(spec: str) -> bool:
    """Whether `dpda check` should read `spec` as a bank: `musan:` and `rirs:` always; `csv:FILE`
    when the CSV's header has `path` and no `label` (a corpus CSV must have a label column)."""
    kind, sep, path = spec.strip().partition(":")
    kind = kind.lower()
    if not sep or kind not in BANK_KINDS:
        return False
    if kind != "csv":
        return True
    try:
        with open(Path(path).expanduser(), encoding="utf-8-sig") as fh:
            header = [h.strip() for h in fh.readline().split(",")]
    except (OSError, UnicodeDecodeError):
        return False  # the corpus reader names what is wrong with the file
    return "path" in header and "label" not in header


# --------------------------------------------------------------------------------------------
# Layouts -> rows (path, category, group, source file, source line)

Row = tuple[Path, str, str, Path, int]


def _audio_files(folder: Path) -> list[Path]:
    """Audio files under `folder`, sorted (symlinked files kept: the check bounds them)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in _AUDIO_SUFFIXES and not p.is_dir())


def _musan_rows(path: Path) -> tuple[list[Row], Path]:
    if not path.is_dir():
        raise UserError(f"{path}: MUSAN folder not found")
    present = [c for c in MUSAN_CATEGORIES if (path / c).is_dir()]
    if not present:
        raise UserError(f"{path}: no {'/, '.join(MUSAN_CATEGORIES)}/ folder (expected the MUSAN layout)")
    rows: list[Row] = []
    for category in present:
        for file in _audio_files(path / category):
            group = file.parent.relative_to(path / category).as_posix()
            rows.append((file, category, group if group != "." else NOT_APPLICABLE, file, 0))
    return rows, path


def _rir_list(list_file: Path, base: Path, category: str) -> list[Row]:
    """Kaldi's `--rir-id ID --room-id ROOM RIRS_NOISES/...wav` lines; paths relative to `base`."""
    rows: list[Row] = []
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{list_file}: cannot read ({exc})") from None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        options = dict(zip(fields[:-1:2], fields[1:-1:2]))
        if len(fields) % 2 == 0 or "--rir-id" not in options:
            raise UserError(f"{list_file}:{number}: expected '--rir-id ID [--room-id ROOM] PATH'")
        rows.append((base / fields[-1], category, options.get("--room-id", NOT_APPLICABLE), list_file, number))
    return rows


def _rirs_rows(path: Path) -> tuple[list[Row], Path]:
    root = path / "RIRS_NOISES" if (path / "RIRS_NOISES").is_dir() else path
    if not root.is_dir():
        raise UserError(f"{path}: RIRS_NOISES folder not found")
    lists = [(root / "simulated_rirs" / size / "rir_list", size) for size in RIR_SIZES]
    lists.append((root / REAL_RIRS / "rir_list", "real"))
    found = [(f, c) for f, c in lists if f.is_file()]
    if not found:
        raise UserError(f"{root}: no simulated_rirs/{{{','.join(RIR_SIZES)}}}/rir_list or {REAL_RIRS}/rir_list "
                        "(expected the RIRS_NOISES layout)")
    rows = [row for f, c in found for row in _rir_list(f, root.parent, c)]
    return rows, root


def _csv_bank_rows(path: Path) -> tuple[list[Row], Path]:
    if not path.is_file():
        raise UserError(f"{path}: CSV file not found")
    rows: list[Row] = []
    for number, row in _csv_rows(path, ("path",)):
        audio = Path(row["path"]).expanduser()
        rows.append((audio if audio.is_absolute() else path.parent / audio,
                     row.get("category") or NOT_APPLICABLE, NOT_APPLICABLE, path, number))
    return rows, path.parent


_LAYOUTS = {"musan": _musan_rows, "rirs": _rirs_rows, "csv": _csv_bank_rows}


# --------------------------------------------------------------------------------------------
# Index


def _header(path: str) -> tuple[int, int]:
    """(sample rate, frames) from the header; (0, 0) for what the check will report instead
    (missing, special files, which are never opened, unreadable headers)."""
    try:
        if not_regular(path) is not None:
            return 0, 0
        info = sf.info(path)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return 0, 0
    return int(info.samplerate), int(info.frames)


def index_bank(spec: str, num_workers: int | None = None) -> pd.DataFrame:
    """The bank's manifest (module docstring), headers read, no samples; `attrs['root']` bounds
    where its files may resolve and `attrs['spec']` names it. An empty bank is one UserError."""
    parsed = parse_bank_spec(spec)
    rows, root = _LAYOUTS[parsed.kind](parsed.path)
    if not rows:
        raise UserError(f"bank {parsed.text}: no audio files under {root}")
    paths = [os.path.abspath(p) for p, *_ in rows]
    workers = max(1, num_workers or min(8, (os.cpu_count() or 1) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        headers = list(pool.map(_header, paths, chunksize=256))
    base = os.path.abspath(root)
    frame = make_manifest({
        "utt": [os.path.relpath(p, base) for p in paths],
        "path": paths,
        "label": ["bonafide"] * len(rows),
        "attack": [c for _, c, *_ in rows],
        "corpus": [parsed.kind] * len(rows),
        "subset": [NOT_APPLICABLE] * len(rows),
        "category": [c for _, c, *_ in rows],
        "group": [g for _, _, g, *_ in rows],
        "sample_rate": [rate for rate, _ in headers],
        "frames": [n for _, n in headers],
        "source_file": [os.path.abspath(f) for *_, f, _ in rows],
        "source_line": [line for *_, line in rows],
    })
    for col in ("sample_rate", "frames", "source_line", "target"):
        frame[col] = frame[col].astype("int64")
    frame.attrs["root"] = base
    frame.attrs["spec"] = parsed.text
    return frame


def load_bank(spec: str, policy: str = "fail") -> tuple[pd.DataFrame, Verdict]:
    """The bank indexed and checked (every file decoded once per bank, then the verdict is
    cached like a corpus's): `fail` raises on any bad file, `skip` drops them."""
    return checked_corpus(index_bank(spec), policy, sample_rates=BANK_RATES)


def category_counts(bank: pd.DataFrame) -> dict[str, int]:
    """Files per category, in first-seen order (what `dpda check` prints for a bank)."""
    return {str(k): int(v) for k, v in bank["category"].value_counts(sort=False).items()}
