"""Corpus readers: each public layout (ASVspoof 2019 LA, 2021 LA / DF, ASVspoof 5, In-the-Wild,
Fake-or-Real, MLAAD, M-AILABS, SpoofCeleb, generic CSV) becomes a manifest, so the rest of dpda never knows which layout it came from.

A corpus is named by a spec string `KIND:PATH[:SUBSET]` (a bare `*.csv` path means `csv`). Readers
only parse text; they do not open audio (that is `dpda check`'s job), and they keep rows with
unknown labels so the check can list them all. Lines with the wrong shape raise UserError naming
the file and line.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dpda.data.manifest import NOT_APPLICABLE, UNKNOWN_ATTACK, make_manifest, normalize_label
from dpda.errors import UserError


@dataclass(frozen=True)
class CorpusSpec:
    """A parsed `KIND:PATH[:SUBSET]` spec."""

    kind: str
    path: Path
    subset: str | None
    text: str


_FOR_ALIASES = {"train": "training", "dev": "validation", "eval": "testing", "test": "testing"}


def parse_spec(spec: str) -> CorpusSpec:
    """Split `KIND:PATH[:SUBSET]`; a bare path ending in .csv is a generic CSV corpus."""
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    if not sep or kind.lower() not in _READERS:
        if text.lower().endswith(".csv") and (not sep or len(kind) == 1):
            return CorpusSpec("csv", Path(text), None, text)
        raise UserError(
            f"corpus spec {spec!r}: expected KIND:PATH[:SUBSET] with KIND in {', '.join(_READERS)} "
            f"(or a path to a .csv file)"
        )
    kind = kind.lower()
    path, subset = rest, None
    head, sep, tail = rest.rpartition(":")
    allowed = _READERS[kind].subsets
    if sep and head and (allowed is None or tail in allowed):
        path, subset = head, tail
    elif sep and head and allowed is not None and "/" not in tail:
        raise UserError(f"corpus spec {spec!r}: subset {tail!r} not in {', '.join(allowed)}")
    if not path:
        raise UserError(f"corpus spec {spec!r}: empty PATH")
    if kind == "asvspoof2019" and subset is None:
        raise UserError(f"corpus spec {spec!r}: asvspoof2019 needs a subset, e.g. {kind}:{path}:train")
    return CorpusSpec(kind, Path(path).expanduser(), subset, text)


def load_corpus(spec: str) -> pd.DataFrame:
    """Manifest of the corpus named by `spec`; `manifest.attrs['root']` is the corpus root used
    by the path-escape check and `attrs['spec']` the spec text.

    A corpus without trials (an empty protocol, a subset nobody is in) is an error here, naming
    the spec and the file, rather than an empty set that fails later without naming either."""
    parsed = parse_spec(spec)
    manifest, root = _READERS[parsed.kind].read(parsed.path, parsed.subset)
    if manifest.empty:
        raise UserError(f"corpus {parsed.text}: no trials in {manifest.attrs.get('source', root)}")
    manifest.attrs["root"] = str(root)
    manifest.attrs["spec"] = parsed.text
    return manifest


# --------------------------------------------------------------------------------------------
# Text helpers


def _lines(path: Path, sep: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, fields) of every non-empty, non-comment line; fields are split at
    whitespace, or at `sep` (M-AILABS' `ID|TEXT|NORMALIZED` lines, whose texts hold spaces)."""
    try:
        with path.open("r", encoding="utf-8-sig") as fh:  # a BOM is not part of the first id
            for number, line in enumerate(fh, start=1):
                fields = line.rstrip("\r\n").split(sep) if sep else line.split()
                if line.strip() and not fields[0].startswith("#"):
                    yield number, fields
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{path}: {what} folder not found")
    return path


def _abs(path: Path) -> str:
    """Absolute path without resolving symlinks (the escape check resolves them itself)."""
    return os.path.abspath(path)


# --------------------------------------------------------------------------------------------
# ASVspoof 2019 LA


