"""Pre-training validation of a manifest: every problem a corpus can have, found in one pass
and reported with the protocol file and line it came from.

Training for hours and then dying on file 80,000 is the failure this prevents. Cheap checks
(labels, ids, paths) run on the table; audio checks open every file in a thread pool
(libsndfile releases the GIL). Before anything is opened, a path that is not a regular file (a
FIFO would block the read forever) is reported; from the header alone, a sample rate outside
`SAMPLE_RATE_RANGE` and a WAV whose data chunk runs past the end of the file. Integer PCM
cannot hold NaN/Inf or exceed full scale, so with `decode="float"` only float files are fully
decoded; the default `decode="all"` also catches truncated compressed data. Float samples
must be finite and within `MAX_PEAK` (full scale is 1.0; one file at 1e30 would dominate every
batch it is in).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import soundfile as sf

from dpda.console import Progress
from dpda.data.audio_file import (MAX_PEAK, SAMPLE_RATE_RANGE, RateRange, not_regular, peak_problem, rate_problem,
                                  wav_data_shortfall)
from dpda.data.manifest import LABEL_TARGETS, origin, validate_manifest
from dpda.errors import UserError

# Problem kinds, in report order.
MISSING = "missing_file"
NOT_REGULAR = "not_a_regular_file"
UNREADABLE = "unreadable_audio"
EMPTY = "zero_length_audio"
BAD_RATE = "implausible_sample_rate"
NONFINITE = "nan_or_inf_samples"
LOUD = "peak_above_limit"
UNKNOWN_LABEL = "unknown_label"
DUPLICATE = "duplicate_utt"
OUTSIDE = "outside_root"
KINDS: tuple[str, ...] = (
    MISSING, NOT_REGULAR, UNREADABLE, EMPTY, BAD_RATE, NONFINITE, LOUD, UNKNOWN_LABEL, DUPLICATE, OUTSIDE,
)

_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_III"}  # can decode to NaN/Inf
_BLOCK = 1 << 18  # frames decoded at a time: bounded memory for hour-long files


@dataclass(frozen=True)
class Problem:
    """One bad manifest row; `where` is `protocol_file:line` (or the audio path for FoR)."""

    kind: str
    row: int
    utt: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


@dataclass
class CheckResult:
    """Outcome of a check; `manifest` is the input minus bad rows in skip mode (else the input)."""

    manifest: pd.DataFrame
    problems: list[Problem]
    counts: dict[str, int]
    total: int
    policy: str
    audio: dict[str, object] = field(default_factory=dict)  # summary of readable audio

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_rows(self) -> list[int]:
        return sorted({p.row for p in self.problems})

    def format_problems(self, limit: int = 20) -> str:
        """First `limit` problems, then counts per kind (the message of the fail-mode error)."""
        lines = [str(p) for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts.items() if v)
        lines.append(f"{len(self.problems)} problem(s) in {len(self.bad_rows)} of {self.total} rows ({counts})")
        return "\n".join(lines)


def _probe(path: str, decode: str, rates: RateRange, max_peak: float) -> tuple[str | None, str, int, int]:
    """(problem kind or None, detail, sample rate, frames) for one audio file."""
    try:
        special = not_regular(path)
    except FileNotFoundError:
        return MISSING, f"{path}: file not found", 0, 0
    except OSError as exc:
        return UNREADABLE, f"{path}: {exc.strerror or exc}", 0, 0
    if special is not None:
        return NOT_REGULAR, f"{path}: {special}, not a regular file", 0, 0
    try:
        info = sf.info(path)
        short = wav_data_shortfall(path) if info.format in ("WAV", "WAVEX") else None
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        return UNREADABLE, f"{path}: {exc}", 0, 0
    if info.frames <= 0 or info.channels <= 0:
        return EMPTY, f"{path}: zero-length audio", info.samplerate, 0
    bad_rate = rate_problem(info.samplerate, rates)
    if bad_rate is not None:
        return BAD_RATE, f"{path}: {bad_rate}", info.samplerate, info.frames
    if short is not None:
        declared, present = short
        return UNREADABLE, (f"{path}: truncated (the WAV data chunk declares {declared} bytes, "
                            f"{present} are present)"), info.samplerate, info.frames
    must_decode = decode == "all" or (decode == "float" and info.subtype not in {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"})
    if not must_decode:
        return None, "", info.samplerate, info.frames
    want_finite = info.subtype in _FLOAT_SUBTYPES or decode == "float"
    decoded = 0
    try:
        with sf.SoundFile(path) as fh:
            for block in fh.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                decoded += block.shape[0]
                if want_finite and not np.isfinite(block).all():
                    return NONFINITE, f"{path}: NaN or Inf samples", info.samplerate, info.frames
                loud = peak_problem(float(np.abs(block).max()) if want_finite and block.size else 0.0, max_peak)
                if loud is not None:
                    return LOUD, f"{path}: {loud}", info.samplerate, info.frames
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        return UNREADABLE, f"{path}: decoding failed after {decoded} frames ({exc})", info.samplerate, info.frames
    if decoded == 0:
        return EMPTY, f"{path}: no decodable samples", info.samplerate, 0
    if decoded < info.frames:
        return UNREADABLE, f"{path}: truncated ({decoded} of {info.frames} frames decoded)", info.samplerate, info.frames
    return None, "", info.samplerate, info.frames


def _probe_chunk(paths: Sequence[str], decode: str, rates: RateRange, max_peak: float) -> list[tuple[str | None, str, int, int]]:
    return [_probe(p, decode, rates, max_peak) for p in paths]


def _escapes(paths: pd.Series, root: str) -> np.ndarray:
    """True where the symlink-resolved path is not inside the symlink-resolved root."""
    base = os.path.realpath(root)
    prefix = base.rstrip(os.sep) + os.sep
    real = paths.map(os.path.realpath)
    return np.asarray([not (r == base or r.startswith(prefix)) for r in real], dtype=bool)


def inspect_manifest(
    manifest: pd.DataFrame,
    root: str | os.PathLike | None = None,
    num_workers: int | None = None,
    decode: str = "all",
    sample_rates: RateRange = SAMPLE_RATE_RANGE,
    max_peak: float = MAX_PEAK,
) -> CheckResult:
    """Find every problem without acting on it (policy `report`); see `check_manifest`."""
    if decode not in ("all", "float", "none"):
        raise UserError(f"decode: expected all|float|none, got {decode!r}")
    if not max_peak > 0:
        raise UserError(f"max_peak: must be > 0, got {max_peak!r}")
    validate_manifest(manifest)
    root = root if root is not None else manifest.attrs.get("root")
    frame = manifest.reset_index(drop=True)
    found: list[tuple[str, int, str]] = []  # (kind, row, detail)

    unknown = ~frame["label"].isin(list(LABEL_TARGETS))
    found += [(UNKNOWN_LABEL, i, f"label {frame.at[i, 'label']!r} is not bonafide/spoof") for i in np.flatnonzero(unknown)]

    dup = frame["utt"].duplicated(keep="first")
    if dup.any():
        first = frame.reset_index().drop_duplicates("utt").set_index("utt")["index"]
        for i in np.flatnonzero(dup):
            utt = frame.at[i, "utt"]
            found.append((DUPLICATE, i, f"utt {utt!r} already at {origin(frame.loc[first[utt]])}"))

    outside = np.zeros(len(frame), dtype=bool)
    if root is not None and len(frame):
        outside = _escapes(frame["path"], os.fspath(root))
        found += [(OUTSIDE, i, f"{frame.at[i, 'path']} resolves outside the corpus root {root}") for i in np.flatnonzero(outside)]

    rates: Counter[int] = Counter()
    seconds = 0.0
    if len(frame):
        todo = [i for i in range(len(frame)) if not outside[i]]
        paths = frame["path"].tolist()
        workers = max(1, num_workers if num_workers is not None else min(8, (os.cpu_count() or 1) * 2))
        chunk = max(1, min(256, len(todo) // (workers * 8) or 1))
        chunks = [todo[k : k + chunk] for k in range(0, len(todo), chunk)]
        mode = decode if decode != "none" else "header"
        with ThreadPoolExecutor(max_workers=workers) as pool, Progress(len(todo), "checking audio", "files") as bar:
            results = pool.map(lambda rows: _probe_chunk([paths[i] for i in rows], mode, sample_rates, max_peak), chunks)
            for rows, res in zip(chunks, results):
                bar.update(len(rows))
                for i, (kind, detail, rate, nframes) in zip(rows, res):
                    if kind is not None:
                        found.append((kind, i, detail))
                    else:
                        rates[rate] += 1
                        seconds += nframes / rate

    order = {k: n for n, k in enumerate(KINDS)}
    found.sort(key=lambda t: (t[1], order[t[0]]))
    problems = [
        Problem(kind, int(i), str(frame.at[i, "utt"]), origin(frame.loc[i]), detail) for kind, i, detail in found
    ]
    counts = {k: 0 for k in KINDS}
    counts.update(Counter(p.kind for p in problems))
    audio: dict[str, object] = {"sample_rates": dict(sorted(rates.items())), "seconds": seconds}
    return CheckResult(manifest, problems, counts, len(frame), "report", audio)


@dataclass(frozen=True)
class SharedId:
    """An utterance id that an earlier corpus of the same set already holds."""

    utt: str
    spec: str
    where: str
    first_spec: str
    first_where: str

    def __str__(self) -> str:
        return f"{self.where}: {DUPLICATE}: utt {self.utt!r} of {self.spec} is also in {self.first_spec} at {self.first_where}"


def duplicates_across(manifests: Sequence[pd.DataFrame], limit: int = 20) -> tuple[list[SharedId], int]:
    """(the first `limit` rows whose `utt` an earlier manifest already holds, how many there are).

    Why: the corpora of one set (train, dev, an eval set) become one manifest, where an id held
    twice counts its trial twice and collides when scores are keyed by id. Specs come from each
    manifest's `attrs['spec']`; ids repeated within one manifest are `inspect_manifest`'s.
    """
    if len(manifests) < 2:
        return [], 0
    ids = pd.concat(
        [pd.DataFrame({"utt": m["utt"].to_numpy(), "set": k, "row": np.arange(len(m))}).drop_duplicates("utt")
         for k, m in enumerate(manifests)],
        ignore_index=True,
    )
    repeated = ids.duplicated("utt", keep="first").to_numpy()
    if not repeated.any():
        return [], 0
    first = ids.loc[~repeated].set_index("utt")
    frames = [m.reset_index(drop=True) for m in manifests]
    specs = [m.attrs.get("spec", f"manifest #{k}") for k, m in enumerate(manifests)]
    shared = []
    for utt, k, row in ids.loc[repeated].head(limit).itertuples(index=False):
        k0, row0 = int(first.at[utt, "set"]), int(first.at[utt, "row"])
        shared.append(SharedId(str(utt), specs[k], origin(frames[k].loc[row]), specs[k0], origin(frames[k0].loc[row0])))
    return shared, int(repeated.sum())


def require_distinct_ids(manifests: Sequence[pd.DataFrame], what: str) -> None:
    """Refuse, in one line naming the set `what`, an id held by two corpora of one set (in any
    policy: dropping either copy would be a guess, keeping both counts the trial twice)."""
    shared, total = duplicates_across(manifests, limit=1)
    if shared:
        s = shared[0]
        raise UserError(
            f"{what}: {total} utterance id(s) in more than one corpus, the first {s.utt!r} in "
            f"{s.first_spec} ({s.first_where}) and {s.spec} ({s.where})"
        )


def check_manifest(
    manifest: pd.DataFrame,
    root: str | os.PathLike | None = None,
    policy: str = "fail",
    num_workers: int | None = None,
    decode: str = "all",
    max_listed: int = 20,
    sample_rates: RateRange = SAMPLE_RATE_RANGE,
    max_peak: float = MAX_PEAK,
) -> CheckResult:
    """Check every row; `fail` raises UserError listing the first `max_listed` problems and the
    counts per kind, `skip` returns the manifest without the bad rows and the counts.

    `root` (default: `manifest.attrs['root']` set by `load_corpus`) bounds where audio may live
    after resolving symlinks; `decode` is all | float (only float-format files) | none (headers).
    `sample_rates` (MIN, MAX) in Hz bounds the headers' rates; `max_peak` the float samples.
    """
    if policy not in ("fail", "skip"):
        raise UserError(f"policy: expected fail or skip, got {policy!r}")
    result = inspect_manifest(manifest, root=root, num_workers=num_workers, decode=decode,
                              sample_rates=sample_rates, max_peak=max_peak)
    result.policy = policy
    if result.ok:
        return result
    result.manifest = apply_policy(manifest, policy, result.bad_rows, result.format_problems(max_listed))
    return result


def apply_policy(manifest: pd.DataFrame, policy: str, bad_rows: Sequence[int], report: str) -> pd.DataFrame:
    """What a check's verdict means for `manifest`: unchanged when no row is bad; with bad rows,
    `fail` raises UserError with `report` (the problems as `format_problems` lists them) and
    `skip` returns the manifest without them. Shared by a fresh check and a cached verdict."""
    if policy not in ("fail", "skip"):
        raise UserError(f"policy: expected fail or skip, got {policy!r}")
    if not len(bad_rows):
        return manifest
    if policy == "fail":
        name = manifest.attrs.get("spec", "manifest")
        raise UserError(f"{name}: check failed\n{report}")
    keep = np.ones(len(manifest), dtype=bool)
    keep[list(bad_rows)] = False
    clean = manifest.reset_index(drop=True).loc[keep].reset_index(drop=True)
    clean.attrs = dict(manifest.attrs)
    return clean
