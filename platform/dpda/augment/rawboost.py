"""RawBoost (Tak et al., ICASSP 2022) as a batched torch module: draw per utterance, then apply.

Algorithms: 0 none; 1 LnL; 2 ISD; 3 SSI; 4 LnL->ISD->SSI; 5 LnL->ISD; 6 LnL->SSI; 7 ISD->SSI;
8 LnL(x) + ISD(x), normalised. Draws happen in the order the parts run (LnL, ISD, SSI), so a
series algorithm equals its parts applied one after another with one shared generator.

Where this differs from the published NumPy code (on purpose):
- Alignment: the output is advanced by exactly the bank's group delay, (taps - 1) / 2 samples; the
  published `filterFIR` advances by (taps + 1) / 2, i.e. one sample too far (the parameter
  `fir_alignment: published` reproduces it).
- Silent inputs give zeros instead of NaN (divisions are guarded); SSI skips the noise's peak
  normalisation, which the energy scaling undoes exactly.
- Everything else (draw distributions including the floor-then-odd tap counts, firwin design,
  peak response on freqz's 512-point grid, the lowered gain range of the non-linear terms,
  normalisation rules) follows the published definitions.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from dpda.augment import draws, functional
from dpda.augment.params import ALGORITHMS, RawBoostParams
from dpda.errors import UserError

# Which parts each algorithm runs, in order (8 is handled separately: it runs in parallel).
_SERIES = {0: (), 1: ("lnl",), 2: ("isd",), 3: ("ssi",), 4: ("lnl", "isd", "ssi"),
           5: ("lnl", "isd"), 6: ("lnl", "ssi"), 7: ("isd", "ssi")}


class RawBoost(nn.Module):
    """Batched RawBoost on `(batch, time)` (or `(time,)`) float waveforms, on the input's device.

    Every utterance draws its own filters, gains, impulse positions and SNR. Same generator seed,
    same batch -> same output. Without a generator, torch's default generator for the draw device
    is used (reproducible only through torch.manual_seed).
    """

    def __init__(self, params: RawBoostParams | int | None = None, /, **values: Any) -> None:
        """From `RawBoostParams`, or from its published names as keywords, `algo` optionally first
        (`RawBoost(4, P=50)`); invalid values raise UserError naming the parameter."""
        super().__init__()
        if isinstance(params, RawBoostParams):
            if values:
                raise TypeError("RawBoost(params) takes no further values: put them in the RawBoostParams")
            self.params = params
        else:
            self.params = RawBoostParams.create(values if params is None else {"algo": params, **values})

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RawBoost":
        """Build from a config mapping with the published names plus `algo` and `sample_rate`;
        an unknown key or invalid value raises UserError naming the key."""
        if not isinstance(config, Mapping):
            raise UserError(f"expected a mapping of RawBoost parameters, got {type(config).__name__}")
        return cls(RawBoostParams.create(config))

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (e.g. to Ray workers or DataLoader processes) without the scratch storage."""
        return {k: v for k, v in self.__dict__.items() if k != "_workspace"}

    @property
    def algo(self) -> int:
        return self.params.algo

    def extra_repr(self) -> str:
        return f"algo={self.algo} ({ALGORITHMS[self.algo]})"

    # Draws: public so tests and callers can replay or inspect them.
    def draw_lnl(self, batch: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> draws.LnLDraws:
        return draws.draw_lnl(self.params, batch, generator, torch.device(device))

    def draw_isd(self, batch: int, time: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> draws.ISDDraws:
        return draws.draw_isd(self.params, batch, time, generator, torch.device(device))

    def draw_ssi(self, batch: int, time: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> draws.SSIDraws:
        return draws.draw_ssi(self.params, batch, time, generator, torch.device(device))

    def draw(self, batch: int, time: int, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu", workspace: draws.Workspace | None = None) -> draws.RawBoostDraws:
        """All draws of this algorithm, in the order its parts run (LnL, ISD, SSI). No draw depends
        on the signal, so drawing first and applying later equals drawing part by part.
        With a `workspace`, the noise lives in its reused storage (valid until its next use)."""
        parts = (("lnl", "isd") if self.algo == 8 else _SERIES[self.algo]) if time and batch else ()
        device = torch.device(device)
        drawn = draws.RawBoostDraws()
        if "lnl" in parts:
            drawn.lnl = draws.draw_lnl(self.params, batch, generator, device)
        if "isd" in parts:
            drawn.isd = draws.draw_isd(self.params, batch, time, generator, device, workspace=workspace)
        if "ssi" in parts:
            drawn.ssi = draws.draw_ssi(self.params, batch, time, generator, device, workspace=workspace)
        return drawn

    def apply(self, x: Tensor, drawn: draws.RawBoostDraws) -> Tensor:
        """Deterministic part: apply given draws to `(batch, time)` waveforms.

        On the CPU the batch is processed a few utterances at a time so each chunk's FFT blocks and
        temporaries stay in the core's L2 cache: at 64k-sample utterances that is ~2x faster than
        whole-batch passes, which are bound by memory bandwidth. Chunks see exactly their own rows'
        draws, so the result does not depend on the chunking.
        """
        batch, time = x.shape
        if self.algo == 0 or batch == 0 or time == 0:
            return x.clone()
        step = draws.rows_per_chunk(x.device, batch, time)
        if step >= batch:
            return self._apply_rows(x, drawn)
        out = torch.empty_like(x)
        for start in range(0, batch, step):
            rows = slice(start, min(start + step, batch))
            self._apply_rows(x[rows], drawn.select(rows), out[rows])
        return out

    def _apply_rows(self, x: Tensor, d: draws.RawBoostDraws, out: Tensor | None = None) -> Tensor:
        """The algorithm on some rows; with `out`, the result is written there."""
        y = self._apply_parts(x, d, out)
        if out is None or y is out:
            return y
        return out.copy_(y)

    def _apply_parts(self, x: Tensor, d: draws.RawBoostDraws, out: Tensor | None) -> Tensor:
        g_sd, advance = self.params.g_sd, self.params.extra_advance
        if self.algo == 8:
            return functional.parallel_lnl_isd(x, d.lnl.banks, d.isd.positions, d.isd.factors, g_sd, advance)
        owned = False  # True once x is a fresh float32/float64 tensor of ours: ISD may work in place
        for name in _SERIES[self.algo]:
            if name == "lnl":
                x = functional.lnl(x, d.lnl.banks, advance)
                owned = x.dtype in (torch.float32, torch.float64)
            elif name == "isd":
                isd = functional.isd_ if owned else functional.isd
                x = isd(x, d.isd.positions, d.isd.factors, g_sd)
            else:  # SSI always runs last: write straight into `out`
                x = functional.ssi(x, d.ssi.noise, d.ssi.bank, d.ssi.snr_db, out=out, extra_advance=advance)
        return x

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch; returns the same shape, dtype and device."""
        if not x.is_floating_point():
            raise TypeError(f"RawBoost expects a float waveform tensor, got {x.dtype}")
        if x.dim() not in (1, 2):
            raise ValueError(f"RawBoost expects (batch, time) or (time,), got shape {tuple(x.shape)}")
        y = x.unsqueeze(0) if x.dim() == 1 else x
        workspace = self.__dict__.setdefault("_workspace", draws.Workspace())  # draws never leave this call
        y = self.apply(y, self.draw(y.shape[0], y.shape[1], generator, y.device, workspace))
        return y.squeeze(0) if x.dim() == 1 else y
