"""Nes2Net-X and SLS back ends against the published modules (Liu-Tianchi/Nes2Net_ASVspoof_ITW,
QiShanZhang/SLSforADD), through fixtures made once from them
(tests/fixtures/published/make_nes2net_sls_fixtures.py says how): same outputs on the same
hidden states in eval and train mode (BatchNorm running statistics included), same state-dict
keys and shapes after the documented mapping, same trainable counts, strict loading of a
published detector state, and `--checkpoint-format nes2net|sls`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dpda.cli import main
from dpda.errors import UserError
from dpda.models import build_model, count_parameters, nes2net, sls
from dpda.models.nes2net import Nes2NetXHead
from dpda.models.published import model_from_published_state
from dpda.models.registry import SSL_FRONTEND_KEYS, model_config
from dpda.models.sls import SLSHead
from dpda.models.ssl import TINY_SSL
from dpda.train.model_file import CHECKPOINT_FORMATS, load_trained_model
from support import to_fairseq

torch.set_num_threads(1)
FIXTURES = Path(__file__).parent / "fixtures" / "published"
SUMMARY = json.loads((FIXTURES / "nes2net_sls.json").read_text())
PUBLISHED_TRAINABLE = {"ssl_nes2net_x": 512_039, "ssl_sls": 23_399_429}
CONVERTERS = {"ssl_nes2net_x": nes2net.published_to_dpda, "ssl_sls": sls.published_to_dpda}
NES2NET_CASES = ["nes2net_x_mean", "nes2net_x_astp"]
# Two-layer wav2vec 2.0 with XLS-R's 1024-dim output: a published-shaped front end that builds fast.
SSL_1024 = dict(TINY_SSL, encoder_embed_dim=1024, encoder_ff_interm_features=64, encoder_num_layers=2,
                encoder_pos_conv_groups=16)


def _seeded(seed: int, shape: list[int], scale: float, sum: float) -> torch.Tensor:
    """The fixture script's seeded tensor, checked against the sum it recorded."""
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale
    assert float(t.double().sum()) == pytest.approx(sum, rel=1e-9, abs=1e-6), "torch's RNG no longer regenerates the fixture"
    return t


def _unpack(packed: dict) -> dict[str, torch.Tensor]:
    out, at = {}, 0
    for name, shape in zip(packed["names"], packed["shapes"]):
        n = int(torch.Size(shape).numel())
        out[name] = packed["values"][at:at + n].view(shape)
        at += n
    return {**out, **packed["ints"]}


def _case(name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict]:
    """(published state dict, hidden states, fixture) of one fixture case."""
    fixture = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    state = {**_unpack(fixture["state"]), **{k: _seeded(**spec) for k, spec in fixture["seeded"].items()}}
    return state, _seeded(**fixture["feats"]), fixture


def _nes2net_args(reduced: dict) -> dict:
    """dpda constructor arguments of the published command-line arguments."""
    return dict(outer=reduced["Nes_ratio"][0], inner=reduced["Nes_ratio"][1], se_ratio=reduced["SE_ratio"][0],
                dilation=reduced["dilation"], kernel_size=3, pool={"mean": "mean", "ASTP": "astp"}[reduced["pool_func"]])


def _head(case: str) -> torch.nn.Module:
    if case == "sls":
        return SLSHead(1024, **_backend_args("ssl_sls"))
    return Nes2NetXHead(1024, **_nes2net_args(SUMMARY["reduced_args"][case]))


def _backend_args(name: str) -> dict:
    return {k: v for k, v in model_config(name).items() if k not in SSL_FRONTEND_KEYS}


