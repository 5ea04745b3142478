"""Corpus readers: a tiny fixture of every real layout, written here, parsed into manifests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dpda.data.manifest import (
    CORE_COLUMNS,
    SOURCE_COLUMNS,
    concat_manifests,
    condition_columns,
    make_manifest,
    validate_manifest,
)
from dpda.data.readers import load_corpus, parse_spec
from dpda.errors import UserError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _la2019(root: Path) -> Path:
    la = root / "LA"
    _write(
        la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt",
        "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n\nLA_0080 LA_T_1272637 - A06 spoof\n",
    )
    _write(la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt", "LA_0069 LA_D_1047731 - - bonafide\n")
    _write(la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt", "LA_0039 LA_E_2834763 - A11 spoof\n")
    return la


def test_asvspoof2019_train_parsed_with_lines(tmp_path):
    la = _la2019(tmp_path)
    m = load_corpus(f"asvspoof2019:{tmp_path}:train")
    validate_manifest(m)
    assert list(m.columns) == list(CORE_COLUMNS + SOURCE_COLUMNS)
    assert m["utt"].tolist() == ["LA_T_1138215", "LA_T_1271820", "LA_T_1272637"]
    assert m["label"].tolist() == ["bonafide", "spoof", "spoof"]
    assert m["target"].tolist() == [1, 0, 0]
    assert m["attack"].tolist() == ["-", "A01", "A06"]
    assert m["speaker"].tolist() == ["LA_0079", "LA_0079", "LA_0080"]
    assert m["source_line"].tolist() == [1, 2, 4]  # the blank line 3 is skipped, numbering kept
    assert m["path"][1] == str(la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1271820.flac")
    assert set(m["corpus"]) == {"asvspoof2019la"} and set(m["subset"]) == {"train"}
    assert m.attrs["root"] == str(la)
    # the LA folder itself is accepted too, and each subset reads its own protocol
    assert load_corpus(f"asvspoof2019:{la}:eval")["attack"].tolist() == ["A11"]
    assert load_corpus(f"asvspoof2019:{la}:dev")["path"][0].endswith("ASVspoof2019_LA_dev/flac/LA_D_1047731.flac")


def test_asvspoof2019_malformed_line_names_file_and_line(tmp_path):
    la = _la2019(tmp_path)
    proto = la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    proto.write_text(proto.read_text() + "LA_0080 LA_T_9999999 A02 spoof\n")
    with pytest.raises(UserError, match=rf"{proto}:5: expected 5 fields"):
        load_corpus(f"asvspoof2019:{tmp_path}:train")


def test_asvspoof2021_la_conditions_and_phase_filter(tmp_path):
    meta = _write(
        tmp_path / "LA-keys-full" / "keys" / "LA" / "CM" / "trial_metadata.txt",
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
        "LA_0020 LA_E_5932896 none no_channel bonafide bonafide notrim progress\n"  # as the keys write it
        "LA_0014 LA_E_1234567 ulaw loc_tx A19 spoof trim hidden_track extra_col\n",
    )
    m = load_corpus(f"asvspoof2021la:{tmp_path}")
    validate_manifest(m)
    assert condition_columns(m) == ["codec", "transmission", "trim", "phase", "extra9"]
    assert m["codec"].tolist() == ["alaw", "none", "ulaw"]
    assert m["transmission"].tolist() == ["ita_tx", "no_channel", "loc_tx"]
    assert m["extra9"].tolist() == ["-", "-", "extra_col"]
    assert m["attack"].tolist() == ["A07", "-", "A19"] and m["target"].tolist() == [0, 1, 0]
    assert m["path"][0] == str(tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac")
    assert m["source_file"][0] == str(meta) and m["source_line"].tolist() == [1, 2, 3]
    ev = load_corpus(f"asvspoof2021la:{tmp_path}:eval")
    assert ev["utt"].tolist() == ["LA_E_9332881"] and ev["source_line"].tolist() == [1]
    meta.write_text(meta.read_text() + "LA_0001 LA_E_1 alaw ita_tx A07\n")
    with pytest.raises(UserError, match=rf"{meta}:4: expected at least 6 fields"):
        load_corpus(f"asvspoof2021la:{tmp_path}")


def test_asvspoof2021_df_conditions_tolerant_column_count(tmp_path):
    _write(
        tmp_path / "DF-keys-full" / "keys" / "DF" / "CM" / "trial_metadata.txt",
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n"
        "TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 spoof notrim eval neural_vocoder_nonautoregressive Task1 team20 FF E\n"
        "LA_0031 DF_E_2000020 mp3m4a asvspoof bonafide bonafide notrim eval bonafide\n",
    )
    (tmp_path / "LA-keys-full" / "keys" / "LA" / "CM").mkdir(parents=True)
    _write(tmp_path / "LA-keys-full" / "keys" / "LA" / "CM" / "trial_metadata.txt", "x y z w - bonafide a b\n")
    m = load_corpus(f"asvspoof2021df:{tmp_path}:eval")
    assert m["utt"].tolist() == ["DF_E_2000013", "DF_E_2000020"]
    assert m["source"].tolist() == ["vcc2020", "asvspoof"]
    assert m["vocoder"].tolist() == ["neural_vocoder_nonautoregressive", "-"]  # spoof-only columns: `-` for bona fide
    assert m["attack"].tolist() == ["Task1-team20", "-"]
    assert m["codec"].tolist() == ["low_m4a", "mp3m4a"]
    assert m["extra10"].tolist() == ["Task1", "-"] and m["extra13"].tolist() == ["E", "-"]
    assert m["label"].tolist() == ["spoof", "bonafide"] and m["corpus"].iloc[0] == "asvspoof2021df"
    assert m["source_line"].tolist() == [2, 3]


def test_in_the_wild(tmp_path):
    meta = _write(tmp_path / "itw" / "meta.csv", "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n")
    m = load_corpus(f"itw:{tmp_path / 'itw'}")
    validate_manifest(m)
    assert m["utt"].tolist() == ["0.wav", "1.wav"] and m["label"].tolist() == ["spoof", "bonafide"]
    assert m["target"].tolist() == [0, 1] and m["speaker"].tolist() == ["Alec Guinness"] * 2
    assert m["attack"].tolist() == ["unknown", "-"] and m["source_line"].tolist() == [2, 3]
    assert m["path"][1] == str(tmp_path / "itw" / "1.wav")
    meta.write_text("file,speaker,label\n0.wav,a,spoof\n1.wav,b\n")
    with pytest.raises(UserError, match=rf"{meta}:3: expected 3 fields"):
        load_corpus(f"itw:{tmp_path / 'itw'}")
    meta.write_text("file,who,label\n")
    with pytest.raises(UserError, match=rf"{meta}:1: .*lacks column\(s\) speaker"):
        load_corpus(f"itw:{tmp_path / 'itw'}")


def test_fake_or_real(tmp_path):
    base = tmp_path / "for-norm"
    for split, folder, name in [
        ("training", "real", "a.wav"), ("training", "fake", "b.wav"), ("testing", "real", "a.wav"),
        ("testing", "fake", "c.wav"), ("testing", "fake", "d.wav"), ("validation", "real", "e.wav"),
    ]:
        _write(base / split / folder / name, "")
    _write(base / "testing" / "fake" / "notes.txt", "")
    m = load_corpus(f"for:{tmp_path}:testing")
    validate_manifest(m)
    assert m["utt"].tolist() == ["real/a.wav", "fake/c.wav", "fake/d.wav"]
    assert m["label"].tolist() == ["bonafide", "spoof", "spoof"] and set(m["subset"]) == {"testing"}
    all_ = load_corpus(f"for:{base}")
    assert len(all_) == 6 and all_["utt"].is_unique and "testing/real/a.wav" in set(all_["utt"])
    assert load_corpus(f"for:{tmp_path}:train")["utt"].tolist() == ["real/a.wav", "fake/b.wav"]


def test_generic_csv(tmp_path):
    csv_path = _write(
        tmp_path / "lists" / "mine.csv",
        "path,label,utt,speaker,attack,room\n"
        "audio/x.wav,bona-fide,u1,s1,,small\n"
        "/abs/y.flac,spoof,,s2,TTS1,\n"
        "audio/z.wav,fake,u3,,,big\n",
    )
    m = load_corpus(str(csv_path))  # bare path to a .csv
    validate_manifest(m)
    assert m["utt"].tolist() == ["u1", "/abs/y", "u3"]
    assert m["path"].tolist() == [str(tmp_path / "lists" / "audio" / "x.wav"), "/abs/y.flac", str(tmp_path / "lists" / "audio" / "z.wav")]
    assert m["label"].tolist() == ["bonafide", "spoof", "spoof"]
    assert m["attack"].tolist() == ["-", "TTS1", "unknown"]
    assert m["speaker"].tolist() == ["s1", "s2", "-"]
    assert m["room"].tolist() == ["small", "-", "big"] and m["corpus"][0] == "mine"
    assert m["source_line"].tolist() == [2, 3, 4] and m.attrs["root"] == str(tmp_path / "lists")
    assert load_corpus(f"csv:{csv_path}:dev")["subset"].tolist() == ["dev"] * 3
    csv_path.write_text("path,label\nx.wav,\n")
    with pytest.raises(UserError, match=rf"{csv_path}:2: empty label"):
        load_corpus(str(csv_path))


def test_csv_quoted_multiline_field_line_numbers(tmp_path):
    p = _write(tmp_path / "q.csv", 'path,label,note\na.wav,spoof,"two\nlines"\nb.wav,bonafide,x\nc.wav,spoof\n')
    with pytest.raises(UserError, match=rf"{p}:5: expected 3 fields"):
        load_corpus(str(p))


def test_spec_parsing_errors(tmp_path):
    assert parse_spec("asvspoof2019:/d/LA:dev").subset == "dev"
    assert parse_spec("itw:/data/release_in_the_wild").subset is None
    assert parse_spec("/x/y.csv").kind == "csv"
    with pytest.raises(UserError, match="KIND in asvspoof2019"):
        parse_spec("timit:/x")
    with pytest.raises(UserError, match="needs a subset"):
        parse_spec("asvspoof2019:/x/LA")
    with pytest.raises(UserError, match="subset 'test' not in train, dev, eval"):
        parse_spec("asvspoof2019:/x/LA:test")
    with pytest.raises(UserError, match="protocol file not found|no ASVspoof2019_LA_cm_protocols"):
        load_corpus(f"asvspoof2019:{tmp_path}:train")


def test_every_reader_entry_parses_its_own_kind_and_subsets():
    """The reader table is the one list of kinds and subsets: each entry's subsets parse as that
    kind's SUBSET, and the unknown-kind message lists exactly the table's kinds."""
    from dpda.data.readers import _READERS

    for kind, entry in _READERS.items():
        for subset in entry.subsets or ("anything",):
            spec = parse_spec(f"{kind}:/d/x:{subset}")
            assert (spec.kind, spec.path, spec.subset) == (kind, Path("/d/x"), subset)
    with pytest.raises(UserError, match=f"KIND in {', '.join(_READERS)} "):
        parse_spec("timit:/x")


def test_unknown_labels_are_kept_for_the_check(tmp_path):
    _write(tmp_path / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt", "S U1 - - maybe\n")
    m = load_corpus(f"asvspoof2019:{tmp_path}:train")
    assert m["label"].tolist() == ["maybe"] and m["target"].tolist() == [-1]


def test_concat_fills_conditions_and_validator_rejects_bad_shapes(tmp_path):
    a = make_manifest({"utt": ["a"], "path": ["/a"], "label": ["spoof"], "corpus": ["c1"], "subset": ["eval"],
                       "codec": ["alaw"], "source_file": ["f"], "source_line": [1]})
    b = make_manifest({"utt": ["b"], "path": ["/b"], "label": ["bona-fide"], "corpus": ["c2"], "subset": ["eval"],
                       "vocoder": ["x"], "source_file": ["g"], "source_line": [7]})
    m = concat_manifests([a, b])
    validate_manifest(m)
    assert m["codec"].tolist() == ["alaw", "-"] and m["vocoder"].tolist() == ["-", "x"]
    assert m["target"].tolist() == [0, 1] and list(m.index) == [0, 1]
    assert list(m.columns)[-2:] == list(SOURCE_COLUMNS)
    with pytest.raises(UserError, match="missing manifest columns"):
        validate_manifest(m.drop(columns=["speaker"]))
    bad = m.copy()
    bad.loc[1, "target"] = 0
    with pytest.raises(UserError, match="g:7: target 0 does not match label 'bonafide'"):
        validate_manifest(bad)
    assert isinstance(concat_manifests([]), pd.DataFrame)


def test_repository_root_does_not_shadow_stdlib_platform():
    root = Path(__file__).resolve().parents[1]
    expected = subprocess.run([sys.executable, "-c", "import platform; print(platform.system())"],
                              capture_output=True, text=True, cwd="/").stdout
    out = subprocess.run([sys.executable, "-c", "import platform; print(platform.system())"],
                         capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected and out.stdout.strip()


def test_csv_ids_derived_from_paths_with_spaces_are_score_file_ids(tmp_path):
    """Score files are `UTT SCORE` lines: an id made from a path with spaces passed the check and
    training, then `dpda eval` refused it. Ids derived from paths replace whitespace with `_`."""
    from dpda.metrics.scores import read_scores, write_scores

    csv_path = _write(tmp_path / "c.csv", "path,label,utt\nmy dir/a b.wav,bonafide,\nc\td.wav,spoof,u2\n")
    # a tab inside a path: quoted by the csv module only when needed; here it is a plain field
    m = load_corpus(str(csv_path))
    assert m["utt"].tolist() == ["my_dir/a_b", "u2"]
    assert m["path"].tolist() == [str(tmp_path / "my dir" / "a b.wav"), str(tmp_path / "c\td.wav")]
    scores = read_scores(write_scores(tmp_path / "s.txt", m["utt"], [0.5, -1.0]))
    assert scores.to_dict() == {"my_dir/a_b": 0.5, "u2": -1.0}


def test_csv_path_derived_ids_stay_unique_after_cleaning(tmp_path):
    """`a b.wav` and `a_b.wav` both become `a_b`: the check names both lines, as for any repeat."""
    from dpda.data.check import check_manifest

    csv_path = _write(tmp_path / "c.csv", "path,label\na b.wav,bonafide\na_b.wav,spoof\n")
    with pytest.raises(UserError, match=rf"{csv_path}:3: duplicate_utt: utt 'a_b' already at {csv_path}:2"):
        check_manifest(load_corpus(str(csv_path)), policy="fail", decode="none")


@pytest.mark.parametrize("utt", ["a b", "a\tb", "a\u00a0b"])
def test_csv_explicit_ids_with_whitespace_are_refused_naming_the_line(tmp_path, utt):
    csv_path = _write(tmp_path / "c.csv", f'path,label,utt\nx.wav,spoof,u1\ny.wav,bonafide,"{utt}"\n')
    with pytest.raises(UserError) as err:
        load_corpus(str(csv_path))
    assert str(err.value) == (f"{csv_path}:3: utt {utt!r} contains whitespace (score files are "
                              "'UTT SCORE' lines); use an id without spaces or leave utt empty")
