"""Self-supervised front end (XLS-R, WavLM or HuBERT) + AASIST, Conformer-TCM, Mamba, Nes2Net-X or SLS back end.

The front end is torchaudio's Wav2Vec2Model (built by `wav2vec2_xlsr_300m`, `wavlm_large` or
`hubert_large`, all 1024-dim, 24 layers), so pretrained weights load into it
(`dpda.models.ssl_weights.load_ssl_weights`). Its output is either the last transformer layer or
a learnable softmax-weighted sum of all layers (lower layers carry more acoustic detail, which
helps spoofing detection), or every layer's output stacked (`all`, for a back end that weighs
the layers itself: SLS). With `freeze_frontend` the SSL model gets no gradients, runs without
autograd and stays in eval mode (no dropout) while the back end trains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from dpda._torchaudio import torchaudio  # one-line error if torch and torchaudio cannot load together
from torch import nn

from dpda.errors import UserError
from dpda.models.conformer_tcm import ConformerTCMBackend
from dpda.models.mamba import MambaHead
from dpda.models.nes2net import Nes2NetXHead
from dpda.models.sls import SLSHead
from dpda.models.ssl_aasist import AASISTHead

# wav2vec2_model(...) arguments of a 2-layer, 64-dim model for CPU tests: same architecture family
# as XLS-R (layer-norm extractor, pre-LN transformer), 320x downsampling like the real one.
TINY_SSL: dict[str, Any] = dict(
    extractor_mode="layer_norm",
    extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
    extractor_conv_bias=True,
    encoder_embed_dim=64,
    encoder_projection_dropout=0.0,
    encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=4,
    encoder_num_layers=2,
    encoder_num_heads=4,
    encoder_attention_dropout=0.0,
    encoder_ff_interm_features=128,
    encoder_ff_interm_dropout=0.0,
    encoder_dropout=0.0,
    encoder_layer_norm_first=True,
    encoder_layer_drop=0.0,
)
# WavLM adds gated relative position bias to the same layout; the tiny one keeps the Large model's buckets.
TINY_WAVLM: dict[str, Any] = dict(TINY_SSL, encoder_num_buckets=320, encoder_max_distance=800)
# The front ends by name: torchaudio builders of the published Large models and their tiny CPU twins
# (HuBERT's architecture is wav2vec 2.0's, so its tiny twin is `tiny`); each takes the dropout /
# layer-drop arguments (`model.frontend_dropout`), 0.0 unless given.
_BUILDERS: dict[str, Callable[..., torchaudio.models.Wav2Vec2Model]] = {
    "xlsr_300m": lambda **drop: torchaudio.models.wav2vec2_xlsr_300m(**drop),
    "wavlm_large": lambda **drop: torchaudio.models.wavlm_large(**drop),
    "hubert_large": lambda **drop: torchaudio.models.hubert_large(**drop),
    "tiny": lambda **drop: torchaudio.models.wav2vec2_model(**{**TINY_SSL, **drop}, aux_num_out=None),
    "wavlm_tiny": lambda **drop: torchaudio.models.wavlm_model(**{**TINY_WAVLM, **drop}, aux_num_out=None),
    "hubert_tiny": lambda **drop: torchaudio.models.wav2vec2_model(**{**TINY_SSL, **drop}, aux_num_out=None),
}
SSL_NAMES = tuple(_BUILDERS)
SSL_LAYERS = ("weighted", "last", "all")
# back end -> (its class, whether it reads every layer: `ssl_layers: all`)
BACKENDS: dict[str, tuple[type[nn.Module], bool]] = {
    "aasist": (AASISTHead, False), "conformer_tcm": (ConformerTCMBackend, False), "mamba": (MambaHead, False),
    "nes2net_x": (Nes2NetXHead, False), "sls": (SLSHead, True),
}


def build_ssl(ssl: str | dict[str, Any], dropout: dict[str, float] | None = None) -> torchaudio.models.Wav2Vec2Model:
    """A name of SSL_NAMES (torchaudio's XLS-R 300M, WavLM Large, HuBERT Large configs, or a tiny
    twin), or explicit wav2vec2_model kwargs. `dropout`: wav2vec2_model's dropout / layer-drop
    arguments (`dpda.models.ssl_weights.DROPOUT_KEYS`), replacing the 0.0 of every named config
    (`model.frontend_dropout`); active in train mode only."""
    dropout = dict(dropout or {})
    if isinstance(ssl, dict):
        try:
            return torchaudio.models.wav2vec2_model(**{**ssl, **dropout, "aux_num_out": None})
        except TypeError as exc:
            raise UserError(f"model ssl: bad wav2vec2_model arguments ({exc})") from None
    if ssl in _BUILDERS:
        return _BUILDERS[ssl](**dropout)
    raise UserError(f"model ssl: unknown SSL model {ssl!r} (choose from {', '.join(SSL_NAMES)} or a dict of wav2vec2_model arguments)")


class SSLFrontEnd(nn.Module):
    """Waveform (B, T) -> SSL features (B, frames, dim), or (B, layers, frames, dim) with `all`."""

    def __init__(self, ssl: str | dict[str, Any], layers: str = "weighted", normalize_waveform: bool = False,
                 dropout: dict[str, float] | None = None) -> None:
        super().__init__()
        if layers not in SSL_LAYERS:
            raise UserError(f"model ssl: ssl_layers must be one of {', '.join(SSL_LAYERS)}, got {layers!r}")
        self.wav2vec2 = build_ssl(ssl, dropout)
        self.layers = layers
        self.normalize_waveform = normalize_waveform
        transformer = self.wav2vec2.encoder.transformer
        self.dim = transformer.layer_norm.normalized_shape[0]
        self.num_layers = len(transformer.layers)
        # Weighted sum: learnable logits, softmax-normalised; zeros = plain average at the start.
        self.layer_logits = nn.Parameter(torch.zeros(self.num_layers)) if layers == "weighted" else None
        self.frozen = False

    def hidden_states(self, wave: torch.Tensor, closing_norm: bool = True) -> list[torch.Tensor]:
        """Output of every transformer layer; with `closing_norm` the last one as the model's final
        output (with the closing LayerNorm of pre-LN models such as XLS-R, as Hugging Face reports
        it), without it as fairseq's `layer_results` report it."""
        feats, _ = self.wav2vec2.feature_extractor(wave, None)
        states = self.wav2vec2.encoder.extract_features(feats)
        transformer = self.wav2vec2.encoder.transformer
        # torchaudio's flag: True = LN before the layers (post-LN models)
        if closing_norm and not transformer.layer_norm_first:
            states[-1] = transformer.layer_norm(states[-1])
        return states

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2:
            raise UserError(f"model ssl: expected a (batch, time) waveform batch, got shape {tuple(wave.shape)}")
        if self.normalize_waveform:
            wave = nn.functional.layer_norm(wave, wave.shape[-1:])
        # Frozen: no autograd graph through the SSL model; the layer weights still get gradients.
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            if self.layers == "all":
                return torch.stack(self.hidden_states(wave, closing_norm=False), dim=1)
            if self.layer_logits is None:
                if torch._C._functorch.is_batchedtensor(wave):
                    # inside torch.func.vmap (align.mode: batched): torchaudio's forward draws its
                    # layer drop with .item(), which vmap cannot run; with layer drop 0 (checked by
                    # dpda.train.batched_pass) the last hidden state is the same output
                    return self.hidden_states(wave)[-1]
                return self.wav2vec2(wave)[0]
            states = torch.stack(self.hidden_states(wave))  # (L, B, frames, dim)
        weights = torch.softmax(self.layer_logits, dim=0).to(states.dtype)
        return torch.einsum("l,lbtd->btd", weights, states)


