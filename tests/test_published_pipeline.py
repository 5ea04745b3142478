"""The published input pipeline and RawBoost/averaging switches (configs/published.yaml).

RawBoost fixtures: tests/fixtures/published/rawboost_fixtures.pt, the published RawBoost.py's
`filterFIR` and `LnL_convolutive_noise` on seeded inputs (regenerate with
`python tests/fixtures/published/make_step_fixtures.py PATH/TO/dpda_ga`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from dpda.augment import RawBoost
from dpda.augment import functional as Fn
from dpda.data.dataset import AudioDataset, item_generator
from dpda.train.checkpoint import average_counts, average_state_dicts, load_checkpoint
from dpda.train.config import config_from_dict, load_config
from dpda.train.loop import Trainer
from support import demo_dict, write_separable_corpus
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
RAWBOOST = torch.load(ROOT / "tests/fixtures/published/rawboost_fixtures.pt", weights_only=True)
LENGTH = 1000


# ------------------------------------------------------------------------------ configs
def test_published_configs_set_every_switch_and_dpda_defaults_differ():
    published = load_config(ROOT / "configs/published.yaml")
    baseline = load_config(ROOT / "configs/published_baseline.yaml")
    default = config_from_dict({})
    for cfg in (published, baseline):
        assert (cfg.align.mode, cfg.align.option_defaults, cfg.align.granularity) == ("joint", "published", "model")
        assert (cfg.data.crop, cfg.data.augment_before_crop) == ("first", True)
        assert cfg.augment.mode == "dual" and cfg.augment.rawboost.fir_alignment == "published"
        assert cfg.checkpoint.average_formula == "published"
        assert (cfg.optim.epochs, cfg.optim.epoch_cap, cfg.optim.max_epochs) == (100, "published", 101)
    assert (default.optim.epoch_cap, default.optim.max_epochs) == ("dpda", 100)
    assert (published.align.rule, baseline.align.rule) == ("pcgrad", "none")
    assert (default.align.mode, default.align.option_defaults, default.data.crop, default.data.augment_before_crop,
            default.checkpoint.average_formula) == ("separate", "dpda", "random", False, "mean")
    # the two files differ only in the rule
    a, b = published.to_dict(), baseline.to_dict()
    a["align"].pop("rule"), b["align"].pop("rule")
    assert a == b


def test_gradvac_published_options_come_from_the_registry():
    from dpda.align import aligner_from_spec

    gradvac = load_config(ROOT / "configs/published.yaml", {"align.rule": "gradvac"})
    assert aligner_from_spec(gradvac.align).options == {"beta": 0.5, "positive_only_update": True}
    own = load_config(ROOT / "configs/published.yaml", {"align.rule": "gradvac", "align.options": {"beta": 0.2}})
    assert aligner_from_spec(own.align).options == {"beta": 0.2, "positive_only_update": True}
    assert aligner_from_spec(config_from_dict({"align": {"rule": "gradvac"}}).align).options == {
        "beta": 0.01, "positive_only_update": False}


# ------------------------------------------------------------------------------ RawBoost alignment
@pytest.mark.parametrize("case", RAWBOOST["filterFIR"], ids=lambda c: f"taps{c['b'].numel()}")
def test_published_fir_alignment_equals_the_published_filterFIR(case):
    x, b, expected = case["x"], case["b"], case["y"]
    got = Fn.fir_filter(x, b, extra_advance=1)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9 * expected.abs().max())
    # dpda's default: exactly at the group delay, i.e. the published output one sample later
    exact = Fn.fir_filter(x, b)
    torch.testing.assert_close(exact[1:], expected[:-1], rtol=1e-9, atol=1e-9 * expected.abs().max())


def _centred(banks: list[torch.Tensor]) -> torch.Tensor:
    """Banks of different (odd) lengths centred in the longest, as dpda's notch_bank lays them out."""
    n = max(b.numel() for b in banks)
    return torch.stack([F.pad(b, ((n - b.numel()) // 2, (n - b.numel()) // 2)) for b in banks])


def test_published_fir_alignment_reproduces_the_published_lnl():
    case = RAWBOOST["LnL"]
    banks = _centred(case["banks"])
    got = Fn.lnl(case["x"], banks, extra_advance=1)
    torch.testing.assert_close(got, case["y"], rtol=1e-8, atol=1e-10)
    assert not torch.allclose(Fn.lnl(case["x"], banks), case["y"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("algo", [1, 3, 4, 8])
def test_rawboost_fir_alignment_switch_shifts_every_filtered_part(algo):
    x = 0.3 * torch.randn(3, 4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = RawBoost.from_config({"algo": algo})
    published = RawBoost.from_config({"algo": algo, "fir_alignment": "published"})
    draws = exact.draw(3, 4000, torch.Generator().manual_seed(2))
    a, b = exact.apply(x, draws), published.apply(x, draws)
    assert not torch.allclose(a, b)
    if algo == 1:  # LnL alone: the same banks, one sample further
        torch.testing.assert_close(b, Fn.lnl(x, draws.lnl.banks, extra_advance=1))


# ------------------------------------------------------------------------------ n-best averaging
def test_published_average_formula_is_the_aliasing_result():
    states = [{"w": torch.tensor([float(10**i)]), "n": torch.tensor(i + 3)} for i in range(5)]
    out = average_state_dicts(states, "published")
    assert out["w"].item() == pytest.approx((2 * 10 + 100 + 1000 + 10_000) / 5)  # (2 w1 + w2 + w3 + w4) / 5
    assert out["n"].item() == (2 * 4 + 5 + 6 + 7) // 5 and out["n"].dtype == torch.int64
    assert average_counts(5, "published") == [0, 2, 1, 1, 1]
    assert average_counts(2, "published") == [0, 2] and average_counts(1, "published") == [1]
    assert average_state_dicts(states[:2], "published")["w"].item() == 10.0  # (2 w1) / 2
    assert average_state_dicts(states, "mean")["w"].item() == pytest.approx(11_111 / 5)


# ------------------------------------------------------------------------------ input pipeline
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    """Two clips: one longer than LENGTH, one shorter (tiled)."""
    from dpda.data.manifest import validate_manifest

    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate((2600, 370)):
        path = root / f"c{i}.wav"
        sf.write(path, (0.2 * rng.standard_normal(n)).astype(np.float32), 16000, subtype="FLOAT")
        rows.append({"utt": f"c{i}", "path": str(path), "label": "bonafide", "target": 1, "attack": "-",
                     "speaker": "s", "corpus": "t", "subset": "train", "source_file": "m", "source_line": i + 1})
    frame = pd.DataFrame(rows)
    validate_manifest(frame)
    return frame


def _whole(clips: pd.DataFrame, i: int) -> torch.Tensor:
    return torch.from_numpy(sf.read(clips["path"][i], dtype="float32")[0])


def test_crop_first_takes_the_first_samples_every_epoch_and_tiles_short_files(clips):
    first = AudioDataset(clips, length=LENGTH, train=True, seed=3, crop="first")
    rand = AudioDataset(clips, length=LENGTH, train=True, seed=3, crop="random")
    long, short = _whole(clips, 0), _whole(clips, 1)
    offsets = set()
    for epoch in range(4):
        first.set_epoch(epoch), rand.set_epoch(epoch)
        assert torch.equal(first[0][0], long[:LENGTH])
        offsets.add(int(torch.nonzero(long.unfold(0, LENGTH, 1).eq(rand[0][0]).all(1))[0]))
        # tiled: the published pad repeats the whole file and cuts at LENGTH
        assert torch.equal(first[1][0], torch.cat([short] * 3)[:LENGTH])
        assert torch.equal(rand[1][0], first[1][0])
    assert len(offsets) > 1


def test_augment_before_crop_augments_the_whole_utterance_then_crops(clips):
    rawboost = RawBoost.from_config({"algo": 4, "fir_alignment": "published"})
    data = AudioDataset(clips, length=LENGTH, train=True, seed=3, crop="first", augment=rawboost)
    data.set_epoch(2)
    wave, aug, target, index = data[0]
    assert torch.equal(wave, _whole(clips, 0)[:LENGTH]) and int(index) == 0 and int(target) == 1
    expected = rawboost(_whole(clips, 0), generator=item_generator(3, 2, 0))[:LENGTH]
    torch.testing.assert_close(aug, expected)
    # a short utterance: augmented whole, then tiled, so its noise repeats with the file's period
    _, aug_short, _, _ = data[1]
    n = _whole(clips, 1).numel()
    torch.testing.assert_close(aug_short[n : 2 * n], aug_short[:n])
    # eval items never carry an augmented copy
    assert len(AudioDataset(clips, length=LENGTH, train=False, augment=rawboost)[0]) == 3


def test_random_crop_with_augment_before_crop_crops_both_paths_at_one_offset(clips):
    rawboost = RawBoost.from_config({"algo": 3})
    data = AudioDataset(clips, length=LENGTH, train=True, seed=5, crop="random", augment=rawboost)
    wave, aug, _, _ = data[0]
    gen = item_generator(5, 0, 0)
    offset = int(torch.randint(0, 2600 - LENGTH + 1, (1,), generator=gen))
    assert torch.equal(wave, _whole(clips, 0)[offset : offset + LENGTH])
    torch.testing.assert_close(aug, rawboost(_whole(clips, 0), generator=gen)[offset : offset + LENGTH])


# ------------------------------------------------------------------------------ a run with every switch
def test_a_run_with_the_published_switches_trains_and_averages_by_the_published_formula(tmp_path_factory):
    corpus = write_separable_corpus(tmp_path_factory.mktemp("separable"))
    raw = demo_dict(corpus, epochs=2, max_steps_per_epoch=2, batch_size=4)
    raw["data"].update(crop="first", augment_before_crop=True, length=4000, eval={})
    raw["augment"]["rawboost"]["fir_alignment"] = "published"
    raw["align"].update(mode="joint", option_defaults="published", rule="gradvac")
    raw["checkpoint"].update(average_best=3, average_formula="published")
    run_dir = tmp_path_factory.mktemp("run")
    summary = Trainer(config_from_dict(raw), run_dir, progress=False).fit()
    history = load_checkpoint(run_dir / "checkpoints/last.pt", "dpda-train-state")["history"]
    assert len(history) == 2 and all(h["steps"] == 2 and 0 <= h["conflict_fraction"] <= 1 for h in history)
    assert all(np.isfinite(h["train_loss_aug"]) for h in history)
    # two epochs kept: the published formula gives (2 w1) / 2, the second-best epoch's weights
    second = summary["averaged_epochs"][1] - 1
    final = load_checkpoint(run_dir / "model.pt")["model"]
    weights = load_checkpoint(run_dir / f"checkpoints/epoch_{second:04d}.pt")["model"]
    for key, value in final.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, weights[key])
