"""SpoofCeleb reader: a fixture in the released layout (metadata/<split>.csv `file,speaker,attack`,
audio under flac/<split>/, bona fide speech in attack folder a00), parsed, checked and broken
down per attack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dpda.cli import main
from dpda.data.manifest import condition_columns, validate_manifest
from dpda.data.readers import load_corpus
from dpda.errors import UserError
from dpda.metrics import breakdown

METADATA = {
    "train": ["a00/id10270/5r0dWxy17C8-00001-001.flac,id10270,a00",
              "a01/id10270/5r0dWxy17C8-00002-001.flac,id10270,a01"],
    "development": ["a00/id10318/YYsxcZ5saac-00002-006.flac,id10318,a00",
                    "a06/id10318/YYsxcZ5saac-00003-001.flac,id10318,a06"],
    "evaluation": ["a00/id10309/ABCDEFGHIJK-00001-001.flac,id10309,a00",
                   "a00/id10310/ABCDEFGHIJK-00002-001.flac,id10310,a00",
                   "a11/id10309/ABCDEFGHIJK-00003-001.flac,id10309,a11",
                   "a23/id10310/ABCDEFGHIJK-00004-001.flac,id10310,a23"],
}


def _spoofceleb(base: Path) -> Path:
    root = base / "spoofceleb"
    for split, rows in METADATA.items():
        (root / "metadata").mkdir(parents=True, exist_ok=True)
        (root / "metadata" / f"{split}.csv").write_text("file,speaker,attack\n" + "\n".join(rows) + "\n")
        for row in rows:
            audio = root / "flac" / split / row.split(",")[0]
            audio.parent.mkdir(parents=True, exist_ok=True)
            sf.write(audio, np.random.default_rng(0).uniform(-0.3, 0.3, 1600), 16000)
    return root


def test_spoofceleb_splits_parse_with_a00_as_bona_fide(tmp_path):
    root = _spoofceleb(tmp_path / "SpoofCeleb")
    m = load_corpus(f"spoofceleb:{tmp_path / 'SpoofCeleb'}:dev")  # the parent folder is accepted too
    validate_manifest(m)
    assert condition_columns(m) == []
    assert m["utt"].tolist() == [r.split(",")[0] for r in METADATA["development"]]
    assert m["label"].tolist() == ["bonafide", "spoof"] and m["attack"].tolist() == ["-", "a06"]
    assert m["speaker"].tolist() == ["id10318"] * 2 and set(m["subset"]) == {"development"}
    assert m["path"][1] == str(root / "flac" / "development" / "a06/id10318/YYsxcZ5saac-00003-001.flac")
    assert m["source_file"][0] == str(root / "metadata" / "development.csv") and m["source_line"].tolist() == [2, 3]
    assert m.attrs["root"] == str(root)
    assert load_corpus(f"spoofceleb:{root}:development")["utt"].tolist() == m["utt"].tolist()
    assert main(["check", f"spoofceleb:{root}:train", f"spoofceleb:{root}:eval"]) == 0


def test_spoofceleb_unseen_eval_attacks_each_get_a_breakdown_row(tmp_path):
    root = _spoofceleb(tmp_path)
    m = load_corpus(f"spoofceleb:{root}:eval")
    scores = pd.Series([1.0, 2.0, 0.0, 3.0], index=m["utt"].to_numpy())
    table = breakdown(m, scores, by=["attack"]).set_index(["factor", "value"])
    assert table.loc[("attack", "a11"), ["n_bonafide", "n_spoof", "eer"]].tolist() == [2, 1, 0.0]
    assert table.loc[("attack", "a23"), ["n_bonafide", "n_spoof", "eer"]].tolist() == [2, 1, 1.0]


def test_spoofceleb_bad_rows_and_specs(tmp_path):
    root = _spoofceleb(tmp_path)
    meta = root / "metadata" / "train.csv"
    meta.write_text(meta.read_text() + "a01/id10270/x.flac,id10270\n")
    with pytest.raises(UserError, match=rf"{meta}:4: expected 3 fields"):
        load_corpus(f"spoofceleb:{root}:train")
    with pytest.raises(UserError, match="needs a subset"):
        load_corpus(f"spoofceleb:{root}")
    with pytest.raises(UserError, match="metadata not found"):
        load_corpus(f"spoofceleb:{tmp_path / 'elsewhere'}:train")
