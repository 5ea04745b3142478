"""G.722 (64 kbit/s, 16 kHz) through the PyPI `g722` package (libg722, bit-exact ITU-T G.722).

Why a codec at all: the Asterisk prompts, the bulk of the bona fide speech, exist only as G.722.
A detector could separate them from freshly synthesised audio by the codec's traces alone, so
every file that was not G.722 already (the spoofs, the PCM probe recordings) goes through one
encode/decode round trip of the same codec: every file in the set has been through G.722 once.
A new codec object per file keeps the ADPCM state from leaking between files (determinism).
"""

from __future__ import annotations

import numpy as np

from dpda.errors import UserError

SAMPLE_RATE = 16_000
BIT_RATE = 64_000
CODEC_NAME = "g722"


def _codec():
    try:
        import G722
    except ImportError:
        raise UserError("the real-audio set needs the G.722 codec: pip install g722 "
                        "(it is in requirements.lock)") from None
    return G722.G722(SAMPLE_RATE, BIT_RATE)


def decode(data: bytes) -> np.ndarray:
    """Raw G.722 bitstream (no header, as Asterisk stores it) -> float32 samples in [-1, 1)."""
    return np.asarray(_codec().decode(data), dtype=np.int16).astype(np.float32) / 32768.0


def encode(wave: np.ndarray) -> bytes:
    """float samples (16 kHz, clipped to [-1, 1]) -> raw G.722 bitstream."""
    pcm = np.round(np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0) * 32767.0).astype(np.int16)
    return _codec().encode(pcm)


def round_trip(wave: np.ndarray) -> np.ndarray:
    """What a G.722 link does to `wave`: encode, then decode (same length, ~22 samples delay)."""
    return decode(encode(wave))
