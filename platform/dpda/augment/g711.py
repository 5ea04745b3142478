"""G.711 mu-law and A-law (ITU-T G.711, the segmented 8-bit telephone codecs) as table lookups
on the input's device.

Why tables: a 16-bit sample has 65,536 values, so the encoder is one gather from a table built
once per device by the standard's segment rules (Sun's reference g711.c, the code behind
Python's `audioop`: `lin2ulaw` codes the top 14 bits, `lin2alaw` the top 13); the decoder is a
256-entry table. `torchaudio.functional.mu_law_encoding` is the continuous mu-law formula, not
G.711's segments, so it is not used. Floats map to 16-bit PCM as round(clip(x, -1, 1) * 32767)
and back as code / 32768 (as `dpda.data.realset.codec` does for G.722).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Law = Literal["mulaw", "alaw"]
_TABLES: dict[tuple[Law, str], tuple[Tensor, Tensor]] = {}

_SEG_ULAW = torch.tensor([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_ALAW = torch.tensor([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_BIAS = 0x84


def _encode_ulaw(pcm: Tensor) -> Tensor:
    """int16 values (as int64) -> u-law bytes (g711.c st_14linear2ulaw of pcm >> 2)."""
    v = pcm >> 2
    negative = v < 0
    mask = torch.where(negative, 0x7F, 0xFF)
    v = torch.where(negative, -v, v).clamp_max(8159) + (_BIAS >> 2)
    seg = torch.searchsorted(_SEG_ULAW, v)  # first segment whose end >= v
    code = (seg << 4) | ((v >> (seg + 1)) & 0xF)
    return torch.where(seg >= 8, 0x7F ^ mask, code ^ mask)


def _decode_ulaw(code: Tensor) -> Tensor:
    """u-law bytes -> int16 values (g711.c st_ulaw2linear16)."""
    u = ~code & 0xFF
    t = (((u & 0xF) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return torch.where((u & 0x80) != 0, _BIAS - t, t - _BIAS)


def _encode_alaw(pcm: Tensor) -> Tensor:
    """int16 values (as int64) -> A-law bytes (g711.c st_linear2alaw of pcm >> 3)."""
    v = pcm >> 3
    negative = v < 0
    mask = torch.where(negative, 0x55, 0xD5)
    v = torch.where(negative, -v - 1, v)
    seg = torch.searchsorted(_SEG_ALAW, v)
    quant = torch.where(seg < 2, v >> 1, v >> seg.clamp_max(7)) & 0xF
    code = (seg << 4) | quant
    return torch.where(seg >= 8, 0x7F ^ mask, code ^ mask)


def _decode_alaw(code: Tensor) -> Tensor:
    """A-law bytes -> int16 values (g711.c st_alaw2linear16)."""
    a = code ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0xF) << 4
    t = torch.where(seg == 0, t + 8, torch.where(seg == 1, t + 0x108, (t + 0x108) << (seg - 1).clamp_min(0)))
    return torch.where((a & 0x80) != 0, t, -t)


def tables(law: Law, device: torch.device) -> tuple[Tensor, Tensor]:
    """(encoder: 65,536 codes indexed by pcm + 32768, decoder: 256 int16 values) on `device`."""
    key = (law, str(device))
    if key not in _TABLES:
        pcm = torch.arange(-32768, 32768, dtype=torch.long)
        codes = torch.arange(256, dtype=torch.long)
        encode, decode = (_encode_ulaw, _decode_ulaw) if law == "mulaw" else (_encode_alaw, _decode_alaw)
        _TABLES[key] = encode(pcm).to(device), decode(codes).to(device)
    return _TABLES[key]


def to_pcm16(x: Tensor) -> Tensor:
    """float waveform -> int64 holding 16-bit PCM values."""
    return torch.round(x.clamp(-1.0, 1.0) * 32767.0).long()


def encode(x: Tensor, law: Law) -> Tensor:
    """float waveform -> G.711 bytes (int64 codes 0..255)."""
    enc, _ = tables(law, x.device)
    return enc[to_pcm16(x) + 32768]


def decode(codes: Tensor, law: Law, dtype: torch.dtype = torch.float32) -> Tensor:
    """G.711 bytes -> float waveform (value / 32768)."""
    _, dec = tables(law, codes.device)
    return dec[codes].to(dtype) / 32768.0


def round_trip(x: Tensor, law: Law) -> Tensor:
    """What a G.711 link does to x: encode, then decode; same shape and dtype."""
    return decode(encode(x, law), law, x.dtype)
