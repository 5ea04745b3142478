"""LFCC-LCNN: the ASVspoof 2021 baseline idea (Wang & Yamagishi) on a fixed cepstral front end.

Linear-frequency cepstral coefficients (LFCC) keep the high-frequency detail where vocoder and
phase artefacts live (mel scales compress it), so a small light CNN on them is a strong, cheap
CPU detector. The light CNN uses max-feature-map (MFM) activations: each convolution produces
twice the channels and MFM keeps the elementwise max of the two halves, a learnt competitive
selection that halves the width without a separate nonlinearity.

Pipeline: waveform (B, T) at 16 kHz -> pre-emphasis -> LFCC + deltas + delta-deltas, or the log
power spectrum with `features: lps` (fixed, no grad) -> per-utterance mean/variance normalisation
over time -> LCNN stages (conv -> MFM -> BN, max-pool) -> optional residual Bi-LSTM over time ->
mean + std pooling over time -> dropout -> linear to 2 logits (class 1 = bona fide).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from dpda._torchaudio import torchaudio  # noqa: F401  one-line error if torch and torchaudio cannot load together
from torchaudio.functional import compute_deltas
from torchaudio.transforms import LFCC, Spectrogram

from dpda.errors import UserError
from dpda.models.sinc import check_positive


FEATURE_NORMS = ("meanvar", "mean", "batch", "none")
LPS_FLOOR = 1e-8  # power added before the log: silence stays finite, about -80 dB under a 0.05-RMS utterance


FEATURES = ("lfcc", "lps")


class LFCCFrontEnd(nn.Module):
    """Fixed LFCC (+ deltas) or log power spectrum (LPS) features, normalised per utterance:
    (B, T) -> (B, out_dim, frames).

    LFCC (`features="lfcc"`, 3 * n_lfcc rows) is the ASVspoof 2021 baseline's cepstral envelope;
    truncating the cepstrum smooths away the harmonic fine structure. LPS (`features="lps"`,
    n_fft // 2 + 1 rows) is the full-resolution log power spectrum of the light-CNN systems of
    ASVspoof 2017/2019 (Lavrentyeva et al.): it keeps harmonics, noise between them and the
    smearing that phase reconstruction leaves, at a few times the convolution cost.
    Both use a natural log (not dB with `top_db`, which in torchaudio clamps relative to the
    whole batch's maximum and would make one utterance's features depend on its batch mates).
    Normalising each row over time removes the channel/level offset so the network sees spectral
    shape, and keeps silent input finite.
    """

    def __init__(self, n_lfcc: int = 20, n_filter: int = 20, win_ms: float = 20.0, hop_ms: float = 10.0,
                 n_fft: int = 512, pre_emphasis: float = 0.97, feature_norm: str = "meanvar",
                 sample_rate: int = 16_000, features: str = "lfcc") -> None:
        super().__init__()
        if feature_norm not in FEATURE_NORMS:
            raise UserError(f"model lcnn: feature_norm must be one of {', '.join(FEATURE_NORMS)}, got {feature_norm!r}")
        if features not in FEATURES:
            raise UserError(f"model lcnn: features must be one of {', '.join(FEATURES)}, got {features!r}")
        self.feature_norm = feature_norm
        self.features = features
        check_positive("lcnn", n_lfcc=n_lfcc, n_filter=n_filter, win_ms=win_ms, hop_ms=hop_ms, n_fft=n_fft)
        if features == "lfcc" and n_lfcc > n_filter:
            raise UserError(f"model lcnn: n_lfcc={n_lfcc} must be <= n_filter={n_filter}")
        if not 0.0 <= pre_emphasis < 1.0:
            raise UserError(f"model lcnn: pre_emphasis must be in [0, 1), got {pre_emphasis}")
        self.win_length = round(sample_rate * win_ms / 1000)
        hop = round(sample_rate * hop_ms / 1000)
        if self.win_length > n_fft:
            raise UserError(f"model lcnn: window of {self.win_length} samples exceeds n_fft={n_fft}")
        self.pre_emphasis = pre_emphasis
        spec = dict(n_fft=n_fft, win_length=self.win_length, hop_length=hop, center=True, pad_mode="constant")
        if features == "lfcc":
            self.lfcc = LFCC(sample_rate=sample_rate, n_filter=n_filter, n_lfcc=n_lfcc, log_lf=True, speckwargs=spec)
            self.out_dim = 3 * n_lfcc
        else:
            self.spectrogram = Spectrogram(power=2.0, **spec)
            self.out_dim = n_fft // 2 + 1

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2:
            raise UserError(f"model lcnn: expected a (batch, time) waveform, got shape {tuple(wave.shape)}")
        if wave.shape[-1] < self.win_length:
            raise UserError(f"model lcnn: input of {wave.shape[-1]} samples is shorter than the "
                            f"{self.win_length}-sample analysis window")
        wave = wave.float()
        if self.pre_emphasis > 0:
            wave = torch.cat([wave[:, :1], wave[:, 1:] - self.pre_emphasis * wave[:, :-1]], dim=1)
        if self.features == "lfcc":
            c = self.lfcc(wave)  # (B, n_lfcc, frames)
            d1 = compute_deltas(c)
            feats = torch.cat([c, d1, compute_deltas(d1)], dim=1)
        else:
            feats = torch.log(self.spectrogram(wave) + LPS_FLOOR)  # (B, n_fft // 2 + 1, frames)
        if self.feature_norm == "none":
            return feats
        feats = feats - feats.mean(dim=-1, keepdim=True)
        if self.feature_norm == "mean":
            return feats
        return feats / (feats.std(dim=-1, keepdim=True, unbiased=False) + 1e-5)


class MFMConv2d(nn.Module):
    """Conv2d to 2 * out channels, then max-feature-map: elementwise max of the two halves."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return torch.maximum(a, b)


class LCNNStage(nn.Module):
    """[1x1 MFM -> BN] -> kxk MFM -> BN -> 2x2 max-pool (ceil mode: sizes never reach zero).

    The 1x1 "network in network" layer mixes channels cheaply before the spatial convolution, as
    in the light CNN; the first stage (a single input channel) skips it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, first: bool) -> None:
        super().__init__()
        mix = [] if first else [MFMConv2d(in_channels, in_channels, 1), nn.BatchNorm2d(in_channels)]
        self.body = nn.Sequential(*mix, MFMConv2d(in_channels, out_channels, kernel_size),
                                  nn.BatchNorm2d(out_channels), nn.MaxPool2d(2, ceil_mode=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LCNN(nn.Module):
    """Waveform (B, T) at 16 kHz -> logits (B, 2), class 1 = bona fide.

    `channels` are the MFM output widths of the stages (each halves frequency and time);
    `lstm_layers` > 0 adds the baseline's residual Bi-LSTM over the frame sequence.
    """

    def __init__(
        self,
        n_lfcc: int = 20,
        n_filter: int = 20,
        channels: Sequence[int] = (32, 48, 64, 32),
        first_kernel: int = 5,
        kernel: int = 3,
        lstm_layers: int = 2,
        dropout: float = 0.7,
        pre_emphasis: float = 0.97,
        feature_norm: str = "meanvar",
        features: str = "lfcc",
    ) -> None:
        super().__init__()
        try:
            widths = [int(c) for c in channels]
        except (TypeError, ValueError):
            widths = []
        if not widths or any(c < 1 for c in widths):
            raise UserError(f"model lcnn: channels must be a non-empty list of positive widths, got {channels!r}")
        check_positive("lcnn", first_kernel=first_kernel, kernel=kernel)
        if lstm_layers < 0:
            raise UserError(f"model lcnn: lstm_layers must be >= 0, got {lstm_layers}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"model lcnn: dropout must be in [0, 1), got {dropout}")
        self.frontend = LFCCFrontEnd(n_lfcc=n_lfcc, n_filter=n_filter, pre_emphasis=pre_emphasis,
                                     feature_norm="none" if feature_norm == "batch" else feature_norm,
                                     features=features)
        self.input_norm = nn.BatchNorm1d(self.frontend.out_dim) if feature_norm == "batch" else nn.Identity()
        ins = [1] + widths[:-1]
        self.stages = nn.Sequential(*(
            LCNNStage(i, o, first_kernel if n == 0 else kernel, first=(n == 0))
            for n, (i, o) in enumerate(zip(ins, widths))
        ))
        freq = self.frontend.out_dim
        for _ in widths:
            freq = -(-freq // 2)  # ceil-mode pooling
        self.frame_dim = widths[-1] * freq
        self.lstm = (nn.LSTM(self.frame_dim, self.frame_dim // 2 or 1, num_layers=lstm_layers, batch_first=True,
                             bidirectional=True) if lstm_layers else None)
        lstm_out = 2 * (self.frame_dim // 2 or 1)
        self.lstm_proj = nn.Identity() if lstm_out == self.frame_dim or not lstm_layers else nn.Linear(lstm_out, self.frame_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * self.frame_dim, 2)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        feats = self.input_norm(self.frontend(wave))  # (B, F, frames); the LFCC part has no grad
        x = self.stages(feats.unsqueeze(1))  # (B, C, F', frames')
        x = x.flatten(1, 2).transpose(1, 2)  # (B, frames', C * F')
        if self.lstm is not None:
            self.lstm.flatten_parameters()
            x = x + self.lstm_proj(self.lstm(x)[0])
        mean = x.mean(dim=1)
        std = torch.sqrt(x.var(dim=1, unbiased=False) + 1e-5)  # eps keeps the gradient finite on 1 frame
        return self.fc(self.dropout(torch.cat([mean, std], dim=1)))
