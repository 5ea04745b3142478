"""A trial's variant, the one label the analysis groups and shows trials by: the alignment rule of
a dual-path run, else its augment mode. And how files of schema 2 are read into that.

Why both here: schema 2 wrote the augment mode into `rule` for runs that were not dual-path, so
an augmented-only run read as rule `augmented`, and a run without augmentation read as rule
`none`, the same as a dual-path run with the `none` rule (the published baseline). Schema 3 keeps
the two apart (`augment_mode`, `rule`); for a schema-2 row (`augment_mode` null) the mode is
derived from its rule value: `augmented` (or its old name `da`) is the augmented-only mode with
no alignment rule, anything else a dual-path rule, which is all the old files can tell.
"""

from __future__ import annotations

_LEGACY_MODE_RULES = ("augmented", "da")  # schema-2 `rule` values that named the augment mode
_MODE_LABELS = {"augmented": "augmented", "none": "no augmentation"}  # a dual-path run shows its rule


def _quoted(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def resolved_columns_sql() -> str:
    """`rule` and `augment_mode` as schema 3 defines them, for rows of any version (a SELECT's
    REPLACE list over a relation with both columns; schema-2 rows have a null `augment_mode`)."""
    legacy = f"augment_mode IS NULL AND rule IN ({_quoted(_LEGACY_MODE_RULES)})"
    return (f"CASE WHEN {legacy} THEN 'none' ELSE rule END AS rule, "
            f"coalesce(augment_mode, CASE WHEN {legacy} THEN 'augmented' ELSE 'dual' END) AS augment_mode")


def variant_sql() -> str:
    """The display label from resolved `augment_mode` and `rule` columns (SQL expression)."""
    modes = " ".join(f"WHEN '{mode}' THEN '{label}'" for mode, label in _MODE_LABELS.items())
    return f"CASE augment_mode WHEN 'dual' THEN rule {modes} ELSE augment_mode END"