def _la_root(path: Path) -> Path:
    """Accept the folder containing `LA/` or the `LA` folder itself."""
    if (path / "LA").is_dir() and not (path / "ASVspoof2019_LA_cm_protocols").is_dir():
        path = path / "LA"
    _require_dir(path, "ASVspoof 2019 LA")
    if not (path / "ASVspoof2019_LA_cm_protocols").is_dir():
        raise UserError(f"{path}: no ASVspoof2019_LA_cm_protocols folder (expected the LA folder or its parent)")
    return path


def read_asvspoof2019(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """Protocol lines `SPEAKER UTT - ATTACK KEY`; audio at ASVspoof2019_LA_<subset>/flac/UTT.flac."""
    root = _la_root(path)
    subset = subset or "train"
    suffix = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}[subset]
    protocol = root / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{suffix}.txt"
    if not protocol.is_file():
        raise UserError(f"{protocol}: protocol file not found")
    audio_dir = root / f"ASVspoof2019_LA_{subset}" / "flac"
    cols: dict[str, list] = {k: [] for k in ("utt", "path", "label", "attack", "speaker", "source_line")}
    for number, f in _lines(protocol):
        if len(f) != 5:
            raise UserError(
                f"{protocol}:{number}: expected 5 fields 'SPEAKER UTT - ATTACK KEY', got {len(f)}"
            )
        speaker, utt, _, attack, key = f
        cols["utt"].append(utt)
        cols["path"].append(_abs(audio_dir / f"{utt}.flac"))
        cols["label"].append(key)
        cols["attack"].append(attack)
        cols["speaker"].append(speaker)
        cols["source_line"].append(number)
    n = len(cols["utt"])
    cols.update(corpus=["asvspoof2019la"] * n, subset=[subset] * n, source_file=[_abs(protocol)] * n)
    return _typed(make_manifest(cols), protocol), root


# --------------------------------------------------------------------------------------------
# ASVspoof 2021 LA / DF eval

# Column names of trial_metadata.txt by position; further columns become extra<N>.
_META_COLUMNS = {
    "LA": ("speaker", "utt", "codec", "transmission", "attack", "key", "trim", "phase"),
    "DF": ("speaker", "utt", "codec", "source", "attack", "key", "trim", "phase", "vocoder"),
}
# Columns that describe spoofs only: the keys write `bonafide` there on bona fide lines
# (`... alaw ita_tx bonafide bonafide notrim eval`); dpda's `-` makes each value a spoof subset
# scored against all bona fide trials, as the 2021 evaluation package scores attacks and vocoders.
_SPOOF_ONLY = {"LA": ("attack",), "DF": ("attack", "vocoder")}


def _find_metadata(root: Path, track: str) -> Path:
    """The keys' CM/trial_metadata.txt under root (keys are often unpacked beside the audio)."""
    if root.is_file():
        return root
    found: list[Path] = []
    for depth in range(0, 5):
        pattern = "/".join(["*"] * depth + ["CM", "trial_metadata.txt"])
        found += sorted(root.glob(pattern))
    if not found:
        raise UserError(f"{root}: no CM/trial_metadata.txt found (unpack the {track} keys under this folder)")
    if len(found) > 1:
        tagged = [p for p in found if track in p.parts or f"{track}-keys-full" in p.parts]
        if len(tagged) == 1:
            return tagged[0]
        raise UserError(f"{root}: several CM/trial_metadata.txt found: {', '.join(map(str, found))}")
    return found[0]


def _find_audio_dir(root: Path, track: str, metadata: Path) -> Path:
    base = root if root.is_dir() else metadata.parent
    for cand in (base / f"ASVspoof2021_{track}_eval" / "flac", base / "flac"):
        if cand.is_dir():
            return cand
    if base.name == f"ASVspoof2021_{track}_eval":
        return base / "flac"
    # Missing audio is reported per file by `dpda check`; point at the conventional place.
    return base / f"ASVspoof2021_{track}_eval" / "flac"