def _backend_state(converted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    assert all(k.startswith("backend.") for k in converted), sorted(converted)[:3]
    return {k.removeprefix("backend."): v for k, v in converted.items()}


def _converter(case: str):
    return CONVERTERS["ssl_sls" if case == "sls" else "ssl_nes2net_x"]


@pytest.mark.parametrize("case", [*NES2NET_CASES, "sls"])
def test_backend_equals_published_outputs_in_eval_and_train_mode(case):
    """Eval mode; then train mode (no dropout in either model: BatchNorm's batch statistics), its
    logits and the running statistics one forward leaves."""
    state, feats, fixture = _case(case)
    head = _head(case)
    head.load_state_dict(_backend_state(_converter(case)(state)), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(head.eval()(feats), fixture["eval_logits"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(head.train()(feats), fixture["train_logits"], rtol=1e-5, atol=1e-5)
    after = _backend_state(_converter(case)(_unpack(fixture["train_buffers"])))
    own = head.state_dict()
    for key, value in after.items():
        torch.testing.assert_close(own[key], value, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", ["ssl_nes2net_x", "ssl_sls"])
def test_full_preset_has_the_published_keys_shapes_and_trainable_count(name):
    published = {k: torch.empty(shape, device="meta") for k, shape in SUMMARY[name]["shapes"].items()}
    converted = _backend_state(CONVERTERS[name](published))
    head = _full_head(name)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert count_parameters(head, trainable_only=True) == SUMMARY[name]["trainable"] == PUBLISHED_TRAINABLE[name]


def _full_head(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return (Nes2NetXHead if name == "ssl_nes2net_x" else SLSHead)(1024, **_backend_args(name))


def _published_detector(case: str, seed: int = 3) -> tuple[dict[str, torch.Tensor], dict, torch.nn.Module]:
    """A DataParallel-saved published state: a small fairseq-named front end + the fixture back end."""
    name = "ssl_sls" if case == "sls" else "ssl_nes2net_x"
    overrides = {"ssl": SSL_1024} if case == "sls" else {"ssl": SSL_1024, **_nes2net_args(SUMMARY["reduced_args"][case])}
    source = build_model(name, "full", seed=seed, **overrides)
    published = {f"module.ssl_model.model.{k}": v for k, v in to_fairseq(source.frontend.wav2vec2.state_dict()).items()}
    published.update({f"module.{k}": v for k, v in _case(case)[0].items()})
    return published, overrides, source


@pytest.mark.parametrize("case", ["nes2net_x_mean", "sls"])
def test_published_detector_state_is_detected_and_loads_strictly(case):
    published, overrides, source = _published_detector(case)
    model = model_from_published_state(published, "published.pth", **overrides)
    assert type(model.backend) is (SLSHead if case == "sls" else Nes2NetXHead)
    for key, value in source.frontend.wav2vec2.state_dict().items():
        torch.testing.assert_close(model.frontend.wav2vec2.state_dict()[key], value, rtol=0, atol=0)
    _, feats, fixture = _case(case)
    with torch.no_grad():
        torch.testing.assert_close(model.backend(feats), fixture["eval_logits"], rtol=1e-5, atol=1e-5)


RELEASED_MODEL = {"nes2net": "ssl_nes2net_x", "sls": "ssl_sls"}  # --checkpoint-format -> the one model it reads


@pytest.mark.parametrize("fmt", list(RELEASED_MODEL))
def test_checkpoint_format_reads_its_model(tmp_path, fmt):
    case = "sls" if fmt == "sls" else "nes2net_x_mean"
    published, overrides, _ = _published_detector(case)
    torch.save(published, tmp_path / "released.pth")
    model, state = load_trained_model(tmp_path / "released.pth", torch.device("cpu"), fmt, {"model.overrides": overrides})
    assert state["config"]["model"]["name"] == RELEASED_MODEL[fmt] and fmt in CHECKPOINT_FORMATS
    assert state["config"]["eval"]["score"] == "logit1"
    other = "sls" if fmt == "nes2net" else "nes2net"
    other_name = {"nes2net": "Nes2Net-X", "sls": "XLSR-SLS"}[other]
    with pytest.raises(UserError, match=rf"released\.pth: not a released {other_name} checkpoint \(closest: {RELEASED_MODEL[other]}:full"):
        load_trained_model(tmp_path / "released.pth", torch.device("cpu"), other,
                           {"model.overrides": {"ssl": SSL_1024}})
    with pytest.raises(UserError, match=rf"^model.name: --checkpoint-format {fmt} reads {RELEASED_MODEL[fmt]} checkpoints, got 'ssl_aasist'"):
        load_trained_model(tmp_path / "released.pth", torch.device("cpu"), fmt, {"model.name": "ssl_aasist"})


def test_unknown_published_keys_keep_their_names():
    for convert in CONVERTERS.values():
        converted = convert({"module.extra.weight": torch.zeros(1), "ssl_model.model.odd": torch.zeros(1)})
        assert set(converted) == {"extra.weight", "ssl_model.model.odd"}


def test_sls_reads_every_layer_and_its_frame_count():
    model = build_model("ssl_sls", "tiny", seed=0).eval()
    with torch.no_grad():
        states = model.frontend(torch.randn(2, 16000))
    assert states.shape == (2, 2, 49, 64)  # (batch, every transformer layer, frames, dim)
    with pytest.raises(UserError, match=r"^model.overrides.frames: the SLS classifier reads 49 SSL frames, the input gave 99"):
        model(torch.randn(2, 32000))
    with pytest.raises(UserError, match=r"^model.overrides.ssl_layers: the sls back end reads 'all', got 'last'"):
        build_model("ssl_sls", "tiny", ssl_layers="last")
    with pytest.raises(UserError, match=r"^model.overrides.ssl_layers: the nes2net_x back end reads 'last' or 'weighted'"):
        build_model("ssl_nes2net_x", "tiny", ssl_layers="all")


def test_sls_layers_are_fairseqs_layer_results():
    """`ssl_layers: all` = every layer's output without the closing LayerNorm (fairseq's
    layer_results); the last of them, normalised, is the `last` front end's output."""
    model = build_model("ssl_sls", "tiny", seed=0).eval()
    wave = torch.randn(2, 16000)
    with torch.no_grad():
        states = model.frontend(wave)
        final = model.frontend.wav2vec2(wave)[0]
        norm = model.frontend.wav2vec2.encoder.transformer.layer_norm
        torch.testing.assert_close(norm(states[:, -1]), final, rtol=1e-5, atol=1e-5)
        assert (states[:, -1] - final).abs().max() > 1e-2


def test_dpda_models_prints_the_published_back_end_counts(capsys):
    assert main(["models", "ssl_nes2net_x", "ssl_sls", "--preset", "full"]) == 0
    rows = {r[0]: r for r in (line.split() for line in capsys.readouterr().out.splitlines()[1:])}
    assert {n: int(r[3].replace(",", "")) for n, r in rows.items()} == PUBLISHED_TRAINABLE
    assert {n: " ".join(r[4:]) for n, r in rows.items()} == {"ssl_nes2net_x": "published, nes2net", "ssl_sls": "published, sls"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from support import write_separable_corpus

    return write_separable_corpus(tmp_path_factory.mktemp("separable"))


@pytest.mark.parametrize("mode", ["separate", "joint", "batched"])
@pytest.mark.parametrize("name", ["ssl_nes2net_x", "ssl_sls"])
def test_tiny_model_trains_in_every_step_mode_with_telemetry(corpus, tmp_path, name, mode):
    """Two dual-path steps through the Trainer: finite losses, and the telemetry's layer names are
    the model's trainable parameters, in order (0.5-s inputs: 24 tiny-SSL frames for SLS)."""
    from dpda.train.config import config_from_dict
    from dpda.train.loop import Trainer
    from dpda_analysis import open_telemetry
    from support import demo_dict

    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=2)
    raw["model"] = {"name": name, "preset": "tiny", "overrides": {"frames": 24} if name == "ssl_sls" else {}}
    raw["align"]["mode"] = mode
    Trainer(config_from_dict(raw), tmp_path, progress=False).fit()
    with open_telemetry(tmp_path) as tel:
        steps = tel.sql("SELECT loss_orig, loss_aug, cos FROM steps")
        names = tel.sql("SELECT layer, name FROM layer_names ORDER BY layer")["name"].tolist()
    assert len(steps) == 2 and np.isfinite(steps.to_numpy()).all()
    model = build_model(name, "tiny", **raw["model"]["overrides"])
    assert names == [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("backend.") for n in names)


def test_dpda_eval_reads_a_released_nes2net_checkpoint(corpus, tmp_path, capsys):
    """`dpda eval --checkpoint-format nes2net`: scores as the loaded model's logit[1]."""
    published, overrides, _ = _published_detector("nes2net_x_mean")
    torch.save(published, tmp_path / "released.pth")
    args = ["-q", "eval", str(tmp_path / "released.pth"), f"dev=csv:{corpus}/dev.csv", "-o", str(tmp_path / "out"),
            "--checkpoint-format", "nes2net", "--set", f"model.overrides={json.dumps(overrides)}",
            "--set", "data.length=8000", "--loader-workers", "0", "--device", "cpu"]
    assert main(args) == 0
    scores = (tmp_path / "out" / "dev.scores.txt").read_text().splitlines()
    assert len(scores) == 32 and "logit1" in capsys.readouterr().out


@pytest.mark.parametrize(("overrides", "message"), [
    ({"outer": 3}, "outer must be >= 2 and divide the SSL dimension 64, got 3"),
    ({"inner": 17}, r"inner must be in \[2, 16\] and se_ratio in \[1, 16\]"),
    ({"pool": "max"}, "pool must be one of mean, astp, got 'max'"),
])
def test_nes2net_bad_sizes_are_one_line(overrides, message):
    with pytest.raises(UserError, match=rf"^model ssl_nes2net_x: {message}"):
        build_model("ssl_nes2net_x", "tiny", **overrides)
