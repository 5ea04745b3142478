"""A synthetic Tune-like experiment written through the real `TelemetryWriter`.

Why: the analysis package, the report and their tests need telemetry with known structure
(rules, RawBoost algorithms, restarts, dev EER per epoch) without training a model. Values are
drawn from a seeded numpy Generator; the conflict rate falls over training and differs per rule,
and a trial's dev EER grows with its conflict fraction, so the report shows real relations.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpda.telemetry.writer import TelemetryWriter

RULES = ("none", "pcgrad", "gradvac", "cagrad")
# Lower = the rule removes more conflict (PCGrad/GradVac/CAGrad act on conflicting steps).
_RULE_SHIFT = {"none": 0.0, "pcgrad": 0.08, "gradvac": 0.06, "cagrad": 0.1, "mgda": 0.07}


@dataclass
class SyntheticTrial:
    run_dir: Path
    run_id: str
    trial_id: str
    rule: str
    rawboost_algo: int
    strength: float
    restart_at: int | None


def step_stats(rng: np.random.Generator, n_steps: int, n_layers: int, shift: float, progress: np.ndarray) -> dict:
    """Per-step stats arrays shaped like StepStats.to_host() values, for `n_steps` steps."""
    mu = shift + 0.35 * progress  # gradients agree more as training converges
    cos = np.clip(rng.normal(mu, 0.3, n_steps), -1, 1)
    layer_bias = np.linspace(-0.15, 0.25, n_layers)
    layer_cos = np.clip(cos[:, None] * 0.6 + layer_bias[None, :] + rng.normal(0, 0.25, (n_steps, n_layers)), -1, 1)
    norm_orig = rng.lognormal(0, 0.3, n_steps)
    norm_aug = rng.lognormal(0.1, 0.3, n_steps)
    skipped = rng.random(n_steps) < 0.01
    loss_orig = 0.7 * np.exp(-2 * progress) + rng.normal(0, 0.02, n_steps)
    return {
        "loss_orig": loss_orig,
        "loss_aug": loss_orig + 0.1 + rng.normal(0, 0.02, n_steps),
        "cos": np.where(skipped, np.nan, cos),
        "norm_orig": norm_orig,
        "norm_aug": norm_aug,
        "conflict": (cos < 0) & ~skipped,
        "cos_update_orig": np.clip(cos + 0.4, -1, 1),
        "cos_update_aug": np.clip(cos + 0.3, -1, 1),
        "update_norm": 0.5 * (norm_orig + norm_aug),
        "skipped": skipped,
        "layer_cos": layer_cos.astype(np.float32),
        "layer_norm_orig": rng.lognormal(-2, 0.5, (n_steps, n_layers)).astype(np.float32),
        "layer_norm_aug": rng.lognormal(-2, 0.5, (n_steps, n_layers)).astype(np.float32),
    }


def _write_attempt(
    trial: SyntheticTrial,
    attempt: int,
    first: int,
    last: int,
    steps_per_epoch: int,
    total: int,
    n_layers: int,
    rng: np.random.Generator,
    flush_every: int,
    resumed_from: int | None,
) -> float:
    """Log steps [first, last) and their epoch ends; return the attempt's conflict fraction."""
    names = [f"layer{i:03d}.weight" for i in range(n_layers)]
    steps = np.arange(first, last)
    stats = step_stats(rng, len(steps), n_layers, _RULE_SHIFT.get(trial.rule, 0.0), steps / max(total, 1))
    with TelemetryWriter(
        trial.run_dir, trial.run_id, trial.trial_id, attempt, names,
        rule=trial.rule, strength=trial.strength, rawboost_algo=trial.rawboost_algo,
        resumed_from_step=resumed_from, flush_every=flush_every,
        config={"rule": trial.rule, "rawboost_algo": trial.rawboost_algo, "strength": trial.strength},
    ) as writer:
        per_step = [
            {k: (v[i].tolist() if v.ndim == 2 else v[i].item()) for k, v in stats.items()} for i in range(len(steps))
        ]
        conflict_frac = float(stats["conflict"][~stats["skipped"]].mean()) if len(steps) else 0.0
        for i, step in enumerate(steps):
            epoch = int(step // steps_per_epoch)
            writer.log_step(int(step), epoch, per_step[i], lr=1e-4 * (0.95**epoch))
            if (step + 1) % steps_per_epoch == 0:
                eer = (0.02 + 0.25 * conflict_frac + 0.2 * np.exp(-epoch / (1 + 8 * conflict_frac))
                       + 0.002 * epoch + rng.normal(0, 0.004))
                writer.log_epoch(epoch, int(step), dev_loss=float(eer * 2), dev_eer=float(eer), lr=1e-4)
    return conflict_frac


def write_synthetic_experiment(
    root: str | os.PathLike,
    *,
    trials: int = 4,
    steps: int = 200,
    layers: int = 6,
    steps_per_epoch: int = 50,
    restart_trials: int = 1,
    flush_every: int = 64,
    seed: int = 0,
    experiment: str = "synthetic_exp",
) -> list[SyntheticTrial]:
    """Write a Tune-style experiment dir (params.json, result.json, telemetry/) under `root`.

    The first `restart_trials` trials crash at 3/4 of training and restart (attempt 1) from the
    checkpoint at the end of the first half's last full epoch.
    """
    rng = np.random.default_rng(seed)
    exp = Path(root) / experiment
    out = []
    for i in range(trials):
        rule = RULES[i % len(RULES)]
        algo = (4, 1, 3, 5)[(i // len(RULES)) % 4]
        strength = float(np.round(rng.uniform(0.2, 1.0), 3))
        trial_id = f"{i:05d}"
        run_dir = exp / f"train_fn_{trial_id}_{i}_rule={rule},algo={algo}"
        run_dir.mkdir(parents=True, exist_ok=True)
        restart = (steps // 2) // steps_per_epoch * steps_per_epoch if i < restart_trials else None
        trial = SyntheticTrial(run_dir, experiment, trial_id, rule, algo, strength, restart)
        params = {"train_loop_config": {"rule": rule, "rawboost_algo": algo, "strength": strength,
                                        "lr": float(10 ** rng.uniform(-5, -3))}}
        (run_dir / "params.json").write_text(json.dumps(params))
        if restart is not None and restart > 0:
            crash = min(steps, restart + max(1, steps // 4))
            _write_attempt(trial, 0, 0, crash, steps_per_epoch, steps, layers, rng, flush_every, None)
            _write_attempt(trial, 1, restart, steps, steps_per_epoch, steps, layers, rng, flush_every, restart)
        else:
            _write_attempt(trial, 0, 0, steps, steps_per_epoch, steps, layers, rng, flush_every, None)
        with (run_dir / "result.json").open("w") as fh:
            for epoch in range(steps // steps_per_epoch):
                fh.write(json.dumps({"trial_id": trial_id, "training_iteration": epoch + 1,
                                     "loss": 0.1}) + "\n")
        out.append(trial)
    return out
