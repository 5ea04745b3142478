"""Whether a path can be corpus audio, judged before its samples are decoded: a regular file,
a plausible sample rate, a WAV whose data is all there; and the peak decoded samples may reach.

Why before decoding: opening a FIFO named `x.wav` blocks forever, a header claiming 1 Hz makes
resampling to 16 kHz allocate 16,000 samples per stored one, and libsndfile quietly shortens a
WAV whose data was cut off to what is present, so neither `sf.info` nor decoding notices the
loss. Each of these is read from the file system or the header alone. No torch or soundfile
here: `dpda check --help` reads the defaults, `dpda.data.check` and `dpda.data.audio` the rest.
"""

from __future__ import annotations

import os
import stat
import struct

from dpda.errors import UserError

RateRange = tuple[int, int]

SAMPLE_RATE_RANGE: RateRange = (8_000, 48_000)
"""Sample rates (Hz, inclusive) a corpus file may have; loading resamples them to
`dpda.SAMPLE_RATE`. Outside it a header is taken as corrupt; `dpda check --sample-rates` moves it."""

MAX_PEAK = 100.0
"""Largest accepted |sample| of float audio: full scale is 1.0, so 40 dB of headroom. Above it a
file is mis-scaled (integer values stored as floats) or corrupt, and would dominate every batch."""


def peak_problem(peak: float, max_peak: float = MAX_PEAK) -> str | None:
    """None for a peak |sample| within `max_peak`, else what is wrong with it (one phrase)."""
    return None if peak <= max_peak else f"peak amplitude {peak:.3g} is above {max_peak:g} (full scale is 1.0)"

_KINDS = (  # (test, what the file is), for everything that is not a regular file
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_UNKNOWN_SIZE = 0xFFFFFFFF  # a WAV written to a pipe: the writer could not go back for the size
_MAX_CHUNKS = 10_000  # chunks walked before giving up on finding `data`


def not_regular(path: str | os.PathLike) -> str | None:
    """None for a regular file (symlinks followed), else what it is, e.g. "a FIFO (named pipe)".

    Uses `os.stat` only: nothing is opened. Raises OSError (FileNotFoundError, ...) as stat does.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "a special file")


def rate_problem(rate: int, accepted: RateRange = SAMPLE_RATE_RANGE) -> str | None:
    """Why a header's sample rate is implausible (outside `accepted`, inclusive), or None."""
    low, high = accepted
    if low <= rate <= high:
        return None
    if low == high:  # one accepted rate (noise and RIR banks: 16 kHz)
        return f"sample rate {rate} Hz, expected {low} Hz"
    return f"sample rate {rate} Hz is outside the accepted {low}-{high} Hz"


def parse_rate_range(text: str, what: str = "--sample-rates") -> RateRange:
    """`MIN-MAX` in Hz (e.g. `8000-48000`) as a tuple; one UserError line otherwise."""
    low, sep, high = text.strip().partition("-")
    try:
        bounds = (int(low), int(high)) if sep else None
    except ValueError:
        bounds = None
    if bounds is None or not 0 < bounds[0] <= bounds[1]:
        raise UserError(f"{what}: expected MIN-MAX in Hz with 0 < MIN <= MAX, e.g. 8000-48000, got {text!r}")
    return bounds


def wav_data_shortfall(path: str | os.PathLike) -> tuple[int, int] | None:
    """(bytes the WAV's data chunk declares, bytes present after it) when the file ends before
    the data does; None when it is complete, its size unknown (streamed), or it is not RIFF WAV.

    libsndfile reports the frames present, not the header's count, so the chunk is read here: the
    RIFF header, then chunk headers (4-byte id, 4-byte size, padded to even) up to `data`.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        size = os.fstat(fh.fileno()).st_size
        for _ in range(_MAX_CHUNKS):
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            (length,) = struct.unpack(order + "I", chunk[4:])
            if chunk[:4] == b"data":
                present = size - fh.tell()
                if length in (0, _UNKNOWN_SIZE) or length <= present:
                    return None
                return length, present
            fh.seek(length + (length & 1), os.SEEK_CUR)
    return None
