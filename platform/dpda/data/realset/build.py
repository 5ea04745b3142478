"""Write the real-audio set: audio, the corpus CSV, the held-out protocols and a README.

Layout under OUT:
    wav/<utt>.wav             16 kHz, 16-bit mono; every file has been through G.722 once
    real.csv                  the corpus (`csv:OUT/real.csv[:train|dev|test|probe]`): path, label, utt,
                              speaker, attack, synthesizer, family, language, gender, prompt_speaker,
                              codec, subset
    protocol-<name>.csv       one held-out protocol each (`csv:OUT/protocol-family-neural.csv:test`); beside
                              real.csv because `dpda check` rejects audio paths outside a CSV's folder
    details.csv               per file: prompt, package, codec on disk, seconds, energy above 4 kHz, text
    README.txt                counts, protocols, what was missing and how to install it, build time

The same seed and the same installed packages give the same files (sample for sample).
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from dpda.console import info, track
from dpda.data.realset import codec, condition
from dpda.data.realset.evaluate import CORPUS_FILE, PROTOCOL_PREFIX
from dpda.data.realset.plan import Item, limit_per_language, plan_items
from dpda.data.realset.protocols import SUBSETS, held_out_protocols
from dpda.data.realset.sources import ASTERISK_VOICES, Missing, Recording, find_recordings
from dpda.data.realset.voices import BY_ATTACK, Line, find_voices, synthesize
from dpda.errors import UserError

SR = codec.SAMPLE_RATE
CORPUS_COLUMNS = ("path", "label", "utt", "speaker", "attack", "synthesizer", "family", "language", "gender",
                  "prompt_speaker", "codec", "subset")
BATCH = 24  # files per task: a Festival process and a Piper session serve one batch


@dataclass(frozen=True)
class RealSetConfig:
    seed: int = 0
    languages: tuple[str, ...] | None = None  # None: every installed language
    per_language: int | None = None  # prompts per language (None: all)
    voices: tuple[str, ...] | None = None  # attack ids to use (None: every installed voice)


@dataclass
class RealSetResult:
    root: Path
    rows: pd.DataFrame  # real.csv's rows plus `seconds`
    protocols: dict[str, str]  # name -> what it holds out
    missing: list[Missing] = field(default_factory=list)
    seconds: float = 0.0


def install_hint(missing: list[Missing]) -> str:
    """`apt-get install ...` and `pip install ...` lines that install what is missing."""
    apt = sorted({p for m in missing for p in m.apt})
    pip = sorted({p for m in missing for p in m.pip})
    parts = []
    if apt:
        parts.append("apt-get install -y " + " ".join(apt))
    if pip:
        parts.append("pip install " + " ".join(pip) + " (both are in requirements.lock)")
    return "; ".join(parts)


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def _resample(wave: np.ndarray, rate: int) -> np.ndarray:
    if rate == SR:
        return wave.astype(np.float32)
    import torch

    from dpda._torchaudio import torchaudio  # noqa: F401  one-line error if torch and torchaudio cannot load
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, SR).numpy()


def _read_recording(rec: Recording) -> tuple[np.ndarray, int]:
    if rec.codec == "g722":
        return codec.decode(rec.path.read_bytes()), SR
    if rec.path.suffix == ".raw":
        data, rate = sf.read(rec.path, dtype="float32", format="RAW", subtype="PCM_16", samplerate=SR,
                             channels=1, endian="LITTLE")
        return data, rate
    data, rate = sf.read(rec.path, dtype="float32", always_2d=True)
    return data.mean(axis=1), int(rate)


def _finish(item: Item, wave: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """Trimmed, peak-normalised 16 kHz audio that has been through G.722 exactly once."""
    wave = condition.normalise_peak(condition.trim(_resample(wave, rate), SR))
    if item.voice is None and item.recording.codec == "g722":
        return wave  # decoded from G.722 already
    wave = condition.add_noise_floor(wave, np.random.default_rng(_seed(seed, "floor", item.utt)))
    return condition.normalise_peak(codec.round_trip(wave))  # the codec moves peaks by up to 2 dB


@dataclass(frozen=True)
class _Task:
    items: tuple[Item, ...]
    wav_dir: Path
    seed: int


def _run_task(task: _Task) -> list[tuple[str, float, float]]:
    """Make and write one batch; (utt, seconds, high-band dB) per file."""
    voice = task.items[0].voice
    if voice is None:
        raw = [_read_recording(item.recording) for item in task.items]
    else:
        lines = [Line(item.utt, item.recording.text, item.recording.language, voice.gender_for(item.recording.gender))
                 for item in task.items]
        raw = synthesize(voice, lines, _seed(task.seed, "batch", task.items[0].utt))
    out = []
    for item, (wave, rate) in zip(task.items, raw):
        final = _finish(item, wave, rate, task.seed)
        pcm = np.round(np.clip(final, -1.0, 1.0) * 32767.0).astype(np.int16)
        sf.write(task.wav_dir / f"{item.utt}.wav", pcm, SR, subtype="PCM_16", format="WAV")
        out.append((item.utt, len(pcm) / SR, condition.high_band_db(pcm.astype(np.float32) / 32768.0, SR)))
    return out


def _tasks(items: list[Item], wav_dir: Path, seed: int) -> list[_Task]:
    """Batches of one voice (or of bona fide recordings) in plan order: independent of processes."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault("-" if item.voice is None else item.voice.attack, []).append(item)
    return [_Task(tuple(group[i : i + BATCH]), wav_dir, seed)
            for group in groups.values() for i in range(0, len(group), BATCH)]


