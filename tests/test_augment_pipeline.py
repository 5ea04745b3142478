"""The augmentation pipeline (issue 30 A): the `augment.pipeline` config tree (one-line errors
naming the key, dumps that round-trip), `augment.rawboost` as a one-step pipeline drawing exactly
RawBoost's numbers, chain / one_of gating with the applied-transforms mask, draws in a fixed
order, seed determinism, the loader path, and a tiny dual-path training run."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

from dpda.augment import RawBoost
from dpda.augment.pipeline import Pipeline
from dpda.augment.registry import TRANSFORMS
from dpda.augment.spec import parse_pipeline
from dpda.data.corpora import load_manifest
from dpda.data.dataset import AudioDataset
from dpda.errors import UserError
from dpda.train.config import config_from_dict
from dpda.train.loop import Trainer
from support import demo_dict, write_separable_corpus

TREE = {"steps": [
    {"gain": {"p": 0.5, "db": [-6, 6]}},
    {"one_of": {"p": 0.8, "weights": [2, 1, 1], "steps": [
        {"codec": {"kind": "alaw"}},
        {"chain": {"steps": [{"speed": {"factors": [0.9, 1.1]}}, {"band_drop": {}}]}},
        {"rawboost": {"algo": 5}}]}},
    {"clip": None},
]}


def _batch(batch: int = 16, time: int = 4000, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, time, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(("augment", "message"), [
    ({"pipeline": {"steps": [{"gain": {"db": [30, 10]}}]}}, "augment.pipeline.steps[0].gain.db: low 30 > high 10"),
    ({"pipeline": {"steps": [{"gain": {}}, {"one_of": {"steps": [{"clip": {"fraction": [0.5, 0.2]}}]}}]}},
     "augment.pipeline.steps[1].one_of.steps[0].clip.fraction: low 0.5 > high 0.2"),
    ({"pipeline": {"steps": [{"codec": {"kind": "aac"}}]}}, "augment.pipeline.steps[0].codec.kind: aac is not available here"),
    ({"pipeline": {"steps": [{"codec": {"kind": "g722"}}]}},
     "augment.pipeline.steps[0].codec: runs on CPU arrays in the DataLoader workers: set data.augment_before_crop: true"),
    ({"pipeline": {"steps": [{"codec": {"kind": "mulaw", "compression": [0, 1]}}]}},
     "augment.pipeline.steps[0].codec.compression: only for mp3, opus, not mulaw"),
    ({"rawboost": {"algo": 3}, "pipeline": {"steps": [{"gain": {}}]}}, "augment.rawboost: give augment.rawboost or augment.pipeline, not both"),
    ({"pipeline": {"steps": [{"gian": {}}]}}, "augment.pipeline.steps[0]: unknown transform 'gian'"),
    ({"pipeline": {"steps": [{"gain": {"p": 2}}]}}, "augment.pipeline.steps[0].gain.p: must be in [0, 1]"),
    ({"pipeline": {"steps": [{"gain": {"dbb": 1}}]}}, "augment.pipeline.steps[0].gain.dbb: unknown key"),
    ({"pipeline": {"steps": []}}, "augment.pipeline.steps: must have at least 1 items"),
    ({"pipeline": {"steps": [{"gain": {}, "clip": {}}]}}, "augment.pipeline.steps[0]: must be a mapping with one key"),
    ({"pipeline": {"steps": [{"one_of": {"weights": [1], "steps": [{"gain": {}}, {"clip": {}}]}}]}},
     "augment.pipeline.steps[0].one_of.weights: 1 weights for 2 steps"),
    ({"pipeline": {"steps": [{"speed": {"factors": [0.9], "range": [0.9, 1.1]}}]}},
     "augment.pipeline.steps[0].speed.range: give factors or range, not both"),
    ({"pipeline": {"steps": [{"rawboost": {"algo": 4, "SNRmin": 50, "SNRmax": 10}}]}},
     "augment.pipeline.steps[0].rawboost.SNRmin: 50.0 must be <= SNRmax = 10.0"),
])
def test_bad_pipeline_is_one_line_naming_the_key(augment: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        config_from_dict({"augment": augment}, source="c.yaml")
    text = str(info.value)
    assert text.startswith(f"c.yaml: {message}"), text
    assert "\n" not in text


def test_loader_transforms_are_accepted_where_the_loader_augments() -> None:
    cfg = config_from_dict({"data": {"augment_before_crop": True},
                            "augment": {"pipeline": {"steps": [{"codec": {"kind": "g722"}}]}}})
    assert [leaf.name for leaf in Pipeline(cfg.augment.transforms).loader_leaves()] == ["codec"]
    config_from_dict({"augment": {"mode": "none", "pipeline": {"steps": [{"codec": {"kind": "opus"}}]}}})


def test_dump_round_trips_and_old_configs_dump_unchanged() -> None:
    cfg = config_from_dict({"augment": {"pipeline": TREE}})
    dumped = cfg.to_dict()
    assert "rawboost" not in dumped["augment"]
    assert dumped["augment"]["pipeline"]["steps"][2] == {"clip": {}}
    assert dumped["augment"]["pipeline"]["steps"][0] == {"gain": {"p": 0.5, "db": [-6.0, 6.0]}}
    again = config_from_dict(dumped)
    assert again.to_dict() == dumped
    assert Pipeline(again.augment.transforms).leaf_keys == Pipeline(cfg.augment.transforms).leaf_keys
    # a config without a pipeline dumps exactly as before pipelines existed
    assert config_from_dict({}).to_dict()["augment"] == {"mode": "dual", "rawboost": {"algo": 4}}
    assert config_from_dict({"augment": {"rawboost": {"algo": 2, "P": 5}}}).to_dict()["augment"] == \
        {"mode": "dual", "rawboost": {"algo": 2, "P": 5.0}}


def test_telemetry_rawboost_algo_only_for_rawboost_configs() -> None:
    assert config_from_dict({"augment": {"rawboost": {"algo": 3}}}).augment.rawboost_algo == 3
    assert config_from_dict({"augment": {"mode": "none"}}).augment.rawboost_algo == 0
    assert config_from_dict({"augment": {"pipeline": TREE}}).augment.rawboost_algo is None


# ----------------------------------------------------------------------------------- runtime
@pytest.mark.parametrize("algo", range(9))
def test_rawboost_config_is_a_one_step_pipeline_with_rawboosts_numbers(algo: int) -> None:
    cfg = config_from_dict({"augment": {"rawboost": {"algo": algo}}})
    pipeline = Pipeline(cfg.augment.transforms)
    x = _batch(4, 3000)
    y, mask = pipeline.augment(x, torch.Generator().manual_seed(7))
    assert torch.equal(y, RawBoost(cfg.augment.rawboost)(x, generator=torch.Generator().manual_seed(7)))
    assert mask.tolist() == [1] * 4
    # the loader's call: one utterance, 1-D
    one = pipeline(x[0], torch.Generator().manual_seed(3))
    assert torch.equal(one, RawBoost(cfg.augment.rawboost)(x[0], generator=torch.Generator().manual_seed(3)))


def test_same_seed_same_output_and_mask_and_different_seed_differs() -> None:
    pipeline = Pipeline(parse_pipeline(TREE))
    x = _batch()
    y1, m1 = pipeline.augment(x, torch.Generator().manual_seed(11))
    y2, m2 = Pipeline(parse_pipeline(TREE)).augment(x.clone(), torch.Generator().manual_seed(11))
    assert torch.equal(y1, y2) and torch.equal(m1, m2)
    y3, _ = pipeline.augment(x, torch.Generator().manual_seed(12))
    assert not torch.equal(y1, y3)
    assert torch.equal(x, _batch())  # the input is left alone


def test_mask_follows_the_tree_and_unmasked_rows_are_untouched() -> None:
    pipeline = Pipeline(parse_pipeline(TREE))
    assert pipeline.leaf_names == ("gain", "codec", "speed", "band_drop", "rawboost", "clip")
    x = _batch(64)
    y, mask = pipeline.augment(x, torch.Generator().manual_seed(5))
    bits = torch.stack([(mask >> j) & 1 for j in range(6)], 1).bool()
    assert bits[:, 5].all()  # clip: p = 1, no one_of above
    branch = torch.stack([bits[:, 1], bits[:, 2], bits[:, 4]], 1)
    assert (branch.sum(1) <= 1).all()  # one_of: at most one branch per utterance
    assert torch.equal(bits[:, 2], bits[:, 3])  # a chain's steps go together
    assert 0 < bits[:, 0].sum() < 64 and 0 < branch.any(1).sum() < 64  # the gates do gate
    # replaying the draws with each row alone gives the same rows: rows are independent of each other
    drawn = Pipeline(parse_pipeline(TREE)).draw(64, x.shape[1], torch.Generator().manual_seed(5))
    again, mask_again = pipeline.apply(x, drawn)
    assert torch.equal(again, y) and torch.equal(mask_again, mask)


def test_draws_do_not_depend_on_which_branch_ran() -> None:
    """Leaf draws come in a fixed order: changing one gate's probability (not to 1) changes no
    other leaf's draws, so what one utterance receives never shifts another's randomness."""
    def draws(p_gain: float):
        tree = {"steps": [{"gain": {"p": p_gain}}, {"one_of": {"steps": [{"clip": {}}, {"band_drop": {}}]}}]}
        return Pipeline(parse_pipeline(tree)).draw(32, 100, torch.Generator().manual_seed(0))

    low, high = draws(0.01), draws(0.99)
    assert low.active[0].sum() < high.active[0].sum()
    for a, b in zip(low.draws[1:], high.draws[1:]):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a, b) for a, b in zip(low.active[1:], high.active[1:]))


def test_p_zero_leaves_the_batch_unchanged_and_reports_nothing() -> None:
    pipeline = Pipeline(parse_pipeline({"steps": [{"gain": {"p": 0.0}}], "p": 1.0}))
    x = _batch(8)
    y, mask = pipeline.augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(y, x) and y is not x and mask.tolist() == [0] * 8


def test_a_registered_toy_transform_is_usable_by_name() -> None:
    from dpda.augment.ranges import Range, TransformParams
    from dpda.augment.registry import Transform, register_transform

    class FlipParams(TransformParams):
        scale: Range = [1.0, 1.0]

    register_transform(Transform("toy_flip", "sign flip", FlipParams, lambda p, b, t, g, d, w=None: {},
                                 lambda p, x, drawn: -x))
    try:
        cfg = config_from_dict({"augment": {"pipeline": {"steps": [{"toy_flip": {"p": 1}}]}}})
        x = _batch(2)
        assert torch.equal(Pipeline(cfg.augment.transforms)(x), -x)
    finally:
        TRANSFORMS.pop("toy_flip")


# ------------------------------------------------------------------------------- loader path
def test_loader_path_runs_cpu_codecs_per_utterance_deterministically(tmp_path: Path) -> None:
    corpus = write_separable_corpus(tmp_path)
    manifest = load_manifest([f"csv:{corpus}/train.csv"], "fail", "data.train")
    tree = {"steps": [{"one_of": {"steps": [{"codec": {"kind": "g722"}}, {"codec": {"kind": "mp3"}}]}},
                      {"gain": {"db": [-3, 3]}}]}
    cfg = config_from_dict({"data": {"augment_before_crop": True}, "augment": {"pipeline": tree}})

    def item(i: int):
        data = AudioDataset(manifest, length=4000, train=True, seed=3, augment=Pipeline(cfg.augment.transforms))
        return data[i]

    wave, aug, mask, _, _ = item(5)
    assert aug.shape == wave.shape and not torch.equal(aug, wave)
    assert mask.dtype == torch.int64 and mask.item() in (0b101, 0b110)  # one codec, then gain (p = 1)
    assert all(torch.equal(a, b) for a, b in zip(item(5), item(5)))
    # DataLoader workers get a pickled copy: it augments the same
    pipeline = Pipeline(cfg.augment.transforms)
    x = _batch(1, 4000)[0]
    copy = pickle.loads(pickle.dumps(pipeline))
    assert torch.equal(copy(x, torch.Generator().manual_seed(2)), pipeline(x, torch.Generator().manual_seed(2)))


# ------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("before_crop", [False, True])
def test_dual_path_training_with_a_chain_and_one_of_pipeline(tmp_path: Path, before_crop: bool) -> None:
    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    raw = demo_dict(corpus, epochs=1, max_steps_per_epoch=3)
    raw["data"]["augment_before_crop"] = before_crop
    codec = "g722" if before_crop else "mulaw"
    raw["augment"] = {"mode": "dual", "pipeline": {"steps": [
        {"one_of": {"p": 0.9, "steps": [{"codec": {"kind": codec}}, {"speed": {}}, {"rawboost": {"algo": 3}}]}},
        {"chain": {"p": 0.5, "steps": [{"band_drop": {}}, {"gain": {}}]}},
    ]}}

    def run(name: str) -> Trainer:
        trainer = Trainer(config_from_dict(raw), tmp_path / name, progress=False)
        trainer.fit()
        return trainer

    trainer, _ = run("a"), run("b")

    steps = [pd.read_parquet(tmp_path / n / "telemetry" / "steps", columns=["step", "cos", "loss_aug", "rawboost_algo"])
             for n in ("a", "b")]
    assert len(steps[0]) == 3 and steps[0]["rawboost_algo"].isna().all()
    pd.testing.assert_frame_equal(steps[0], steps[1])  # deterministic under the seed
    # the last batch's mask: from the loader (one item each) or from the device pipeline
    assert trainer.augment_mask.shape == (8,) and (trainer.augment_mask < 1 << 5).all()
    # telemetry: each step's counts sum over its utterances' leaves, the combos cover the batch
    written = pd.read_parquet(tmp_path / "a" / "telemetry" / "steps", columns=["augment_counts", "augment_combos"])
    leaves = pd.read_parquet(tmp_path / "a" / "telemetry" / "attempts")["augment_leaves"].iloc[0].tolist()
    assert leaves == ["pipeline.steps[0].one_of.steps[0].codec", "pipeline.steps[0].one_of.steps[1].speed",
                      "pipeline.steps[0].one_of.steps[2].rawboost", "pipeline.steps[1].chain.steps[0].band_drop",
                      "pipeline.steps[1].chain.steps[1].gain"]
    for counts, combos in zip(written["augment_counts"], written["augment_combos"]):
        assert sum(c["n"] for c in combos) == 8  # every utterance of the batch, once
        bits = [sum(c["n"] for c in combos if c["mask"] >> j & 1) for j in range(len(leaves))]
        assert list(counts) == bits
        # one_of: at most one of the first three leaves; the chain's two leaves together or not at all
        assert all(bin(c["mask"] & 0b111).count("1") <= 1 and (c["mask"] >> 3) in (0, 3) for c in combos)
    last = written["augment_combos"].iloc[-1]
    assert sorted(trainer.augment_mask.tolist()) == sorted(c["mask"] for c in last for _ in range(c["n"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_and_cpu_results_agree_given_the_same_draws() -> None:
    """The same draws (from one CPU generator, moved) applied on CUDA and on the CPU agree."""
    # the codecs first: quantising a 1-ulp difference could move a sample by a whole code step
    tree = {"steps": [{"one_of": {"steps": [
        {"codec": {"kind": "mulaw"}}, {"codec": {"kind": "alaw"}}, {"speed": {"range": [0.9, 1.1]}},
        {"band_drop": {}}, {"rawboost": {"algo": 4}}]}}, {"gain": {"p": 0.7}}, {"clip": {"fraction": [0.5, 1.0]}}]}
    x = _batch(32, 16000)
    cpu, gpu = Pipeline(parse_pipeline(tree)), Pipeline(parse_pipeline(tree))
    y_cpu, m_cpu = cpu.apply(x, cpu.draw(32, 16000, torch.Generator().manual_seed(1), "cpu"))
    y_gpu, m_gpu = gpu.apply(x.cuda(), gpu.draw(32, 16000, torch.Generator().manual_seed(1), "cuda"))
    assert y_gpu.device.type == "cuda" and torch.equal(m_gpu.cpu(), m_cpu)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
