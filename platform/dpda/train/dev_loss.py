"""The dev loss from per-utterance weighted cross-entropy terms, by one of two definitions.

Early stopping and the n-best selection (`checkpoint.select_by: dev_loss`) rank epochs by it, so
the definition decides which epochs are kept. `pooled` (dpda) is the class-weighted mean over the
whole set, the value `CrossEntropyLoss(weight=...)` gives on the set as one batch. `published` is
what the published `main.py` (`evaluate_accuracy`) reports: the weighted mean of each batch of
`PUBLISHED_DEV_BATCH` utterances in protocol order, averaged with the batch sizes as weights, so
a batch of few (heavily weighted) bona fide trials counts as much as one of many.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dpda.train.config import DevLoss

PUBLISHED_DEV_BATCH = 8  # main.py: DataLoader(dev_set, batch_size=8, shuffle=False)


def dev_loss(terms: torch.Tensor, weights: torch.Tensor, definition: DevLoss = "pooled") -> float:
    """The dev loss of `definition` from (N,) per-utterance terms w[y] * CE and their (N,) class
    weights w[y], in manifest (protocol) order; one host transfer."""
    if definition == "pooled":
        return float(terms.sum() / weights.sum().clamp_min(1e-12))
    if definition != "published":
        raise ValueError(f"eval.dev_loss: expected pooled or published, got {definition!r}")
    n = terms.numel()
    pad = -n % PUBLISHED_DEV_BATCH
    chunk = lambda t: F.pad(t, (0, pad)).view(-1, PUBLISHED_DEV_BATCH)  # noqa: E731
    sizes = chunk(torch.ones_like(terms)).sum(dim=1)
    means = chunk(terms).sum(dim=1) / chunk(weights).sum(dim=1)  # each batch's CrossEntropyLoss value
    return float((means * sizes).sum() / n)
