"""Model registry, shapes, gradients, parameter counts and configuration errors."""

from __future__ import annotations

import re

import pytest
import torch

from dpda.errors import UserError
from dpda.models import build_model, count_parameters, list_models
from dpda.models.sinc import SincConv
from dpda.models.ssl import AASISTHead
from dpda.models.conformer_tcm import ConformerTCMBackend
from dpda.models.registry import model_config

torch.set_num_threads(1)
NAMES = ["aasist", "rawnet2", "ssl_aasist", "ssl_conformer_tcm", "lcnn", "ssl_mamba", "ssl_nes2net_x", "ssl_sls"]
# Parameters the published forward never uses (dpda.models.ssl_aasist, dpda.models.mamba): the
# BatchNorm each SSL-AASIST block computes and ignores; the last Mamba block of each direction;
# the front end's closing LayerNorm under SLS (it reads fairseq's layer_results, before that norm).
UNUSED = {"ssl_aasist": r"backend\.encoder\.\d+\.pre\.", "ssl_mamba": r"backend\.(forward|backward)_layers\.1\.",
          "ssl_sls": r"frontend\.wav2vec2\.encoder\.transformer\.layer_norm\."}


def test_list_models():
    extra = {"aasist": ["released", "released_l"]}  # the released AASIST / AASIST-L (test_released_aasist.py)
    assert list_models() == {name: ["full", "tiny", *extra.get(name, [])] for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_backward(name):
    model = build_model(name, "tiny", seed=0)
    assert count_parameters(model) < 150_000
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    logits = model(wave)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    logits[:, 1].sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == [n for n, _ in model.named_parameters() if name in UNUSED and re.match(UNUSED[name], n)]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(wave), model(wave))  # eval mode is deterministic


@pytest.mark.parametrize("name", NAMES)
def test_seed_gives_same_weights_without_touching_global_rng(name):
    before = torch.random.get_rng_state()
    a = build_model(name, "tiny", seed=3).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model(name, "tiny", seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_aasist_full_has_published_size_and_runs():
    model = build_model("aasist", "full", seed=0).eval()
    assert count_parameters(model) == 297_866  # AASIST paper: 297K
    with torch.no_grad():
        assert model(torch.randn(1, 16000)).shape == (1, 2)


def test_rawnet2_full_size_and_forward():
    model = build_model("rawnet2", "full", seed=0).eval()
    assert count_parameters(model) == 17_621_410  # 3-layer 1024-unit GRU dominates
    with torch.no_grad():
        assert model(torch.randn(1, 16000)).shape == (1, 2)


def test_full_ssl_backends_sizes():
    """Back ends alone on 1024-dim XLS-R features (the XLS-R front end is tested separately)."""
    cfg = model_config("ssl_aasist")
    head = AASISTHead(1024, cfg["proj_dim"], cfg["blocks"], cfg["gat_dims"], cfg["pool_ratios"], cfg["temperatures"])
    feats = torch.randn(2, 201, 1024)  # 4 s of XLS-R frames
    assert head.eval()(feats).shape == (2, 2)
    assert count_parameters(head.proj) == 1024 * 128 + 128
    conf = ConformerTCMBackend(1024, d_model=144, num_heads=4, num_layers=4, kernel_size=31, ffn_mult=4, conv_expansion=2)
    assert conf.eval()(feats).shape == (2, 2)
    assert count_parameters(conf) == 2_382_628  # the published XLS-R + Conformer-TCM back end


def test_sinc_filters_are_mel_spaced_band_passes():
    sinc = SincConv(8, 256)
    assert sinc.kernel_size == 257
    response = torch.fft.rfft(sinc.filters().squeeze(1), n=4096).abs()
    peaks = response.argmax(dim=1)
    assert torch.all(peaks[1:] > peaks[:-1])  # centre frequencies increase
    widths = sinc.band_hz
    assert torch.all(widths[1:] > widths[:-1])  # mel spacing: wider bands higher up
    learnable = SincConv(8, 256, learnable=True)
    learnable(torch.randn(1, 1000)).sum().backward()
    assert learnable.low_hz.grad is not None and learnable.band_hz.grad is not None


def test_configuration_errors_name_the_problem():
    with pytest.raises(UserError, match="model 'resnet': unknown"):
        build_model("resnet")
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        build_model("aasist", "huge")
    with pytest.raises(UserError, match="unknown parameter 'dropuot'"):
        build_model("rawnet2", "tiny", dropuot=0.1)
    with pytest.raises(UserError, match="ssl_layers must be one of weighted, last, all, got 'first'"):
        build_model("ssl_aasist", "tiny", ssl_layers="first")
    with pytest.raises(UserError, match="unknown SSL model 'hubert'"):
        build_model("ssl_aasist", "tiny", ssl="hubert")
    with pytest.raises(UserError, match="sinc_filters must be > 0"):
        build_model("aasist", "tiny", sinc_filters=0)
    with pytest.raises(UserError, match="blocks must"):
        build_model("aasist", "tiny", blocks=[[1, 8], [16, 16]])
    with pytest.raises(UserError, match="divisible by num_heads"):
        build_model("ssl_conformer_tcm", "tiny", d_model=30)
    model = build_model("aasist", "tiny", seed=0)
    with pytest.raises(UserError, match="shorter than"):
        model(torch.randn(1, 10))


def test_overrides_apply():
    model = build_model("aasist", "tiny", seed=0, sinc_learnable=True)
    assert model.sinc.learnable and isinstance(model.sinc.low_hz, torch.nn.Parameter)
    last = build_model("ssl_conformer_tcm", "tiny", seed=0, ssl_layers="last")
    assert last.frontend.layer_logits is None and last(torch.randn(1, 16000)).shape == (1, 2)
