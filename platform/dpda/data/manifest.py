"""The manifest: one pandas DataFrame row per trial, the single currency between readers,
checks, datasets and metrics.

Readers of every corpus layout produce the same columns, so everything downstream (checks,
training, breakdowns by condition) is written once. `source_file` / `source_line` travel with
each row so a problem found late (a bad file, an unknown label) is reported at its origin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from dpda import BONAFIDE, SPOOF
from dpda.errors import UserError

# Columns every manifest has, in this order; condition columns go between these and SOURCE_COLUMNS.
CORE_COLUMNS: tuple[str, ...] = ("utt", "path", "label", "target", "attack", "speaker", "corpus", "subset")
SOURCE_COLUMNS: tuple[str, ...] = ("source_file", "source_line")
LABEL_TARGETS: dict[str, int] = {"bonafide": BONAFIDE, "spoof": SPOOF}
UNKNOWN_TARGET = -1  # target of a row whose label string is not recognised (reported by checks)
NOT_APPLICABLE = "-"  # ASVspoof's marker for "no attack" / "no value"; fills missing conditions
UNKNOWN_ATTACK = "unknown"  # spoof rows whose corpus does not name the attack (ITW, FoR)

# Spellings seen in public corpora, mapped to the canonical label strings.
_LABEL_ALIASES: dict[str, str] = {
    "bonafide": "bonafide",
    "bona-fide": "bonafide",
    "bona_fide": "bonafide",
    "bona fide": "bonafide",
    "genuine": "bonafide",
    "real": "bonafide",
    "human": "bonafide",
    "spoof": "spoof",
    "spoofed": "spoof",
    "fake": "spoof",
    "deepfake": "spoof",
}


def normalize_label(label: str) -> str:
    """Canonical `bonafide` / `spoof`, or the stripped input unchanged when unrecognised.

    Unknown labels are kept (not raised) so that `dpda check` can report every one of them with
    its line instead of stopping at the first.
    """
    text = str(label).strip()
    return _LABEL_ALIASES.get(text.lower(), text)


def label_target(label: str) -> int:
    """Class index of a canonical label; UNKNOWN_TARGET for anything else."""
    return LABEL_TARGETS.get(label, UNKNOWN_TARGET)


def condition_columns(manifest: pd.DataFrame) -> list[str]:
    """The optional per-corpus condition columns (codec, vocoder, ...), in manifest order."""
    fixed = set(CORE_COLUMNS) | set(SOURCE_COLUMNS)
    return [c for c in manifest.columns if c not in fixed]


def make_manifest(
    records: pd.DataFrame | Mapping[str, Sequence] | Iterable[Mapping[str, object]],
    *,
    condition_order: Sequence[str] = (),
) -> pd.DataFrame:
    """Build a manifest from column lists (or row dicts): canonical labels, targets, order.

    `target` is derived from `label` when absent so readers cannot disagree with each other.
    """
    if isinstance(records, pd.DataFrame):
        frame = records.copy()
    else:
        frame = pd.DataFrame(records if isinstance(records, Mapping) else list(records))
    if frame.empty and not len(frame.columns):
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in CORE_COLUMNS + SOURCE_COLUMNS})
    if "label" in frame:
        frame["label"] = frame["label"].map(normalize_label) if len(frame) else frame["label"].astype(object)
        if "target" not in frame:
            frame["target"] = frame["label"].map(label_target).astype("int64")
    if "attack" not in frame:
        frame["attack"] = NOT_APPLICABLE
    if "speaker" not in frame:
        frame["speaker"] = NOT_APPLICABLE
    return order_columns(frame, condition_order)


def order_columns(frame: pd.DataFrame, condition_order: Sequence[str] = ()) -> pd.DataFrame:
    """Core columns, then conditions (given order first, the rest as found), then source columns."""
    fixed = set(CORE_COLUMNS) | set(SOURCE_COLUMNS)
    extra = [c for c in condition_order if c in frame and c not in fixed]
    extra += [c for c in frame.columns if c not in fixed and c not in extra]
    cols = [c for c in CORE_COLUMNS if c in frame] + extra + [c for c in SOURCE_COLUMNS if c in frame]
    return frame.loc[:, cols]


def validate_manifest(manifest: pd.DataFrame, where: str = "manifest") -> pd.DataFrame:
    """Raise UserError when the DataFrame does not have the manifest shape; return it unchanged.

    Checks structure only (columns, types, label/target agreement); content problems such as
    missing audio or duplicate ids are `dpda.data.check`'s job, reported per row.
    """
    if not isinstance(manifest, pd.DataFrame):
        raise UserError(f"{where}: expected a pandas DataFrame, got {type(manifest).__name__}")
    missing = [c for c in CORE_COLUMNS + SOURCE_COLUMNS if c not in manifest.columns]
    if missing:
        raise UserError(f"{where}: missing manifest columns {missing}")
    if manifest.columns.duplicated().any():
        dup = sorted(set(manifest.columns[manifest.columns.duplicated()]))
        raise UserError(f"{where}: duplicated columns {dup}")
    for col in ("target", "source_line"):
        if not pd.api.types.is_integer_dtype(manifest[col]):
            raise UserError(f"{where}: column {col!r} must be integer, got {manifest[col].dtype}")
    for col in ("utt", "path", "label", "attack", "speaker", "corpus", "subset", "source_file"):
        bad = manifest[col].map(lambda v: not isinstance(v, str))
        if bad.any():
            row = manifest.loc[bad].iloc[0]
            raise UserError(f"{_origin(row, where)}: column {col!r} must be a string, got {row[col]!r}")
    expected = manifest["label"].map(label_target)
    wrong = expected != manifest["target"]
    if wrong.any():
        row = manifest.loc[wrong].iloc[0]
        raise UserError(
            f"{_origin(row, where)}: target {row['target']} does not match label {row['label']!r} "
            f"(expected {label_target(row['label'])})"
        )
    return manifest


def concat_manifests(manifests: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack manifests of different corpora; condition columns absent from one get `-`.

    Row order is kept (corpus after corpus) and the index reset, so a dataset index is a row
    number. Duplicate `utt` across corpora are left for `check_manifest` to report.
    """
    if not manifests:
        return make_manifest({c: [] for c in CORE_COLUMNS + SOURCE_COLUMNS})
    for i, m in enumerate(manifests):
        validate_manifest(m, where=f"manifest #{i}")
    conditions: list[str] = []
    for m in manifests:
        conditions += [c for c in condition_columns(m) if c not in conditions]
    out = pd.concat(list(manifests), ignore_index=True, sort=False)
    for c in conditions:
        out[c] = out[c].fillna(NOT_APPLICABLE)
    out = order_columns(out, conditions)
    out.attrs = {}
    roots = [m.attrs.get("root") for m in manifests]
    if len(set(roots)) == 1 and roots[0] is not None:
        out.attrs["root"] = roots[0]
    return out


def _origin(row: pd.Series, fallback: str) -> str:
    """`file:line` of a row when known, for error messages."""
    src = row.get("source_file")
    if isinstance(src, str) and src:
        line = row.get("source_line")
        return f"{src}:{int(line)}" if line is not None and int(line) > 0 else src
    return fallback


def origin(row: Mapping[str, object]) -> str:
    """Public `file:line` of a manifest row (line omitted when the layout has none, e.g. FoR)."""
    return _origin(pd.Series(dict(row)), "manifest")
