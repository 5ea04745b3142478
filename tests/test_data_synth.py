"""Synthetic corpus: read back through the real readers, determinism, attack properties, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dpda.cli import main
from dpda.data import synth as S
from dpda.data.check import check_manifest
from dpda.data.readers import load_corpus
from dpda.errors import UserError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "README.txt"}


def test_reader_sees_what_was_written(synth_corpus):
    cfg, counts = synth_corpus["config"], synth_corpus["counts"]
    speakers = {}
    for split in ("train", "dev", "eval"):
        m = load_corpus(synth_corpus["specs"][split])
        assert len(m) == getattr(cfg, split)
        assert m["attack"].value_counts().to_dict() == counts[split]
        assert ((m["attack"] == "-") == (m["label"] == "bonafide")).all()
        assert (m["target"] == (m["label"] == "bonafide").astype(int)).all()
        speakers[split] = set(m["speaker"])
        result = check_manifest(m, policy="fail")  # every file exists, decodes, is finite
        assert result.ok and result.audio["sample_rates"] == {16000: len(m)}
        durations = [sf.info(p).frames / 16000 for p in m["path"]]
        assert cfg.min_seconds - 1e-3 <= min(durations) and max(durations) <= cfg.max_seconds + 1e-3
    assert set(counts["train"]) == {"-", *S.TRAIN_ATTACKS} and set(counts["dev"]) == {"-", *S.TRAIN_ATTACKS}
    assert set(counts["eval"]) == {"-", *S.EVAL_ATTACKS}
    assert not (speakers["train"] & speakers["dev"]) and not (speakers["dev"] & speakers["eval"])
    assert not (speakers["train"] & speakers["eval"])
    itw = load_corpus(synth_corpus["specs"]["itw"])
    assert len(itw) == cfg.itw and (itw["label"] == "bonafide").sum() == counts["itw"]["-"]
    assert check_manifest(itw).ok
    readme = (synth_corpus["root"] / "README.txt").read_text()
    assert synth_corpus["specs"]["train"] in readme and "A19" in readme


def test_same_seed_same_bytes_other_seed_differs(synth_corpus, tmp_path):
    cfg = synth_corpus["config"]
    again = S.write_synthetic_corpus(tmp_path / "again", cfg, workers=2)  # fixture ran serially
    assert _files(again.root) == _files(synth_corpus["root"])
    small = cfg.model_copy(update={"train": 3, "dev": 0, "eval": 0, "itw": 0})
    a = _files(S.write_synthetic_corpus(tmp_path / "a", small, workers=0).root)
    b = _files(S.write_synthetic_corpus(tmp_path / "b", small.model_copy(update={"seed": cfg.seed + 1}), workers=0).root)
    audio = [k for k in a if k.endswith(".flac")]
    assert len(audio) == 3 and not set(audio) & set(b)  # new ids, new audio


def _spectrum_db(wave: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(wave, 512, 128, window=torch.hann_window(512), return_complex=True).abs().pow(2).mean(-1)
    return 10 * torch.log10(spec[..., 4:220] + 1e-10)  # 125 Hz - 6.9 kHz


def test_attacks_are_subtle_but_real():
    """Every attack keeps the long-term spectrum close to the clean rendition (correlation of
    dB spectra) while changing the waveform; bona fide voices differ much more among speakers."""
    gen = torch.Generator().manual_seed(0)
    spk = S.draw_speakers(4, gen)
    lengths = torch.full((4,), 12000)
    p = S.draw_utterances(spk, torch.arange(4), lengths, gen)
    clean = S.render(p, gen)
    assert torch.isfinite(clean).all() and clean.abs().max() < 1
    ref = _spectrum_db(clean)
    for attack in S.ATTACKS:
        out = S._normalise(S._ATTACK_FNS[attack](clean, p, torch.Generator().manual_seed(1)), lengths)
        assert out.shape == clean.shape and torch.isfinite(out).all()
        assert (out - clean).pow(2).mean() > 1e-6 * clean.pow(2).mean(), attack
        spec = _spectrum_db(out)
        for i in range(4):
            corr = np.corrcoef(ref[i].numpy(), spec[i].numpy())[0, 1]
            assert corr > 0.8, (attack, i, corr)


def test_voices_vary():
    gen = torch.Generator().manual_seed(2)
    spk = S.draw_speakers(32, gen)
    assert spk["female"].any() and (~spk["female"]).any()
    assert spk["f0"].max() / spk["f0"].min() > 2


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "syn"
    args = ["synth", str(out), "--seed", "3", "--train", "2", "--dev", "1", "--eval", "2", "--itw", "1",
            "--min-seconds", "0.3", "--max-seconds", "0.5", "--processes", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"asvspoof2019:{out / 'LA'}:train" in text and f"itw:{out / 'itw'}" in text
    assert len(load_corpus(f"asvspoof2019:{out}/LA:eval")) == 2
    assert main(args) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert main(["synth", str(tmp_path / "x"), "--bonafide-fraction", "1.5"]) == 2
    assert main(["check", f"asvspoof2019:{out}/LA:train", f"itw:{out}/itw"]) == 0


@pytest.mark.parametrize(("options", "line"), [
    ({"bonafide_fraction": 1.5}, "synth: --bonafide-fraction: must be in (0, 1), got 1.5"),
    ({"train": -1}, "synth: --train: must be >= 0, got -1"),
    ({"speakers_dev": 0}, "synth: --speakers-dev: must be >= 1, got 0"),
    ({"batch_size": 2.5}, "synth: --batch-size: must be an integer, got 2.5"),
    ({"min_seconds": 5.0, "max_seconds": 2.0}, "synth: need 0.2 <= --min-seconds <= --max-seconds <= 30"),
])
def test_synth_options_are_validated_on_the_fields_and_name_the_option(options, line):
    from dpda.data.synth_config import SynthConfig

    with pytest.raises(UserError) as info:
        SynthConfig.from_options(**options)
    assert str(info.value) == line
    assert SynthConfig.from_options(train=2, dev=0) == SynthConfig(train=2, dev=0)


def test_attack_strengths_are_ordered():
    """Calibration: the seen mel attack (A04, 24 bands) smears harmonics more than the unseen
    A08's 80-band analysis does, and every bona fide voice keeps the jitter and aspiration that
    the over-regular A06 voice lacks."""
    gen = torch.Generator().manual_seed(3)
    spk = S.draw_speakers(16, gen)
    assert (spk["breath"] >= 0.1).all() and (spk["jitter"] >= 0.008).all()
    p = S.draw_utterances(spk, torch.arange(4), torch.full((4,), 12000), gen)
    spec = S._stft(S.render(p, gen))

    def ripple(mag: torch.Tensor) -> float:
        """Energy fraction of the 1-6 kHz magnitude outside a 9-bin (280 Hz) moving average:
        the harmonic fine structure."""
        m = mag[:, 32:192].permute(0, 2, 1).reshape(-1, 1, 160)
        smooth = torch.nn.functional.avg_pool1d(torch.nn.functional.pad(m, (4, 4), mode="replicate"), 9, 1)
        return float((m - smooth).pow(2).sum() / m.pow(2).sum())

    coarse, fine, clean = ripple(S._mel_smooth(spec, 24)), ripple(S._mel_smooth(spec, 80)), ripple(spec.abs())
    assert coarse < 0.5 * fine and fine < clean, (coarse, fine, clean)


def test_the_generators_render_on_one_thread(tmp_path: Path, monkeypatch) -> None:
    """Corpus and bank synthesis run with one torch thread (byte-identical files, no OpenMP
    contention), and the caller's thread count comes back afterwards."""
    from dpda.data import bank_builder
    from dpda.data.bank_config import BankSizes

    seen: list[int] = []
    real = S.render

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "render", counting)
    monkeypatch.setattr(bank_builder, "render", counting)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        S.write_synthetic_corpus(tmp_path / "c", S.SynthConfig(seed=3, train=4, dev=2, eval=2, itw=2), workers=0)
        bank_builder.write_banks(tmp_path / "b", BankSizes(noise=1, music=1, speech=1))
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