def _run(tasks: list[_Task], processes: int) -> list[tuple[str, float, float]]:
    # Slow voices first so that the pool does not end waiting on one long batch.
    cost = {"festival": 0, "piper": 1}
    order = sorted(range(len(tasks)), key=lambda i: cost.get(
        tasks[i].items[0].voice.synthesizer if tasks[i].items[0].voice else "", 2))
    ordered = [tasks[i] for i in order]
    if processes <= 1 or len(tasks) < 2:
        results = list(track((_run_task(t) for t in ordered), len(ordered), "real set", "batches"))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
            results = list(track(pool.map(_run_task, ordered), len(ordered), "real set", "batches"))
    return [row for batch in results for row in batch]


def _row(item: Item) -> dict[str, str]:
    rec, voice = item.recording, item.voice
    return {
        "path": f"wav/{item.utt}.wav", "label": item.label, "utt": item.utt,
        "speaker": rec.speaker if voice is None else voice.attack,
        "attack": "-" if voice is None else voice.attack,
        "synthesizer": "-" if voice is None else voice.synthesizer,
        "family": "-" if voice is None else voice.family,
        "language": rec.language, "gender": rec.gender if voice is None else voice.gender_for(rec.gender),
        "prompt_speaker": rec.speaker, "codec": codec.CODEC_NAME, "subset": item.subset,
    }


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")


def build_real_set(out_dir: str | os.PathLike, cfg: RealSetConfig = RealSetConfig(), *, overwrite: bool = False,
                   processes: int | None = None) -> RealSetResult:
    """Build the set from the installed packages (see the module docstring for the layout)."""
    start = time.perf_counter()
    root = Path(out_dir)
    languages = set(cfg.languages) if cfg.languages else None
    unknown = sorted((languages or set()) - set(ASTERISK_VOICES))
    if unknown:
        raise UserError(f"--languages: unknown language(s) {', '.join(unknown)} (known: {', '.join(ASTERISK_VOICES)})")
    recordings, missing = find_recordings(languages)
    voices, missing_voices = find_voices(languages, set(cfg.voices) if cfg.voices else None)
    missing += missing_voices
    if not recordings:
        raise UserError(f"{root}: no bona fide recordings installed; install them with: {install_hint(missing)}")
    if not voices:
        raise UserError(f"{root}: no speech synthesizer installed; install one with: {install_hint(missing)}")
    if languages is not None:
        absent = languages - {r.language for r in recordings}
        if absent:
            raise UserError(f"--languages: no recordings of {', '.join(sorted(absent))} installed; "
                            f"install them with: {install_hint(missing)}")
    for path in (root / "wav", root / CORPUS_FILE, *sorted(root.glob(f"{PROTOCOL_PREFIX}*.csv"))):
        if path.exists():
            if not overwrite:
                raise UserError(f"{path}: already exists (use --overwrite to replace it)")
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if missing:
        info(f"not installed (the set is built without them): {'; '.join(m.what for m in missing)}")
        info(f"  to add them: {install_hint(missing)}")
    recordings = limit_per_language(recordings, cfg.per_language, cfg.seed)
    items = plan_items(recordings, voices, cfg.seed)
    info(f"{sum(i.voice is None for i in items)} bona fide recordings, {sum(i.voice is not None for i in items)} "
         f"spoofs by {len(voices)} voices ({', '.join(v.attack for v in voices)})")
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    procs = min(4, os.cpu_count() or 1) if processes is None else processes
    made = {utt: (seconds, high) for utt, seconds, high in _run(_tasks(items, wav_dir, cfg.seed), procs)}

    frame = pd.DataFrame([_row(i) for i in items], columns=list(CORPUS_COLUMNS))
    details = pd.DataFrame({
        "utt": [i.utt for i in items], "prompt": [i.recording.prompt for i in items],
        "package": [i.recording.package if i.voice is None else " ".join(i.voice.apt or i.voice.pip) for i in items],
        "codec_on_disk": [i.recording.codec if i.voice is None else "pcm" for i in items],
        "seconds": [round(made[i.utt][0], 4) for i in items],
        "high_band_db": [round(made[i.utt][1], 3) for i in items],
        "text": [i.recording.text for i in items],
    })
    protocols = held_out_protocols(frame)
    for protocol in protocols:
        _write_csv(root / f"{PROTOCOL_PREFIX}{protocol.name}.csv", protocol.frame)
    _write_csv(root / "details.csv", details)
    _write_csv(root / CORPUS_FILE, frame)  # last: its presence means the set is complete
    rows = frame.assign(seconds=details["seconds"].to_numpy())
    result = RealSetResult(root, rows, {p.name: p.holds_out for p in protocols}, missing,
                           time.perf_counter() - start)
    (root / "README.txt").write_text(readme(result, cfg, protocols), encoding="utf-8")
    return result