def _read_asvspoof2021(path: Path, subset: str | None, track: str) -> tuple[pd.DataFrame, Path]:
    """trial_metadata.txt lines, e.g. LA `SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM PHASE`.

    SUBSET filters on the phase column (eval, progress, hidden_track); default/`all` keeps all.
    """
    root = path
    if not root.exists():
        raise UserError(f"{root}: ASVspoof 2021 {track} folder not found")
    metadata = _find_metadata(root, track)
    audio_dir = _find_audio_dir(root, track, metadata)
    names = _META_COLUMNS[track]
    key_at = names.index("key")
    rows: list[list[str]] = []
    numbers: list[int] = []
    width = len(names)
    for number, f in _lines(metadata):
        if len(f) <= key_at:
            raise UserError(
                f"{metadata}:{number}: expected at least {key_at + 1} fields "
                f"({' '.join(n.upper() for n in names[: key_at + 1])}), got {len(f)}"
            )
        rows.append(f)
        numbers.append(number)
        width = max(width, len(f))
    columns = list(names) + [f"extra{i}" for i in range(len(names) + 1, width + 1)]
    padded = [r + [NOT_APPLICABLE] * (width - len(r)) for r in rows]
    frame = pd.DataFrame(padded, columns=columns) if padded else pd.DataFrame(columns=columns)
    frame = frame.rename(columns={"key": "label"})
    bonafide = frame["label"] == "bonafide"
    for col in _SPOOF_ONLY[track]:
        frame.loc[bonafide & (frame[col] == "bonafide"), col] = NOT_APPLICABLE
    frame["path"] = [_abs(audio_dir / f"{u}.flac") for u in frame["utt"]]
    frame["corpus"] = f"asvspoof2021{track.lower()}"
    frame["subset"] = "eval"
    frame["source_file"] = _abs(metadata)
    frame["source_line"] = numbers
    if subset and subset != "all":
        frame = frame[frame["phase"] == subset]
    conditions = [c for c in columns if c not in ("speaker", "utt", "attack", "key")]
    return _typed(make_manifest(frame, condition_order=conditions), metadata), root


