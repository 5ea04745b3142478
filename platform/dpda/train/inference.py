"""Batched scoring of a manifest: shared by dev evaluation, `dpda eval` and `dpda predict`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dpda import SAMPLE_RATE
from dpda.console import track
from dpda.data.audio import load_audio
from dpda.data.audio_file import peak_problem
from dpda.data.dataset import AudioDataset, make_loader
from dpda.errors import UserError
from dpda.train.config import DEFAULT_SCORE, DevLoss, ScoreKind
from dpda.train.dev_loss import dev_loss


def score_from_logits(logits: torch.Tensor, kind: ScoreKind = DEFAULT_SCORE) -> torch.Tensor:
    """The (batch,) scores of `kind` (see ScoreKind), on the logits' device."""
    if kind == "logit_diff":
        return logits[:, 1] - logits[:, 0]
    if kind == "logit1":
        return logits[:, 1]
    if kind == "softmax1":
        return torch.softmax(logits, dim=1)[:, 1]
    raise UserError(f"eval.score: expected logit_diff, logit1 or softmax1, got {kind!r}")


@dataclass
class ScoreResult:
    scores: np.ndarray  # per manifest row, manifest order (see ScoreKind)
    loss: float  # the dev loss (`dpda.train.dev_loss`: pooled or published) of class-weighted cross-entropy or loss_fn, NaN without either


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; anything else must name a device torch has here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"device: {name!r} is not a torch device (cpu, cuda, cuda:N, mps or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {name!r} asked for, but torch sees no CUDA device here (use cpu or auto)")
    return device


def inference_layout(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its 2-D convolution weights in channels-last order, for scoring only
    (`dpda.train.model_file.load_trained_model` applies it: `dpda eval`, `dpda predict`).

    oneDNN (CPU) and cuDNN run 2-D convolutions on NHWC tensors without reordering each huge
    activation first: AASIST scores 1.5-1.65x faster on a 2-core CPU (benchmarks/bench_inference_layout.py),
    logits equal to float32 rounding. Other tensors are untouched (1-D / 3-D convolutions, linear
    layers). Not for training: the alignment step's flat gradient views assume contiguous `.grad`."""
    return model.to(memory_format=torch.channels_last)


def finite_weights(model: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer (e.g. BatchNorm statistics) is finite."""
    tensors = (*model.parameters(), *model.buffers())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def require_finite_scores(scores: np.ndarray | list[float], paths: list, model: torch.nn.Module) -> None:
    """A score is never NaN silently: name the first file whose score is not finite, and blame
    what is at fault. The input is looked at first (only once a score is bad, so scoring pays
    nothing): samples that are not finite, or a finite model whose output overflows on the file
    (float audio at 1e30 is finite yet squares to inf), blame the file; else the weights."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(scores, dtype=np.float64)))
    if not bad.size:
        return
    path, count = paths[int(bad[0])], f"({bad.size} of {len(paths)} files)"
    peak = float(load_audio(path).abs().max())  # AudioReadError names the file for NaN/Inf samples in it
    if not np.isfinite(peak):
        raise UserError(f"{path}: the model's score is not finite on this file {count}: its samples are not "
                        f"finite once resampled to {SAMPLE_RATE} Hz")
    if finite_weights(model):
        raise UserError(f"{path}: the model's score is not finite on this file {count} though its weights are "
                        f"finite: the audio overflows the model: {peak_problem(peak) or f'peak amplitude {peak:.3g}'}")
    raise UserError(f"{path}: the model's score is not finite {count}; its weights are not finite "
                    "(a diverged run or a corrupt model file)")


@torch.no_grad()
def score_manifest(
    model: torch.nn.Module,
    manifest: pd.DataFrame,
    *,
    length: int,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    class_weights: torch.Tensor | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    score: ScoreKind = DEFAULT_SCORE,
    loss_definition: DevLoss = "pooled",
) -> ScoreResult:
    """Score every row with the deterministic eval crop; one host transfer per batch.
    `score` says which score of the logits (see ScoreKind); the loss does not depend on it.
    `loss_definition` is the dev loss's (`eval.dev_loss`, see `dpda.train.dev_loss`): of the
    class-weighted cross-entropy with `class_weights`, else of `loss_fn` (a cross-entropy module
    brings its weights; another loss's rows each hold their batch's mean, weight 1)."""
    weight = getattr(loss_fn, "weight", None)
    if class_weights is None and isinstance(loss_fn, torch.nn.CrossEntropyLoss) and weight is not None:
        class_weights, loss_fn = weight, None
    was_training = model.training
    model.eval()
    loader = make_loader(
        AudioDataset(manifest, length=length, train=False, seed=0),
        batch_size=batch_size, shuffle=False, num_workers=num_workers, seed=0, drop_last=False,
    )
    scores = np.empty(len(manifest), dtype=np.float64)
    # per row, manifest order: w[y] * CE and w[y], combined by the dev loss's definition at the end
    terms = torch.zeros(len(manifest), device=device, dtype=torch.float64)
    term_weights = torch.zeros_like(terms)
    weights = None if class_weights is None else class_weights.to(device=device, dtype=torch.float32)
    for wave, target, index in track(loader, len(loader), "scoring", "batches", enabled=progress):
        wave = wave.to(device, non_blocking=True)
        logits = model(wave).float()
        if weights is not None:
            target, rows = target.to(device), index.to(device)
            terms[rows] = F.cross_entropy(logits, target, weight=weights, reduction="none").double()
            term_weights[rows] = weights[target].double()
        elif loss_fn is not None:
            target, rows = target.to(device), index.to(device)
            terms[rows] = loss_fn(logits, target).double()
            term_weights[rows] = 1.0
        scores[index.numpy()] = score_from_logits(logits, score).cpu().numpy()
    model.train(was_training)
    require_finite_scores(scores, manifest["path"].tolist(), model)
    scored = weights is not None or loss_fn is not None
    loss = dev_loss(terms, term_weights, loss_definition) if scored else float("nan")
    return ScoreResult(scores=scores, loss=loss)
