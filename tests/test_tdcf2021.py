"""The ASVspoof 2021 (revised) min t-DCF beside the 2019 one: equal to the ASVspoof 2021
evaluation package and to the published eval_metrics.py on fixed cases (numbers in
tests/fixtures/scoring/expected.json, made by tests/fixtures/scoring/make_fixtures.py), and the
properties that tell the two definitions apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dpda.errors import UserError
from dpda.metrics import (
    ASVSPOOF2019,
    ASVSPOOF2021,
    TDCF_DEFINITIONS,
    asv_error_rates,
    compute_min_tdcf,
    compute_min_tdcf_2021,
    read_asv_scores,
    read_asv_scores_2021,
    read_score_table,
    read_scores,
    tdcf_curve_2021,
)
from dpda.metrics.breakdown import attach_scores
from dpda.data.readers import load_corpus

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "scoring"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _la2021_eval():
    """(bona fide CM, spoof CM, ASV {target, nontarget, spoof}) of the fixture's eval phase."""
    manifest = load_corpus(f"asvspoof2021la:{FIXTURES / 'keys' / 'LA' / 'CM' / 'trial_metadata.txt'}:eval")
    scored = attach_scores(manifest, read_scores(FIXTURES / "la2021.scores.txt"))
    bona = scored["target"].to_numpy() == 1
    asv = read_asv_scores_2021(FIXTURES / "keys" / "LA" / "ASV" / "scores.txt",
                               FIXTURES / "keys" / "LA" / "ASV" / "trial_metadata.txt", ["eval"])
    return scored["score"].to_numpy()[bona], scored["score"].to_numpy()[~bona], asv


def test_2021_min_tdcf_equals_the_eval_package():
    bona, spoof, asv = _la2021_eval()
    value, _ = compute_min_tdcf_2021(bona, spoof, asv["target"], asv["nontarget"], asv["spoof"])
    assert value == pytest.approx(EXPECTED["eval_package_2021"]["LA"]["min_tdcf_2021"], abs=1e-12)
    # the published eval_metrics.compute_tDCF (the same revision) agrees with the package
    assert value == pytest.approx(EXPECTED["la2021_eval_published_metrics"]["min_tdcf_2021"], abs=1e-12)


def test_same_scores_two_definitions_two_numbers():
    """As the issue found on real scores (2021: 0.5801, 2019: 0.4708), the two definitions give
    different figures for one system; each equals its reference."""
    for case, (bona, spoof, asv) in {
        "la2021_eval_published_metrics": _la2021_eval(),
        "la2019": _la2019(),
    }.items():
        want = EXPECTED[case]
        got = {name: f(bona, spoof, asv["target"], asv["nontarget"], asv["spoof"])[0] for name, f in TDCF_DEFINITIONS.items()}
        assert got["2019"] == pytest.approx(want["min_tdcf_2019"], abs=1e-12)
        assert got["2021"] == pytest.approx(want["min_tdcf_2021"], abs=1e-12)
        assert got["2021"] > got["2019"]  # the ASV's own errors (C0) stay in the 2021 cost


def _la2019():
    table = read_score_table(FIXTURES / "la2019.scores.txt")
    bona = table["key"].to_numpy() == "bonafide"
    return table["score"].to_numpy()[bona], table["score"].to_numpy()[~bona], read_asv_scores(FIXTURES / "la2019.asv.txt")


def test_cost_parameters_are_the_packages():
    """ASVspoof 2021 eval-package config.py: Pspoof 0.05, Ptar/Pnon 0.99/0.01 of the rest,
    Cmiss 1, Cfa 10, Cfa_spoof 10; the 2019 plan's are the same priors with split ASV/CM costs."""
    assert (ASVSPOOF2021.Pspoof, ASVSPOOF2021.Cmiss, ASVSPOOF2021.Cfa, ASVSPOOF2021.Cfa_spoof) == (0.05, 1.0, 10.0, 10.0)
    assert ASVSPOOF2021.Ptar == pytest.approx(0.9405) and ASVSPOOF2021.Pnon == pytest.approx(0.0095)
    assert (ASVSPOOF2019.Ptar, ASVSPOOF2019.Pnon, ASVSPOOF2019.Pspoof) == (ASVSPOOF2021.Ptar, ASVSPOOF2021.Pnon, ASVSPOOF2021.Pspoof)


