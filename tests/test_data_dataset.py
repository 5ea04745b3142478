"""AudioDataset and make_loader: shapes, reproducible crops, worker-count independence,
bad-file substitution."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DistributedSampler

from dpda.data.dataset import AudioDataset, make_loader
from dpda.data.manifest import make_manifest
from dpda.errors import UserError


def _corpus(tmp_path, n=6, seconds=(0.5, 1.5)):
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        length = int(16000 * (seconds[0] + (seconds[1] - seconds[0]) * i / max(n - 1, 1)))
        p = tmp_path / f"{i}.wav"
        sf.write(p, rng.uniform(-0.5, 0.5, length), 16000, subtype="PCM_16")
        paths.append(str(p))
        labels.append("bonafide" if i % 2 else "spoof")
    return make_manifest({
        "utt": [f"u{i}" for i in range(n)], "path": paths, "label": labels, "corpus": ["t"] * n,
        "subset": ["train"] * n, "source_file": ["list.csv"] * n, "source_line": list(range(2, n + 2)),
    })


def test_items_shape_dtype_and_eval_crop_from_start(tmp_path):
    m = _corpus(tmp_path)
    ds = AudioDataset(m, length=12000, train=False, seed=0)
    wave, target, index = ds[5]
    assert wave.shape == (12000,) and wave.dtype == torch.float32
    assert target.dtype == torch.int64 and int(target) == 1 and int(index) == 5
    from dpda.data.audio import load_audio
    assert torch.equal(wave, load_audio(m["path"][5])[:12000])
    assert torch.equal(ds[5][0], wave)
    ds.set_epoch(3)
    assert torch.equal(ds[5][0], wave)  # eval crops do not depend on the epoch


def test_train_crops_depend_on_seed_epoch_index_only(tmp_path):
    m = _corpus(tmp_path)
    a, b = AudioDataset(m, 4000, train=True, seed=7), AudioDataset(m, 4000, train=True, seed=7)
    first = a[4][0]
    assert torch.equal(first, b[4][0])
    a.set_epoch(1)
    assert not torch.equal(a[4][0], first)
    a.set_epoch(0)
    assert torch.equal(a[4][0], first)
    assert not torch.equal(AudioDataset(m, 4000, train=True, seed=8)[4][0], first)


def test_loader_batches_identical_for_any_worker_count(tmp_path):
    m = _corpus(tmp_path, n=8)
    def run(workers):
        ds = AudioDataset(m, 6000, train=True, seed=1)
        loader = make_loader(ds, batch_size=3, shuffle=True, num_workers=workers, seed=5, drop_last=False)
        out = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            out += [(w.clone(), t.clone(), i.clone()) for w, t, i in loader]
        return out
    r0, r2 = run(0), run(2)
    assert len(r0) == 6 and [b[0].shape for b in r0[:3]] == [(3, 6000), (3, 6000), (2, 6000)]
    for (w0, t0, i0), (w2, t2, i2) in zip(r0, r2):
        assert torch.equal(w0, w2) and torch.equal(t0, t2) and torch.equal(i0, i2)
    assert sorted(torch.cat([b[2] for b in r0[:3]]).tolist()) == list(range(8))
    assert torch.cat([b[2] for b in r0[:3]]).tolist() != torch.cat([b[2] for b in r0[3:]]).tolist()


def test_loader_accepts_distributed_sampler(tmp_path):
    m = _corpus(tmp_path, n=8)
    ds = AudioDataset(m, 2000)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(0)
        seen += [int(i) for _, _, idx in make_loader(ds, 2, shuffle=True, seed=0, sampler=sampler) for i in idx]
    assert sorted(seen) == list(range(8))


def test_bad_file_is_substituted_counted_and_logged_once(tmp_path, caplog):
    """Training substitutes the next readable row; evaluation never does (a score must belong to
    its own file), it names the file."""
    m = _corpus(tmp_path)
    (tmp_path / "2.wav").write_bytes(b"corrupted")
    with pytest.raises(UserError, match=r"2\.wav: cannot read audio .*unreadable after the check"):
        AudioDataset(m, 3000, train=False)[2]
    ds = AudioDataset(m, 3000, train=True)
    with caplog.at_level(logging.WARNING, logger="dpda.data.dataset"):
        w, t, i = ds[2]
        again = ds[2]
    assert int(i) == 3 and int(t) == 1  # the next readable row, reported by its own index
    assert torch.equal(again[0], w) and int(again[2]) == 3
    assert ds.failures[str(tmp_path / "2.wav")] == 1
    assert sum("2.wav" in r.getMessage() for r in caplog.records) == 1
    batches = list(make_loader(ds, batch_size=6, shuffle=False, num_workers=2, seed=0))
    assert batches[0][2].tolist() == [0, 1, 3, 3, 4, 5]


def test_all_bad_and_unknown_labels_raise(tmp_path):
    m = _corpus(tmp_path, n=2)
    for p in m["path"]:
        open(p, "wb").write(b"x")
    with pytest.raises(UserError, match="none of the 2 audio files"):
        AudioDataset(m, 100, train=True)[0]
    m.loc[1, "label"], m.loc[1, "target"] = "maybe", -1
    with pytest.raises(UserError, match="list.csv:3: unknown label 'maybe'"):
        AudioDataset(m, 100)
