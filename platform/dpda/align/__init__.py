"""Gradient alignment rules for dual-path training (the registry: none, pcgrad, gradvac, cagrad, mgda).

Rules act on two flat gradients g_orig, g_aug (shape (P,)) laid out in segments (one per
parameter tensor), either on the whole model or per segment. See ``aligner.make_aligner``; to
add a rule, ``registry.register_rule``.
"""

from dpda.align.aligner import (
    GRANULARITIES,
    Aligner,
    AlignerSpec,
    AlignStats,
    Alignment,
    Coefficients,
    aligner_from_spec,
    make_aligner,
)
from dpda.align.registry import RULES, Rule, get_rule, register_rule
from dpda.align.segments import PairDots, Segments, combine_, segment_dots

__all__ = [
    "GRANULARITIES",
    "RULES",
    "Aligner",
    "AlignerSpec",
    "AlignStats",
    "Alignment",
    "Coefficients",
    "PairDots",
    "Rule",
    "Segments",
    "aligner_from_spec",
    "combine_",
    "get_rule",
    "make_aligner",
    "register_rule",
    "segment_dots",
]
