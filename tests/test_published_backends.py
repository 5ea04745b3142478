"""SSL-AASIST and XLSR-Mamba back ends against the published DPDA modules (dpda_ga nets/), through
fixtures made once from them (tests/fixtures/published/make_backend_fixtures.py says how):
same outputs on the same SSL features, same state-dict keys and shapes after the documented
mapping, same trainable counts; and the pure-PyTorch selective scan against mamba_ssm's
reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from dpda.models import build_model, count_parameters, mamba, ssl_aasist
from dpda.models.mamba import (
    MambaHead,
    linear_scan,
    selective_scan,
    selective_scan_torch,
)
from dpda.models.registry import SSL_FRONTEND_KEYS, model_config
from dpda.models.ssl import TINY_SSL
from dpda.models.ssl_aasist import AASISTHead
from support import to_fairseq

torch.set_num_threads(1)
FIXTURES = Path(__file__).parent / "fixtures" / "published"
SUMMARY = json.loads((FIXTURES / "published_backends.json").read_text())
PUBLISHED_TRAINABLE = {"ssl_aasist": 447_242, "ssl_mamba": 1_936_950}
CONVERTERS = {"ssl_aasist": ssl_aasist.published_to_dpda, "ssl_mamba": mamba.published_to_dpda}
# A 1-layer wav2vec 2.0 with XLS-R's 1024-dim output: a published-shaped front end that builds fast.
SSL_1024 = dict(TINY_SSL, encoder_embed_dim=1024, encoder_ff_interm_features=64, encoder_num_layers=1,
                encoder_pos_conv_groups=16)
MAMBA_REDUCED = dict(d_model=24, num_layers=2)  # the published emb_size 24, num_mamba_encoders 4


def _fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def _backend_args(name: str) -> dict:
    return {k: v for k, v in model_config(name).items() if k not in SSL_FRONTEND_KEYS}


def _backend(name: str, **overrides) -> torch.nn.Module:
    cls = {"ssl_aasist": AASISTHead, "ssl_mamba": MambaHead}[name]
    return cls(1024, **{**_backend_args(name), **overrides})


def _backend_state(converted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    assert all(k.startswith("backend.") for k in converted)
    return {k.removeprefix("backend."): v for k, v in converted.items()}


@pytest.mark.parametrize("name, overrides", [("ssl_aasist", {}), ("ssl_mamba", MAMBA_REDUCED)])
def test_backend_equals_published_outputs(name, overrides):
    fixture = _fixture(name)
    head = _backend(name, **overrides).eval()
    head.load_state_dict(_backend_state(CONVERTERS[name](fixture["state"])), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(head(fixture["feats"]), fixture["logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ssl_aasist", "ssl_mamba"])
def test_full_preset_has_the_published_keys_shapes_and_trainable_count(name):
    published = {k: torch.empty(shape, device="meta") for k, shape in SUMMARY[name]["shapes"].items()}
    converted = _backend_state(CONVERTERS[name](published))
    head = _backend(name)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert count_parameters(head, trainable_only=True) == SUMMARY[name]["trainable"] == PUBLISHED_TRAINABLE[name]


@pytest.mark.parametrize("name, overrides", [("ssl_aasist", {}), ("ssl_mamba", MAMBA_REDUCED)])
def test_published_detector_state_loads_strictly(name, overrides):
    """A DataParallel-saved published state (fairseq front end + back end) -> dpda names, strict load."""
    source = build_model(name, "full", seed=3, ssl=SSL_1024, **overrides)
    fixture = _fixture(name)
    published = {f"module.ssl_model.model.{k}": v for k, v in to_fairseq(source.frontend.wav2vec2.state_dict()).items()}
    published.update({f"module.{k}": v for k, v in fixture["state"].items()})
    model = build_model(name, "full", seed=4, ssl=SSL_1024, **overrides).eval()
    model.load_state_dict(CONVERTERS[name](published), strict=True)
    for key, value in source.frontend.wav2vec2.state_dict().items():
        torch.testing.assert_close(model.frontend.wav2vec2.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model.backend(fixture["feats"]), fixture["logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ssl_aasist", "ssl_mamba"])
def test_unknown_published_keys_keep_their_names(name):
    converted = CONVERTERS[name]({"module.extra.weight": torch.zeros(1), "ssl_model.model.odd": torch.zeros(1)})
    assert set(converted) == {"extra.weight", "ssl_model.model.odd"}


def test_aasist_block_batchnorm_tracks_statistics_but_not_the_output():
    """Published quirk kept: a residual block's conv1 reads its input, not BatchNorm + SELU of it."""
    head = build_model("ssl_aasist", "tiny", seed=0).backend
    block = head.encoder[1]
    x = torch.randn(2, 8, 5, 7)
    before = block.pre[0].running_mean.clone()
    block.train()(x)
    assert not torch.allclose(block.pre[0].running_mean, before)
    block.eval()
    out = block(x)
    with torch.no_grad():
        block.pre[0].weight.mul_(3.0)
        block.pre[0].bias.add_(1.0)
    torch.testing.assert_close(block(x), out, rtol=0, atol=0)


