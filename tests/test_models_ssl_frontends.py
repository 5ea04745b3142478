"""WavLM and HuBERT front ends: tiny random checkpoints in the layouts their users have (Hugging
Face folders, HuBERT's fairseq `.pt`, WavLM's original `{'cfg', 'model'}` `.pt`) load into the
front end and reproduce the source model's outputs exactly."""

from __future__ import annotations

import json
import re

import pytest
import torch

from dpda.errors import UserError
from dpda.models import build_model, load_ssl_weights
from dpda.models.ssl import SSLFrontEnd
from support import to_fairseq

WAVE = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))


def _split_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """WavLM's fused torchaudio attention as separate q/k/v/out projections (the saved layouts)."""
    out = {}
    for k, v in state.items():
        if m := re.fullmatch(r"(.*\.attention)\.attention\.in_proj_(weight|bias)", k):
            for name, part in zip("qkv", v.chunk(3)):
                out[f"{m[1]}.{name}_proj.{m[2]}"] = part
        else:
            out[k.replace("attention.attention.out_proj", "attention.out_proj")] = v
    return out


def _hf(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Hugging Face WavLMModel / HubertModel names (the inverse of torchaudio's import mapping)."""
    out = {}
    for k, v in _split_attention(state).items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        if k.startswith("encoder.feature_projection."):
            k = k[len("encoder."):]
        elif k.startswith("encoder.transformer."):
            k = "encoder." + k[len("encoder.transformer."):]
        out[prefix + k] = v
    out[prefix + "masked_spec_embed"] = torch.zeros(64)
    return out


_WAVLM_ORIGINAL = [("gru_rel_pos_linear", "grep_linear"), ("gru_rel_pos_const", "grep_a"),
                   ("rel_attn_embed", "relative_attention_bias")]


def _original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq / WavLM-repository names: wav2vec 2.0's, with WavLM's grep_* and relative bias."""
    out = {}
    for k, v in to_fairseq(_split_attention(state)).items():
        for ours, theirs in _WAVLM_ORIGINAL:
            k = k.replace(f"self_attn.{ours}", f"self_attn.{theirs}")
        out[k] = v
    return out


def _write(kind: str, ssl: str, state: dict[str, torch.Tensor], tmp_path):
    if kind == "huggingface":
        folder = tmp_path / f"hf_{ssl}"
        folder.mkdir()
        model_type = "wavlm" if ssl.startswith("wavlm") else "hubert"
        (folder / "config.json").write_text(json.dumps({"model_type": model_type, "hidden_size": 64, "num_hidden_layers": 2}))
        prefix = "wavlm." if model_type == "wavlm" else ""  # a ForCTC save of WavLM, a plain HubertModel
        torch.save(_hf(state, prefix), folder / "pytorch_model.bin")
        return folder
    path = tmp_path / f"{ssl}.pt"
    torch.save({"cfg": {"encoder_layers": 2, "encoder_embed_dim": 64}, "model": _original(state)}, path)
    return path


@pytest.mark.parametrize("kind", ["huggingface", "fairseq"])
@pytest.mark.parametrize("ssl", ["wavlm_tiny", "hubert_tiny"])
def test_checkpoints_reproduce_the_source_front_end(ssl, kind, tmp_path):
    torch.manual_seed(1)
    src = SSLFrontEnd(ssl, "last").eval()
    path = _write(kind, ssl, src.wav2vec2.state_dict(), tmp_path)
    dst = build_model("ssl_aasist", "tiny", seed=2, ssl=ssl, ssl_layers="weighted").eval()
    with torch.no_grad():
        assert not torch.allclose(dst.frontend.wav2vec2(WAVE)[0], src.wav2vec2(WAVE)[0])
    assert load_ssl_weights(dst, path) == kind
    with torch.no_grad():
        torch.testing.assert_close(dst.frontend.wav2vec2(WAVE)[0], src.wav2vec2(WAVE)[0], rtol=0, atol=0)
        for a, b in zip(dst.frontend.hidden_states(WAVE), src.hidden_states(WAVE)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_wavlm_front_end_is_wavlm_and_takes_every_back_end():
    front = SSLFrontEnd("wavlm_tiny", "weighted")
    assert any(k.endswith("rel_attn_embed.weight") for k in front.state_dict())
    for name in ("ssl_aasist", "ssl_conformer_tcm", "ssl_mamba"):
        for ssl in ("wavlm_tiny", "hubert_tiny"):
            for layers in ("last", "weighted"):
                model = build_model(name, "tiny", seed=0, ssl=ssl, ssl_layers=layers).eval()
                with torch.no_grad():
                    assert model(WAVE).shape == (2, 2)


def test_large_front_ends_have_xlsr_300m_features():
    """1024-dim features from 24 layers, as XLS-R 300M: every back end built for it fits."""
    with torch.device("meta"):
        for ssl in ("wavlm_large", "hubert_large", "xlsr_300m"):
            front = SSLFrontEnd(ssl, "weighted")
            assert (front.dim, front.num_layers, front.layer_logits.numel()) == (1024, 24, 24)


def test_a_wavlm_checkpoint_does_not_load_into_hubert(tmp_path):
    torch.manual_seed(1)
    src = SSLFrontEnd("wavlm_tiny", "last")
    folder = _write("huggingface", "wavlm_tiny", src.wav2vec2.state_dict(), tmp_path)
    dst = build_model("ssl_aasist", "tiny", ssl="hubert_tiny")
    with pytest.raises(UserError, match="model_type is 'wavlm'.*not WavLM"):
        load_ssl_weights(dst, folder)
    path = _write("fairseq", "wavlm_tiny", src.wav2vec2.state_dict(), tmp_path)
    with pytest.raises(UserError, match="unexpected keys: .*gru_rel_pos"):
        load_ssl_weights(dst, path)
    with pytest.raises(UserError, match="unknown SSL model 'wavlm'"):
        build_model("ssl_aasist", "tiny", ssl="wavlm")
