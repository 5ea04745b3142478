"""Gradient alignment rules for dual-path training (none, pcgrad, gradvac, cagrad, mgda).

Rules act on two flat gradients g_orig, g_aug (shape (P,)) laid out in segments (one per
parameter tensor), either on the whole model or per segment. See ``aligner.make_aligner``.
"""

from dpda.align.aligner import (
    GRANULARITIES,
    OPTIONS,
    RULES,
    Aligner,
    AlignStats,
    Alignment,
    Coefficients,
    make_aligner,
)
from dpda.align.segments import PairDots, Segments, combine_, segment_dots

__all__ = [
    "GRANULARITIES",
    "OPTIONS",
    "RULES",
    "Aligner",
    "AlignStats",
    "Alignment",
    "Coefficients",
    "PairDots",
    "Segments",
    "combine_",
    "make_aligner",
    "segment_dots",
]
