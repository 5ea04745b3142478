"""Logistic calibration and fusion (`dpda.metrics.calibration`, `dpda calibrate`, `dpda fuse`): the
fit against an independent minimisation, a known affine map recovered, the Bayes decision,
fusion of complementary systems, key mismatches, the file's round trip, and eval / predict
applying a calibration and saying so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from dpda.cli import main
from dpda.errors import UserError
from dpda.metrics import (
    ASVSPOOF5,
    bayes_decision,
    calibration_path,
    compute_act_dcf,
    compute_cllr,
    compute_min_dcf,
    fit_calibration,
    read_calibration,
    read_scores,
    write_calibration,
    write_scores,
)


def _gaussian(n: int, seed: int, mu: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(x, is_bona): x ~ N(+mu, 1) bona fide, N(-mu, 1) spoof, so the true LLR is 2 mu x."""
    rng = np.random.default_rng(seed)
    is_bona = rng.random(n) < 0.5
    return np.where(is_bona, rng.normal(mu, 1.0, n), rng.normal(-mu, 1.0, n)), is_bona


def _written_out_loss(params: np.ndarray, x: np.ndarray, is_bona: np.ndarray, prior: float) -> float:
    """The prior-weighted logistic loss, written out independently of dpda."""
    llr = x @ params[:-1] + params[-1]
    log_odds = llr + np.log(prior / (1 - prior))
    bona = np.mean(np.log1p(np.exp(-log_odds[is_bona])))
    spoof = np.mean(np.log1p(np.exp(log_odds[~is_bona])))
    return prior * bona + (1 - prior) * spoof


@pytest.mark.parametrize("systems", [1, 2])
def test_fit_equals_an_independent_minimisation(systems: int) -> None:
    """The trust-region Newton fit on standardised columns lands where Nelder-Mead on the written-out
    objective (raw columns, no derivatives) does."""
    x, is_bona = _gaussian(400, seed=3)
    rng = np.random.default_rng(4)
    columns = [3.0 * x + 5.0] + [0.5 * x + rng.normal(0, 1.0, x.size) - 1.0][: systems - 1]
    scores = np.column_stack(columns)
    fitted = fit_calibration(scores, is_bona, ["dev"] * systems)
    prior = ASVSPOOF5.effective_prior
    reference = minimize(_written_out_loss, np.zeros(systems + 1), args=(scores, is_bona, prior), method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-15, "maxiter": 20000, "maxfev": 40000})
    ours = np.array([*fitted.weights, fitted.offset])
    np.testing.assert_allclose(ours, reference.x, rtol=1e-5, atol=1e-6)
    assert _written_out_loss(ours, scores, is_bona, prior) <= reference.fun + 1e-12
    assert fitted.kind == ("calibration" if systems == 1 else "fusion")
    assert (fitted.n_bonafide, fitted.n_spoof) == (int(is_bona.sum()), int((~is_bona).sum()))


def test_recovers_a_known_affine_map_and_lowers_held_out_cllr() -> None:
    """Raw scores s = (x - 3) / 4 of a Gaussian pair whose true LLR is 2x: the fit recovers
    LLR = 8 s + 6, and on held-out trials Cllr drops to the true LLRs' and actDCF meets minDCF."""
    x, is_bona = _gaussian(100_000, seed=0)
    fitted = fit_calibration((x - 3.0) / 4.0, is_bona, ["dev"])
    assert fitted.weights[0] == pytest.approx(8.0, rel=0.03)
    assert fitted.offset == pytest.approx(6.0, rel=0.03)
    x, is_bona = _gaussian(100_000, seed=1)
    raw = (x - 3.0) / 4.0
    llr = fitted.apply(raw)
    before, after, truth = (compute_cllr(s[is_bona], s[~is_bona]) for s in (raw, llr, 2.0 * x))
    assert after < before and after == pytest.approx(truth, abs=0.005)
    act_before = compute_act_dcf(raw[is_bona], raw[~is_bona])[0]
    act_after = compute_act_dcf(llr[is_bona], llr[~is_bona])[0]
    min_dcf = compute_min_dcf(llr[is_bona], llr[~is_bona])[0]
    assert act_after < act_before and act_after - min_dcf < 0.01 < act_before - min_dcf