def test_mamba_last_blocks_do_not_change_the_output_and_the_rest_learns():
    """Published quirk kept: each direction's final norm adds the encoder input to the residual
    stream the last block received, so the last blocks' parameters have no effect."""
    fixture = _fixture("ssl_mamba")
    head = _backend("ssl_mamba", **MAMBA_REDUCED).eval()
    head.load_state_dict(_backend_state(mamba.published_to_dpda(fixture["state"])))
    with torch.no_grad():
        out = head(fixture["feats"])
        for block in (head.forward_layers[-1], head.backward_layers[-1]):
            for p in block.parameters():
                p.add_(1.0)
        torch.testing.assert_close(head(fixture["feats"]), out, rtol=0, atol=0)
    head.train()(fixture["feats"]).sum().backward()
    last = {id(p) for layers in (head.forward_layers, head.backward_layers) for p in layers[-1].parameters()}
    for n, p in head.named_parameters():
        assert (p.grad is None) == (id(p) in last), n
        assert p.grad is None or torch.isfinite(p.grad).all(), n


def _scan_by_recurrence(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The selective-scan definition, one time step after the other."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = torch.nn.functional.softplus(delta)
    h = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + u * D[:, None]
    return y * torch.nn.functional.silu(z) if z is not None else y


def test_selective_scan_equals_mamba_ssm_reference():
    for case in torch.load(FIXTURES / "selective_scan.pt", weights_only=True):
        torch.testing.assert_close(selective_scan_torch(**case["inputs"]), case["out"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [1, 2, 5, 64, 203])
@pytest.mark.parametrize("full", [True, False])
def test_selective_scan_equals_the_recurrence(length, full):
    g = torch.Generator().manual_seed(length)
    b, d, n = 2, 5, 3
    args = dict(u=torch.randn(b, d, length, generator=g), delta=torch.rand(b, d, length, generator=g),
                A=-3 * torch.rand(d, n, generator=g), B=torch.randn(b, n, length, generator=g),
                C=torch.randn(b, n, length, generator=g))
    if full:
        args.update(D=torch.randn(d, generator=g), z=torch.randn(b, d, length, generator=g),
                    delta_bias=torch.randn(d, generator=g), delta_softplus=True)
    expected = _scan_by_recurrence(**{k: v.double() if torch.is_tensor(v) else v for k, v in args.items()})
    torch.testing.assert_close(selective_scan_torch(**args), expected.float(), rtol=1e-5, atol=1e-5)


def test_linear_scan_along_any_dim_and_dtype_is_kept():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 17, 2, generator=g, dtype=torch.float64), torch.randn(3, 17, 2, generator=g, dtype=torch.float64)
    h, expected = torch.zeros(3, 2, dtype=torch.float64), []
    for t in range(17):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    torch.testing.assert_close(linear_scan(a, b, dim=1), torch.stack(expected, dim=1))
    u = torch.randn(1, 2, 4).bfloat16()
    out = selective_scan_torch(u, torch.rand(1, 2, 4), -torch.rand(2, 3), torch.randn(1, 3, 4), torch.randn(1, 3, 4))
    assert out.dtype == torch.bfloat16


def test_cpu_tensors_never_reach_the_cuda_kernel(monkeypatch):
    def kernel(*args):
        raise AssertionError("the CUDA kernel was called with CPU tensors")

    monkeypatch.setattr(mamba, "_cuda_kernel", lambda: kernel)
    case = torch.load(FIXTURES / "selective_scan.pt", weights_only=True)[0]
    torch.testing.assert_close(selective_scan(**case["inputs"]), case["out"], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_scan_equals_the_reference():
    """On a GPU: mamba_ssm's kernel when installed, else the PyTorch scan; the same numbers."""
    case = torch.load(FIXTURES / "selective_scan.pt", weights_only=True)[0]
    inputs = {k: v.cuda() if torch.is_tensor(v) else v for k, v in case["inputs"].items()}
    torch.testing.assert_close(selective_scan(**inputs).cpu(), case["out"], rtol=1e-4, atol=1e-4)


def test_fixture_key_lists_are_the_published_modules():
    """The committed key lists name the published modules (a guard against a stale fixture)."""
    aasist_keys = set(SUMMARY["ssl_aasist"]["shapes"])
    assert {"LL.weight", "pos_S", "HtrgGAT_layer_ST22.att_weight12"} <= aasist_keys
    assert max(int(m.group(1)) for k in aasist_keys if (m := re.match(r"encoder\.(\d+)\.", k))) == 5
    assert set(_fixture("ssl_aasist")["state"]) == aasist_keys
    mamba_keys = set(SUMMARY["ssl_mamba"]["shapes"])
    assert "conformer.backward_layers.5.mixer.A_log" in mamba_keys and SUMMARY["ssl_mamba"]["shapes"]["LL.weight"] == [144, 1024]
