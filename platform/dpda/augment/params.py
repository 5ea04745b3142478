"""RawBoost parameters: published names and defaults, validated once at construction.

The field names deliberately keep the published spelling (N_f, minF, SNRmin, ...) so configs written
for the reference code work unchanged. Validation happens here, not in the hot path, so a bad value
fails when the config is loaded rather than hours into training.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

from pydantic import ConfigDict, Field, model_validator

from dpda.typed import Count, Settings, parse, relation_error

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


class RawBoostParams(Settings):
    """All RawBoost settings; defaults are those of the published code (Tak et al., 2022).

    Ranges are field constraints; the relations between fields (a range's low end below its high
    end, maxF below Nyquist) are checked after. minG/maxG and the biases may come in either order:
    the published defaults already give a reversed range for the non-linear terms (0-5 .. 0-20 dB),
    and U(a, b) = a + (b - a) u is well defined both ways.
    """

    model_config = ConfigDict(frozen=True)

    algo: Annotated[Count, Field(ge=0, le=8)] = 4
    N_f: Annotated[Count, Field(ge=1)] = 5
    nBands: Annotated[Count, Field(ge=0)] = 5
    minF: Annotated[float, Field(ge=0)] = 20.0
    maxF: float = 8000.0
    minBW: Annotated[float, Field(gt=0)] = 100.0
    maxBW: float = 1000.0
    minCoeff: Annotated[Count, Field(ge=1)] = 10
    maxCoeff: Count = 100
    minG: float = 0.0
    maxG: float = 0.0
    minBiasLinNonLin: float = 5.0
    maxBiasLinNonLin: float = 20.0
    P: Annotated[float, Field(ge=0, le=100)] = 10.0  # percent of samples hit by impulses
    g_sd: Annotated[float, Field(ge=0)] = 2.0
    SNRmin: float = 10.0
    SNRmax: float = 40.0
    sample_rate: Annotated[float, Field(gt=0)] = 16000.0
    # Where a filtered signal is aligned: `group_delay` (exact, (taps-1)/2 samples) or `published`
    # (the published filterFIR: one sample past the group delay; for algo 8 a comb on 4-8 kHz).
    fir_alignment: Literal["group_delay", "published"] = "group_delay"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @classmethod
    def create(cls, values: Mapping[str, Any], where: str = "") -> RawBoostParams:
        """Build from a mapping, rejecting unknown keys and invalid values (UserError names the
        key, after `where`, the dotted prefix of the section, if given)."""
        return parse(cls, values, where)

    @classmethod
    def default(cls) -> RawBoostParams:
        """The defaults, `algo` counted as given: a config that names no algorithm still records
        which one it runs (config dumps hold the given keys only)."""
        return cls.create({"algo": cls.model_fields["algo"].default})

    @property
    def extra_advance(self) -> int:
        """Samples the filter output is advanced beyond the group delay (see `fir_alignment`)."""
        return 1 if self.fir_alignment == "published" else 0

    @property
    def max_band_taps(self) -> int:
        """Longest band filter a draw can produce (tap counts are made odd)."""
        return self.maxCoeff | 1

    @model_validator(mode="after")
    def _check_relations(self) -> RawBoostParams:
        nyquist = self.sample_rate / 2
        relations: list[tuple[bool, str, str]] = [
            # maxF = fs/2 is the published default: centres are drawn from [minF, maxF), so every
            # centre stays below Nyquist; anything above it is a mistake.
            (self.maxF <= nyquist, "maxF", f"{self.maxF} must be <= sample_rate/2 = {nyquist:g}"),
            (self.minF <= self.maxF, "minF", f"{self.minF} must be <= maxF = {self.maxF}"),
            (self.minBW <= self.maxBW, "minBW", f"{self.minBW} must be <= maxBW = {self.maxBW}"),
            (self.minCoeff <= self.maxCoeff, "minCoeff", f"{self.minCoeff} must be <= maxCoeff = {self.maxCoeff}"),
            (self.SNRmin <= self.SNRmax, "SNRmin", f"{self.SNRmin} must be <= SNRmax = {self.SNRmax}"),
        ]
        for ok, name, problem in relations:
            if not ok:
                raise relation_error(name, problem)
        return self
