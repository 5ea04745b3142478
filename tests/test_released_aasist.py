"""dpda's `aasist` (presets `released`, `released_l`) against clovaai's released models/AASIST.py,
through fixtures made once by running it (tests/fixtures/aasist/make_aasist_fixtures.py): the
presets are the released configs, the band edges and filters are the released ones, the logits
equal the released code's on the same weights at both sizes, released files are detected from
their keys and shapes, refused in one line naming the file's key, and scored as the released
main.py scores. With DPDA_AASIST_WEIGHTS (a folder holding AASIST.pth, AASIST-L.pth and/or the
ASVspoof 5 baseline's best.pth) the real files are loaded and compared too."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from dpda.cli import main
from dpda.errors import UserError
from dpda.models import build_model, count_parameters
from dpda.models.published import detect_layout, load_released_aasist
from dpda.models.released_aasist import RELEASED_LENGTH, released_band_edges, released_to_dpda
from dpda.models.state_dict import load_weights
from dpda.train.model_file import load_trained_model
from support import write_tiny_corpus

HERE = Path(__file__).parent / "fixtures" / "aasist"
sys.path.insert(0, str(HERE))
from random_state import random_state  # noqa: E402

torch.set_num_threads(1)
FIX = torch.load(HERE / "aasist_fixtures.pt", weights_only=True)
CONFIGS = json.loads((HERE / "released_configs.json").read_text())
PRESETS = {"AASIST": "released", "AASIST-L": "released_l"}
CPU = torch.device("cpu")


def _released_state(size: str) -> dict[str, torch.Tensor]:
    """The released model's state dict the fixture ran (AASIST-L stored, AASIST regenerated)."""
    entry = FIX[size]
    return entry["state"] if "state" in entry else random_state(entry["shapes"], entry["seed"])


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.parametrize("conf", ["AASIST", "AASIST-L", "ASVspoof5"])
def test_presets_are_the_released_configs(conf):
    from dpda.models.registry import model_config

    c = CONFIGS[conf]
    preset = model_config("aasist", PRESETS.get(conf, "released"))
    filts = c["filts"]
    assert preset["sinc_filters"] == filts[0] and preset["sinc_kernel"] == c["first_conv"]
    assert [list(b) for b in preset["blocks"]] == [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
    assert list(preset["gat_dims"]) == c["gat_dims"] and list(preset["temperatures"]) == c["temperatures"]
    p = c["pool_ratios"]  # the released Model gives pool_ratios[2] to both branches' pools
    assert list(preset["pool_ratios"]) == [p[0], p[1], p[2], p[2]] and preset["preactivate"] is False and preset["sinc_unit_gain"] is True


def test_counts_differ_from_the_released_files_by_the_band_edges():
    for size, preset in PRESETS.items():
        model = build_model("aasist", preset)
        released = sum(v.numel() for v in _released_state(size).values())
        ours = sum(v.numel() for v in model.state_dict().values())
        buffers = sum(b.numel() for n, b in model.named_buffers() if "running" in n or "num_batches" in n)
        assert ours == released + 2 * 70  # sinc.low_hz and sinc.band_hz
        assert len(model.state_dict()) == len(FIX[size]["shapes"]) + 2
        assert count_parameters(model, trainable_only=True) == released - buffers  # the edges are fixed buffers
    assert count_parameters(build_model("aasist", "released"), trainable_only=True) == 297_866
    assert count_parameters(build_model("aasist", "released_l"), trainable_only=True) == 85_306


def test_band_edges_and_filters_are_the_released_ones():
    edges = released_band_edges()
    assert torch.equal(torch.from_numpy(edges), FIX["mel"])  # computed identically, float64
    model = build_model("aasist", "released_l")
    load_weights(model, released_to_dpda(_released_state("AASIST-L")), "fixture", "aasist")
    filters = model.sinc.filters().squeeze(1)
    assert filters.shape == FIX["band_pass"].shape == (70, 129)
    torch.testing.assert_close(filters, FIX["band_pass"], rtol=0, atol=2e-6)  # float32 rounding
    # dpda's own mel spacing (float32 end to end) is the same edges to float32 rounding
    torch.testing.assert_close(build_model("aasist", "full").sinc.low_hz, model.sinc.low_hz, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("size", ["AASIST", "AASIST-L"])
def test_logits_equal_the_released_code_on_the_same_weights(size):
    model = build_model("aasist", PRESETS[size])
    load_weights(model, released_to_dpda(_released_state(size)), "fixture", "aasist")
    with torch.no_grad():
        logits = model.eval()(FIX["inputs"])
    torch.testing.assert_close(logits, FIX[size]["logits"], rtol=0, atol=2e-5)
    assert (FIX[size]["logits"][:, 1].diff().abs() > 1e-3).all()  # the rows differ: a real check


def test_full_preset_is_not_the_released_forward():
    """`full` pre-activates its residual blocks, the released code does not: only `released` reproduces it."""
    model = build_model("aasist", "full")
    load_weights(model, released_to_dpda(_released_state("AASIST")), "fixture", "aasist")
    with torch.no_grad():
        assert (model.eval()(FIX["inputs"]) - FIX["AASIST"]["logits"]).abs().max() > 1e-3


def test_released_files_are_detected_and_scored_as_released(tmp_path):
    for size, preset in PRESETS.items():
        path = _save(_released_state(size), tmp_path / f"{size}.pth")
        assert detect_layout(_released_state(size), path) == ("aasist", "aasist", preset)
        for fmt in ("auto", "aasist"):
            model, state = load_trained_model(path, CPU, fmt)
            assert state["format"] == "aasist"
            cfg = state["config"]
            assert cfg["model"]["name"] == "aasist" and cfg["model"]["preset"] == preset
            assert (cfg["eval"]["score"], cfg["eval"]["length"]) == ("logit1", RELEASED_LENGTH)
            with torch.no_grad():
                torch.testing.assert_close(model(FIX["inputs"]), FIX[size]["logits"], rtol=0, atol=2e-5)
            convs = [p for p in model.parameters() if p.dim() == 4]  # loaded for scoring: dpda eval's layout
            assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        module_prefixed = _save({f"module.{k}": v for k, v in _released_state(size).items()}, tmp_path / "dp.pth")
        assert load_trained_model(module_prefixed, CPU, "auto")[1]["config"]["model"]["preset"] == preset


def test_refusals_name_the_key_as_the_file_writes_it(tmp_path):
    state = dict(_released_state("AASIST-L"))
    bad = dict(state, **{"GAT_layer_S.att_weight": torch.zeros(5, 1)})
    with pytest.raises(UserError) as err:
        load_released_aasist(_save(bad, tmp_path / "bad.pth"), "released_l")
    msg = str(err.value)
    assert "\n" not in msg and "GAT_layer_S.att_weight in the file" in msg and "backend.gat_spectral.att_weight" in msg
    extra = dict(state, **{"conv_time.band_pass": torch.zeros(70, 129)})
    with pytest.raises(UserError, match=r"unexpected conv_time\.band_pass"):
        load_released_aasist(_save(extra, tmp_path / "extra.pth"), "released_l")
    missing = {k: v for k, v in state.items() if k != "out_layer.weight"}
    with pytest.raises(UserError) as err:
        load_trained_model(_save(missing, tmp_path / "missing.pth"), CPU, "aasist")
    assert "\n" not in str(err.value) and "not a released AASIST checkpoint" in str(err.value)
    assert "missing backend.out.weight" in str(err.value)
    with pytest.raises(UserError, match="preset released or released_l"):
        load_trained_model(tmp_path / "bad.pth", CPU, "aasist", {"model.preset": "tiny", "model.name": "aasist"})
    with pytest.raises(UserError, match="expected a 'dpda-model' checkpoint.*--checkpoint-format published, aasist"):
        load_trained_model(tmp_path / "extra.pth", CPU, "dpda")


def test_dpda_eval_and_predict_on_a_released_file(tmp_path, capsys):
    path = _save(_released_state("AASIST-L"), tmp_path / "AASIST-L.pth")
    corpus = write_tiny_corpus(tmp_path / "c", n_train=2, n_dev=4, seconds=0.5)
    spec = f"dev=asvspoof2019:{corpus}/LA:dev"
    common = ["--loader-workers", "0", "--device", "cpu"]
    assert main(["-q", "eval", str(path), spec, "-o", str(tmp_path / "out"), *common]) == 0
    out = capsys.readouterr().out
    assert "score: logit1" in out
    metrics = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert metrics[1].endswith(",logit1") or ",logit1," in metrics[1]
    audio = next((corpus / "LA").rglob("*.flac"))
    assert main(["predict", str(path), str(audio), "--threshold", "0", "--device", "cpu",
                 "--checkpoint-format", "aasist"]) == 0
    assert str(audio) in capsys.readouterr().out
    assert main(["models", "aasist"]) == 0
    rows = {tuple(r[:2]): r for r in (line.split() for line in capsys.readouterr().out.splitlines()[1:])}
    assert rows[("aasist", "released_l")][2] == "85,306" and rows[("aasist", "released_l")][4] == "aasist"
    assert rows[("aasist", "full")][4] == "-"


REAL = Path(os.environ.get("DPDA_AASIST_WEIGHTS", "/nonexistent"))


@pytest.mark.parametrize("file,preset", [("AASIST.pth", "released"), ("AASIST-L.pth", "released_l"),
                                         ("best.pth", "released")])
def test_real_released_files(file, preset):
    """The released weights (fetch clovaai/aasist and asvspoof-challenge/asvspoof5; docs/released_aasist.md)."""
    path = REAL / file
    if not path.exists():
        pytest.skip(f"set DPDA_AASIST_WEIGHTS to a folder with {file}")
    model, state = load_trained_model(path, CPU, "auto")
    assert state["config"]["model"]["preset"] == preset
    with torch.no_grad():
        torch.testing.assert_close(model(FIX["inputs"]), FIX["released_logits"][file], rtol=0, atol=1e-4)