def test_separable_or_one_class_dev_scores_are_refused() -> None:
    with pytest.raises(UserError, match="separate bona fide from spoof perfectly"):
        fit_calibration([2.0, 3.0, -1.0, -2.0], [True, True, False, False], ["dev"])
    with pytest.raises(UserError, match="no spoof dev trials"):
        fit_calibration([2.0, 3.0], [True, True], ["dev"])
    with pytest.raises(UserError, match="all equal"):
        fit_calibration([1.0, 1.0, 1.0], [True, False, True], ["dev"])


def test_bayes_threshold_is_minus_logit_of_the_effective_prior_and_decides_act_dcf() -> None:
    prior = 0.95 / (0.95 + 0.5)  # Cmiss (1 - Pspoof) / (Cmiss (1 - Pspoof) + Cfa Pspoof)
    assert ASVSPOOF5.effective_prior == pytest.approx(prior)
    threshold = ASVSPOOF5.bayes_threshold
    assert threshold == pytest.approx(-np.log(prior / (1 - prior)))
    assert bayes_decision([threshold, np.nextafter(threshold, -np.inf), threshold + 1]).tolist() == [True, False, True]
    bona, spoof = np.array([threshold - 1, threshold, 2.0, 3.0]), np.array([threshold, -3.0, -4.0, -5.0])
    miss, fa = 1 / 4, 1 / 4  # one bona fide below the threshold; the spoof at it is accepted
    assert compute_act_dcf(bona, spoof)[0] == pytest.approx((0.95 * miss + 0.5 * fa) / 0.5)


def test_calibration_file_round_trip_and_errors(tmp_path: Path) -> None:
    x, is_bona = _gaussian(200, seed=2)
    fitted = fit_calibration(x, is_bona, ["runs/a/calibration/dev.scores.txt"], score="logit_diff")
    path = write_calibration(tmp_path / "model.calibration.json", fitted)
    assert read_calibration(path) == fitted
    assert calibration_path(tmp_path / "model.pt") == path
    raw = json.loads(path.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw | {"weights": "steep"}))
    with pytest.raises(UserError, match=rf"^{bad}: weights: must be a list"):
        read_calibration(bad)
    bad.write_text(json.dumps(raw | {"prior": 1.5}))
    with pytest.raises(UserError, match=rf"^{bad}: prior: must be in "):
        read_calibration(bad)
    bad.write_text("{not json")
    with pytest.raises(UserError, match=rf"^{bad}:1: not JSON"):
        read_calibration(bad)


