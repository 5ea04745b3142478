"""Score files the community tools accept, read in every shape they come in, and the score a
model writes (`eval.score`).

The numbers in tests/fixtures/scoring/expected.json come from running the community scorers once
on the committed fixture files (the In-the-Wild / FoR scorer of the published DPDA repository,
the ASVspoof 2021 evaluation package, the published eval_metrics.py); the one command that
regenerates them is in tests/fixtures/scoring/make_fixtures.py.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dpda.cli import main
from dpda.data.readers import load_corpus
from dpda.errors import UserError
from dpda.metrics import compute_eer, read_asv_scores_2021, read_score_table, read_scores, write_scores
from dpda.metrics.breakdown import attach_scores
from support import untrained_model_file

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "scoring"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _eer_line(capsys) -> float:
    """The EER (a fraction) `dpda score` printed, to its print precision (1e-6)."""
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("EER: "))
    return float(line.split()[1]) / 100


def _eer(scores: pd.Series, manifest: pd.DataFrame) -> float:
    scored = attach_scores(manifest, scores)
    bona = scored["target"].to_numpy() == 1
    return compute_eer(scored["score"].to_numpy()[bona], scored["score"].to_numpy()[~bona])[0]


# ---------------------------------------------------------------------------------------------
# In-the-Wild: ids as in meta.csv, so the community scorer joins dpda's score file


def test_itw_score_ids_are_the_meta_csv_file_column():
    meta = pd.read_csv(FIXTURES / "itw" / "meta.csv")
    manifest = load_corpus(f"itw:{FIXTURES / 'itw'}")
    assert manifest["utt"].tolist() == meta["file"].tolist() and manifest["utt"].str.endswith(".wav").all()
    assert read_scores(FIXTURES / "itw.scores.txt").index.tolist() == meta["file"].tolist()


def test_dpda_score_on_itw_equals_the_community_itw_scorer(capsys):
    manifest = load_corpus(f"itw:{FIXTURES / 'itw'}")
    assert _eer(read_scores(FIXTURES / "itw.scores.txt"), manifest) == pytest.approx(EXPECTED["itw"]["eer"], abs=1e-12)
    assert main(["score", str(FIXTURES / "itw.scores.txt"), f"itw:{FIXTURES / 'itw'}"]) == 0
    assert _eer_line(capsys) == pytest.approx(EXPECTED["itw"]["eer"], abs=1e-6)


# ---------------------------------------------------------------------------------------------
# ASVspoof 2019 / AASIST 4-column files: they carry their labels


def test_four_column_file_is_read_with_its_attack_and_key():
    table = read_score_table(FIXTURES / "la2019.scores.txt")
    assert list(table.columns[:4]) == ["utt", "attack", "key", "score"] and len(table) == 120
    first = (FIXTURES / "la2019.scores.txt").read_text().splitlines()[0].split()
    assert table.iloc[0][["utt", "attack", "key"]].tolist() == first[:3] and table.iloc[0]["score"] == float(first[3])
    assert set(table["key"]) == {"bonafide", "spoof"} and set(table.loc[table["key"] == "bonafide", "attack"]) == {"-"}
    assert read_scores(FIXTURES / "la2019.scores.txt").to_numpy().tolist() == table["score"].tolist()


def test_dpda_score_on_a_four_column_file_needs_no_keys(capsys):
    expected = EXPECTED["la2019"]
    scores = str(FIXTURES / "la2019.scores.txt")
    assert main(["score", scores]) == 0
    assert _eer_line(capsys) == pytest.approx(expected["eer"], abs=1e-6)
    for definition in ("2019", "2021"):
        assert main(["score", scores, "--asv-scores", str(FIXTURES / "la2019.asv.txt"), "--tdcf", definition]) == 0
        out = capsys.readouterr().out
        value = float(next(ln for ln in out.splitlines() if ln.startswith(f"min t-DCF ({definition}):")).split()[-1])
        assert value == pytest.approx(expected[f"min_tdcf_{definition}"], abs=1e-6)
    assert "A07" in out  # the per-attack breakdown comes from the file's own ATTACK column


def test_two_column_file_without_keys_is_one_line(tmp_path, capsys):
    path = write_scores(tmp_path / "s.txt", ["a", "b"], [1.0, 2.0])
    assert main(["score", str(path)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{path}: a 2-column score file needs KEYS (a corpus spec or a protocol file)")


# ---------------------------------------------------------------------------------------------
# ASVspoof 2021 LA / DF full-trial files


def test_dpda_writes_full_trial_2021_files_the_package_accepts():
    """The fixture score files were written by dpda for every trial of trial_metadata.txt in its
    order (the package requires exactly that), and the package scored them (expected.json)."""
    for track in ("LA", "DF"):
        keys = (FIXTURES / "keys" / track / "CM" / "trial_metadata.txt").read_text().split("\n")
        trials = [line.split()[1] for line in keys if line]
        scored = read_scores(FIXTURES / f"{track.lower()}2021.scores.txt")
        assert scored.index.tolist() == trials and len({line.split()[7] for line in keys if line}) == 3


@pytest.mark.parametrize("track", ["LA", "DF"])
def test_2021_eer_of_the_eval_phase_equals_the_package(track, capsys):
    spec = f"asvspoof2021{track.lower()}:{FIXTURES / 'keys' / track / 'CM' / 'trial_metadata.txt'}:eval"
    manifest = load_corpus(spec)
    scores = read_scores(FIXTURES / f"{track.lower()}2021.scores.txt")
    expected = EXPECTED["eval_package_2021"][track]["eer"]
    assert _eer(scores, manifest) == pytest.approx(expected, abs=1e-12)
    assert main(["score", str(FIXTURES / f"{track.lower()}2021.scores.txt"), spec]) == 0
    out = capsys.readouterr().out
    assert f"({len(scores) - len(manifest)} extra scores ignored)" in out  # progress + hidden trials
    assert float(next(ln for ln in out.splitlines() if ln.startswith("EER: ")).split()[1]) / 100 == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("track", "factor"), [("LA", "attack"), ("DF", "vocoder")])
def test_2021_per_attack_and_per_vocoder_eers_equal_the_package(track, factor):
    """Bona fide lines carry `bonafide` in these spoof-only columns; each value is scored
    against all bona fide trials, as the package does."""
    from dpda.metrics import breakdown

    manifest = load_corpus(f"asvspoof2021{track.lower()}:{FIXTURES / 'keys' / track / 'CM' / 'trial_metadata.txt'}:eval")
    assert set(manifest.loc[manifest["target"] == 1, factor]) == {"-"}
    table = breakdown(manifest, read_scores(FIXTURES / f"{track.lower()}2021.scores.txt"), by=[factor]).iloc[1:]
    got = dict(zip(table["value"], table["eer"]))
    want = EXPECTED["eval_package_2021"][track][f"eer_by_{factor}"]
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], abs=1e-12) for k in want)


def test_2021_la_min_tdcf_from_the_asv_files_beside_the_cm_keys(capsys):
    """`dpda score` finds LA/ASV/trial_metadata.txt beside LA/CM, keeps the eval-phase ASV
    trials, and uses the 2021 t-DCF for 2021 keys: the package's number. --tdcf 2019 on the same
    scores gives the published 2019 (legacy) definition's number."""
    cm = str(FIXTURES / "la2021.scores.txt")
    spec = f"asvspoof2021la:{FIXTURES / 'keys' / 'LA' / 'CM' / 'trial_metadata.txt'}:eval"
    asv = str(FIXTURES / "keys" / "LA" / "ASV" / "scores.txt")
    got = {}
    for extra, definition in (([], "2021"), (["--tdcf", "2019"], "2019")):
        assert main(["score", cm, spec, "--asv-scores", asv, *extra]) == 0
        out = capsys.readouterr().out
        got[definition] = float(next(ln for ln in out.splitlines() if ln.startswith(f"min t-DCF ({definition}):")).split()[-1])
    assert got["2021"] == pytest.approx(EXPECTED["eval_package_2021"]["LA"]["min_tdcf_2021"], abs=1e-6)
    assert got["2019"] == pytest.approx(EXPECTED["la2021_eval_published_metrics"]["min_tdcf_2019"], abs=1e-6)


