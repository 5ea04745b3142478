"""RawBoost parameters: published names and defaults, validated once at construction.

The field names deliberately keep the published spelling (N_f, minF, SNRmin, ...) so configs written
for the reference code work unchanged. Validation happens here, not in the hot path, so a bad value
fails when the config is loaded rather than hours into training.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Mapping

from dpda.errors import UserError

ALGORITHMS = {
    0: "none",
    1: "LnL convolutive noise",
    2: "ISD impulsive signal-dependent noise",
    3: "SSI stationary signal-independent noise",
    4: "series LnL + ISD + SSI",
    5: "series LnL + ISD",
    6: "series LnL + SSI",
    7: "series ISD + SSI",
    8: "parallel LnL and ISD, summed",
}

_COUNTS = ("N_f", "nBands", "minCoeff", "maxCoeff")


@dataclass(frozen=True)
class RawBoostParams:
    """All RawBoost settings; defaults are those of the published code (Tak et al., 2022)."""

    algo: int = 4
    N_f: int = 5
    nBands: int = 5
    minF: float = 20.0
    maxF: float = 8000.0
    minBW: float = 100.0
    maxBW: float = 1000.0
    minCoeff: int = 10
    maxCoeff: int = 100
    minG: float = 0.0
    maxG: float = 0.0
    minBiasLinNonLin: float = 5.0
    maxBiasLinNonLin: float = 20.0
    P: float = 10.0
    g_sd: float = 2.0
    SNRmin: float = 10.0
    SNRmax: float = 40.0
    sample_rate: float = 16000.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def create(cls, values: Mapping[str, Any]) -> "RawBoostParams":
        """Build from a mapping, rejecting unknown keys and invalid values (UserError names the key)."""
        known = cls.names()
        for key in values:
            if key not in known:
                raise UserError(f"{key}: unknown RawBoost parameter (known: {', '.join(known)})")
        merged = {f.name: f.default for f in fields(cls)}
        merged.update(values)
        clean = {name: _coerce(name, merged[name]) for name in known}
        params = cls(**clean)
        params._check()
        return params

    @property
    def max_band_taps(self) -> int:
        """Longest band filter a draw can produce (tap counts are made odd)."""
        return self.maxCoeff | 1

    def _check(self) -> None:
        nyquist = self.sample_rate / 2
        rules: list[tuple[bool, str, str]] = [
            (self.algo in ALGORITHMS, "algo", f"{self.algo} is not a RawBoost algorithm (0-8)"),
            (self.sample_rate > 0, "sample_rate", f"{self.sample_rate} must be > 0"),
            (self.N_f >= 1, "N_f", f"{self.N_f} must be >= 1"),
            (self.nBands >= 0, "nBands", f"{self.nBands} must be >= 0"),
            (self.minF >= 0, "minF", f"{self.minF} must be >= 0"),
            # maxF = fs/2 is the published default: centres are drawn from [minF, maxF), so every
            # centre stays below Nyquist; anything above it is a mistake.
            (self.maxF <= nyquist, "maxF", f"{self.maxF} must be <= sample_rate/2 = {nyquist:g}"),
            (self.minF <= self.maxF, "minF", f"{self.minF} must be <= maxF = {self.maxF}"),
            (self.minBW > 0, "minBW", f"{self.minBW} must be > 0"),
            (self.minBW <= self.maxBW, "minBW", f"{self.minBW} must be <= maxBW = {self.maxBW}"),
            (self.minCoeff >= 1, "minCoeff", f"{self.minCoeff} must be >= 1"),
            (self.minCoeff <= self.maxCoeff, "minCoeff", f"{self.minCoeff} must be <= maxCoeff = {self.maxCoeff}"),
            (0 <= self.P <= 100, "P", f"{self.P} must lie in [0, 100] (a percentage of samples)"),
            (self.g_sd >= 0, "g_sd", f"{self.g_sd} must be >= 0"),
            (self.SNRmin <= self.SNRmax, "SNRmin", f"{self.SNRmin} must be <= SNRmax = {self.SNRmax}"),
        ]
        # minG/maxG and the biases may come in either order: the published defaults already give a
        # reversed range for the non-linear terms (0-5 .. 0-20 dB), and U(a, b) = a + (b - a) u is
        # well defined both ways.
        for ok, name, problem in rules:
            if not ok:
                raise UserError(f"{name}: {problem}")


def _coerce(name: str, value: Any) -> int | float:
    """Numbers only; counts (and algo) must be integral. Floats like 10.0 from YAML/Optuna are fine."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{name}: expected a number, got {value!r}")
    value = float(value) if not isinstance(value, numbers.Integral) else int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{name}: {value} must be finite")
    if name in _COUNTS or name == "algo":
        if isinstance(value, float):
            if not value.is_integer():
                raise UserError(f"{name}: {value} must be an integer")
            value = int(value)
        return value
    return float(value)
