"""Load pretrained wav2vec 2.0 / XLS-R, WavLM or HuBERT weights into the SSL front end from a local path.

Three layouts are read, all without `transformers` or `fairseq` installed, by renaming the keys of
the saved state dict to torchaudio's Wav2Vec2Model names (the same correspondence torchaudio's
`import_huggingface_model` / `import_fairseq_model` use, which need the original model objects):

- a Hugging Face model directory: `config.json` + `pytorch_model.bin` or `model.safetensors`
  (Wav2Vec2Model / Wav2Vec2ForPreTraining / ...ForCTC keys, with or without the `wav2vec2.` prefix;
  WavLMModel / HubertModel keys, with or without `wavlm.` / `hubert.`);
- a fairseq checkpoint `.pt` (`{'model': state_dict, ...}`, w2v keys, pretraining or fine-tuned;
  HuBERT's fairseq checkpoints and WavLM's original ones, `{'cfg': ..., 'model': ...}`, alike);
- a torchaudio Wav2Vec2Model state dict saved with torch.save.

WavLM's separate q/k/v projections become the fused `in_proj` of torchaudio's attention through
torchaudio's own `transform_wavlm_encoder_state` (the step `import_huggingface_model` takes).

Everything is loaded with `torch.load(..., weights_only=True)`. Pretraining-only tensors
(quantizer, projection heads, mask embedding) and CTC heads are dropped; any other key that does
not fit, and any missing key or shape mismatch, is a UserError listing a few of them.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from dpda._torchaudio import torchaudio  # noqa: F401  one-line error if torch and torchaudio cannot load together
from torchaudio.models import Wav2Vec2Model
from torchaudio.models.wav2vec2.utils.import_huggingface import transform_wavlm_encoder_state

from dpda.errors import UserError

# Tensors of pretraining / fine-tuning heads that a feature extractor does not use.
_HF_DROP = re.compile(r"^(masked_spec_embed|quantizer\.|project_hid\.|project_q\.|lm_head\.|dropout_features)")
_FAIRSEQ_DROP = re.compile(r"^(mask_emb|quantizer\.|project_q\.|final_proj\.|proj\.|label_embs_concat|target_glu\.)")
_TORCHAUDIO_DROP = re.compile(r"^aux\.")
_HF_PREFIX = re.compile(r"^(wav2vec2|wavlm|hubert)\.")

# Old-style weight norm (weight_g / weight_v) -> torch.nn.utils.parametrizations.weight_norm names.
_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}

_FAIRSEQ_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$"), r"feature_extractor.conv_layers.\1.conv.\2"),
    (re.compile(r"^feature_extractor\.conv_layers\.0\.2\.(weight|bias)$"), r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$"), r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (re.compile(r"^post_extract_proj\.(weight|bias)$"), r"encoder.feature_projection.projection.\1"),
    (re.compile(r"^layer_norm\.(weight|bias)$"), r"encoder.feature_projection.layer_norm.\1"),
    (re.compile(r"^encoder\.pos_conv\.0\.(.+)$"), r"encoder.transformer.pos_conv_embed.conv.\1"),
    (re.compile(r"^encoder\.layer_norm\.(weight|bias)$"), r"encoder.transformer.layer_norm.\1"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.((?:k|v|q|out)_proj\.(?:weight|bias))$"), r"encoder.transformer.layers.\1.attention.\2"),
    # WavLM (original repository): gated relative position bias
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)$"), r"encoder.transformer.layers.\1.attention.gru_rel_pos_linear.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.grep_a$"), r"encoder.transformer.layers.\1.attention.gru_rel_pos_const"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$"), r"encoder.transformer.layers.\1.attention.rel_attn_embed.weight"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$"), r"encoder.transformer.layers.\1.layer_norm.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.fc1\.(weight|bias)$"), r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.fc2\.(weight|bias)$"), r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$"), r"encoder.transformer.layers.\1.final_layer_norm.\2"),
]


def _weight_norm_names(key: str) -> str:
    head, _, last = key.rpartition(".")
    return f"{head}.{_WEIGHT_NORM[last]}" if last in _WEIGHT_NORM else key


def rename(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    """`key` renamed by the first rule whose pattern matches it, or None if none does."""
    for pattern, repl in rules:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


# Where the published DPDA models (github ductuantruong/dpda_ga) keep their fairseq XLS-R front end.
PUBLISHED_FRONTEND_PREFIX = "ssl_model.model."
DPDA_FRONTEND_PREFIX = "frontend.wav2vec2."


def split_published_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(dpda front-end entries, remaining back-end entries) of a published DPDA state dict.

    The `module.` prefix of a DataParallel save is dropped; `ssl_model.model.*` (fairseq wav2vec
    2.0 names) become `frontend.wav2vec2.*` (torchaudio names) through `convert_fairseq`. Front-end
    keys it cannot map are kept under their published names, so a strict load names them.
    """
    frontend: dict[str, torch.Tensor] = {}
    fairseq: dict[str, torch.Tensor] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith(PUBLISHED_FRONTEND_PREFIX):
            fairseq[key[len(PUBLISHED_FRONTEND_PREFIX):]] = value
        else:
            rest[key] = value
    converted, unknown = convert_fairseq(fairseq)
    frontend.update({DPDA_FRONTEND_PREFIX + k: v for k, v in converted.items()})
    frontend.update({PUBLISHED_FRONTEND_PREFIX + k: fairseq[k] for k in unknown})
    return frontend, rest


