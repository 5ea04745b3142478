"""Corpus checks once per corpus (dpda.data.check_cache): a verdict is found again by the
fingerprint of the manifest and the files' stat stamps, in this process (trusted from a
driver) or on disk, and means the same as a fresh check; a changed file is checked again, even
one touched back to its old time, and a cache entry that is not a valid verdict is a miss."""

from __future__ import annotations

import json
import os
import time

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


def _rewrite_keeping_size_and_mtime(path, before: os.stat_result) -> None:
    """What `cp other.wav path; touch -d @old path` does: new samples, same size, old times.
    Repeated until the kernel's (coarse) change time has moved on, so the case is the one meant."""
    wave = np.zeros(1600)
    wave[3] = np.inf
    while True:
        sf.write(path, wave, 16000, subtype="FLOAT")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        now = os.stat(path)
        if now.st_ctime_ns != before.st_ctime_ns:
            break
        time.sleep(0.005)
    assert (now.st_size, now.st_mtime_ns, now.st_mode) == (before.st_size, before.st_mtime_ns, before.st_mode)


@pytest.mark.parametrize("new_process", [False, True], ids=["same_process", "disk_cache"])
def test_a_file_rewritten_at_the_same_size_and_mtime_is_checked_again(decodes, tmp_path, new_process):
    """`touch -d` sets the modification time back; it cannot set back the change time."""
    spec = corpus(tmp_path / "c")
    load_manifest([spec], "fail", "train")
    path = tmp_path / "c" / "2.wav"
    _rewrite_keeping_size_and_mtime(path, os.stat(path))
    if new_process:
        check_cache._TRUSTED.clear()
    with pytest.raises(UserError, match=r"2.wav: NaN or Inf"):
        load_manifest([spec], "fail", "train")
    assert decodes == [spec, spec]


def _valid_entry(spec) -> tuple[str, dict]:
    from dpda.data.readers import load_corpus

    verdict = check_cache.verdict_for(load_corpus(spec))
    check_cache._TRUSTED.clear()
    return verdict.fingerprint, verdict.to_dict()


_BAD_ENTRIES = {
    "a_list": lambda good: [good],
    "null": lambda good: None,
    "counts_a_list": lambda good: {**good, "counts": []},
    "bad_rows_a_string": lambda good: {**good, "bad_rows": "12"},
    "bad_rows_floats": lambda good: {**good, "bad_rows": [1.5]},
    "bad_row_out_of_range": lambda good: {**good, "bad_rows": [99]},
    "negative_bad_row": lambda good: {**good, "bad_rows": [-1]},
    "total_a_string": lambda good: {**good, "total": "4"},
    "total_not_the_corpus": lambda good: {**good, "total": 7},
    "report_a_number": lambda good: {**good, "report": 5},
    "spec_a_dict": lambda good: {**good, "spec": {}},
    "another_fingerprint": lambda good: {**good, "fingerprint": "0" * 64},
    "missing_field": lambda good: {k: v for k, v in good.items() if k != "counts"},
    "extra_field": lambda good: {**good, "clean": True},
}


@pytest.mark.parametrize("name", sorted(_BAD_ENTRIES))
def test_a_wrong_typed_cache_entry_is_a_miss_and_is_overwritten(decodes, tmp_path, name):
    spec = corpus(tmp_path / "c", bad=True)
    key, good = _valid_entry(spec)
    entry = check_cache.cache_dir() / f"{key}.json"
    entry.write_text(json.dumps(_BAD_ENTRIES[name](good)), encoding="utf-8")
    kept = load_manifest([spec], "skip", "train")
    assert decodes == [spec, spec]  # the entry was not trusted: checked again
    assert sorted(kept["utt"]) == ["u0", "u1", "u2", "u3"]
    assert json.loads(entry.read_text(encoding="utf-8")) == good  # and overwritten
    check_cache._TRUSTED.clear()
    load_manifest([spec], "skip", "train")
    assert decodes == [spec, spec]


@pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8", b"{\"fingerprint\": ", b"[1, 2"])
def test_an_unreadable_cache_entry_is_a_miss(decodes, tmp_path, raw):
    spec = corpus(tmp_path / "c")
    key, good = _valid_entry(spec)
    (check_cache.cache_dir() / f"{key}.json").write_bytes(raw)
    load_manifest([spec], "fail", "train")
    assert decodes == [spec, spec]
    assert json.loads((check_cache.cache_dir() / f"{key}.json").read_text()) == good