def test_2021_asv_scores_pair_with_their_keys_line_by_line(tmp_path):
    keys = FIXTURES / "keys" / "LA" / "ASV" / "trial_metadata.txt"
    scores = FIXTURES / "keys" / "LA" / "ASV" / "scores.txt"
    key_rows = [line.split() for line in keys.read_text().splitlines()]
    values = [float(line.split()[2]) for line in scores.read_text().splitlines()]
    assert len({r[1] for r in key_rows}) < len(key_rows)  # trial ids recur: only the line pairs them
    got = read_asv_scores_2021(scores, keys, ["eval"])
    for key in ("target", "nontarget", "spoof"):
        want = [v for r, v in zip(key_rows, values) if r[5] == key and r[7] == "eval"]
        assert got[key].tolist() == want
    assert sum(map(len, read_asv_scores_2021(scores, keys).values())) == len(values)
    swapped = scores.read_text().splitlines()
    swapped[3], swapped[5] = swapped[5], swapped[3]
    bad = tmp_path / "asv.txt"
    bad.write_text("\n".join(swapped) + "\n")
    with pytest.raises(UserError, match=rf"^{bad}:4: trial '{swapped[3].split()[1]}', but {keys}:4 is trial '{key_rows[3][1]}'$"):
        read_asv_scores_2021(bad, keys)
    bad.write_text("\n".join(swapped[:-1]) + "\n")
    with pytest.raises(UserError, match=rf"^{bad}: {len(values) - 1} ASV scores but {keys} has {len(values)} trials"):
        read_asv_scores_2021(bad, keys)


