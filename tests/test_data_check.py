"""check_manifest / `dpda check`: every problem kind reported with its CSV line; skip mode."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from dpda.cli import main
from dpda.data.check import (
    DUPLICATE, EMPTY, KINDS, MISSING, NONFINITE, OUTSIDE, UNKNOWN_LABEL, UNREADABLE, check_manifest, inspect_manifest,
)
from dpda.data.dataset import AudioDataset, make_loader
from dpda.data.readers import load_corpus
from dpda.errors import UserError


def _wav(path, seconds=0.2, subtype="PCM_16", values=None):
    x = np.random.default_rng(0).uniform(-0.3, 0.3, int(16000 * seconds)) if values is None else values
    sf.write(path, x, 16000, subtype=subtype)


@pytest.fixture()
def bad_corpus(tmp_path):
    """A CSV corpus with one row per problem kind, plus good rows; returns (csv path, root)."""
    root = tmp_path / "corpus"
    (root / "a").mkdir(parents=True)
    for name in ("good1", "good2", "good3", "dup"):
        _wav(root / "a" / f"{name}.wav")
    (root / "a" / "junk.wav").write_bytes(b"RIFF\x00\x00garbage" * 4)
    sf.write(root / "a" / "empty.wav", np.zeros(0), 16000)
    nan = np.zeros(800)
    nan[100] = np.nan
    _wav(root / "a" / "nan.flt.wav", subtype="FLOAT", values=nan)
    inf = np.zeros(800)
    inf[7] = np.inf
    _wav(root / "a" / "inf.flt.wav", subtype="DOUBLE", values=inf)
    _wav(tmp_path / "outside.wav")
    os.symlink(tmp_path / "outside.wav", root / "a" / "link.wav")
    rows = [
        "a/good1.wav,bonafide,g1",   # line 2
        "a/missing.wav,spoof,m",     # 3
        "a/junk.wav,spoof,j",        # 4
        "a/empty.wav,spoof,e",       # 5
        "a/nan.flt.wav,spoof,n",     # 6
        "a/good2.wav,maybe,l",       # 7 unknown label
        "a/dup.wav,spoof,g1",        # 8 duplicate of line 2
        "a/link.wav,bonafide,s",     # 9 symlink escaping the root
        "../outside.wav,spoof,o",    # 10 relative path escaping the root
        "a/inf.flt.wav,bonafide,i",  # 11
        "a/good3.wav,spoof,g3",      # 12
    ]
    csv = root / "list.csv"
    csv.write_text("path,label,utt\n" + "\n".join(rows) + "\n")
    return csv, root


EXPECTED = {
    3: MISSING, 4: UNREADABLE, 5: EMPTY, 6: NONFINITE, 7: UNKNOWN_LABEL, 8: DUPLICATE, 9: OUTSIDE, 10: OUTSIDE, 11: NONFINITE,
}


def test_every_problem_reported_with_file_and_line(bad_corpus):
    csv, root = bad_corpus
    result = inspect_manifest(load_corpus(str(csv)), num_workers=2)
    assert {int(p.where.rsplit(":", 1)[1]): p.kind for p in result.problems} == EXPECTED
    assert all(p.where.startswith(f"{csv}:") for p in result.problems)
    assert result.counts == {k: 0 for k in KINDS} | {MISSING: 1, UNREADABLE: 1, EMPTY: 1, NONFINITE: 2, UNKNOWN_LABEL: 1, DUPLICATE: 1, OUTSIDE: 2}
    dup = next(p for p in result.problems if p.kind == DUPLICATE)
    assert f"already at {csv}:2" in dup.detail
    assert result.audio["sample_rates"] == {16000: 4}


def test_fail_mode_raises_listing_first_problems_and_counts(bad_corpus):
    csv, _ = bad_corpus
    with pytest.raises(UserError) as err:
        check_manifest(load_corpus(str(csv)), policy="fail", max_listed=3)
    msg = str(err.value)
    assert f"{csv}:3: missing_file" in msg and f"{csv}:5: zero_length_audio" in msg
    assert f"{csv}:6:" not in msg and "... and 6 more" in msg
    assert "9 problem(s) in 9 of 11 rows" in msg and "outside_root: 2" in msg


def test_skip_mode_drops_bad_rows_and_loader_yields_only_good(bad_corpus):
    csv, _ = bad_corpus
    result = check_manifest(load_corpus(str(csv)), policy="skip")
    assert result.manifest["utt"].tolist() == ["g1", "g3"]
    assert result.counts[NONFINITE] == 2 and result.total == 11 and len(result.bad_rows) == 9
    loader = make_loader(AudioDataset(result.manifest, 1000), batch_size=4, shuffle=False)
    (waves, targets, index), = list(loader)
    assert waves.shape == (2, 1000) and index.tolist() == [0, 1] and targets.tolist() == [1, 0]


def test_explicit_root_and_float_only_decode(bad_corpus, tmp_path):
    csv, _ = bad_corpus
    m = load_corpus(str(csv))
    wide = inspect_manifest(m, root=tmp_path, decode="float")
    assert wide.counts[OUTSIDE] == 0  # both escaping paths are inside tmp_path
    assert wide.counts[NONFINITE] == 2
    assert inspect_manifest(m, decode="none").counts[NONFINITE] == 0
    with pytest.raises(UserError, match="policy"):
        check_manifest(m, policy="ignore")


def test_truncated_flac_is_unreadable(tmp_path):
    _wav(tmp_path / "t.flac", seconds=2.0)
    data = (tmp_path / "t.flac").read_bytes()
    (tmp_path / "t.flac").write_bytes(data[: len(data) // 2])
    (tmp_path / "l.csv").write_text("path,label\nt.flac,spoof\n")
    result = inspect_manifest(load_corpus(str(tmp_path / "l.csv")))
    assert [p.kind for p in result.problems] == [UNREADABLE]


def test_cli_check_exit_codes(bad_corpus, tmp_path, capsys):
    csv, root = bad_corpus
    assert main(["check", str(csv)]) == 1
    out = capsys.readouterr().out
    assert f"{csv}:4: unreadable_audio" in out and "total" in out
    assert main(["check", str(csv), "--policy", "skip"]) == 0
    assert "9 bad rows would be dropped, 2 kept" in capsys.readouterr().out
    good = tmp_path / "good.csv"
    good.write_text(f"path,label,attack\n{root}/a/good1.wav,bonafide,\n{root}/a/good3.wav,spoof,A01\n")
    assert main(["check", f"csv:{good}"]) == 0
    out = capsys.readouterr().out
    assert "ok: no problems" in out and "A01" in out
    bad_spec = tmp_path / "nope.csv"
    assert main(["check", str(bad_spec), f"csv:{good}"]) == 2
