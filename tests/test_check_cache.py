"""Corpus checks once per corpus (dpda.data.check_cache): a verdict is found again by the
fingerprint of the manifest and the files' sizes and mtimes, in this process (trusted from a
driver) or on disk, and means the same as a fresh check; a changed file is checked again."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from dpda.data import check, check_cache
from dpda.data.corpora import load_manifest
from dpda.errors import UserError


@pytest.fixture()
def decodes(monkeypatch, tmp_path):
    """A fresh cache dir and nothing trusted; returns the list of specs whose files were decoded."""
    monkeypatch.setenv("DPDA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(check_cache, "_TRUSTED", {})
    seen: list[str] = []
    real = check.inspect_manifest

    def counted(manifest, *args, **kwargs):
        seen.append(manifest.attrs["spec"])
        return real(manifest, *args, **kwargs)

    monkeypatch.setattr(check, "inspect_manifest", counted)
    return seen


def corpus(root, bad: bool = False):
    """A CSV corpus of 4 good files, plus one with a NaN sample when `bad`."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,utt"]
    for i in range(4):
        sf.write(root / f"{i}.wav", np.random.default_rng(i).uniform(-0.3, 0.3, 1600), 16000, subtype="FLOAT")
        rows.append(f"{i}.wav,{'bonafide' if i % 2 else 'spoof'},u{i}")
    if bad:
        wave = np.zeros(1600)
        wave[5] = np.nan
        sf.write(root / "nan.wav", wave, 16000, subtype="FLOAT")
        rows.append("nan.wav,spoof,u_nan")
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return f"csv:{root}/list.csv"


def test_a_corpus_is_decoded_once_then_found_by_fingerprint(decodes, tmp_path):
    spec = corpus(tmp_path / "c")
    first = load_manifest([spec], "fail", "train")
    again = load_manifest([spec], "fail", "train")
    assert decodes == [spec]
    assert again.equals(first)
    # a new process finds the verdict on disk
    check_cache._TRUSTED.clear()
    load_manifest([spec], "fail", "train")
    assert decodes == [spec]
    assert len(list(check_cache.cache_dir().glob("*.json"))) == 1


def test_a_changed_file_is_checked_again(decodes, tmp_path):
    spec = corpus(tmp_path / "c")
    load_manifest([spec], "skip", "train")
    path = tmp_path / "c" / "2.wav"
    wave = np.zeros(1600)
    wave[3] = np.inf
    sf.write(path, wave, 16000, subtype="FLOAT")  # same size: the mtime tells
    os.utime(path, ns=(1, 1))
    kept = load_manifest([spec], "skip", "train")
    assert decodes == [spec, spec]
    assert "u2" not in set(kept["utt"]) and len(kept) == 3


def test_a_file_swapped_for_a_link_outside_the_root_is_checked_again(decodes, tmp_path):
    """os.stat follows links: the same size, time and mode could hide that a file now lives
    outside the corpus root, which the check refuses. The resolved path is in the fingerprint."""
    spec = corpus(tmp_path / "c")
    load_manifest([spec], "fail", "train")
    path, elsewhere = tmp_path / "c" / "1.wav", tmp_path / "elsewhere.wav"
    stamp = path.stat()
    os.replace(path, elsewhere)
    os.utime(elsewhere, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    path.symlink_to(elsewhere)
    now = os.stat(path)
    assert (now.st_size, now.st_mtime_ns, now.st_mode) == (stamp.st_size, stamp.st_mtime_ns, stamp.st_mode)
    with pytest.raises(UserError, match="outside_root"):
        load_manifest([spec], "fail", "train")
    assert decodes == [spec, spec]


def test_trusted_verdicts_mean_what_a_fresh_check_means(decodes, tmp_path):
    spec = corpus(tmp_path / "c", bad=True)
    verdicts = check_cache.check_config_corpora({"data": {"train": [spec], "dev": [spec], "check": "skip"}})
    assert decodes == [spec] and len(verdicts) == 1  # listed twice, checked once
    (raw,) = verdicts.values()
    assert json.loads(json.dumps(raw)) == raw  # travels with a trial's parameters
    # a rank on another node: empty disk cache, the driver's verdicts only
    check_cache._TRUSTED.clear()
    for f in check_cache.cache_dir().glob("*.json"):
        f.unlink()
    check_cache.trust(verdicts)
    skipped = load_manifest([spec], "skip", "train")
    assert decodes == [spec]
    assert sorted(skipped["utt"]) == ["u0", "u1", "u2", "u3"]
    with pytest.raises(UserError) as cached:
        load_manifest([spec], "fail", "train")
    with pytest.raises(UserError) as fresh:
        check.check_manifest(_load(spec))
    assert str(cached.value) == str(fresh.value)
    assert decodes == [spec, spec]  # the second: the fresh check just above


def _load(spec):
    from dpda.data.readers import load_corpus

    return load_corpus(spec)
