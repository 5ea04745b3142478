"""ASVspoof 5 track 1, MLAAD and M-AILABS readers: fixtures written here in each published layout
(protocol lines and meta.csv files in the distributed format, tiny generated audio), parsed,
checked, and broken down per attack, codec and language through the code `dpda score` and
`dpda eval` use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dpda.cli import main
from dpda.data.check import check_manifest
from dpda.data.corpora import load_manifest
from dpda.data.manifest import condition_columns, validate_manifest
from dpda.data.readers import load_corpus
from dpda.errors import UserError
from dpda.metrics import breakdown

# ASVspoof 5 protocol lines as distributed (ASVspoof5_protocols.tar.gz): SPEAKER FILE GENDER CODEC
# CODEC_Q CODEC_SEED ATTACK_TAG ATTACK KEY TMP. Train and dev are uncoded (`-`); eval codes bona
# fide and spoofs alike with C01-C11 (CODEC_Q 0 for uncoded) and has attacks train never saw.
A5_LINES = {
    "train": ["T_4850 T_0000000000 F - - - AC3 A05 spoof -",
              "T_3734 T_0000000011 F - - - - bonafide bonafide -",
              "T_3734 T_0000000012 F - - - AC1 A01 spoof -"],
    "dev": ["D_0062 D_0000000001 F - - - AC1 A11 spoof -",
            "D_0461 D_0000000190 M - - - - bonafide bonafide -"],
    "eval": ["E_0001 E_0000000001 F - 0 - - bonafide bonafide -",
             "E_0002 E_0000000002 M C01 2 E_0000000001 - bonafide bonafide -",
             "E_0003 E_0000000003 F - 0 - AC1 A17 spoof -",
             "E_0004 E_0000000004 M C01 2 E_0000000003 AC1 A17 spoof -",
             "E_0005 E_0000000005 F C11 7 E_0000000009 AC2 A25 spoof -",
             "E_0006 E_0000000006 F C11 7 E_0000000008 - bonafide bonafide -"],
}
A5_FILES = {"train": ("ASVspoof5.train.tsv", "flac_T"), "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D"),
            "eval": ("ASVspoof5.eval.track_1.tsv", "flac_E_eval")}


def _audio(path: Path, seconds: float = 0.1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(len(path.name)).uniform(-0.3, 0.3, int(16000 * seconds)), 16000)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _asvspoof5(root: Path, audio: bool = True) -> Path:
    """The release layout: ASVspoof5_protocols/ beside flac_T, flac_D, flac_E_eval."""
    for subset, lines in A5_LINES.items():
        protocol, folder = A5_FILES[subset]
        _write(root / "ASVspoof5_protocols" / protocol, "\n".join(lines) + "\n")
        for line in lines if audio else ():
            _audio(root / folder / f"{line.split()[1]}.flac")
    return root


def test_asvspoof5_subsets_parse_with_attack_codec_gender_columns(tmp_path):
    root = _asvspoof5(tmp_path / "ASVspoof5", audio=False)
    m = load_corpus(f"asvspoof5:{root}:train")
    validate_manifest(m)
    assert condition_columns(m) == ["gender", "codec", "codec_q", "attack_tag"]
    assert m["utt"].tolist() == ["T_0000000000", "T_0000000011", "T_0000000012"]
    assert m["label"].tolist() == ["spoof", "bonafide", "spoof"] and m["target"].tolist() == [0, 1, 0]
    assert m["attack"].tolist() == ["A05", "-", "A01"]  # the protocol's `bonafide` attack is dpda's `-`
    assert m["speaker"].tolist() == ["T_4850", "T_3734", "T_3734"] and m["gender"].tolist() == ["F"] * 3
    assert m["path"][0] == str(root / "flac_T" / "T_0000000000.flac")
    assert set(m["subset"]) == {"train"} and set(m["corpus"]) == {"asvspoof5"} and m.attrs["root"] == str(root)
    assert m["source_line"].tolist() == [1, 2, 3]
    assert m["source_file"][0] == str(root / "ASVspoof5_protocols" / "ASVspoof5.train.tsv")
    assert load_corpus(f"asvspoof5:{root}:dev")["path"][1] == str(root / "flac_D" / "D_0000000190.flac")
    ev = load_corpus(f"asvspoof5:{root}:eval")
    assert ev["codec"].tolist() == ["-", "C01", "-", "C01", "C11", "C11"]
    assert ev["codec_q"].tolist() == ["0", "2", "0", "2", "7", "7"]
    assert ev["attack_tag"].tolist() == ["-", "-", "AC1", "AC1", "AC2", "-"]
    assert ev["path"][4] == str(root / "flac_E_eval" / "E_0000000005.flac")
    # a protocol file names its subset by its name, or else by its ids (T_, D_, E_)
    protocol = root / "ASVspoof5_protocols" / "ASVspoof5.eval.track_1.tsv"
    assert load_corpus(f"asvspoof5:{protocol}")["utt"].tolist() == ev["utt"].tolist()
    renamed = _write(tmp_path / "keys.txt", protocol.read_text())
    assert set(load_corpus(f"asvspoof5:{renamed}")["subset"]) == {"eval"}


def test_asvspoof5_bad_rows_and_specs_name_the_file_and_line(tmp_path):
    root = _asvspoof5(tmp_path, audio=False)
    protocol = root / "ASVspoof5_protocols" / "ASVspoof5.dev.track_1.tsv"
    protocol.write_text(protocol.read_text() + "D_0461 D_0000000191 M - - - - bonafide\n")
    with pytest.raises(UserError, match=rf"{protocol}:3: expected 10 fields 'SPEAKER UTT GENDER CODEC CODEC_Q"):
        load_corpus(f"asvspoof5:{root}:dev")
    with pytest.raises(UserError, match="needs a subset"):
        load_corpus(f"asvspoof5:{root}")
    with pytest.raises(UserError, match="subset 'progress' not in train, dev, eval"):
        load_corpus(f"asvspoof5:{root}:progress")
    (root / "ASVspoof5_protocols" / "ASVspoof5.train.tsv").unlink()
    with pytest.raises(UserError, match=r"ASVspoof5.train.tsv: protocol file not found"):
        load_corpus(f"asvspoof5:{root}:train")


def test_dpda_check_asvspoof5_names_the_protocol_line_of_a_missing_file(tmp_path, capsys):
    root = _asvspoof5(tmp_path)
    assert main(["check", f"asvspoof5:{root}:train", f"asvspoof5:{root}:dev"]) == 0
    assert "ok: no problems" in capsys.readouterr().out
    (root / "flac_T" / "T_0000000011.flac").unlink()
    assert main(["check", f"asvspoof5:{root}:train"]) == 1
    out = capsys.readouterr().out
    assert f"{root / 'ASVspoof5_protocols' / 'ASVspoof5.train.tsv'}:2: missing_file" in out


def _eval_scores(tmp_path: Path) -> Path:
    """Scores of the eval fixture: uncoded and C01 trials separate perfectly, C11 ones are reversed."""
    scores = {"E_0000000001": 2.0, "E_0000000002": 1.0, "E_0000000003": -2.0, "E_0000000004": 0.0,
              "E_0000000005": 0.5, "E_0000000006": -1.0}
    return _write(tmp_path / "eval.scores.txt", "".join(f"{u} {s}\n" for u, s in scores.items()))


def test_asvspoof5_unseen_attacks_and_codecs_each_get_a_breakdown_row(tmp_path):
    root = _asvspoof5(tmp_path / "a5")
    out = tmp_path / "codec.csv"
    assert main(["score", str(_eval_scores(tmp_path)), f"asvspoof5:{root}:eval", "--by", "codec,attack",
                 "--csv", str(out)]) == 0
    table = pd.read_csv(out, keep_default_na=False, na_values=[""]).set_index(["factor", "value"])
    # codec describes both classes: each codec's bona fide and spoofs are scored together
    assert table.loc[("codec", "-"), ["n_bonafide", "n_spoof", "eer"]].tolist() == [1, 1, 0.0]
    assert table.loc[("codec", "C01"), ["n_bonafide", "n_spoof", "eer"]].tolist() == [1, 1, 0.0]
    assert table.loc[("codec", "C11"), ["n_bonafide", "n_spoof", "eer"]].tolist() == [1, 1, 1.0]
    # attacks are spoof-only: each is scored against every bona fide trial; the eval-only attacks
    # (A17, A25: never in train) are reported each on their own
    train_attacks = set(load_corpus(f"asvspoof5:{root}:train")["attack"]) - {"-"}
    attacks = {v for f, v in table.index if f == "attack"}
    assert attacks == {"A17", "A25"} and not attacks & train_attacks
    assert table.loc[("attack", "A17"), ["n_bonafide", "n_spoof"]].tolist() == [3, 2]
    assert table.loc[("attack", "A25"), ["n_bonafide", "n_spoof"]].tolist() == [3, 1]
    # the protocol file itself is accepted as KEYS, as the 2019 / 2021 ones are
    keys = root / "ASVspoof5_protocols" / "ASVspoof5.eval.track_1.tsv"
    again = tmp_path / "again.csv"
    assert main(["score", str(_eval_scores(tmp_path)), str(keys), "--by", "codec,attack", "--csv", str(again)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again), pd.read_csv(out))


# MLAAD meta.csv as distributed: `|`-separated, a header, one file per fake/<language>/<model>/.
MLAAD_HEADER = "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript"
MLAAD = {
    ("de", "tts_models_de_thorsten_vits"): [
        "./fake/de/tts_models_de_thorsten_vits/gruene_haus_01_f000001.wav|de_DE/by_book/female/eva_k/gruene_haus/wavs/gruene_haus_01_f000001.wav|de|True|2.1|thorsten|tts_models/de/thorsten/vits|vits|Das Haus",
        "./fake/de/tts_models_de_thorsten_vits/gruene_haus_01_f000002.wav|de_DE/by_book/female/eva_k/gruene_haus/wavs/gruene_haus_01_f000002.wav|de|True|1.7|thorsten|tts_models/de/thorsten/vits|vits|\"Ja\", sagte sie",
    ],
    ("en", "facebook_mms-tts-eng"): [
        "./fake/en/facebook_mms-tts-eng/oz_01_f000001.wav|en_US/by_book/female/judy_bieber/oz/wavs/oz_01_f000001.wav|en|True|3.0|mms|facebook/mms-tts-eng|facebook/mms-tts|The wizard",
    ],
    ("fr", "tts_models_multilingual_multi-dataset_bark"): [  # a language M-AILABS has no speech in here
        "./fake/fr/tts_models_multilingual_multi-dataset_bark/oz_01_f000001.wav|en_US/by_book/female/judy_bieber/oz/wavs/oz_01_f000001.wav|fr|False|2.5|multi|tts_models/multilingual/multi-dataset/bark|bark|Le magicien",
    ],
}
# M-AILABS books: <lang>/by_book/<gender>/<speaker>/<book>/metadata.csv (`ID|TEXT|NORMALIZED`), wavs/ID.wav
MAILABS = {
    "de_DE/by_book/female/eva_k/gruene_haus": ["gruene_haus_01_f000001|Das Haus|Das Haus",
                                               "gruene_haus_01_f000002|\"Ja\", sagte sie|\"Ja\", sagte sie"],
    "en_US/by_book/female/judy_bieber/oz": ["oz_01_f000001|The wizard.|The wizard.", "oz_01_f000002|Dorothy|Dorothy"],
    "en_US/by_book/mix/sea_stories": ["sea_stories_01_f000001|Ahoy|Ahoy"],
}


def _mlaad(root: Path, audio: bool = True) -> Path:
    for (language, model), rows in MLAAD.items():
        _write(root / "fake" / language / model / "meta.csv", "\n".join([MLAAD_HEADER, *rows]) + "\n")
        for row in rows if audio else ():
            _audio(root / "fake" / language / model / Path(row.split("|")[0]).name)
    return root


def _mailabs(root: Path, audio: bool = True) -> Path:
    for book, rows in MAILABS.items():
        _write(root / book / "metadata.csv", "\n".join(rows) + "\n")
        for row in rows if audio else ():
            _audio(root / book / "wavs" / f"{row.split('|')[0]}.wav")
    return root


def test_mlaad_rows_carry_language_model_and_architecture(tmp_path):
    root = _mlaad(tmp_path / "MLAAD_v5", audio=False)
    m = load_corpus(f"mlaad:{root}")
    validate_manifest(m)
    assert condition_columns(m) == ["language", "architecture"]
    assert m["utt"].tolist() == [
        "fake/de/tts_models_de_thorsten_vits/gruene_haus_01_f000001.wav",
        "fake/de/tts_models_de_thorsten_vits/gruene_haus_01_f000002.wav",
        "fake/en/facebook_mms-tts-eng/oz_01_f000001.wav",
        "fake/fr/tts_models_multilingual_multi-dataset_bark/oz_01_f000001.wav",
    ]
    assert set(m["label"]) == {"spoof"} and m["language"].tolist() == ["de", "de", "en", "fr"]
    assert m["attack"].tolist()[1:3] == ["tts_models/de/thorsten/vits", "facebook/mms-tts-eng"]
    assert m["architecture"].tolist() == ["vits", "vits", "facebook/mms-tts", "bark"]
    assert m["path"][2] == str(root / "fake" / "en" / "facebook_mms-tts-eng" / "oz_01_f000001.wav")
    assert m["source_file"][2] == str(root / "fake" / "en" / "facebook_mms-tts-eng" / "meta.csv")
    assert m["source_line"].tolist() == [2, 3, 2, 2] and set(m["subset"]) == {"all"}
    # the fake folder itself, and one language as SUBSET
    de = load_corpus(f"mlaad:{root / 'fake'}:de")
    assert de["utt"].tolist() == m["utt"].tolist()[:2] and set(de["subset"]) == {"de"}
    with pytest.raises(UserError, match=r"no trials in language 'xx' \(languages: de, en, fr\)"):
        load_corpus(f"mlaad:{root}:xx")


def test_mlaad_audio_is_found_in_the_meta_csv_folder(tmp_path):
    """Some MLAAD rows' `path` names another language folder (`zh` for `zh-cn`): the file is
    where its meta.csv is."""
    meta = _write(tmp_path / "fake" / "zh-cn" / "m" / "meta.csv",
                  "path|language|model_name\n./fake/zh/m/a.wav|zh-cn|m\n")
    m = load_corpus(f"mlaad:{tmp_path}")
    assert m["path"].tolist() == [str(meta.parent / "a.wav")] and m["utt"].tolist() == ["fake/zh-cn/m/a.wav"]
    assert m["architecture"].tolist() == ["-"]  # older releases have no architecture column


def test_mlaad_and_mailabs_malformed_rows_name_the_file_and_line(tmp_path):
    root = _mlaad(tmp_path / "MLAAD", audio=False)
    meta = root / "fake" / "en" / "facebook_mms-tts-eng" / "meta.csv"
    meta.write_text(meta.read_text() + "./fake/en/facebook_mms-tts-eng/x.wav|en|True\n")
    with pytest.raises(UserError, match=rf"{meta}:3: expected 9 fields \(path\|original_file\|"):
        load_corpus(f"mlaad:{root}")
    meta.write_text("file|language|model_name\n")
    with pytest.raises(UserError, match=rf"{meta}:1: .*lacks column\(s\) path"):
        load_corpus(f"mlaad:{root}")
    with pytest.raises(UserError, match="no fake/ folder"):
        load_corpus(f"mlaad:{tmp_path}")
    books = _mailabs(tmp_path / "M-AILABS", audio=False)
    metadata = books / "en_US/by_book/female/judy_bieber/oz/metadata.csv"
    metadata.write_text(metadata.read_text() + "oz_01_f000003 without a text\n")
    with pytest.raises(UserError, match=rf"{metadata}:3: expected 'ID\|TEXT\|NORMALIZED TEXT'"):
        load_corpus(f"mailabs:{books}")


def test_mailabs_ids_are_mlaad_original_files(tmp_path):
    books = _mailabs(tmp_path / "M-AILABS", audio=False)
    m = load_corpus(f"mailabs:{books}")
    validate_manifest(m)
    assert condition_columns(m) == ["language"]
    assert m["utt"].tolist() == [
        "de_DE/by_book/female/eva_k/gruene_haus/wavs/gruene_haus_01_f000001.wav",
        "de_DE/by_book/female/eva_k/gruene_haus/wavs/gruene_haus_01_f000002.wav",
        "en_US/by_book/female/judy_bieber/oz/wavs/oz_01_f000001.wav",
        "en_US/by_book/female/judy_bieber/oz/wavs/oz_01_f000002.wav",
        "en_US/by_book/mix/sea_stories/wavs/sea_stories_01_f000001.wav",
    ]
    originals = {row.split("|")[1] for rows in MLAAD.values() for row in rows}
    assert originals <= set(m["utt"])
    assert set(m["label"]) == {"bonafide"} and set(m["attack"]) == {"-"}
    assert m["language"].tolist() == ["de", "de", "en", "en", "en"]  # MLAAD's codes, not de_DE / en_US
    assert m["speaker"].tolist() == ["eva_k", "eva_k", "judy_bieber", "judy_bieber", "-"]  # mix books: no reader
    assert m["path"][4] == str(books / "en_US/by_book/mix/sea_stories/wavs/sea_stories_01_f000001.wav")
    assert m["source_line"].tolist() == [1, 2, 1, 2, 1]
    # one language folder gives the same ids; SUBSET keeps one language
    assert load_corpus(f"mailabs:{books / 'en_US'}")["utt"].tolist() == m["utt"].tolist()[2:]
    assert load_corpus(f"mailabs:{books}:de")["utt"].tolist() == m["utt"].tolist()[:2]


def test_mlaad_with_mailabs_checked_as_one_set_and_broken_down_by_language(tmp_path, capsys):
    mlaad, books = _mlaad(tmp_path / "MLAAD"), _mailabs(tmp_path / "M-AILABS")
    specs = [f"mlaad:{mlaad}", f"mailabs:{books}"]
    assert main(["check", *specs]) == 0
    assert "ok: no problems" in capsys.readouterr().out
    manifest = load_manifest(specs, "fail", "data.eval.mlaad", keyed=True)
    assert len(manifest) == 9 and condition_columns(manifest) == ["language", "architecture"]
    assert manifest.loc[manifest["corpus"] == "mailabs", "architecture"].unique().tolist() == ["-"]
    # fakes (de, de, en, fr), then bona fide speech (de, de, en, en, en): one German fake scores
    # above both German utterances
    scores = pd.Series([2.5, 0.5, 0.0, -1.0, 1.0, 1.5, 2.0, 3.0, 4.0], index=manifest["utt"].to_numpy())
    table = breakdown(manifest, scores, by=["language", "attack", "architecture"]).set_index(["factor", "value"])
    # language describes both classes: each language's fakes against that language's speech
    assert table.loc[("language", "de"), ["n_bonafide", "n_spoof"]].tolist() == [2, 2]
    assert table.loc[("language", "de"), "eer"] == pytest.approx(0.5)
    assert table.loc[("language", "en"), ["n_bonafide", "n_spoof", "eer"]].tolist() == [3, 1, 0.0]
    fr = table.loc[("language", "fr")]
    assert (fr["n_bonafide"], fr["n_spoof"]) == (0, 1) and np.isnan(fr["eer"])  # no French speech to compare
    # the TTS model and architecture are spoof-only: each against all bona fide speech
    assert table.loc[("attack", "tts_models/de/thorsten/vits"), ["n_bonafide", "n_spoof"]].tolist() == [5, 2]
    assert table.loc[("architecture", "bark"), ["n_bonafide", "n_spoof", "eer"]].tolist() == [5, 1, 0.0]
    # a missing fake is reported at its meta.csv line
    meta = mlaad / "fake" / "de" / "tts_models_de_thorsten_vits" / "meta.csv"
    (meta.parent / "gruene_haus_01_f000002.wav").unlink()
    result = check_manifest(load_corpus(specs[0]), policy="skip", decode="none")
    assert [str(p).split(": ")[:2] for p in result.problems] == [[f"{meta}:3", "missing_file"]]


def test_dpda_check_help_names_every_corpus_kind(capsys):
    """The help lists the kinds without importing the readers (pandas) to print it; this keeps
    that list equal to the reader table."""
    from dpda.data.readers import _READERS

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("KIND: ", 1)[1].split(")", 1)[0]
    assert [k.strip() for k in listed.split(",")] == list(_READERS)