def counts_table(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """Files and minutes of audio per value of `by` and label."""
    grouped = rows.groupby([by, "label"], sort=True)["seconds"].agg(files="size", minutes=lambda s: s.sum() / 60)
    return grouped.reset_index()


def readme(result: RealSetResult, cfg: RealSetConfig, protocols) -> str:
    rows = result.rows
    lines = [
        "dpda real-audio set (written by `dpda realset`; same seed and installed packages, same files)",
        "",
        "Bona fide: recordings of real people from Debian packages. Spoofs: real synthesizers reading",
        "the same texts, one voice of each method family per text. Every file was trimmed to its",
        f"speech (+{condition.MARGIN_S:g} s), normalised to {condition.PEAK_DBFS:g} dBFS peak and has been "
        "through G.722 once (the",
        "Asterisk prompts are stored as G.722; everything else gets a faint noise floor and a round trip).",
        "",
        f"Files: {len(rows)} ({(rows['label'] == 'bonafide').sum()} bona fide, {(rows['label'] == 'spoof').sum()} spoof), "
        f"{rows['seconds'].sum() / 60:.1f} minutes; built in {result.seconds:.0f} s.",
        "",
    ]
    for by in ("family", "attack", "language", "gender", "prompt_speaker", "subset"):
        lines.append(f"By {by} (files / minutes):")
        for _, r in counts_table(rows, by).iterrows():
            lines.append(f"  {r[by]:<18s} {r['label']:<9s} {r['files']:6d} {r['minutes']:7.1f}")
        lines.append("")
    lines.append("Protocols (csv:OUT/protocol-NAME.csv:SUBSET; the standard split is csv:OUT/real.csv:SUBSET):")
    for p in protocols:
        counts = p.frame.groupby(["subset", "label"]).size()
        cells = ", ".join(f"{s} {counts.get((s, 'bonafide'), 0)}+{counts.get((s, 'spoof'), 0)}"
                          for s in SUBSETS if s in set(p.frame["subset"]))
        lines.append(f"  {p.name:<18s} holds out {p.holds_out}: {cells} (bona fide+spoof)")
    lines.append("")
    if result.missing:
        lines.append("Not installed when built: " + "; ".join(m.what for m in result.missing))
        lines.append("  to add them: " + install_hint(result.missing))
        lines.append("")
    lines.append(f"Options: seed={cfg.seed}, languages={','.join(cfg.languages) if cfg.languages else 'all'}, "
                 f"per_language={cfg.per_language or 'all'}, voices={','.join(cfg.voices) if cfg.voices else 'all'}")
    return "\n".join(lines) + "\n"


__all__ = ["BY_ATTACK", "RealSetConfig", "RealSetResult", "build_real_set", "counts_table", "install_hint"]