def convert_published(
    state: Mapping[str, torch.Tensor],
    rules: list[tuple[re.Pattern[str], str]],
    dropped: frozenset[str] = frozenset(),
) -> dict[str, torch.Tensor]:
    """A published DPDA state dict under a dpda model's keys: the front end through
    `split_published_state`, every other key renamed by the first rule (compiled pattern,
    replacement) matching it whole; `dropped` keys (tables dpda recomputes) left out. Keys no
    rule knows keep their published names, so a strict load names the first of them."""
    out, rest = split_published_state(state)
    for key, value in rest.items():
        if key not in dropped:
            out[_rename_whole(key, rules)] = value
    return out


def _rename_whole(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, repl in rules:
        if match := pattern.fullmatch(key):
            return match.expand(repl)
    return key


def convert_huggingface(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(torchaudio state dict, keys that fit nowhere) from Hugging Face Wav2Vec2 / WavLM / HuBERT keys."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        k = _HF_PREFIX.sub("", key)
        if _HF_DROP.match(k):
            continue
        if k.startswith("feature_extractor."):
            new = k
        elif k.startswith("feature_projection."):
            new = "encoder." + k
        elif k.startswith("encoder."):
            new = "encoder.transformer." + k[len("encoder."):]
        else:
            unknown.append(key)
            continue
        out[_weight_norm_names(new)] = value
    return out, unknown


def convert_fairseq(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(torchaudio state dict, keys that fit nowhere) from fairseq wav2vec 2.0 keys."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        k = key
        for prefix in ("w2v_encoder.", "w2v_model."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if _FAIRSEQ_DROP.match(k):
            continue
        new = rename(k, _FAIRSEQ_RULES)
        if new is None:
            unknown.append(key)
        else:
            out[_weight_norm_names(new)] = value
    return out, unknown


def convert_torchaudio(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Torchaudio keys, with old weight-norm names updated and a CTC head dropped."""
    return {_weight_norm_names(k): v for k, v in state.items() if not _TORCHAUDIO_DROP.match(k)}, []


def _torch_load(path: Path) -> Any:
    try:
        # fairseq stores its argparse options beside the weights; a Namespace holds only plain values.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: checkpoint not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path}: cannot load with torch.load(weights_only=True) ({first}); if it stores non-tensor "
            "objects, re-save only its state dict, e.g. torch.save(ckpt['model'], 'weights.pt')"
        ) from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise UserError(
            f"{path}: reading .safetensors needs the 'safetensors' package, which is not installed "
            "(pip install safetensors), or provide pytorch_model.bin instead"
        ) from None
    return load_file(str(path), device="cpu")


def is_wavlm(target: Wav2Vec2Model) -> bool:
    """Whether the front end is WavLM (fused attention projections, relative position bias)."""
    return hasattr(target.encoder.transformer.layers[0].attention, "gru_rel_pos_linear")


def fit_attention(state: dict[str, torch.Tensor], target: Wav2Vec2Model) -> dict[str, torch.Tensor]:
    """`state` with WavLM's q/k/v projections fused as the target's attention holds them (a
    WavLM target only, and only when every layer has them: otherwise the strict load names the gap)."""
    if not is_wavlm(target):
        return state
    prefix = "encoder.transformer."
    layers = len(target.encoder.transformer.layers)
    inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not all(f"layers.{i}.attention.{p}_proj.{w}" in inner for i in range(layers) for p in "qkv" for w in ("weight", "bias")):
        return state
    transform_wavlm_encoder_state(inner, layers)
    return {**{k: v for k, v in state.items() if not k.startswith(prefix)}, **{prefix + k: v for k, v in inner.items()}}


def _check_hf_config(path: Path, target: Wav2Vec2Model) -> None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the model config ({exc})") from None
    transformer = target.encoder.transformer
    expected = {"hidden_size": transformer.layer_norm.normalized_shape[0], "num_hidden_layers": len(transformer.layers)}
    for key, want in expected.items():
        if key in config and config[key] != want:
            raise UserError(f"{path}: {key} is {config[key]}, but the model's SSL front end has {want}")
    if "model_type" in config and (config["model_type"] == "wavlm") != is_wavlm(target):
        raise UserError(f"{path}: model_type is {config['model_type']!r}, but the model's SSL front end is "
                        f"{'WavLM' if is_wavlm(target) else 'not WavLM'} (model.overrides.ssl)")


def read_checkpoint(path: str | Path, target: Wav2Vec2Model | None = None) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """(torchaudio-named state dict, unmappable keys, detected format) of any supported layout."""
    path = Path(path).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise UserError(f"{path}: a Hugging Face model directory needs config.json")
        if target is not None:
            _check_hf_config(config, target)
        if (path / "pytorch_model.bin").is_file():
            state = _torch_load(path / "pytorch_model.bin")
        elif (path / "model.safetensors").is_file():
            state = _load_safetensors(path / "model.safetensors")
        else:
            raise UserError(f"{path}: no pytorch_model.bin or model.safetensors (sharded checkpoints are not supported)")
        return (*convert_huggingface(_tensors(state, path)), "huggingface")
    if not path.is_file():
        raise UserError(f"{path}: SSL checkpoint not found")
    if path.suffix == ".safetensors":
        return (*convert_huggingface(_load_safetensors(path)), "huggingface")
    obj = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return (*convert_fairseq(_tensors(obj["model"], path)), "fairseq")
    state = _tensors(obj, path)
    keys = list(state)
    if any(k.startswith("encoder.transformer.") for k in keys):
        return (*convert_torchaudio(state), "torchaudio")
    if any("w2v_model." in k or k.startswith(("post_extract_proj.", "encoder.pos_conv.")) for k in keys):
        return (*convert_fairseq(state), "fairseq")
    return (*convert_huggingface(state), "huggingface")


# The front end's dropout settings: torchaudio wav2vec2_model argument -> (fairseq model cfg key,
# Hugging Face config.json key), the correspondence of torchaudio's import_fairseq_model /
# import_huggingface_model.
DROPOUT_KEYS: dict[str, tuple[str, str]] = {
    "encoder_projection_dropout": ("dropout_input", "feat_proj_dropout"),
    "encoder_attention_dropout": ("attention_dropout", "attention_dropout"),
    "encoder_ff_interm_dropout": ("activation_dropout", "activation_dropout"),
    "encoder_dropout": ("dropout", "hidden_dropout"),
    "encoder_layer_drop": ("encoder_layerdrop", "layerdrop"),
}


def checkpoint_dropout(path: str | Path) -> dict[str, float]:
    """The dropout / layer-drop settings an SSL checkpoint was trained with, as wav2vec2_model
    arguments: a Hugging Face directory's `config.json`, or a fairseq `.pt`'s `cfg['model']` (or
    the older `args`). The published code fine-tunes XLS-R in train mode with these."""
    path = Path(path).expanduser()
    if path.is_dir():
        source, column = path / "config.json", 1
        try:
            config = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{source}: cannot read the model config ({exc})") from None
    else:
        if not path.is_file():
            raise UserError(f"{path}: SSL checkpoint not found")
        source, column = path, 0
        obj = _torch_load(path)
        cfg = obj.get("cfg") if isinstance(obj, dict) else None
        config = cfg.get("model") if isinstance(cfg, dict) else None
        if config is None and isinstance(obj, dict) and obj.get("args") is not None:
            config = vars(obj["args"]) if isinstance(obj["args"], argparse.Namespace) else obj["args"]
        if not isinstance(config, dict):
            raise UserError(f"{path}: no fairseq model configuration (cfg['model'] or args) to read the dropout "
                            "settings from; set model.frontend_dropout to explicit values")
    values = {}
    for arg, keys in DROPOUT_KEYS.items():
        key = keys[column]
        value = config.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise UserError(f"{source}: {key}: expected a dropout probability in [0, 1], got {value!r} "
                            "(set model.frontend_dropout to explicit values)")
        values[arg] = float(value)
    return values


def _tensors(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    return obj


def find_wav2vec2(model: nn.Module) -> Wav2Vec2Model:
    """The Wav2Vec2Model inside a detector, front end, or the model itself."""
    if isinstance(model, Wav2Vec2Model):
        return model
    for module in model.modules():
        if isinstance(module, Wav2Vec2Model):
            return module
    raise UserError(f"load_ssl_weights: {type(model).__name__} has no SSL (wav2vec 2.0) front end")


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_ssl_weights(model: nn.Module, path: str | Path) -> str:
    """Load a local SSL checkpoint into `model`'s wav2vec 2.0 front end; returns the detected
    format (`huggingface`, `fairseq` or `torchaudio`). Nothing is changed if any key or shape
    does not fit."""
    target = find_wav2vec2(model)
    state, unknown, kind = read_checkpoint(path, target)
    state = fit_attention(state, target)
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = unknown + [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_few(unexpected)}")
    shapes = [f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if shapes:
        problems.append(f"shape mismatches: {_few(shapes, 3)}")
    if problems:
        raise UserError(f"{path}: {kind} checkpoint does not fit the SSL front end; " + "; ".join(problems))
    target.load_state_dict(state, strict=True)
    return kind
