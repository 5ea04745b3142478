"""K augmented paths through the data and the trainer: each path its own random stream, the
step's per-path statistics in the telemetry (steps, layers, attempts)."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from dpda_analysis import schema as S

from dpda.augment.pipeline import Pipeline
from dpda.data.dataset import AudioDataset
from dpda.data.readers import load_corpus
from dpda.telemetry import TelemetryWriter
from dpda.train.config import config_from_dict
from dpda.train.loop import Trainer
from support import demo_dict, write_separable_corpus

PATHS = {"lnl": {"rawboost": {"algo": 1}}, "isd": {"rawboost": {"algo": 2}}, "ssi": {"rawboost": {"algo": 3}}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_separable_corpus(tmp_path_factory.mktemp("separable"))


def _table(run_dir: Path, name: str):
    files = sorted(glob.glob(str(run_dir / "telemetry" / name / "**" / "*.parquet"), recursive=True))
    return pq.ParquetDataset(files).read().to_pandas()


def _small(corpus: Path, steps: int) -> dict:
    """The test demo config, one epoch of `steps` steps, no eval sets (the trainer is under test)."""
    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=steps)
    raw["data"]["eval"] = {}
    return raw


def test_three_augmented_paths_train_and_their_statistics_reach_the_telemetry(corpus: Path, tmp_path: Path) -> None:
    """(All three modes run K = 3 in tests/test_step_paths.py; here the trainer's wiring.)"""
    raw = _small(corpus, 2)
    raw["augment"] = {"mode": "dual", "paths": PATHS}
    raw["align"]["rule"] = "none"
    Trainer(config_from_dict(raw), tmp_path, progress=False).fit()
    attempts = _table(tmp_path, "attempts")
    assert attempts["paths"].map(list).tolist() == [["orig", "lnl", "isd", "ssi"]]
    assert list(attempts["augment_leaves"][0]) == ["paths.lnl.rawboost", "paths.isd.rawboost", "paths.ssi.rawboost"]
    steps = _table(tmp_path, "steps").sort_values("step")
    assert len(steps) == 2
    path_loss = np.stack(steps["path_loss"].to_numpy())
    path_cos = np.stack(steps["path_cos"].to_numpy())
    assert path_loss.shape == (2, 4) and path_cos.shape == (2, 6)
    assert np.isfinite(path_loss).all() and (np.abs(path_cos) <= 1).all()
    np.testing.assert_allclose(steps["loss_orig"], path_loss[:, 0])
    np.testing.assert_allclose(steps["loss_aug"], path_loss[:, 1:].mean(1), rtol=1e-6)  # "aug": the mean path
    assert [list(c) for c in steps["augment_counts"]] == [[8, 8, 8]] * 2  # every path augments every utterance
    layers = _table(tmp_path, "layers")
    assert len(layers) == 2 * layers["layer"].nunique()
    assert all(len(c) == 6 for c in layers["path_cos"])


def test_paths_augmented_in_the_loader_train_with_one_mask_over_all_leaves(corpus: Path, tmp_path: Path) -> None:
    raw = _small(corpus, 2)
    raw["data"]["augment_before_crop"] = True
    raw["augment"] = {"mode": "dual", "paths": {"lnl": {"rawboost": {"algo": 1}},
                                                "half": {"pipeline": {"steps": [{"gain": {"p": 0.5}}]}}}}
    raw["align"]["rule"] = "none"
    Trainer(config_from_dict(raw), tmp_path, progress=False).fit()
    attempts = _table(tmp_path, "attempts")
    assert list(attempts["augment_leaves"][0]) == ["paths.lnl.rawboost", "paths.half.pipeline.steps[0].gain"]
    steps = _table(tmp_path, "steps")
    for counts, combos in zip(steps["augment_counts"], steps["augment_combos"]):
        assert counts[0] == 8 and 0 <= counts[1] <= 8  # bit 0: path lnl (always), bit 1: path half's gain
        assert {c["mask"] for c in combos} <= {1, 3} and sum(c["n"] for c in combos) == 8
    assert all(len(c) == 3 for c in steps["path_cos"])


def test_one_named_path_is_the_dual_path_run_bit_for_bit(corpus: Path, tmp_path: Path) -> None:
    """`augment.paths` with one path draws what `augment.rawboost` draws: the same losses and
    cosines step by step; only the path's name differs."""
    legacy, named = _small(corpus, 3), _small(corpus, 3)
    named["augment"] = {"mode": "dual", "paths": {"lnl": {"rawboost": legacy["augment"]["rawboost"]}}}
    for name, raw in (("legacy", legacy), ("named", named)):
        Trainer(config_from_dict(raw), tmp_path / name, progress=False).fit()
    a, b = (_table(tmp_path / n, "steps").sort_values("step") for n in ("legacy", "named"))
    for column in ("loss_orig", "loss_aug", "cos", "update_norm"):
        assert a[column].tolist() == b[column].tolist(), column
    assert a["path_cos"].map(list).tolist() == b["path_cos"].map(list).tolist()
    assert [list(p) for p in _table(tmp_path / "legacy", "attempts")["paths"]] == [["orig", "aug"]]
    assert [list(p) for p in _table(tmp_path / "named", "attempts")["paths"]] == [["orig", "lnl"]]


def test_the_loader_augments_each_path_from_its_own_stream(corpus: Path) -> None:
    """With `data.augment_before_crop` the loader stacks one augmented copy per path: the first
    path draws what a one-path loader draws, a second path with the same settings draws anew."""
    manifest = load_corpus(f"csv:{corpus}/train.csv")
    cfg = config_from_dict({"augment": {"mode": "dual", "paths": {"a": {"rawboost": {"algo": 4}},
                                                                    "b": {"rawboost": {"algo": 4}}}}})
    roots = list(cfg.augment.path_transforms.values())
    one = AudioDataset(manifest, length=4000, train=True, seed=5, augment=Pipeline(roots[0]))
    two = AudioDataset(manifest, length=4000, train=True, seed=5, augment=[Pipeline(r) for r in roots])
    wave1, aug1, mask1, *_ = one[3]
    wave2, augs, masks, *_ = two[3]
    assert augs.shape == (2, 4000) and masks.shape == (2,)
    assert torch.equal(wave1, wave2) and torch.equal(aug1, augs[0]) and torch.equal(mask1, masks[0])
    assert not torch.equal(augs[0], augs[1])
    again = AudioDataset(manifest, length=4000, train=True, seed=5, augment=[Pipeline(r) for r in roots])[3]
    assert torch.equal(again[1], augs)  # deterministic given the seed


def test_the_writer_stores_each_layers_path_cosines(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, run_id="r", trial_id="t", attempt=0, layer_names=["a", "b"],
                             rule="none", augment_mode="dual", strength=1.0, config={}, flush_every=10,
                             augment_leaves=[], paths=["orig", "x", "y"])
    base = {k: 0.5 for k in S.STEP_STAT_KEYS} | {"skipped": False, "conflict": False}
    base |= {k: [0.1, 0.2] for k in S.LAYER_STAT_KEYS}
    for i in range(3):
        stats = base | {"path_loss": [1.0, 2.0, 3.0], "path_cos": [0.1, 0.2, 0.3],
                        "layer_path_cos": [[0.25 * i, 0.5, -1.0], [0.0, 1.0, 0.75]], "skipped": i == 1}
        writer.log_step(step=i, epoch=1, stats=stats, lr=0.1)
    stats = base | {"path_loss": [1.0], "path_cos": [], "layer_path_cos": [[0.0]]}
    with pytest.raises(ValueError, match="layer_path_cos.*1 entries, expected 2"):
        writer.log_step(step=3, epoch=1, stats=stats, lr=0.1)
    writer.close()
    layers = _table(tmp_path, "layers").sort_values(["layer", "step"])
    got = [None if v is None else list(v) for v in layers["path_cos"]]
    assert got == [[0.0, 0.5, -1.0], None, [0.5, 0.5, -1.0], [0.0, 1.0, 0.75], None, [0.0, 1.0, 0.75]]