# ---------------------------------------------------------------------------------------------
# Bad score files: one line naming file and line


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a - bonafide 1.0\nb 2.0\n", 2, "expected 4 fields 'UTT ATTACK KEY SCORE' as on the first line, got 2"),
        ("a 1.0\nb A07 spoof 2.0\n", 2, "expected 2 fields 'UTT SCORE' as on the first line, got 4"),
        ("# header\na A07 spoof\n", 2, "expected 2 fields 'UTT SCORE' or 4 fields 'UTT ATTACK KEY SCORE', got 3"),
        ("a A07 spoof 1\nb A07 spoof one\n", 2, "score 'one' is not a number"),
        ("a A07 spoof 1\na A08 spoof 2\n", 2, "utterance 'a' already scored on line 1"),
    ],
)
def test_bad_score_files_fail_with_one_line(tmp_path, capsys, text, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=rf"^{path}:{line}: {message}$"):
        read_score_table(path)
    assert main(["score", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(f"{path}:{line}: {message}")


def test_a_four_column_file_with_an_unknown_key_names_its_line(tmp_path, capsys):
    path = tmp_path / "s.txt"
    path.write_text("a - bonafide 1\nb A07 fake-ish 2\n")
    assert main(["score", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}:2" in err and "fake-ish" in err


# ---------------------------------------------------------------------------------------------
# eval.score: logit1 (published) vs logit_diff (dpda)


def test_score_kinds_are_what_they_say():
    from dpda.train.config import ScoreKind
    from dpda.train.inference import score_from_logits

    logits = torch.tensor([[0.5, 2.0], [3.0, -1.0], [-2.0, -2.5]])
    assert score_from_logits(logits, "logit1").tolist() == [2.0, -1.0, -2.5]
    assert score_from_logits(logits, "logit_diff").tolist() == [1.5, -4.0, -0.5]
    assert score_from_logits(logits).tolist() == [1.5, -4.0, -0.5]  # dpda's default
    shifted = logits + torch.tensor([[1.0], [-3.0], [7.0]])  # a per-row shift of both logits
    assert torch.equal(score_from_logits(shifted, "logit_diff"), score_from_logits(logits, "logit_diff"))
    assert not torch.equal(score_from_logits(shifted, "logit1"), score_from_logits(logits, "logit1"))
    torch.testing.assert_close(score_from_logits(logits, "softmax1"), torch.softmax(logits, 1)[:, 1])
    assert set(typing.get_args(ScoreKind)) == {"logit1", "logit_diff", "softmax1"}


def test_eval_score_config_key_and_cli_choices():
    import argparse

    from dpda.commands import eval as eval_command
    from dpda.train.config import ScoreKind, config_from_dict

    assert config_from_dict({}).score_kind == "logit_diff"  # the loss's (ce); tests/test_losses.py: the others
    assert config_from_dict({"eval": {"score": "logit1"}}).score_kind == "logit1"
    with pytest.raises(UserError, match=r"^cfg\.yaml: eval\.score: "):
        config_from_dict({"eval": {"score": "logit0"}}, source="cfg.yaml")
    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "score")
    assert set(choices) == set(typing.get_args(ScoreKind))


def _logits(model: torch.nn.Module, manifest: pd.DataFrame, length: int) -> np.ndarray:
    """(n, 2) float64 logits of the first `length` samples of each file (tiled), as dpda scores them."""
    from dpda.data.dataset import AudioDataset

    data = AudioDataset(manifest, length=length, train=False, seed=0)
    with torch.no_grad():
        return model(torch.stack([data[i][0] for i in range(len(manifest))])).double().numpy()


def test_eval_writes_the_score_its_config_names(tmp_path):
    """A model file whose config says eval.score: logit1 writes logit[1] per trial; --score
    logit_diff overrides it; metrics.json says which score each set holds."""
    from dpda.train.evaluation import evaluate_sets
    from support import demo_dict, write_separable_corpus

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    raw = demo_dict(corpus) | {"eval": {"score": "logit1"}}
    model = untrained_model_file(raw, tmp_path / "model.pt")
    logits = _logits(model, load_corpus(f"csv:{corpus}/eval.csv"), raw["data"]["length"])
    for score, expected in ((None, logits[:, 1]), ("logit_diff", logits[:, 1] - logits[:, 0])):
        out = tmp_path / f"out_{score}"
        rows = evaluate_sets(tmp_path / "model.pt", [f"eval=csv:{corpus}/eval.csv"], out, num_workers=0, device="cpu", score=score)
        written = read_scores(out / "eval.scores.txt")
        np.testing.assert_allclose(written.to_numpy(), expected, rtol=1e-5, atol=1e-5)
        assert rows[0]["score"] == (score or "logit1")
        assert json.loads((out / "metrics.json").read_text())[0]["score"] == (score or "logit1")


def test_eval_metrics_option_and_csv_columns(tmp_path, capsys):
    """`dpda eval --metrics` prints the chosen metrics; metrics.csv and the breakdown carry the
    ASVspoof 5 ones, equal to dpda.metrics on the written scores."""
    from dpda.cli import main
    from dpda.metrics import compute_act_dcf, compute_cllr, compute_min_dcf
    from support import demo_dict, write_separable_corpus

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    untrained_model_file(demo_dict(corpus), tmp_path / "model.pt")
    out = tmp_path / "out"
    argv = ["eval", str(tmp_path / "model.pt"), f"eval=csv:{corpus}/eval.csv", "-o", str(out),
            "--loader-workers", "0", "--device", "cpu"]
    assert main(argv + ["--metrics", "eer,mindcf,cllr"]) == 0
    header = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("set")][0]
    assert header.split() == ["set", "bonafide", "spoof", "EER", "%", "minDCF", "Cllr"]
    row = pd.read_csv(out / "metrics.csv").iloc[0]
    target = load_corpus(f"csv:{corpus}/eval.csv").set_index("utt")["target"]
    scores = read_scores(out / "eval.scores.txt")
    bona, spoof = scores[target[scores.index] == 1].to_numpy(), scores[target[scores.index] == 0].to_numpy()
    assert row["min_dcf"] == pytest.approx(compute_min_dcf(bona, spoof)[0])
    assert row["act_dcf"] == pytest.approx(compute_act_dcf(bona, spoof)[0])
    assert row["cllr"] == pytest.approx(compute_cllr(bona, spoof))
    assert {"min_dcf", "act_dcf", "cllr"} <= set(pd.read_csv(out / "eval.breakdown.csv").columns)
    # the keys beside the scores (what the report's DET curves join them with): every scored trial's label
    keys = pd.read_csv(out / "eval.keys.csv", keep_default_na=False).set_index("utt")
    assert list(keys.columns[:2]) == ["label", "attack"] and sorted(keys.index) == sorted(scores.index)
    assert (keys["label"].eq("bonafide").astype(int) == target[keys.index]).all()
    assert row["bayes_threshold"] == pytest.approx(-np.log(0.95 / (10 * 0.05)))


def test_eval_length_sets_how_much_of_each_file_dev_eval_and_predict_score(tmp_path, monkeypatch, capsys):
    """`eval.length` (default: data.length) is the window scored from each file's start: eval
    and predict score exactly the model's output on that window (short files tiled), and the
    trainer's dev EER uses it too."""
    from dpda.train import loop
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from support import demo_dict, write_separable_corpus

    assert config_from_dict({"data": {"length": 16000}}).scoring_length == 16000
    assert config_from_dict({"data": {"length": 16000}, "eval": {"length": 48000}}).scoring_length == 48000
    with pytest.raises(UserError, match=r"^cfg\.yaml: eval\.length: "):
        config_from_dict({"eval": {"length": 0}}, source="cfg.yaml")

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    raw = demo_dict(corpus)
    raw["data"]["length"] = 3000  # the files are 8000 samples: 3000 crops, 20000 tiles
    raw["eval"]["length"] = 20000
    model = untrained_model_file(raw, tmp_path / "model.pt")
    manifest = load_corpus(f"csv:{corpus}/eval.csv")
    window, crop = _logits(model, manifest, 20000), _logits(model, manifest, 3000)
    expected, cropped = window[:, 1] - window[:, 0], crop[:, 1] - crop[:, 0]
    assert np.abs(expected - cropped).max() > 1e-3  # the window matters for this model
    evaluate_sets(tmp_path / "model.pt", [f"eval=csv:{corpus}/eval.csv"], tmp_path / "out", num_workers=0, device="cpu")
    np.testing.assert_allclose(read_scores(tmp_path / "out" / "eval.scores.txt").to_numpy(), expected, rtol=1e-5, atol=1e-5)
    evaluate_sets(tmp_path / "model.pt", [f"eval=csv:{corpus}/eval.csv"], tmp_path / "out3k", num_workers=0, device="cpu",
                  settings={"eval.length": 3000})  # `dpda eval --set eval.length=3000`
    np.testing.assert_allclose(read_scores(tmp_path / "out3k" / "eval.scores.txt").to_numpy(), cropped, rtol=1e-5, atol=1e-5)

    files = [str(corpus / f"eval_{i:03d}.wav") for i in range(3)]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "model.pt"), *files]) == 0
    printed = [float(line.split("\t")[1]) for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    np.testing.assert_allclose(printed, expected[:3], rtol=1e-5, atol=1e-5)

    lengths = []
    real = loop.score_manifest

    def recording_length(*args, **kwargs):
        lengths.append(kwargs["length"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "score_manifest", recording_length)
    raw["optim"].update(epochs=1, max_steps_per_epoch=2)
    loop.Trainer(config_from_dict(raw), tmp_path / "run", progress=False).fit()
    assert lengths and set(lengths) == {20000}


def test_eval_scores_repeated_set_names_as_one_set(tmp_path):
    """`NAME=A NAME=B` on the command line scores A and B as one set, as a config's
    `data.eval: {NAME: [A, B]}` does (the last spec alone was scored before)."""
    from dpda.train.evaluation import evaluate_sets
    from support import demo_dict, write_separable_corpus

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    untrained_model_file(demo_dict(corpus), tmp_path / "model.pt")
    table = pd.read_csv(f"{corpus}/eval.csv")
    halves = [table.iloc[0::2], table.iloc[1::2]]
    for i, half in enumerate(halves):
        half.to_csv(f"{corpus}/half{i}.csv", index=False)
    rows = evaluate_sets(tmp_path / "model.pt", [f"both=csv:{corpus}/half0.csv", f"both=csv:{corpus}/half1.csv"],
                         tmp_path / "out", num_workers=0, device="cpu")
    assert len(rows) == 1 and rows[0]["n_bonafide"] + rows[0]["n_spoof"] == len(table)
    assert set(read_scores(tmp_path / "out" / "both.scores.txt").index) == set(table["utt"] if "utt" in table else table.iloc[:, 0])