def read_asvspoof2021la(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    return _read_asvspoof2021(path, subset, "LA")


def read_asvspoof2021df(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    return _read_asvspoof2021(path, subset, "DF")


# --------------------------------------------------------------------------------------------
# ASVspoof 5 track 1

# The protocol columns of the public release (Zenodo 14498691, ASVspoof5_protocols.tar.gz), by
# position: whitespace-separated despite the .tsv name, no header, `-` where a value does not apply.
_A5_COLUMNS = ("speaker", "utt", "gender", "codec", "codec_q", "codec_seed", "attack_tag", "attack", "key", "tmp")
# Kept as condition columns (usable by `--by`); codec_seed (which source utterance a coded copy
# came from) and tmp would make one breakdown row per value, so they are left out.
_A5_CONDITIONS = ("gender", "codec", "codec_q", "attack_tag")
_A5_PROTOCOLS = {"train": "ASVspoof5.train.tsv", "dev": "ASVspoof5.dev.track_1.tsv", "eval": "ASVspoof5.eval.track_1.tsv"}
# Audio folders each subset's tar files unpack to (flac_E_eval in the release; flac_E_* seen in
# copies made during the challenge), tried in order.
_A5_AUDIO = {"train": ("flac_T",), "dev": ("flac_D",), "eval": ("flac_E_eval", "flac_E")}


def _a5_protocol(path: Path, subset: str | None) -> tuple[Path, Path, str]:
    """(protocol file, corpus root, subset) for PATH given as the root, its ASVspoof5_protocols
    folder, or a protocol file (whose subset, unless SUBSET says it, is the file name's or else
    that of its first id: T_, D_, E_)."""
    if path.is_file():
        if subset is None:
            subset = next((s for s in _A5_PROTOCOLS if path.name.startswith(f"ASVspoof5.{s}.")), None)
        if subset is None:
            first = next(_lines(path), (0, []))[1]
            subset = {"T_": "train", "D_": "dev", "E_": "eval"}.get(first[1][:2] if len(first) > 1 else "")
            if subset is None:
                raise UserError(f"{path}: cannot tell the subset (train, dev, eval); add it: asvspoof5:{path}:eval")
        root = path.parent.parent if path.parent.name == "ASVspoof5_protocols" else path.parent
        return path, root, subset
    if not path.is_dir():
        raise UserError(f"{path}: ASVspoof 5 folder not found")
    if subset is None:
        raise UserError(f"asvspoof5:{path}: needs a subset, e.g. asvspoof5:{path}:train (train, dev, eval)")
    root = path.parent if path.name == "ASVspoof5_protocols" else path
    for folder in (root / "ASVspoof5_protocols", root):
        if (folder / _A5_PROTOCOLS[subset]).is_file():
            return folder / _A5_PROTOCOLS[subset], root, subset
    raise UserError(f"{root / 'ASVspoof5_protocols' / _A5_PROTOCOLS[subset]}: protocol file not found "
                    "(unpack ASVspoof5_protocols.tar.gz under this folder)")


def _a5_audio_dir(root: Path, subset: str) -> Path:
    """The subset's flac folder; missing audio is reported per file by `dpda check`."""
    names = _A5_AUDIO[subset]
    found = [root / n for n in names if (root / n).is_dir()]
    if not found and subset == "eval":
        found = sorted(p for p in root.glob("flac_E_*") if p.is_dir())
    return found[0] if found else root / names[0]


def read_asvspoof5(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """Track 1 protocol lines `SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK KEY
    TMP`; audio at flac_T / flac_D / flac_E_eval/FILE.flac. The eval set's codecs (C01-C11) and
    attacks (A17-A32) are absent from train and dev: each gets its own breakdown row."""
    protocol, root, subset = _a5_protocol(path, subset)
    audio_dir = _a5_audio_dir(root, subset)
    rows: list[list[str]] = []
    numbers: list[int] = []
    for number, f in _lines(protocol):
        if len(f) != len(_A5_COLUMNS):
            raise UserError(f"{protocol}:{number}: expected {len(_A5_COLUMNS)} fields "
                            f"'{' '.join(c.upper() for c in _A5_COLUMNS)}', got {len(f)}")
        rows.append(f)
        numbers.append(number)
    frame = pd.DataFrame(rows, columns=list(_A5_COLUMNS)) if rows else pd.DataFrame(columns=list(_A5_COLUMNS))
    frame = frame.rename(columns={"key": "label"})
    # the protocol writes `bonafide` as the attack of bona fide lines; dpda's `-` scores each
    # attack against all bona fide trials (dpda.metrics.breakdown)
    frame.loc[(frame["label"] == "bonafide") & (frame["attack"] == "bonafide"), "attack"] = NOT_APPLICABLE
    # one string sum for the 680,774 eval trials (a Path per row took most of the read); an id
    # with `..` is still caught by the check, which resolves the paths
    frame["path"] = os.path.join(_abs(audio_dir), "") + frame["utt"] + ".flac"
    frame["corpus"] = "asvspoof5"
    frame["subset"] = subset
    frame["source_file"] = _abs(protocol)
    frame["source_line"] = numbers
    frame = frame.drop(columns=["codec_seed", "tmp"])
    return _typed(make_manifest(frame, condition_order=_A5_CONDITIONS), protocol), root


# --------------------------------------------------------------------------------------------
# CSV-based layouts: In-the-Wild and generic


def _csv_rows(path: Path, required: tuple[str, ...], delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row dict) of a CSV with a header naming at least `required` (MLAAD's
    meta.csv files are the same shape with `|` between fields)."""
    try:
        fh = path.open("r", encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip().lstrip("\ufeff") for h in next(reader)]
        except StopIteration:
            raise UserError(f"{path}:1: empty file, expected a header with {', '.join(required)}") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UserError(f"{path}:1: cannot parse header ({exc})") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise UserError(f"{path}:1: header {header} lacks column(s) {', '.join(missing)}")
        start = reader.line_num
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise UserError(f"{path}:{reader.line_num}: cannot parse CSV ({exc})") from None
            number, start = start + 1, reader.line_num  # a record starts after the previous one
            if not fields or all(not x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise UserError(f"{path}:{number}: expected {len(header)} fields ({delimiter.join(header)}), got {len(fields)}")
            row = {h: v.strip() for h, v in zip(header, fields)}
            empty = [c for c in required if not row[c]]
            if empty:
                raise UserError(f"{path}:{number}: empty {', '.join(empty)}")
            yield number, row


def _meta_csv(path: Path) -> tuple[Path, Path]:
    """(meta.csv, audio folder) for an ITW path given as the folder or the csv itself."""
    if path.is_file():
        return path, path.parent
    meta = path / "meta.csv"
    if not meta.is_file():
        raise UserError(f"{meta}: In-the-Wild meta.csv not found")
    return meta, path


def read_itw(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """In-the-Wild `meta.csv` (file,speaker,label with `bona-fide` / `spoof`).

    The utterance id is the `file` column as written (`0.wav`): the community ITW scorer joins
    score files to meta.csv on it, so score files dpda writes are accepted as they are."""
    meta, root = _meta_csv(path)
    cols: dict[str, list] = {k: [] for k in ("utt", "path", "label", "speaker", "source_line")}
    for number, row in _csv_rows(meta, ("file", "speaker", "label")):
        cols["utt"].append(row["file"])
        cols["path"].append(_abs(root / row["file"]))
        cols["label"].append(row["label"])
        cols["speaker"].append(row["speaker"])
        cols["source_line"].append(number)
    n = len(cols["utt"])
    cols.update(corpus=["itw"] * n, subset=["eval"] * n, source_file=[_abs(meta)] * n)
    cols["attack"] = [NOT_APPLICABLE if normalize_label(l) == "bonafide" else UNKNOWN_ATTACK for l in cols["label"]]
    return _typed(make_manifest(cols), meta), root


_WHITESPACE = re.compile(r"\s+")  # what splits a score file's line into fields


def read_csv_corpus(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """Generic `path,label[,utt,speaker,attack,...]` CSV; relative paths are resolved against the
    CSV's folder, extra columns are kept as conditions, a `subset` column is filtered by SUBSET.

    Ids must fit score files' `UTT SCORE` lines: an id made from the path (no `utt` given) has
    its whitespace replaced by `_` (repeats that makes are the check's duplicate ids); a `utt`
    written with whitespace is refused naming the line."""
    if not path.is_file():
        raise UserError(f"{path}: CSV file not found")
    root = path.parent
    records: list[dict[str, object]] = []
    for number, row in _csv_rows(path, ("path", "label")):
        audio = Path(row.pop("path")).expanduser()
        label = normalize_label(row.pop("label"))
        utt = row.pop("utt", "")
        if _WHITESPACE.search(utt):
            raise UserError(f"{path}:{number}: utt {utt!r} contains whitespace (score files are 'UTT SCORE' "
                            "lines); use an id without spaces or leave utt empty")
        rec: dict[str, object] = {
            "utt": utt or _WHITESPACE.sub("_", str(audio.with_suffix(""))),
            "path": _abs(audio if audio.is_absolute() else root / audio),
            "label": label,
            "speaker": row.pop("speaker", "") or NOT_APPLICABLE,
            "attack": row.pop("attack", "") or (NOT_APPLICABLE if label == "bonafide" else UNKNOWN_ATTACK),
            "corpus": row.pop("corpus", "") or path.stem,
            "subset": row.pop("subset", "") or (subset or "all"),
            "source_line": number,
        }
        rec.update({k: (v or NOT_APPLICABLE) for k, v in row.items()})
        records.append(rec)
    frame = make_manifest(records) if records else make_manifest({c: [] for c in ("utt", "path", "label", "speaker", "corpus", "subset", "source_line")})
    frame["source_file"] = _abs(path)
    if subset and len(frame) and subset != "all":
        frame = frame[frame["subset"] == subset]
    return _typed(make_manifest(frame), path), root


# --------------------------------------------------------------------------------------------
# MLAAD (spoofs) and M-AILABS (the bona fide speech MLAAD's fakes were made from)

_MLAAD_REQUIRED = ("path", "language", "model_name")


def _mlaad_root(path: Path) -> Path:
    """Accept the MLAAD folder (holding `fake/`) or the `fake` folder itself."""
    if (path / "fake").is_dir():
        return path
    if path.name == "fake" and path.is_dir():
        return path.parent
    raise UserError(f"{path}: no fake/ folder (expected the MLAAD folder holding fake/<language>/<model>/meta.csv)")


def _only_language(records: list[dict[str, object]], language: str | None, where: Path) -> list[dict[str, object]]:
    """The records of one language (SUBSET), refusing a language the corpus does not have."""
    if language is None or language == "all":
        return records
    kept = [r for r in records if r["language"] == language]
    if records and not kept:
        have = sorted({str(r["language"]) for r in records})
        raise UserError(f"{where}: no trials in language {language!r} (languages: {', '.join(have)})")
    return kept


def _id(relative: str) -> str:
    """An utterance id from a path under the corpus root: score files are `UTT SCORE` lines."""
    return _WHITESPACE.sub("_", relative)


def read_mlaad(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """`fake/<language>/<model>/meta.csv` (`|`-separated, a header naming path, language,
    model_name, architecture, ...); every row is a spoof, its attack the TTS model (`model_name`),
    with `language` and `architecture` conditions. SUBSET keeps one language (`de`).

    Audio is the meta.csv's folder plus the file name in `path`: some MLAAD rows' `path` names
    another language folder (`zh` for `zh-cn`). The id is the file's path below the MLAAD folder
    (`fake/de/<model>/x.wav`), since file names repeat across models. Bona fide speech is not part
    of MLAAD; pair it with its M-AILABS source (`mailabs:`) in the same set."""
    root = _mlaad_root(path)
    metas = sorted((root / "fake").glob("*/*/meta.csv"))
    if not metas:
        raise UserError(f"{root / 'fake'}: no <language>/<model>/meta.csv found")
    records: list[dict[str, object]] = []
    for meta in metas:
        folder, source = os.path.join(_abs(meta.parent), ""), _abs(meta)  # once per file, not per row
        relative = f"fake/{meta.parent.parent.name}/{meta.parent.name}/"
        for number, row in _csv_rows(meta, _MLAAD_REQUIRED, delimiter="|"):
            name = row["path"].replace("\\", "/").rsplit("/", 1)[-1]
            records.append({
                "utt": _id(relative + name),
                "path": folder + name,
                "label": "spoof",
                "attack": row["model_name"],
                "speaker": NOT_APPLICABLE,
                "language": row["language"],
                "architecture": row.get("architecture") or NOT_APPLICABLE,
                "source_file": source,
                "source_line": number,
            })
    return _layout_manifest(_only_language(records, subset, root), "mlaad", subset, root / "fake"), root


def _mailabs_books(path: Path) -> tuple[Path, list[Path]]:
    """(M-AILABS root, every book's metadata.csv) for PATH given as the root or one language
    folder (`en_US`); mix-gender books have no speaker folder."""
    if (path / "by_book").is_dir():
        root, languages = path.parent, [path]
    else:
        root = path
        languages = sorted(p for p in path.iterdir() if (p / "by_book").is_dir()) if path.is_dir() else []
    if not languages:
        raise UserError(f"{path}: no <language>/by_book folder (expected the M-AILABS folder, e.g. holding en_US/by_book)")
    books = sorted(m for lang in languages for depth in ("*/*", "*/*/*") for m in (lang / "by_book").glob(f"{depth}/metadata.csv"))
    if not books:
        raise UserError(f"{path}: no by_book/<gender>/[<speaker>/]<book>/metadata.csv found")
    return root, books


def read_mailabs(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """M-AILABS books: `<lang>_<REGION>/by_book/<gender>/<speaker>/<book>/metadata.csv` lines
    `ID|TEXT|NORMALIZED TEXT`, audio at `wavs/ID.wav`; all bona fide. The id is the file's path below
    the M-AILABS folder, as MLAAD's `original_file` names it; `language` is the ISO 639-1 code
    MLAAD uses (`en_US` -> `en`), so `--by language` pairs each language's fakes with its speech.
    SUBSET keeps one language."""
    root, books = _mailabs_books(path)
    records: list[dict[str, object]] = []
    for meta in books:
        parts = meta.relative_to(root).parts  # lang, by_book, gender, [speaker,] book, metadata.csv
        speaker = parts[3] if len(parts) == 6 else NOT_APPLICABLE
        language = parts[0].split("_")[0].lower()
        wavs, source = os.path.join(_abs(meta.parent), "wavs", ""), _abs(meta)  # once per book, not per row
        relative = "/".join(parts[:-1]) + "/wavs/"
        for number, fields in _lines(meta, sep="|"):
            if len(fields) < 2 or not fields[0].strip():
                raise UserError(f"{meta}:{number}: expected 'ID|TEXT|NORMALIZED TEXT', got {'|'.join(fields)!r}")
            name = f"{fields[0].strip()}.wav"
            records.append({
                "utt": _id(relative + name),
                "path": wavs + name,
                "label": "bonafide",
                "attack": NOT_APPLICABLE,
                "speaker": speaker,
                "language": language,
                "source_file": source,
                "source_line": number,
            })
    return _layout_manifest(_only_language(records, subset, root), "mailabs", subset, root), root


def _layout_manifest(records: list[dict[str, object]], corpus: str, subset: str | None, source: Path) -> pd.DataFrame:
    """Manifest of rows read from a folder layout; `subset` is the language kept, or `all`."""
    columns = ("utt", "path", "label", "attack", "speaker", "language", "source_file", "source_line")
    frame = make_manifest(records) if records else make_manifest({c: [] for c in columns})
    frame["corpus"] = corpus
    frame["subset"] = subset or "all"
    return _typed(make_manifest(frame), source)


# --------------------------------------------------------------------------------------------
# SpoofCeleb

_SPOOFCELEB_SPLITS = {"train": "train", "dev": "development", "development": "development",
                      "eval": "evaluation", "evaluation": "evaluation"}
_SPOOFCELEB_BONAFIDE = "a00"  # the attack folder SpoofCeleb keeps its VoxCeleb1 speech in


def read_spoofceleb(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """`metadata/<split>.csv` (`file,speaker,attack`, file below `flac/<split>/`, attack `a00`
    for bona fide speech) of the folder holding `flac/` and `metadata/` (or its parent). The id is
    the `file` column as written (`a01/id10270/x.flac`)."""
    root = path / "spoofceleb" if (path / "spoofceleb" / "metadata").is_dir() else path
    if subset is None:
        raise UserError(f"spoofceleb:{path}: needs a subset, e.g. spoofceleb:{path}:train (train, dev, eval)")
    split = _SPOOFCELEB_SPLITS[subset]
    meta = root / "metadata" / f"{split}.csv"
    if not meta.is_file():
        raise UserError(f"{meta}: SpoofCeleb metadata not found (expected the folder holding flac/ and metadata/)")
    audio, source = os.path.join(_abs(root / "flac" / split), ""), _abs(meta)  # once, not per row (millions of rows)
    records: list[dict[str, object]] = []
    for number, row in _csv_rows(meta, ("file", "speaker", "attack")):
        bonafide = row["attack"] == _SPOOFCELEB_BONAFIDE
        records.append({
            "utt": _id(row["file"]),
            "path": audio + row["file"],
            "label": "bonafide" if bonafide else "spoof",
            "attack": NOT_APPLICABLE if bonafide else row["attack"],
            "speaker": row["speaker"],
            "corpus": "spoofceleb",
            "subset": split,
            "source_file": source,
            "source_line": number,
        })
    columns = ("utt", "path", "label", "attack", "speaker", "corpus", "subset", "source_file", "source_line")
    frame = make_manifest(records) if records else make_manifest({c: [] for c in columns})
    return _typed(frame, meta), root


# --------------------------------------------------------------------------------------------
# Fake-or-Real


def read_for(path: Path, subset: str | None) -> tuple[pd.DataFrame, Path]:
    """`for-norm/{training,validation,testing}/{real,fake}/*.wav`; label from the folder.

    The utterance id is the file's path relative to the folder the subset names, file name
    included (`fake/file1.wav_16k.wav_norm.wav_mono.wav_silence.wav` for one split, as the
    published DPDA scorer writes it; `testing/fake/...` for `all`, where the splits would collide).
    FoR has no protocol file, so `source_file` is the audio file itself and `source_line` 0.
    """
    root = path / "for-norm" if (path / "for-norm").is_dir() else path
    _require_dir(root, "Fake-or-Real for-norm")
    splits = ("training", "validation", "testing")
    if subset and subset != "all":
        splits = (_FOR_ALIASES.get(subset, subset),)
    cols: dict[str, list] = {k: [] for k in ("utt", "path", "label", "subset")}
    found_any = False
    for split in splits:
        for folder, label in (("real", "bonafide"), ("fake", "spoof")):
            d = root / split / folder
            if not d.is_dir():
                continue
            found_any = True
            files = sorted(p for p in d.iterdir() if p.suffix.lower() == ".wav")
            prefix = f"{split}/{folder}" if len(splits) > 1 else folder
            cols["utt"] += [f"{prefix}/{p.name}" for p in files]
            cols["path"] += [_abs(p) for p in files]
            cols["label"] += [label] * len(files)
            cols["subset"] += [split] * len(files)
    if not found_any:
        raise UserError(f"{root}: no {{{','.join(splits)}}}/{{real,fake}} folders found")
    n = len(cols["utt"])
    cols.update(
        attack=[NOT_APPLICABLE if l == "bonafide" else UNKNOWN_ATTACK for l in cols["label"]],
        speaker=[NOT_APPLICABLE] * n,
        corpus=["for"] * n,
        source_file=list(cols["path"]),
        source_line=[0] * n,
    )
    return _typed(make_manifest(cols), root), root


def _typed(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    """Integer dtypes even for empty manifests, a fresh 0..n-1 index, and `attrs['source']`:
    the protocol file (or folder) the rows come from, named when there are none."""
    frame = frame.reset_index(drop=True)
    for col in ("target", "source_line"):
        frame[col] = frame[col].astype("int64")
    for col in frame.columns:
        if col not in ("target", "source_line"):
            frame[col] = frame[col].astype(object)
    frame.attrs["source"] = _abs(source)
    return frame


@dataclass(frozen=True)
class Reader:
    """One corpus kind: how to read it and which SUBSET values its spec accepts (None: free-form
    or not applicable). One entry per kind, so a kind cannot have a reader without subsets."""

    read: Callable[[Path, str | None], tuple[pd.DataFrame, Path]]
    subsets: tuple[str, ...] | None


_LA2021_SUBSETS = ("eval", "progress", "hidden_track", "all")

_READERS: dict[str, Reader] = {
    "asvspoof2019": Reader(read_asvspoof2019, ("train", "dev", "eval")),
    "asvspoof2021la": Reader(read_asvspoof2021la, _LA2021_SUBSETS),
    "asvspoof2021df": Reader(read_asvspoof2021df, _LA2021_SUBSETS),
    "asvspoof5": Reader(read_asvspoof5, ("train", "dev", "eval")),
    "itw": Reader(read_itw, ("all",)),
    "for": Reader(read_for, ("training", "validation", "testing", *_FOR_ALIASES, "all")),
    "mlaad": Reader(read_mlaad, None),
    "mailabs": Reader(read_mailabs, None),
    "spoofceleb": Reader(read_spoofceleb, tuple(_SPOOFCELEB_SPLITS)),
    "csv": Reader(read_csv_corpus, None),
}