class SSLDetector(nn.Module):
    """Waveform (B, T) -> logits (B, 2): SSL front end, then a back end on its features."""

    def __init__(
        self,
        backend: str,
        ssl: str | dict[str, Any] = "xlsr_300m",
        ssl_layers: str = "weighted",
        freeze_frontend: bool = False,
        normalize_waveform: bool = False,
        ssl_dropout: dict[str, float] | None = None,
        **backend_args: Any,
    ) -> None:
        super().__init__()
        self.frontend = SSLFrontEnd(ssl, ssl_layers, normalize_waveform, ssl_dropout)
        if backend not in BACKENDS:
            raise UserError(f"model ssl: unknown back end {backend!r} ({', '.join(BACKENDS)})")
        head, every_layer = BACKENDS[backend]
        if every_layer != (ssl_layers == "all"):
            need = "'all'" if every_layer else "'last' or 'weighted'"
            raise UserError(f"model.overrides.ssl_layers: the {backend} back end reads {need}, got {ssl_layers!r}")
        self.backend: nn.Module = head(self.frontend.dim, **backend_args)
        self.frontend_frozen = False
        if freeze_frontend:
            self.freeze_frontend()

    def freeze_frontend(self) -> None:
        """No gradients into the SSL model, which then always runs in eval mode (`model.freeze_frontend`)."""
        self.frontend_frozen = True
        self.frontend.wav2vec2.requires_grad_(False)
        self.frontend.wav2vec2.eval()
        self.frontend.frozen = True

    def train(self, mode: bool = True) -> "SSLDetector":
        super().train(mode)
        if self.frontend_frozen:
            self.frontend.wav2vec2.eval()
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.backend(self.frontend(wave))
