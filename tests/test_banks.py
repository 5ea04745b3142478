"""Noise and RIR banks: the layouts become an index (headers only), the index goes through the
corpus check and its verdict cache at 16 kHz, the sampler reads exactly the frames it draws
(memory bounded by the batch, not the bank), draws are deterministic under the seed, and the
offline builder writes the same bytes for the same seed."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import dpda.data.bank_sampler as bank_sampler
from dpda.cli import main
from dpda.data import check_cache
from dpda.data.bank_builder import write_banks
from dpda.data.bank_config import BankSizes
from dpda.data.bank_sampler import BankSampler, read_span
from dpda.data.banks import index_bank, is_bank_spec, load_bank
from dpda.errors import UserError

SR = 16_000
TINY = BankSizes(seed=3, noise=3, music=2, speech=3, rooms=1, rirs_per_room=2, min_seconds=1.0, max_seconds=2.0)


@pytest.fixture(scope="module")
def banks(tmp_path_factory) -> dict[str, str]:
    return write_banks(tmp_path_factory.mktemp("banks"), TINY)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "README.txt"}


# --------------------------------------------------------------------------------------------
# The builder and the layouts


def test_the_builder_is_deterministic_under_the_seed(tmp_path, banks):
    root = Path(banks["noise"].partition(":")[2]).parent
    again = write_banks(tmp_path / "a", TINY)
    assert _files(Path(again["noise"].partition(":")[2]).parent) == _files(root)
    other = write_banks(tmp_path / "b", BankSizes(**{**TINY.__dict__, "seed": 4}))
    assert _files(Path(other["noise"].partition(":")[2]).parent) != _files(root)
    with pytest.raises(UserError, match="already exists"):
        write_banks(tmp_path / "a", TINY)


def test_musan_layout_indexes_each_folder_as_a_category_from_headers(banks):
    bank = index_bank(banks["noise"])
    assert bank.groupby("category", sort=False).size().to_dict() == {"noise": 3, "music": 2, "speech": 3}
    assert (bank["sample_rate"] == SR).all()
    assert (bank["frames"] >= SR).all() and (bank["frames"] <= 2 * SR).all()
    assert set(bank["group"]) == {"synthetic"}
    assert all(sf.info(p).frames == n for p, n in zip(bank["path"], bank["frames"]))
    assert is_bank_spec(banks["noise"]) and is_bank_spec(banks["rirs"])


def test_rirs_layout_reads_kaldis_rir_lists_with_their_lines(banks):
    bank = index_bank(banks["rirs"])
    assert bank["category"].tolist() == ["smallroom"] * 2 + ["mediumroom"] * 2 + ["largeroom"] * 2
    assert bank["source_file"].str.endswith("rir_list").all() and bank["source_line"].tolist() == [1, 2] * 3
    assert bank["group"].iloc[0] == "smallroom-Room001"
    peaks = [int(np.argmax(np.abs(sf.read(p)[0]))) for p in bank["path"]]
    assert all(sf.read(p)[0][k] == 1.0 for p, k in zip(bank["path"], peaks))  # the direct path


def test_real_rirs_are_read_from_their_list_and_their_first_channel(tmp_path):
    real = tmp_path / "RIRS_NOISES" / "real_rirs_isotropic_noises"
    real.mkdir(parents=True)
    two = np.stack([np.r_[0.0, 1.0, 0.5, 0.25], np.r_[0.9, 0.0, 0.0, 0.0]], axis=1).astype(np.float32)
    sf.write(real / "air_a.wav", two, SR, subtype="FLOAT")
    (real / "rir_list").write_text(
        "--rir-id air_a --room-id air RIRS_NOISES/real_rirs_isotropic_noises/air_a.wav\n")
    bank, _ = load_bank(f"rirs:{tmp_path}")
    assert bank["category"].tolist() == ["real"]
    rir, lengths = BankSampler(bank).rirs(torch.Generator().manual_seed(0), 2)
    assert lengths.tolist() == [4, 4]
    assert rir[0].tolist() == [0.0, 1.0, 0.5, 0.25]


def test_a_csv_bank_has_path_and_category_and_is_not_a_corpus(tmp_path):
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", np.full(800, 0.1, np.float32), SR)
    (tmp_path / "bank.csv").write_text("path,category\na.wav,hum\nb.wav,\n")
    bank = index_bank(f"csv:{tmp_path / 'bank.csv'}")
    assert bank["category"].tolist() == ["hum", "-"] and (bank["frames"] == 800).all()
    assert is_bank_spec(f"csv:{tmp_path / 'bank.csv'}")
    (tmp_path / "corpus.csv").write_text("path,label\na.wav,bonafide\n")
    assert not is_bank_spec(f"csv:{tmp_path / 'corpus.csv'}")
    (tmp_path / "bad.csv").write_text("path,category\na.wav,hum,extra\n")
    with pytest.raises(UserError, match=r"bad\.csv:2: expected 2 fields"):
        index_bank(f"csv:{tmp_path / 'bad.csv'}")


def test_a_malformed_rir_list_line_is_named(tmp_path):
    room = tmp_path / "RIRS_NOISES" / "simulated_rirs" / "smallroom"
    room.mkdir(parents=True)
    (room / "rir_list").write_text("--rir-id a --room-id r x.wav\n--room-id r y.wav\n")
    with pytest.raises(UserError, match=r"smallroom/rir_list:2: expected '--rir-id"):
        index_bank(f"rirs:{tmp_path}")


# --------------------------------------------------------------------------------------------
# Checks: one line naming the file, exit != 0 from dpda check


def test_an_empty_bank_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "noise").mkdir()
    assert main(["check", f"musan:{tmp_path}"]) == 2
    out = capsys.readouterr().out
    assert f"error: bank musan:{tmp_path}: no audio files under {tmp_path}" in out
    with pytest.raises(UserError, match="no audio files"):
        load_bank(f"musan:{tmp_path}")
    assert main(["check", f"musan:{tmp_path / 'nowhere'}"]) == 2


def _musan(tmp_path: Path) -> Path:
    folder = tmp_path / "musan" / "noise" / "x"
    folder.mkdir(parents=True)
    sf.write(folder / "good.wav", np.full(1600, 0.1, np.float32), SR)
    return tmp_path / "musan"


@pytest.mark.parametrize("problem", ["8 kHz", "unreadable", "outside the root"])
def test_a_bad_bank_file_is_one_line_naming_it_and_exit_1(tmp_path, capsys, problem):
    root = _musan(tmp_path)
    bad = root / "noise" / "x" / "bad.wav"
    if problem == "8 kHz":
        sf.write(bad, np.full(800, 0.1, np.float32), 8000)
        expected = f"{bad}: implausible_sample_rate: {bad}: sample rate 8000 Hz, expected 16000 Hz"
    elif problem == "unreadable":
        bad.write_bytes(b"RIFF not audio at all")
        expected = f"{bad}: unreadable_audio: {bad}: "
    else:
        outside = tmp_path / "elsewhere.wav"
        sf.write(outside, np.full(1600, 0.1, np.float32), SR)
        os.symlink(outside, bad)
        expected = f"{bad}: outside_root: {bad} resolves outside the corpus root {root}"
    assert main(["check", f"musan:{root}"]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "bad.wav" in line]
    assert len(lines) == 1 and lines[0].strip().startswith(expected), out
    with pytest.raises(UserError, match="check failed"):
        load_bank(f"musan:{root}")
    kept, verdict = load_bank(f"musan:{root}", policy="skip")
    assert kept["path"].tolist() == [str(root / "noise" / "x" / "good.wav")] and verdict.bad_rows == (0,)  # bad.wav sorts first


def test_a_bank_is_checked_once_then_its_verdict_is_cached(tmp_path, monkeypatch):
    root = _musan(tmp_path)
    load_bank(f"musan:{root}")
    calls = []
    monkeypatch.setattr(check_cache, "check_manifest", lambda *a, **k: calls.append(1))
    bank, verdict = load_bank(f"musan:{root}")
    assert calls == [] and len(bank) == 1 and verdict.bad_rows == ()
    # the same files as a corpus at 8-48 kHz are another check (the rates are in the fingerprint)
    assert check_cache.fingerprint(bank) != check_cache.fingerprint(bank, (SR, SR))


# --------------------------------------------------------------------------------------------
# The sampler


def test_noise_draws_are_deterministic_and_categories_filter(banks):
    bank, _ = load_bank(banks["noise"])
    sampler = BankSampler(bank, "noise bank")
    a = sampler.noise(torch.Generator().manual_seed(7), 5, 24_000, category="music")
    b = sampler.noise(torch.Generator().manual_seed(7), 5, 24_000, category="music")
    c = sampler.noise(torch.Generator().manual_seed(8), 5, 24_000, category="music")
    assert a.dtype == torch.float32 and a.shape == (5, 24_000)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(sampler.rows(["noise", "music"])) == 5
    with pytest.raises(UserError, match="no category 'babble' \\(has music, noise, speech\\)"):
        sampler.noise(torch.Generator(), 2, 100, category="babble")


def test_read_span_wraps_and_tiles_like_the_whole_file_repeated(tmp_path):
    wave = np.arange(1, 101, dtype=np.float32) / 200
    sf.write(tmp_path / "n.wav", wave, SR, subtype="FLOAT")
    path = str(tmp_path / "n.wav")
    np.testing.assert_array_equal(read_span(path, 100, 90, 30), wave[(90 + np.arange(30)) % 100])  # wraps
    np.testing.assert_array_equal(read_span(path, 100, 10, 250), wave[(10 + np.arange(250)) % 100])  # tiles
    np.testing.assert_array_equal(read_span(path, 100, 0, 100), wave)


def _count_reads(monkeypatch) -> list[int]:
    frames: list[int] = []
    real = sf.read

    def counting(*args, **kwargs):
        data, rate = real(*args, **kwargs)
        frames.append(data.shape[0])
        return data, rate

    monkeypatch.setattr(bank_sampler.sf, "read", counting)
    return frames


def test_only_the_drawn_frames_are_read(tmp_path, monkeypatch):
    folder = tmp_path / "musan" / "noise"
    folder.mkdir(parents=True)
    for k in range(3):
        sf.write(folder / f"long{k}.wav", np.zeros(50_000, np.float32), SR)
    bank, _ = load_bank(f"musan:{tmp_path / 'musan'}")
    frames = _count_reads(monkeypatch)
    BankSampler(bank).noise(torch.Generator().manual_seed(0), 16, 16_000)
    assert sum(frames) == 16 * 16_000 and len(frames) <= 32  # at most two seeks per utterance


def test_babble_sums_between_low_and_high_speech_files(banks, monkeypatch):
    bank, _ = load_bank(banks["noise"])
    sampler = BankSampler(bank)
    frames = _count_reads(monkeypatch)
    mix = sampler.babble(torch.Generator().manual_seed(1), 8, 8000, count=(2, 3))
    files = sum(frames) // 8000  # each file's 8000 frames, in one read or two (wrapping)
    assert sum(frames) % 8000 == 0 and 8 * 2 <= files <= 8 * 3 and len(frames) <= 2 * files
    one = sampler.babble(torch.Generator().manual_seed(1), 8, 8000, count=(1, 1))
    assert mix.shape == one.shape == (8, 8000) and mix.pow(2).mean() > one.pow(2).mean()
    assert torch.equal(mix, sampler.babble(torch.Generator().manual_seed(1), 8, 8000, count=(2, 3)))
    with pytest.raises(UserError, match="babble count"):
        sampler.babble(torch.Generator(), 2, 100, count=(3, 2))


def test_rirs_come_zero_padded_to_the_longest_with_their_lengths(banks):
    bank, _ = load_bank(banks["rirs"])
    rir, lengths = BankSampler(bank).rirs(torch.Generator().manual_seed(2), 6)
    assert rir.shape == (6, int(lengths.max()))
    for b, n in enumerate(lengths.tolist()):
        assert rir[b, n:].abs().sum() == 0 and rir[b, :n].abs().max() == 1.0
    cut, cut_lengths = BankSampler(bank).rirs(torch.Generator().manual_seed(2), 6, max_frames=500)
    assert cut.shape == (6, 500) and torch.equal(cut, rir[:, :500]) and (cut_lengths == 500).all()


def test_a_10000_file_bank_is_indexed_and_sampled_without_loading_it(tmp_path, monkeypatch):
    folder = tmp_path / "musan" / "noise" / "many"
    folder.mkdir(parents=True)
    sf.write(folder / "n00000.wav", np.full(200, 0.1, np.float32), SR)
    data = (folder / "n00000.wav").read_bytes()
    for k in range(1, 10_000):
        (folder / f"n{k:05d}.wav").write_bytes(data)
    frames = _count_reads(monkeypatch)
    bank = index_bank(f"musan:{tmp_path / 'musan'}")
    assert len(bank) == 10_000 and frames == []  # headers only
    sampler = BankSampler(bank)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    noise = sampler.noise(torch.Generator().manual_seed(0), 32, 64_000)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    assert noise.shape == (32, 64_000)
    assert len(frames) == 32 and sum(frames) == 32 * 200  # each drawn file read once, whole (tiled)
    assert peak < 3 * noise.numel() * 4  # the batch and its per-utterance rows, not the bank (2 MB of audio)


def test_dpda_banks_writes_checkable_banks_and_prints_their_specs(tmp_path, capsys):
    sizes = ["--noise", "2", "--music", "1", "--speech", "1", "--rooms", "1", "--rirs-per-room", "1",
             "--min-seconds", "1", "--max-seconds", "1"]
    assert main(["-q", "banks", str(tmp_path), *sizes]) == 0
    out = capsys.readouterr().out
    specs = [line.split()[1] for line in out.splitlines()]
    assert specs == [f"musan:{tmp_path / 'musan'}", f"rirs:{tmp_path / 'RIRS_NOISES'}"]
    assert main(["check", *specs]) == 0
    out = capsys.readouterr().out
    assert "noise: 2, music: 1, speech: 1" in out and "smallroom: 1, mediumroom: 1, largeroom: 1" in out
    assert main(["banks", str(tmp_path / "x"), "--noise", "-1"]) != 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--noise: must be >= 0, got -1")