def _write_labelled(path: Path, utts: list[str], scores: np.ndarray, is_bona: np.ndarray) -> Path:
    """A 4-column `UTT ATTACK KEY SCORE` file, which carries its own labels."""
    lines = [f"{u} {'-' if b else 'A01'} {'bonafide' if b else 'spoof'} {s!r}" for u, s, b in zip(utts, scores.tolist(), is_bona)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _complementary(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Two systems, each blind to one of two attacks: (utts, is_bona, system 1, system 2)."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)  # 0 bona fide, 1 attack A, 2 attack B
    s1 = np.where(kind == 1, -2.0, 0.0) + rng.normal(0, 1.0, n)  # sees A only
    s2 = 5.0 * (np.where(kind == 2, -2.0, 0.0) + rng.normal(0, 1.0, n)) + 7.0  # sees B only, another scale
    return [f"T{seed}_{i:05d}" for i in range(n)], kind == 0, s1, s2


def test_fuse_command_beats_each_system_on_held_out_trials(tmp_path: Path, capsys) -> None:
    utts, is_bona, d1, d2 = _complementary(4000, seed=0)
    dev = [_write_labelled(tmp_path / f"dev{i}.txt", utts, s, is_bona) for i, s in enumerate((d1, d2), start=1)]
    utts, is_bona, t1, t2 = _complementary(4000, seed=1)
    test = [write_scores(tmp_path / f"eval{i}.txt", utts, s) for i, s in enumerate((t1, t2), start=1)]
    out = tmp_path / "fused"
    assert main(["fuse", *map(str, test), "--dev", *map(str, dev), "-o", str(out)]) == 0
    assert f"wrote {out / 'eval1.txt'} (4000 fused LLR scores) and {out / 'fusion.json'}" in capsys.readouterr().out
    fused = read_scores(out / "eval1.txt").reindex(utts).to_numpy()
    fusion = read_calibration(out / "fusion.json")
    assert fusion.kind == "fusion" and fusion.fitted_on == [str(d) for d in dev]
    np.testing.assert_allclose(fused, fusion.apply(np.column_stack([t1, t2])))
    fused_min = compute_min_dcf(fused[is_bona], fused[~is_bona])[0]
    fused_cllr = compute_cllr(fused[is_bona], fused[~is_bona])
    for dev_scores, test_scores in ((d1, t1), (d2, t2)):  # each system calibrated alone on the same dev
        alone = fit_calibration(dev_scores, _complementary(4000, seed=0)[1], ["dev"]).apply(test_scores)
        assert fused_min < compute_min_dcf(alone[is_bona], alone[~is_bona])[0]
        assert fused_cllr < compute_cllr(alone[is_bona], alone[~is_bona])


def _cli_error(argv: list[str], capsys) -> str:
    """The one error line a failing command prints (exit status 2), without its `dpda CMD: error: `."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err.split(": error: ", 1)[1]


def test_fuse_names_the_file_and_the_trial_that_do_not_match(tmp_path: Path, capsys) -> None:
    utts, is_bona, s1, s2 = _complementary(50, seed=0)
    dev = [_write_labelled(tmp_path / f"dev{i}.txt", utts, s, is_bona) for i, s in enumerate((s1, s2), start=1)]
    first = write_scores(tmp_path / "a.txt", utts, s1)
    out = ["-o", str(tmp_path / "fused")]
    short = write_scores(tmp_path / "b.txt", utts[1:], s2[1:])
    assert _cli_error(["fuse", str(first), str(short), "--dev", *map(str, dev), *out], capsys) == (
        f"{short}: no score for trial '{utts[0]}', which {first} scores (1 of 50 trials missing)")
    longer = write_scores(tmp_path / "c.txt", [*utts, "extra"], [*s2, 0.0])
    assert _cli_error(["fuse", str(first), str(longer), "--dev", *map(str, dev), *out], capsys).startswith(
        f"{longer}: scores trial 'extra', which {first} does not")
    assert _cli_error(["fuse", str(first), str(short), "--dev", str(dev[0]), *out], capsys).startswith(
        "--dev: 1 dev files for 2 score files")
    short_dev = write_scores(tmp_path / "dev_short.txt", utts[:-1], s2[:-1])
    assert _cli_error(["fuse", str(first), str(first), "--dev", *map(str, dev), *out], capsys).startswith(
        f"{first}: given twice")
    assert _cli_error(["fuse", str(first), str(longer), "--dev", str(dev[0]), str(short_dev), *out], capsys).startswith(
        f"{short_dev}: no score for trial '{utts[-1]}', which {dev[0]} scores")
    assert not (tmp_path / "fused").exists()


def test_calibrate_a_score_file(tmp_path: Path, capsys) -> None:
    """A score-file target: the map is fitted on the labelled dev file and applied to the target."""
    x, is_bona = _gaussian(2000, seed=5)
    dev = _write_labelled(tmp_path / "dev.txt", [f"D{i}" for i in range(x.size)], 0.5 * x - 1.0, is_bona)
    x, _ = _gaussian(300, seed=6)
    target = write_scores(tmp_path / "eval.scores.txt", [f"E{i}" for i in range(x.size)], 0.5 * x - 1.0)
    assert main(["calibrate", str(target), "--dev", str(dev)]) == 0
    printed = capsys.readouterr().out
    mapping = read_calibration(tmp_path / "eval.scores.calibration.json")
    assert f"wrote {tmp_path / 'eval.scores.calibration.json'}" in printed and "dev Cllr" in printed
    llr = read_scores(tmp_path / "eval.scores.llr.txt")
    np.testing.assert_allclose(llr.to_numpy(), mapping.weights[0] * (0.5 * x - 1.0) + mapping.offset)
    assert mapping.weights[0] == pytest.approx(4.0, rel=0.15)  # true LLR 2x = 4 (s + 1)
    # a 2-column dev file labelled by --keys (here a 2019 protocol) gives the same map
    table = pd.read_csv(dev, sep=" ", header=None, names=["utt", "attack", "key", "score"])
    two = write_scores(tmp_path / "dev2.txt", table["utt"], table["score"].to_numpy())
    protocol = tmp_path / "protocol.txt"
    protocol.write_text("".join(f"S1 {u} - {a} {k}\n" for u, a, k in zip(table["utt"], table["attack"], table["key"])))
    assert main(["calibrate", str(target), "--dev", str(two), "--keys", str(protocol), "--file", str(tmp_path / "k.json")]) == 0
    assert read_calibration(tmp_path / "k.json").weights == mapping.weights


def test_eval_and_predict_apply_the_model_calibration_and_say_so(tmp_path: Path, capsys) -> None:
    """`dpda calibrate MODEL --dev SET` writes MODEL.calibration.json; eval then writes its LLRs
    (score_kind says so), predict decides at the Bayes threshold; --no-calibration gives raw scores."""
    from support import demo_dict, untrained_model_file, write_separable_corpus

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    model = tmp_path / "model.pt"
    untrained_model_file(demo_dict(corpus), model)
    common = ["--loader-workers", "0", "--device", "cpu"]
    assert main(["calibrate", str(model), "--dev", f"dev=csv:{corpus}/dev.csv", *common]) == 0
    assert f"wrote {tmp_path / 'model.calibration.json'}" in capsys.readouterr().out
    mapping = read_calibration(tmp_path / "model.calibration.json")
    assert mapping.score == "logit_diff" and mapping.fitted_on == [str(tmp_path / "calibration" / "dev.scores.txt")]

    for extra, out in (([], "cal"), (["--no-calibration"], "raw")):
        assert main(["eval", str(model), f"eval=csv:{corpus}/eval.csv", "-o", str(tmp_path / out), *common, *extra]) == 0
    printed = capsys.readouterr().out
    assert f"scores: LLRs, calibrated by {tmp_path / 'model.calibration.json'}" in printed
    assert "scores: raw, not calibrated" in printed
    raw, llr = (read_scores(tmp_path / out / "eval.scores.txt").to_numpy() for out in ("raw", "cal"))
    np.testing.assert_allclose(llr, mapping.apply(raw))
    kinds = [pd.read_csv(tmp_path / out / "metrics.csv")["score_kind"].iloc[0] for out in ("cal", "raw")]
    assert kinds == [f"llr (calibrated: {tmp_path / 'model.calibration.json'})", "raw"]
    assert _cli_error(["eval", str(model), f"eval=csv:{corpus}/eval.csv", "-o", str(tmp_path / "x"), *common,
                       "--score", "logit1"], capsys) == (
        f"{tmp_path / 'model.calibration.json'}: fitted on logit_diff scores, but these are logit1 scores "
        "(--score logit_diff, or calibrate again)")

    files = [str(corpus / f"eval_{i:03d}.wav") for i in range(4)]
    capsys.readouterr()
    assert main(["predict", str(model), *files, "--device", "cpu"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.startswith(f"# LLR scores, calibrated by {tmp_path / 'model.calibration.json'}; "
                             f"threshold {ASVSPOOF5.bayes_threshold:.6g} (the Bayes threshold of Pspoof 0.05")
    printed_llr = np.array([float(r.split("\t")[1]) for r in rows])
    # predict scores one file per batch, eval batches of several: float32 sums differ in the last
    # bits, which the calibration's slope scales
    np.testing.assert_allclose(printed_llr, llr[:4], atol=1e-4)
    assert [r.split("\t")[2] == "bonafide" for r in rows] == bayes_decision(printed_llr).tolist()
    assert main(["predict", str(model), *files, "--device", "cpu", "--no-calibration"]) == 0
    assert capsys.readouterr().out.startswith("# raw scores; threshold 0 (dev EER threshold)")
    # an EER threshold from metrics.json is on its eval's scale: LLR thresholds for LLRs only
    llr_metrics, raw_metrics = tmp_path / "cal" / "metrics.json", tmp_path / "raw" / "metrics.json"
    assert main(["predict", str(model), *files, "--device", "cpu", "--threshold-from", str(llr_metrics)]) == 0
    threshold = json.loads(llr_metrics.read_text())[0]["threshold"]
    assert capsys.readouterr().out.startswith(f"# LLR scores, calibrated by {tmp_path / 'model.calibration.json'}; "
                                              f"threshold {threshold:.6g} ({llr_metrics}:eval); score > threshold")
    assert _cli_error(["predict", str(model), *files, "--threshold-from", str(raw_metrics)], capsys) == (
        f"{raw_metrics}: set 'eval': its threshold is on raw scores, but these scores are LLRs "
        "(a calibration applies; --no-calibration for raw scores)")
    assert _cli_error(["predict", str(model), *files, "--threshold-from", str(llr_metrics), "--no-calibration"],
                      capsys).startswith(f"{llr_metrics}: set 'eval': its threshold is on llr (calibrated: ")