def test_2021_hand_checked_and_an_error_free_cm_still_pays_the_asv_errors():
    tar, non, spoof = np.array([2.0, 3.0, 0.5]), np.array([-1.0, 1.0, -2.0]), np.array([1.5, 2.5, -3.0, 0.0])
    # ASV EER threshold 0.5 (the reference's: accept >= it): no target missed, 1/3 nontargets
    # and 2/4 spoofs accepted
    asv = asv_error_rates(tar, non, spoof)
    assert (asv.threshold, asv.Pmiss_asv, asv.Pfa_asv, asv.Pfa_spoof_asv) == pytest.approx((0.5, 0.0, 1 / 3, 0.5))
    c0 = 0.9405 * 0.0 + 0.0095 * 10 / 3
    c1, c2 = 0.9405 - c0, 0.05 * 10 * 0.5
    curve, _ = tdcf_curve_2021([1.0, 2.0], [0.0, 1.5], asv)
    # cut points: reject nothing, then the sorted scores 0, 1, 1.5, 2
    want = [c0 + c2, c0 + c2 / 2, c0 + c1 / 2 + c2 / 2, c0 + c1 / 2, c0 + c1]
    np.testing.assert_allclose(curve, np.array(want) / (c0 + min(c1, c2)), rtol=1e-12)
    perfect, _ = compute_min_tdcf_2021([5.0, 6.0], [-5.0, -6.0], tar, non, spoof)
    assert perfect == pytest.approx(c0 / (c0 + min(c1, c2)), rel=1e-12) and perfect > 0
    assert compute_min_tdcf([5.0, 6.0], [-5.0, -6.0], tar, non, spoof)[0] == 0.0  # 2019: zero


def test_2021_min_is_at_most_one_and_degenerate_asv_is_one_line():
    rng = np.random.default_rng(4)
    tar, non, spoof = rng.normal(3, 1, 200), rng.normal(-3, 1, 200), rng.normal(0, 2, 200)
    value, _ = compute_min_tdcf_2021(rng.normal(size=300), rng.normal(size=300), tar, non, spoof)
    assert 0.9 < value <= 1.0  # a useless CM: the cheaper of always accepting / always rejecting
    with pytest.raises(UserError, match=r"^t-DCF: degenerate ASV error rates give C0="):
        compute_min_tdcf_2021([1.0, 2.0], [0.0], -tar, -non, spoof)  # an inverted ASV: C0 > Ptar Cmiss, C1 < 0


def test_both_definitions_refuse_a_degenerate_asv_with_one_advice():
    rng = np.random.default_rng(4)
    tar, non, spoof = rng.normal(3, 1, 200), rng.normal(-3, 1, 200), rng.normal(0, 2, 200)
    advice = "; check that the ASV scores separate targets from nontargets and spoofs"
    for compute, costs in ((compute_min_tdcf, r"C1=\S+, C2=\S+ \(both must be > 0\)"),
                           (compute_min_tdcf_2021, r"C0=\S+, C1=\S+, C2=\S+ \(need C1 >= 0 and C0 \+ min\(C1, C2\) > 0\)")):
        with pytest.raises(UserError) as info:
            compute([1.0, 2.0], [0.0], -tar, -non, spoof)  # an inverted ASV
        assert re.fullmatch(r"t-DCF: degenerate ASV error rates give " + costs + re.escape(advice), str(info.value))


def test_score_command_offers_every_definition():
    from dpda.commands.score import TDCF_CHOICES

    assert set(TDCF_CHOICES) == set(TDCF_DEFINITIONS)
