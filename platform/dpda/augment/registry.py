"""The augmentation transforms, one entry each: the only place a transform is named.

An entry says which parameters the transform takes (a `TransformParams` model: defaults, ranges),
how it draws its randomness for a batch (`draw(params, batch, time, generator, device,
workspace)`: signal-independent, every utterance its own draws, from the step's generator), how it
applies given draws (`apply(params, x, drawn) -> y`, deterministic, same shape), and where it runs
(`device`: batched tensor code on the input's device; `loader`: CPU arrays, one utterance at a
time in the DataLoader workers, so only with `data.augment_before_crop`), and, for a transform
that reads files (the banks of `noise` and `reverb`), `prepare(params, where, policy)`: open and
check them before training, returning their check verdicts. The config's
`augment.pipeline`, the pipeline runtime and the docs read this table, so adding a transform is
adding one `register_transform(Transform(...))`.

Draws are a dict of `(batch, ...)` tensors, or an object with `select(rows)` (RawBoost's): the
pipeline hands a transform only the rows it applies to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from dpda.augment import codecs, level, noise, reverb, spectral, speed
from dpda.augment.draws import Workspace
from dpda.augment.params import RawBoostParams
from dpda.augment.rawboost import RawBoost
from dpda.errors import UserError
from dpda.typed import Settings, parse

Where = Literal["device", "loader"]
Draw = Callable[[Any, int, int, "torch.Generator | None", torch.device, "Workspace | None"], Any]
Apply = Callable[[Any, Tensor, Any], Tensor]
Prepare = Callable[[Any, str, str], "dict[str, Any]"]


@dataclass(frozen=True)
class Transform:
    """One transform; `where(params)` says where a configured instance runs."""

    name: str
    summary: str
    params: type[Settings]
    draw: Draw
    apply: Apply
    where: Callable[[Any], Where] = field(default=lambda params: "device")
    prepare: Prepare | None = None

    def parse_params(self, raw: Mapping[str, Any] | None, where: str) -> Settings:
        """The parameters from a config mapping; only the given keys count as set (dumps)."""
        return parse(self.params, raw, where)


TRANSFORMS: dict[str, Transform] = {}
COMPOSERS = ("chain", "one_of")  # the composition nodes' keys: not transform names


def register_transform(transform: Transform) -> Transform:
    """Add a transform (name lower-case, unique, not a composer's key); returns it."""
    name = transform.name
    if name != name.lower() or name in TRANSFORMS or name in COMPOSERS or name == "p":
        raise ValueError(f"transform {name!r}: names are lower-case, unique and not {', '.join(COMPOSERS)}")
    TRANSFORMS[name] = transform
    return transform


def get_transform(name: str, where: str = "augment.pipeline") -> Transform:
    if name not in TRANSFORMS:
        raise UserError(f"{where}: unknown transform {name!r} (known: {', '.join(TRANSFORMS)}; "
                        f"compose with {', '.join(COMPOSERS)})")
    return TRANSFORMS[name]


def select_rows(drawn: Any, rows: Tensor) -> Any:
    """The draws of `rows` (an int64 index tensor) only."""
    if isinstance(drawn, Mapping):
        return {k: v.index_select(0, rows) for k, v in drawn.items()}
    return drawn.select(rows)


# ------------------------------------------------------------------------------------- entries

def _draw_rawboost(p: RawBoostParams, batch: int, time: int, gen: torch.Generator | None,
                   device: torch.device, workspace: Workspace | None = None) -> Any:
    return RawBoost(p).draw(batch, time, gen, device, workspace)


def _apply_rawboost(p: RawBoostParams, x: Tensor, drawn: Any) -> Tensor:
    return RawBoost(p).apply(x, drawn)


register_transform(Transform("rawboost", "RawBoost (Tak et al., 2022), all 9 algorithms; published parameter names",
                             RawBoostParams, _draw_rawboost, _apply_rawboost))
register_transform(Transform("gain", "gain drawn uniformly in dB (`db: [low, high]`)",
                             level.GainParams, level.draw_gain, level.apply_gain))
register_transform(Transform("clip", "hard clipping at a drawn fraction of each utterance's peak",
                             level.ClipParams, level.draw_clip, level.apply_clip))
register_transform(Transform("band_drop", "frequency masking: one drawn band zeroed via the FFT",
                             spectral.BandDropParams, spectral.draw_band_drop, spectral.apply_band_drop))
register_transform(Transform("speed", "speed perturbation by resampling, cropped/zero-padded back to the input length",
                             speed.SpeedParams, speed.draw_speed, speed.apply_speed))
register_transform(Transform("codec", "codec round trip: mulaw, alaw (device); g722, mp3, opus (loader)",
                             codecs.CodecParams, codecs.draw_codec, codecs.apply_codec, codecs.where_codec))
register_transform(Transform("noise", "additive noise from a bank (musan:, csv:) at a drawn SNR per category, babble included",
                             noise.NoiseParams, noise.draw_noise, noise.apply_noise, prepare=noise.prepare_noise))
register_transform(Transform("reverb", "convolution with a drawn room impulse response (rirs:, csv:), direct-path aligned",
                             reverb.ReverbParams, reverb.draw_reverb, reverb.apply_reverb, prepare=reverb.prepare_reverb))
