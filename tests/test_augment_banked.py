"""The `noise` and `reverb` transforms on offline banks (`dpda banks`): against independent
references (achieved SNR = drawn SNR; reverberation = scipy's fftconvolve of the drawn RIR),
babble sums the drawn count, determinism under the seed, what runs in the loader equals the
device path, bad banks refused in one line before anything trains, and the paper's MUSAN + RIR
(+ RawBoost) setups train end to end at tiny size on the CPU."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from scipy.signal import fftconvolve

from dpda.augment import bank_source
from dpda.augment.noise import NoiseParams, draw_noise, noise_for
from dpda.augment.pipeline import Pipeline, prepare_transforms
from dpda.augment.reverb import ReverbParams, draw_reverb, rirs_for
from dpda.augment.spec import parse_pipeline
from dpda.cli import main
from dpda.data.bank_builder import write_banks
from dpda.data.bank_config import BankSizes
from dpda.errors import UserError
from dpda.train.config import config_from_dict, load_config
from dpda.train.checkpoint import load_checkpoint
from dpda.train.loop import Trainer
from dpda.train.preflight import check_inputs
from support import ROOT, demo_dict, write_separable_corpus

SR = 16_000
TINY = BankSizes(seed=5, noise=3, music=2, speech=4, rooms=1, rirs_per_room=2, min_seconds=1.0, max_seconds=2.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_separable_corpus(tmp_path_factory.mktemp("separable"))


@pytest.fixture(scope="module")
def banks(tmp_path_factory) -> dict[str, str]:
    return write_banks(tmp_path_factory.mktemp("banks") / "b", TINY)


def _speech(batch: int = 6, time: int = 8000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, time, generator=g) * torch.rand(batch, 1, generator=g).add(0.05) * 0.2


def _db(x: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(x.double().pow(2).sum(-1))


def test_noise_reaches_the_drawn_snr_per_category_and_babble_sums_the_drawn_count(banks):
    p = NoiseParams(bank=banks["noise"])  # Kaldi's defaults: noise, music, babble of 3-7
    x = _speech(12)
    drawn = draw_noise(p, 12, x.shape[1], torch.Generator().manual_seed(1), torch.device("cpu"))
    y = Pipeline(parse_pipeline({"steps": [{"noise": {"bank": banks["noise"]}}]})).augment(
        x, torch.Generator().manual_seed(1))[0]
    achieved = _db(x) - _db(y - x)
    assert (achieved - drawn["snr"]).abs().max() < 0.1
    ranges = {0: (0, 15), 1: (5, 15), 2: (13, 20)}
    for k, snr, n in zip(drawn["category"].tolist(), drawn["snr"].tolist(), drawn["count"].tolist()):
        assert ranges[k][0] <= snr <= ranges[k][1]
        assert n == 1 if k < 2 else 3 <= n <= 7
    assert set(drawn["category"].tolist()) == {0, 1, 2}
    # babble = the sum of its drawn files, each read from its drawn offset (an independent read)
    bank = bank_source.sampler(banks["noise"])
    speech = bank.rows("speech")
    b = drawn["category"].tolist().index(2)
    expected = np.zeros(x.shape[1], np.float32)
    for slot in range(int(drawn["count"][b])):
        row = speech[int(drawn["file"][b, slot] * len(speech))]
        total = int(bank.frames[row])
        whole = sf.read(bank.paths[row], dtype="float32")[0]
        start = int(drawn["offset"][b, slot] * total)
        expected += whole[(start + np.arange(x.shape[1])) % total]
    np.testing.assert_allclose(noise_for(p, drawn, x.shape[1])[b].numpy(), expected, atol=1e-6)


def test_reverb_equals_fftconvolve_of_the_drawn_rir_read_from_its_direct_path(banks):
    p = ReverbParams(bank=banks["rirs"], categories=["smallroom", "mediumroom", "largeroom"])
    x = _speech(5)
    drawn = draw_reverb(p, 5, x.shape[1], torch.Generator().manual_seed(2), torch.device("cpu"))
    y = Pipeline(parse_pipeline({"steps": [{"reverb": p.model_dump()}]})).augment(x, torch.Generator().manual_seed(2))[0]
    rir, lengths = rirs_for(p, drawn)
    for b in range(5):
        h = rir[b, : int(lengths[b])].double().numpy()
        full = fftconvolve(x[b].double().numpy(), h)
        peak = int(np.abs(h).argmax())
        np.testing.assert_allclose(y[b].numpy(), full[peak: peak + x.shape[1]], atol=1e-5)


def test_same_seed_same_output_and_a_pickled_pipeline_in_a_loader_agrees(banks):
    root = parse_pipeline({"steps": [{"reverb": {"bank": banks["rirs"], "p": 0.5}},
                                     {"noise": {"bank": banks["noise"], "p": 0.7}}]})
    x = _speech(8)
    a, mask_a = Pipeline(root).augment(x, torch.Generator().manual_seed(3))
    b, mask_b = Pipeline(root).augment(x, torch.Generator().manual_seed(3))
    c, _ = Pipeline(root).augment(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b) and not torch.equal(a, c)
    again = pickle.loads(pickle.dumps(Pipeline(root)))  # what DataLoader workers receive
    assert torch.equal(again.augment(x, torch.Generator().manual_seed(3))[0], a)


def test_a_csv_bank_with_any_category(banks):
    musan = Path(banks["noise"].partition(":")[2])
    listed = musan.parent / "noise_only.csv"  # paths relative to the CSV, inside its folder
    listed.write_text("path\n" + "".join(f"{p.relative_to(musan.parent)}\n"
                                         for p in sorted((musan / "noise").rglob("*.wav"))))
    p = NoiseParams(bank=f"csv:{listed}", categories={"*": {"snr": [5, 5]}})
    assert prepare_transforms(parse_pipeline({"steps": [{"noise": p.model_dump()}]}))
    x = _speech(3)
    y = Pipeline(parse_pipeline({"steps": [{"noise": p.model_dump()}]})).augment(x, torch.Generator().manual_seed(0))[0]
    assert ((_db(x) - _db(y - x)) - 5).abs().max() < 0.1


# --------------------------------------------------------------------------------- bad input
def _bad_bank(tmp_path: Path, rate: int | None) -> str:
    root = tmp_path / "musan"
    (root / "noise" / "x").mkdir(parents=True)
    if rate is not None:
        sf.write(root / "noise" / "x" / "a.wav", np.zeros(rate, np.float32) + 0.01, rate)
    return f"musan:{root}"


@pytest.mark.parametrize("case, message", [
    ("empty", "no audio files"),
    ("8khz", "sample rate 8000 Hz, expected 16000"),
    ("unreadable", "unreadable|cannot|decode|Error"),
    ("category", "has no 'speech' files"),
])
def test_a_bad_bank_is_one_line_naming_the_key_before_anything_trains(corpus, tmp_path, case, message):
    spec = _bad_bank(tmp_path, {"empty": None, "8khz": 8000}.get(case, 16000))
    if case == "unreadable":
        (Path(spec[6:]) / "noise" / "x" / "a.wav").write_bytes(b"RIFF not audio at all")
    categories = {"speech": {}} if case == "category" else {"noise": {}}
    raw = demo_dict(corpus, epochs=1)
    raw["augment"] = {"mode": "dual", "pipeline": {"steps": [{"noise": {"bank": spec, "categories": categories}}]}}
    with pytest.raises(UserError, match=message) as info:
        check_inputs(raw)  # dpda tune's pre-flight and the multi-worker driver
    assert str(info.value).startswith("augment.pipeline.steps[0].noise.") and "\n" not in str(info.value)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=message):
        Trainer(config_from_dict(raw), run_dir, progress=False).fit()
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())


def test_the_cli_refuses_a_crossed_snr_range_and_an_8khz_bank_with_one_line(corpus, tmp_path, capsys):
    raw = demo_dict(corpus, epochs=1)
    raw["augment"] = {"mode": "dual", "pipeline": {"steps": [{"noise": {
        "bank": _bad_bank(tmp_path, 8000), "categories": {"noise": {"snr": [20, 5]}}}}]}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config), "-o", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("augment.pipeline.steps[0].noise.categories.noise.snr: low 20 > high 5")
    assert main(["train", str(config), "-o", str(tmp_path / "run"),
                 "--set", "augment.pipeline.steps[0].noise.categories.noise.snr=[0, 5]"]) != 0
    err = capsys.readouterr().err
    assert "augment.pipeline.steps[0].noise.bank" in err and "8000 Hz" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.pt").exists()


# ------------------------------------------------------------------------ the paper's setups
@pytest.mark.parametrize("name, leaves", [
    ("published_musan_rir", ("reverb", "noise")),
    ("published_musan_rir_rawboost", ("reverb", "noise", "rawboost")),
])
def test_the_paper_setups_train_end_to_end_at_tiny_size(banks, corpus, tmp_path, name, leaves):
    overrides = {
        "device": "cpu", "model.preset": "tiny", "model.ssl_checkpoint": None, "model.frontend_dropout": "off",
        "data.train": [f"csv:{corpus}/train.csv"], "data.dev": [f"csv:{corpus}/dev.csv"], "data.eval": {},
        "data.length": 4000, "data.num_workers": 1,  # the bank is read in a loader worker
        "augment.pipeline.musan.bank": banks["noise"], "augment.pipeline.rir.bank": banks["rirs"],
        "optim.batch_size": 2, "optim.epochs": 1, "optim.max_steps_per_epoch": 2,
        "checkpoint.average_best": 1, "telemetry.enabled": False,
    }
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", overrides)
    assert Pipeline(cfg.augment.transforms).leaf_names == leaves
    Trainer(cfg, tmp_path / "run", progress=False).fit()
    history = load_checkpoint(tmp_path / "run/checkpoints/last.pt", "dpda-train-state")["history"]
    assert len(history) == 1 and history[0]["steps"] == 2 and np.isfinite(history[0]["train_loss_aug"])
    assert (tmp_path / "run" / "model.pt").exists()
