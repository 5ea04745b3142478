"""The `codec` transform: what a telephone or streaming link does to the waveform.

Where each kind runs (the registry's `where`):
- `mulaw`, `alaw` (G.711): table lookups on the input's device (`dpda.augment.g711`), batched.
- `g722` (64 kbit/s ADPCM, the locked `g722` package, via `dpda.data.realset.codec`), `mp3`
  (LAME) and `opus` (libopus) through libsndfile in the locked `soundfile` wheel: CPU arrays, one
  utterance at a time, so they run in the DataLoader workers (`data.augment_before_crop: true`).
  `compression` is libsndfile's compression level (0 = highest bit rate, 1 = lowest), drawn per
  utterance.
- `aac`: not available here (no AAC encoder in the locked libsndfile; torchaudio 2.11 has no
  ffmpeg backend); the config refuses it in one line.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
import torch
from pydantic import field_validator, model_validator
from torch import Tensor

from dpda import SAMPLE_RATE
from dpda.augment import g711
from dpda.augment.ranges import Range, TransformParams, uniform
from dpda.augment.speed import fit_length
from dpda.typed import relation_error

DEVICE_KINDS = ("mulaw", "alaw")
LOADER_KINDS = ("g722", "mp3", "opus")
COMPRESSED = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}  # soundfile format, subtype
UNAVAILABLE = {"aac": "no AAC encoder in the locked soundfile/libsndfile, and torchaudio 2.11 has no ffmpeg"}

CodecKind = Literal["mulaw", "alaw", "g722", "mp3", "opus"]


class CodecParams(TransformParams):
    """One codec round trip (encode, decode) per utterance; `compression` only for mp3 and opus."""

    kind: CodecKind = "mulaw"
    compression: Range | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _available(cls, kind: object) -> object:
        if isinstance(kind, str) and kind in UNAVAILABLE:
            raise ValueError(f"{kind} is not available here ({UNAVAILABLE[kind]}); available: "
                             f"{', '.join(DEVICE_KINDS + LOADER_KINDS)}")
        return kind

    @model_validator(mode="after")
    def _compression(self) -> CodecParams:
        if self.compression is not None:
            if self.kind not in COMPRESSED:
                raise relation_error("compression", f"only for {', '.join(COMPRESSED)}, not {self.kind}")
            if not (0 <= self.compression[0] and self.compression[1] <= 1):
                raise relation_error("compression", f"must lie in [0, 1], got {self.compression}")
        return self

    @property
    def levels(self) -> list[float]:
        return self.compression if self.compression is not None else [0.0, 0.5]


def where_codec(p: CodecParams) -> str:
    return "device" if p.kind in DEVICE_KINDS else "loader"


def draw_codec(p: CodecParams, batch: int, time: int, gen: torch.Generator | None, device: torch.device,
               workspace: object = None) -> dict[str, Tensor]:
    if p.kind in COMPRESSED:
        return {"compression": uniform(p.levels, batch, gen, device)}
    return {}


def compressed_round_trip(wave: np.ndarray, kind: str, level: float) -> np.ndarray:
    """One utterance through an mp3/opus encoder and decoder (libsndfile), at the input length."""
    import soundfile

    fmt, subtype = COMPRESSED[kind]
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(wave, -1.0, 1.0).astype(np.float32), SAMPLE_RATE, format=fmt,
                    subtype=subtype, compression_level=float(level))
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    return decoded


def _cpu_round_trip(row: np.ndarray, kind: str, level: float) -> np.ndarray:
    if kind == "g722":
        from dpda.data.realset.codec import round_trip

        return round_trip(row)
    return compressed_round_trip(row, kind, level)


def apply_codec(p: CodecParams, x: Tensor, drawn: dict[str, Tensor]) -> Tensor:
    """mulaw/alaw batched on x's device; the others one row at a time on CPU arrays (the loader
    hands them one utterance)."""
    if p.kind in DEVICE_KINDS:
        return g711.round_trip(x, p.kind)
    levels = drawn["compression"].tolist() if "compression" in drawn else [0.0] * x.shape[0]
    rows = [torch.from_numpy(_cpu_round_trip(row, p.kind, level))
            for row, level in zip(x.detach().cpu().numpy(), levels)]
    return torch.stack([fit_length(r, x.shape[-1]) for r in rows]).to(x.device, x.dtype)
