"""EER / min t-DCF against independent direct implementations and hand-checked values; score
files; per-attack and per-condition breakdowns; the `dpda score` command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dpda.cli import main
from dpda.errors import UserError
from dpda.metrics import (
    ASVSPOOF2019,
    asv_error_rates,
    breakdown,
    compute_eer,
    compute_min_tdcf,
    read_asv_scores,
    read_scores,
    write_scores,
)


def direct_eer(bona, spoof, ties="asvspoof"):
    """O(n^2) EER straight from the definitions, without sorting or cumulative sums."""
    bona, spoof = np.asarray(bona, float), np.asarray(spoof, float)
    if ties == "threshold":
        best = None
        for t in sorted(set(np.concatenate([bona, spoof]).tolist())) + [np.inf]:
            frr, far = np.mean(bona < t), np.mean(spoof >= t)
            if best is None or abs(frr - far) < best[0]:
                best = (abs(frr - far), (frr + far) / 2)
        return best[1]
    scores = np.concatenate([bona, spoof])
    n = scores.size
    # Rank of each trial in the reference order: by score, ties broken bona fide first, then by position.
    rank = np.array([sum(1 for j in range(n) if scores[j] < scores[i] or (scores[j] == scores[i] and j < i))
                     for i in range(n)])
    best = None
    for k in range(n + 1):
        frr = np.sum(rank[: bona.size] < k) / bona.size  # bona fide rejected: among the first k
        far = np.sum(rank[bona.size:] >= k) / spoof.size  # spoof accepted: after the first k
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    return best[1]


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_direct_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    bona = rng.normal(1.0, 1.0, size=rng.integers(5, 60))
    spoof = rng.normal(-0.5, 1.2, size=rng.integers(5, 60))
    for ties in ("asvspoof", "threshold"):
        assert compute_eer(bona, spoof, ties)[0] == pytest.approx(direct_eer(bona, spoof, ties), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_direct_on_tied_scores(seed):
    rng = np.random.default_rng(100 + seed)
    bona = rng.integers(0, 6, size=rng.integers(5, 40)).astype(float)
    spoof = rng.integers(-2, 4, size=rng.integers(5, 40)).astype(float)
    for ties in ("asvspoof", "threshold"):
        assert compute_eer(bona, spoof, ties)[0] == pytest.approx(direct_eer(bona, spoof, ties), abs=1e-12)


def test_eer_closed_forms():
    assert compute_eer([2.0, 3.0, 4.0], [-1.0, 0.0, 1.0]) == (0.0, 1.0)
    # Fully reversed scores: every bona fide below every spoof.
    assert compute_eer([-1.0, 0.0], [1.0, 2.0])[0] == 1.0
    # Identical scores: a real threshold gives 0.5; the ASVspoof reference puts tied bona fide
    # trials first in its stable sort and so reports the pessimistic 1.0.
    assert compute_eer(np.zeros(4), np.zeros(6), ties="threshold")[0] == 0.5
    assert compute_eer(np.zeros(4), np.zeros(6))[0] == 1.0
    # Overlap of one trial each out of four.
    assert compute_eer([1.0, 2.0, 3.0, 0.5], [0.0, 0.1, 0.2, 0.6])[0] == 0.25


def test_eer_rejects_empty_and_nan():
    with pytest.raises(UserError, match="bona fide scores"):
        compute_eer([], [1.0])
    with pytest.raises(UserError, match="spoof scores.*NaN"):
        compute_eer([1.0], [np.nan])


def test_min_tdcf_hand_checked():
    tar, non, asv_spoof = [2.0, 3.0, 4.0], [-1.0, 0.0, 1.0], [0.5, 1.5, 2.5, -2.0]
    asv = asv_error_rates(tar, non, asv_spoof)
    # ASV EER cut lies between 1 and 2; the reference's threshold is the highest rejected score (1.0)
    # and accepts scores >= it, so one nontarget (score 1.0) is accepted.
    assert (asv.threshold, asv.Pfa_asv, asv.Pmiss_asv, asv.Pmiss_spoof_asv) == (1.0, 1 / 3, 0.0, 0.5)
    c1 = ASVSPOOF2019.Ptar * 1.0 - ASVSPOOF2019.Pnon * 10 * (1 / 3)  # 0.908833...
    c2 = 10 * 0.05 * (1 - 0.5)  # 0.25
    # CM sorted: 0 (spoof), 1 (bona), 1.5 (spoof), 2 (bona): (Pmiss, Pfa) per cut:
    cuts = [(0, 1), (0, 0.5), (0.5, 0.5), (0.5, 0), (1, 0)]
    expected = min((c1 * m + c2 * f) / min(c1, c2) for m, f in cuts)
    assert expected == pytest.approx(0.5)
    value, threshold = compute_min_tdcf([1.0, 2.0], [0.0, 1.5], tar, non, asv_spoof)
    assert value == pytest.approx(expected, abs=1e-12)
    assert threshold == 0.0
    assert ASVSPOOF2019.Ptar == pytest.approx(0.9405) and ASVSPOOF2019.Pnon == pytest.approx(0.0095)


def test_min_tdcf_perfect_cm_is_zero_and_bounded_by_one():
    rng = np.random.default_rng(0)
    tar, non, sp = rng.normal(3, 1, 200), rng.normal(-3, 1, 200), rng.normal(0, 1, 200)
    assert compute_min_tdcf([5.0, 6.0], [-5.0, -6.0], tar, non, sp)[0] == 0.0
    random_cm = compute_min_tdcf(rng.normal(size=300), rng.normal(size=300), tar, non, sp)[0]
    assert 0.0 < random_cm <= 1.0 + 1e-12  # never worse than the cheaper trivial CM


def test_score_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    utts = [f"LA_E_{i:07d}" for i in range(50)]
    scores = np.concatenate([rng.normal(size=48) * 10.0 ** rng.integers(-8, 8, 48), [0.0, -1e-300]])
    path = write_scores(tmp_path / "s" / "scores.txt", utts, scores)
    back = read_scores(path)
    assert list(back.index) == utts
    np.testing.assert_array_equal(back.to_numpy(), scores)


def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    """Windows editors save UTF-8 with a BOM: read as plain UTF-8 it became the first id's first
    character, so that utterance matched no key and was dropped from the EER."""
    path = tmp_path / "bom.txt"
    path.write_text("a 1.0\nb 2.0\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert list(read_scores(path).index) == ["a", "b"]
    asv = tmp_path / "asv.txt"
    asv.write_text("A01 target 1.0\nA02 nontarget -1.0\nA03 spoof -2.0\n", encoding="utf-8-sig")
    assert {k: v.tolist() for k, v in read_asv_scores(asv).items()} == {"target": [1.0], "nontarget": [-1.0], "spoof": [-2.0]}
    keys = tmp_path / "keys.txt"  # a 2019 protocol, and a score file, both with a BOM: every trial pairs
    keys.write_text("LA_0001 a - - bonafide\nLA_0001 b - A01 spoof\n", encoding="utf-8-sig")
    assert main(["score", str(path), str(keys)]) == 0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a 1.0\nb 2.0 extra\n", 2, "expected 2 fields"),
        ("a 1.0\n\n# note\nb x\n", 4, "not a number"),
        ("a nan\n", 1, "not finite"),
        ("a 1\nb 2\na 3\n", 3, "already scored on line 1"),
    ],
)
def test_bad_score_lines_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=rf"bad\.txt:{line}: .*{message}"):
        read_scores(path)


def test_write_scores_rejects_whitespace_ids_and_length_mismatch(tmp_path):
    with pytest.raises(UserError, match="whitespace"):
        write_scores(tmp_path / "x", ["a b"], [1.0])
    with pytest.raises(UserError, match="2 utterance ids but 1 scores"):
        write_scores(tmp_path / "x", ["a", "b"], [1.0])


def _manifest():
    rng = np.random.default_rng(7)
    rows = []
    for i in range(40):
        bona = i < 16
        rows.append(dict(utt=f"u{i}", label="bonafide" if bona else "spoof", target=int(bona),
                         attack="-" if bona else ("A01" if i % 2 else "A02"), speaker="s",
                         codec="alaw" if i % 3 else "none"))
    frame = pd.DataFrame(rows)
    scores = pd.Series(rng.normal(size=40) + frame["target"].to_numpy() * 1.5, index=frame["utt"].to_numpy())
    return frame, scores


def test_breakdown_per_attack_and_condition():
    frame, scores = _manifest()
    table = breakdown(frame, scores)
    s = scores.to_numpy()
    bona = frame["target"].to_numpy() == 1
    assert table.iloc[0][["factor", "value"]].tolist() == ["all", "pooled"]
    assert table.iloc[0]["eer"] == compute_eer(s[bona], s[~bona])[0]
    for attack in ("A01", "A02"):  # each attack against ALL bona fide trials
        row = table[(table.factor == "attack") & (table.value == attack)].iloc[0]
        sel = (frame["attack"] == attack).to_numpy()
        assert row["eer"] == compute_eer(s[bona], s[sel])[0]
        assert (row["n_bonafide"], row["n_spoof"]) == (16, sel.sum())
    for codec in ("alaw", "none"):  # a condition of both classes: scored within the value
        row = table[(table.factor == "codec") & (table.value == codec)].iloc[0]
        sel = (frame["codec"] == codec).to_numpy()
        assert row["eer"] == compute_eer(s[bona & sel], s[~bona & sel])[0]


def test_breakdown_missing_scores_and_unknown_column():
    frame, scores = _manifest()
    with pytest.raises(UserError, match="2 of 40 trials have no score, e.g. u3, u5"):
        breakdown(frame, scores.drop(["u3", "u5"]))
    with pytest.raises(UserError, match="no column 'vocoder'"):
        breakdown(frame, scores, by=["vocoder"])
    extra = pd.concat([scores, pd.Series([9.0], index=["not_in_keys"])])
    assert breakdown(frame, extra).iloc[0]["eer"] == breakdown(frame, scores).iloc[0]["eer"]


def test_read_asv_scores(tmp_path):
    path = tmp_path / "asv.txt"
    path.write_text("LA_0001 target 1.5\nLA_0002 nontarget -2\nA07 spoof 0.5\n")
    got = read_asv_scores(path)
    assert {k: v.tolist() for k, v in got.items()} == {"target": [1.5], "nontarget": [-2.0], "spoof": [0.5]}
    path.write_text("LA_0001 target 1.5\nLA_0002 impostor -2\n")
    with pytest.raises(UserError, match=r"asv\.txt:2: key 'impostor'"):
        read_asv_scores(path)


def _write_2019_keys(tmp_path):
    frame, scores = _manifest()
    lines = [f"LA_00{i % 5} {r.utt} - {r.attack} {r.label}" for i, r in enumerate(frame.itertuples())]
    protocol = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    protocol.write_text("\n".join(lines) + "\n")
    score_file = write_scores(tmp_path / "scores.txt", scores.index, scores.to_numpy())
    return frame, scores, protocol, score_file


def test_score_command_on_2019_protocol(tmp_path, capsys):
    frame, scores, protocol, score_file = _write_2019_keys(tmp_path)
    asv = tmp_path / "asv.txt"
    rng = np.random.default_rng(3)
    asv.write_text("".join(f"S {k} {v}\n" for k, mu in (("target", 3), ("nontarget", -3), ("spoof", 0))
                           for v in rng.normal(mu, 1, 30)))
    out_csv = tmp_path / "out" / "breakdown.csv"
    assert main(["score", str(score_file), str(protocol), "--asv-scores", str(asv), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    s, bona = scores.to_numpy(), frame["target"].to_numpy() == 1
    eer = compute_eer(s[bona], s[~bona])[0]
    assert f"EER: {100 * eer:.4f} %" in out
    assert "min t-DCF (2019):" in out and "A01" in out and "A02" in out
    assert pd.read_csv(out_csv)["value"].tolist()[:3] == ["pooled", "A01", "A02"]


def test_score_command_on_2021_trial_metadata(tmp_path, capsys):
    frame, scores = _manifest()
    meta = tmp_path / "CM" / "trial_metadata.txt"
    meta.parent.mkdir()
    meta.write_text("".join(f"LA_0001 {r.utt} {r.codec} tx {r.attack} {r.label} notrim eval\n"
                            for r in frame.itertuples()))
    score_file = write_scores(tmp_path / "scores.txt", scores.index, scores.to_numpy())
    assert main(["score", str(score_file), str(meta), "--by", "codec"]) == 0
    out = capsys.readouterr().out
    assert "alaw" in out and "none" in out and "A01" not in out


def test_score_command_reports_bad_score_line(tmp_path, capsys):
    _, _, protocol, score_file = _write_2019_keys(tmp_path)
    score_file.write_text(score_file.read_text() + "broken\n")
    assert main(["score", str(score_file), str(protocol)]) == 2
    assert "scores.txt:41: expected 2 fields" in capsys.readouterr().err
