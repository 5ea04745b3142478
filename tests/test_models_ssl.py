"""SSL front end: layer selection, freezing, XLS-R size, and loading checkpoints in the Hugging
Face, fairseq and torchaudio layouts (written here from a tiny model with renamed keys)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re

import pytest
import torch

from dpda.errors import UserError
from dpda.models import build_model, count_parameters, load_ssl_weights
from dpda.models.ssl import SSLFrontEnd
from support import to_fairseq

torch.set_num_threads(1)
WAVE = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))


def test_weighted_sum_with_one_hot_weights_equals_last_layer():
    front = SSLFrontEnd("tiny", layers="weighted").eval()
    last = SSLFrontEnd("tiny", layers="last").eval()
    last.wav2vec2.load_state_dict(front.wav2vec2.state_dict())
    with torch.no_grad():
        front.layer_logits.copy_(torch.tensor([-1e4, 0.0]))
        torch.testing.assert_close(front(WAVE), last(WAVE))
        states = front.hidden_states(WAVE)
        assert len(states) == 2 and states[0].shape == (2, 49, 64)


@pytest.mark.parametrize("name", ["ssl_aasist", "ssl_conformer_tcm"])
def test_freeze_frontend_leaves_its_grads_none(name):
    model = build_model(name, "tiny", seed=0, freeze_frontend=True, ssl_layers="weighted")
    model.train()
    assert not model.frontend.wav2vec2.training  # no dropout in the frozen SSL model
    model(WAVE).sum().backward()
    assert all(p.grad is None for p in model.frontend.wav2vec2.parameters())
    assert model.frontend.layer_logits.grad is not None
    # The published SSL-AASIST blocks compute BatchNorm + SELU and ignore it (dpda.models.ssl_aasist).
    no_grad = {n for n, p in model.backend.named_parameters() if p.grad is None}
    assert no_grad == {n for n, _ in model.backend.named_parameters() if re.match(r"encoder\.\d+\.pre\.", n)}
    trainable = count_parameters(model, trainable_only=True)
    assert trainable == count_parameters(model) - count_parameters(model.frontend.wav2vec2)


def test_xlsr_300m_full_preset_size():
    model = build_model("ssl_conformer_tcm", "full", seed=0)
    transformer = model.frontend.wav2vec2.encoder.transformer
    assert len(transformer.layers) == 24 and transformer.layer_norm.normalized_shape == (1024,)
    n = count_parameters(model.frontend.wav2vec2)
    assert 315_000_000 < n < 316_000_000
    del model


# ----------------------------------------------------------------------------------------------
# Checkpoint layouts, produced from torchaudio keys by the inverse renaming


def _to_hf(state):
    out = {}
    for k, v in state.items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        if k.startswith("encoder.feature_projection."):
            k = k[len("encoder."):]
        elif k.startswith("encoder.transformer."):
            k = "encoder." + k[len("encoder.transformer."):]
        out["wav2vec2." + k] = v
    out["quantizer.codevectors"] = torch.zeros(1, 4, 8)  # pretraining-only tensors are dropped
    out["project_q.weight"] = torch.zeros(8, 8)
    return out


@pytest.fixture(scope="module")
def source():
    model = build_model("ssl_aasist", "tiny", seed=1, ssl_layers="weighted").eval()
    return model, model.frontend.wav2vec2.state_dict()


def _write(kind, state, tmp_path):
    if kind == "huggingface":
        folder = tmp_path / "hf"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "hidden_size": 64, "num_hidden_layers": 2}))
        torch.save(_to_hf(state), folder / "pytorch_model.bin")
        return folder
    path = tmp_path / f"{kind}.pt"
    if kind == "fairseq":
        torch.save({"model": to_fairseq(state), "args": argparse.Namespace(arch="wav2vec2")}, path)
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("kind", ["huggingface", "fairseq", "torchaudio"])
def test_load_ssl_weights_reproduces_source_outputs(kind, source, tmp_path):
    src, state = source
    path = _write(kind, state, tmp_path)
    dst = build_model("ssl_aasist", "tiny", seed=2, ssl_layers="weighted").eval()
    with torch.no_grad():
        assert not torch.allclose(dst.frontend.wav2vec2(WAVE)[0], src.frontend.wav2vec2(WAVE)[0])
    assert load_ssl_weights(dst, path) == kind
    dst.backend.load_state_dict(src.backend.state_dict())
    dst.frontend.layer_logits.data.copy_(src.frontend.layer_logits.data)
    with torch.no_grad():
        torch.testing.assert_close(dst.frontend.wav2vec2(WAVE)[0], src.frontend.wav2vec2(WAVE)[0], rtol=0, atol=0)
        torch.testing.assert_close(dst(WAVE), src(WAVE), rtol=0, atol=0)


def test_load_ssl_weights_rejects_mismatches(source, tmp_path):
    _, state = source
    dst = build_model("ssl_conformer_tcm", "tiny", seed=2)
    bad = dict(state)
    bad["encoder.transformer.layers.7.extra.weight"] = torch.zeros(1)
    del bad["encoder.transformer.layer_norm.bias"]
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(UserError, match=r"missing keys: encoder\.transformer\.layer_norm\.bias.*unexpected keys: encoder\.transformer\.layers\.7\.extra"):
        load_ssl_weights(dst, tmp_path / "bad.pt")
    shaped = dict(state)
    shaped["encoder.feature_projection.projection.bias"] = torch.zeros(65)
    torch.save(shaped, tmp_path / "shape.pt")
    with pytest.raises(UserError, match=r"shape mismatches: encoder\.feature_projection\.projection\.bias \(65,\)"):
        load_ssl_weights(dst, tmp_path / "shape.pt")
    folder = _write("huggingface", state, tmp_path)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 1024}))
    with pytest.raises(UserError, match="hidden_size is 1024"):
        load_ssl_weights(dst, folder)
    with pytest.raises(UserError, match="has no SSL"):
        load_ssl_weights(build_model("aasist", "tiny"), tmp_path / "bad.pt")
    (tmp_path / "pickle.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="weights_only=True"):
        load_ssl_weights(dst, tmp_path / "pickle.pt")


@pytest.mark.skipif(importlib.util.find_spec("safetensors") is not None, reason="safetensors is installed")
def test_safetensors_without_package_is_a_clear_error(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="needs the 'safetensors' package"):
        load_ssl_weights(build_model("ssl_aasist", "tiny"), folder)
