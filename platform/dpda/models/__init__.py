"""Detector models: AASIST, RawNet2, and SSL (wav2vec 2.0 / XLS-R) + AASIST / Conformer-TCM / Mamba.

Every model maps a float waveform batch (batch, time) at 16 kHz to logits (batch, 2) with class 1
= bona fide; score = logit[1] - logit[0]. Released checkpoints of the published DPDA code load
with `load_published_checkpoint` (key mappings in `dpda.models.published.CONVERTERS`).
"""

from dpda.models.published import load_published_checkpoint
from dpda.models.registry import MODELS, build_model, count_parameters, list_models, model_config
from dpda.models.ssl_weights import load_ssl_weights

__all__ = ["MODELS", "build_model", "count_parameters", "list_models", "load_published_checkpoint",
           "load_ssl_weights", "model_config"]
