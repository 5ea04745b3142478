"""A synthetic Tune-like experiment written through the real `TelemetryWriter`.

Why: the analysis package, the report and their tests need telemetry with known structure
(rules, RawBoost algorithms, restarts, dev EER per epoch) without training a model. Values are
drawn from a seeded numpy Generator; the conflict rate falls over training and differs per rule,
and a trial's dev EER grows with its conflict fraction, so the report shows real relations.
With `path_counts`, trials have P = 2..5 paths (schema 5) whose pairwise conflicts are drawn at
known rates (`planted_rate`: per pair, falling over epochs, rising with the layer index).
A test helper, not part of the `dpda` package (pytest puts tests/ on sys.path:
`import synthetic_telemetry`; docs/report_screenshots.py adds tests/ itself).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd

from dpda_analysis.conflict import conflict_fraction, step_counts
from dpda_analysis.layout import RUN_EVAL_DIR, RUN_SUMMARY, SEARCH_SPACE_FILE
from dpda.telemetry.tally import EpochTally
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
    leaves: tuple[str, ...] = ()  # the augmentation pipeline's leaves: applied-transforms telemetry
    paths: tuple[str, ...] = ()  # the step's paths ("orig" first): many-path telemetry; () none recorded


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


AUGMENTED_PATHS = ("lnl", "isd", "ssi", "noise_rir")
"""Names of the augmented paths of a many-path trial, in order (`trial_paths`)."""


def trial_paths(n_paths: int) -> tuple[str, ...]:
    """The `paths` of a trial with `n_paths` paths: ("orig", "aug") for two, as a dual-path run."""
    if not 2 <= n_paths <= len(AUGMENTED_PATHS) + 1:
        raise ValueError(f"n_paths must be 2..{len(AUGMENTED_PATHS) + 1}, got {n_paths}")
    return ("orig", "aug") if n_paths == 2 else ("orig", *AUGMENTED_PATHS[: n_paths - 1])


def planted_rate(pair: ArrayLike, epoch: ArrayLike, layer: ArrayLike | None = None) -> np.ndarray:
    """The probability that pair `pair` (index in `path_pairs` order) conflicts in (1-based) `epoch`,
    whole model (`layer` None) or in parameter tensor `layer`: distinct per pair, falling by 0.04
    per epoch, 0.03 higher per layer index; kept in [0.03, 0.95]. Broadcasts over arrays."""
    base = 0.15 + 0.6 * ((np.asarray(pair) * 0.37) % 1.0)
    rate = base - 0.04 * (np.asarray(epoch) - 1) + (0.0 if layer is None else 0.03 * np.asarray(layer) - 0.05)
    return np.clip(rate, 0.03, 0.95)


def path_stats(rng: np.random.Generator, stats: dict, epochs: np.ndarray, paths: tuple[str, ...]) -> None:
    """Add the many-path record to `stats` (`path_loss`, `path_cos`, `layer_path_cos`, as the step's
    `StepStats.to_host()` gives them): each pair's cosine is negative with its `planted_rate` for
    the step's epoch (and layer), its magnitude uniform in [0.05, 0.9]. The whole-model `cos`,
    `conflict` and `layer_cos` become pair (0, 1)'s, the original against the first augmented path."""
    n_steps, n_layers = len(epochs), stats["layer_cos"].shape[1]
    n_pairs = len(paths) * (len(paths) - 1) // 2
    pairs, layers = np.arange(n_pairs), np.arange(n_layers)
    rate = planted_rate(pairs[None, :], epochs[:, None])
    layer_rate = planted_rate(pairs[None, None, :], epochs[:, None, None], layers[None, :, None])
    sign = lambda r: np.where(rng.random(r.shape) < r, -1.0, 1.0)  # noqa: E731
    cos = sign(rate) * rng.uniform(0.05, 0.9, rate.shape)
    layer_cos = (sign(layer_rate) * rng.uniform(0.05, 0.9, layer_rate.shape)).astype(np.float32)
    skipped = stats["skipped"]
    cos[skipped] = np.nan
    loss = stats["loss_orig"][:, None] + 0.05 * np.arange(len(paths))[None, :] + rng.normal(0, 0.02, (n_steps, len(paths)))
    stats.update(path_loss=loss, path_cos=cos, layer_path_cos=layer_cos, cos=cos[:, 0],
                 conflict=(cos[:, 0] < 0) & ~skipped, layer_cos=layer_cos[:, :, 0])


PIPELINE = ("pipeline.steps[0].one_of.steps[0].codec", "pipeline.steps[0].one_of.steps[1].speed",
            "pipeline.steps[0].one_of.steps[2].rawboost", "pipeline.steps[1].gain")
"""A one_of of three transforms (p = 0.9) then gain (p = 0.5): `write_synthetic_experiment(leaves=...)`."""
BATCH = 8
CODEC_SHIFT = 0.25  # the cosine falls by this times the share of the batch that received the codec


def applied_transforms(rng: np.random.Generator, stats: dict, n_leaves: int) -> list[dict]:
    """Per step: the applied-transforms record of a batch of BATCH utterances through PIPELINE's
    shape (one of the first n_leaves - 1 leaves with p = 0.9, the last with p = 0.5), as
    `StepStats.to_host(applied)` gives it. Makes the codec (leaf 0) conflict: the step's cosine
    (and so its conflict flag) shifts down with the share of utterances that received it."""
    n_steps = len(stats["cos"])
    pick = rng.integers(0, n_leaves - 1, (n_steps, BATCH))
    masks = np.where(rng.random((n_steps, BATCH)) < 0.9, 1 << pick, 0)
    masks |= (rng.random((n_steps, BATCH)) < 0.5).astype(np.int64) << (n_leaves - 1)
    share = (masks & 1).mean(axis=1)
    cos = np.where(stats["skipped"], np.nan, np.clip(stats["cos"] - CODEC_SHIFT * share, -1, 1))
    stats["cos"], stats["conflict"] = cos, (cos < 0) & ~stats["skipped"]
    out = []
    for row in masks:
        values, n = np.unique(row, return_counts=True)
        out.append({"augment_counts": [int((row >> j & 1).sum()) for j in range(n_leaves)],
                    "augment_combos": [{"mask": int(v), "n": int(k)} for v, k in zip(values, n)]})
    return out


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
    superseded_from: int | None = None,
) -> float:
    """Log steps [first, last) and their epoch ends; return the lowest dev EER logged before
    `superseded_from` (a later attempt's resume point), 1.0 when none."""
    names = layer_names(n_layers)
    steps = np.arange(first, last)
    stats = step_stats(rng, len(steps), n_layers, _RULE_SHIFT.get(trial.rule, 0.0), steps / max(total, 1))
    applied = applied_transforms(rng, stats, len(trial.leaves)) if trial.leaves else [{}] * len(steps)
    if trial.paths:
        path_stats(rng, stats, steps // steps_per_epoch + 1, trial.paths)
    with TelemetryWriter(
        trial.run_dir, trial.run_id, trial.trial_id, attempt, names,
        rule=trial.rule, strength=trial.strength, rawboost_algo=None if trial.leaves else trial.rawboost_algo,
        resumed_from_step=resumed_from, flush_every=flush_every, augment_leaves=trial.leaves or None,
        paths=trial.paths or None,
        config={"rule": trial.rule, "rawboost_algo": trial.rawboost_algo, "strength": trial.strength},
    ) as writer:
        per_step = [
            {**{k: (v[i].tolist() if v.ndim >= 2 else v[i].item()) for k, v in stats.items()}, **applied[i]}
            for i in range(len(steps))
        ]
        counted, conflicts = step_counts(stats["skipped"], stats["conflict"])
        conflict_frac = float(np.nan_to_num(conflict_fraction(conflicts, counted)))
        best = 1.0
        tally = EpochTally()  # as the Trainer keeps one per epoch
        for i, step in enumerate(steps):
            epoch = int(step // steps_per_epoch) + 1  # 1-based, as the Trainer logs it
            writer.log_step(int(step), epoch, per_step[i], lr=1e-4 * (0.95 ** (epoch - 1)))
            tally.add(per_step[i])
            if (step + 1) % steps_per_epoch == 0:
                done = epoch - 1
                eer = (0.02 + 0.25 * conflict_frac + 0.2 * np.exp(-done / (1 + 8 * conflict_frac))
                       + 0.002 * done + rng.normal(0, 0.004))
                writer.log_epoch(epoch, int(step), tally=tally, dev_loss=float(eer * 2), dev_eer=float(eer), lr=1e-4)
                tally = EpochTally()
                if superseded_from is None or step < superseded_from:
                    best = min(best, float(eer))
    return best


def layer_names(n_layers: int) -> list[str]:
    """Parameter names shaped like an SSL front end with a transformer and a small head (what
    the report groups by module): up to 7 front-end convolutions, blocks of 16 tensors, 2 head ones."""
    head = ["head.fc.weight", "head.fc.bias"][: min(2, n_layers)]
    front = [f"ssl.feature_extractor.conv_layers.{i}.conv.weight" for i in range(min(7, n_layers // 10))]
    block = [f"{part}.{kind}" for part in ("attention.q_proj", "attention.k_proj", "attention.v_proj",
                                          "attention.out_proj", "layer_norm", "feed_forward.intermediate_dense",
                                          "feed_forward.output_dense", "final_layer_norm")
             for kind in ("weight", "bias")]
    middle = [f"ssl.encoder.layers.{i // len(block)}.{block[i % len(block)]}"
              for i in range(n_layers - len(head) - len(front))]
    return front + middle + head


def brute_force_eer(bona: np.ndarray, spoof: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) by sweeping every score as the threshold (miss: bona < t, false alarm:
    spoof >= t), the rates' mean where they are closest: the fixture's own, independent of dpda."""
    thresholds = np.unique(np.concatenate([bona, spoof]))
    frr = (bona[None, :] < thresholds[:, None]).mean(axis=1)
    far = (spoof[None, :] >= thresholds[:, None]).mean(axis=1)
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2), float(thresholds[i])


_FIXTURE_COST = (0.05, 1.0, 10.0)  # ASVspoof 5: Pspoof, Cmiss, Cfa


def _fixture_metrics(bona: np.ndarray, spoof: np.ndarray) -> dict[str, float]:
    """EER, threshold, minDCF, actDCF (at the Bayes threshold) and Cllr by plain sweeps and sums."""
    p, c_miss, c_fa = _FIXTURE_COST
    eer, threshold = brute_force_eer(bona, spoof)
    norm = min(c_miss * (1 - p), c_fa * p)
    cuts = np.concatenate([np.unique(np.concatenate([bona, spoof])), [np.inf]])
    miss = (bona[None, :] < cuts[:, None]).mean(axis=1)
    fa = (spoof[None, :] >= cuts[:, None]).mean(axis=1)
    bayes = -np.log(c_miss * (1 - p) / (c_fa * p))
    act = (c_miss * (1 - p) * (bona < bayes).mean() + c_fa * p * (spoof >= bayes).mean()) / norm
    cllr = (np.mean(np.logaddexp(0, -bona)) + np.mean(np.logaddexp(0, spoof))) / (2 * np.log(2))
    half = 1.96 * np.sqrt(eer * (1 - eer) / (bona.size + spoof.size)) * 2
    return {"eer": eer, "threshold": threshold, "eer_low": max(0.0, eer - half), "eer_high": eer + half,
            "min_dcf": float(((c_miss * (1 - p) * miss + c_fa * p * fa) / norm).min()), "act_dcf": float(act),
            "cllr": float(cllr), "bayes_threshold": float(bayes)}


def _write_scored_outcome(trial: SyntheticTrial, final: float) -> None:
    """eval/ as `dpda eval` writes it, from drawn scores: score and key files, metrics.csv and the
    breakdowns (per attack, and per codec on the eval set) computed from those scores. Its own
    generator, so the telemetry's numbers do not move."""
    rng = np.random.default_rng(int(trial.trial_id) + 1000)
    out = trial.run_dir / RUN_EVAL_DIR
    out.mkdir(exist_ok=True)
    rows = []
    for name, n, attacks, codecs in (("eval", 3000, [f"A{k:02d}" for k in range(16, 20)], ["none", "mp3", "opus"]),
                                     ("in_the_wild", 1500, ["wild"], [])):
        sep = 5.5 - 15 * final - (1.2 if name == "in_the_wild" else 0.0)
        n_bona = n // 5
        utt = [f"{name}_{i:05d}" for i in range(n)]
        label = np.array(["bonafide"] * n_bona + ["spoof"] * (n - n_bona))
        attack = np.array(["-"] * n_bona + [attacks[i % len(attacks)] for i in range(n - n_bona)])
        shift = np.array([0.0] * n_bona + [0.6 * (attacks.index(a) - 1) for a in attack[n_bona:]])
        score = np.where(label == "bonafide", rng.normal(sep / 2, 1.0, n), rng.normal(-sep / 2, 1.2, n) + shift)
        keys = {"utt": utt, "label": label, "attack": attack}
        if codecs:
            keys["codec"] = [codecs[i % len(codecs)] for i in range(n)]
        (out / f"{name}.scores.txt").write_text("".join(f"{u} {s!r}\n" for u, s in zip(utt, score.tolist())))
        pd.DataFrame(keys).to_csv(out / f"{name}.keys.csv", index=False)
        bona = score[label == "bonafide"]
        pooled = _fixture_metrics(bona, score[label == "spoof"])
        rows.append({"set": name, "spec": name, "n_bonafide": n_bona, "n_spoof": n - n_bona, **pooled,
                     "score": "logit_diff", "model": str(trial.run_dir / "model.pt")})
        lines = [{"factor": "all", "value": "pooled", "n_bonafide": n_bona, "n_spoof": n - n_bona, **pooled}]
        for a in attacks:
            spoof = score[attack == a]
            lines.append({"factor": "attack", "value": a, "n_bonafide": n_bona, "n_spoof": spoof.size,
                          **_fixture_metrics(bona, spoof)})
        for c in codecs:
            in_c = np.asarray(keys["codec"]) == c
            lines.append({"factor": "codec", "value": c, "n_bonafide": int((in_c & (label == "bonafide")).sum()),
                          "n_spoof": int((in_c & (label == "spoof")).sum()),
                          **_fixture_metrics(score[in_c & (label == "bonafide")], score[in_c & (label == "spoof")])})
        _write_csv(out / f"{name}.breakdown.csv", lines)
    _write_csv(out / "metrics.csv", rows)


def _write_csv(path: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(path, index=False)  # quoted where needed: Tune's run dir names hold commas


def _write_outcome(trial: SyntheticTrial, rng: np.random.Generator, best_eer: float, scores: bool = False) -> None:
    """What a finished Trainer leaves beside its telemetry: summary.json (the saved averaged
    model's dev EER, a little worse than the best epoch's) and eval/ (per set and per attack,
    with bootstrap-like intervals)."""
    final = best_eer + abs(rng.normal(0.01, 0.005))
    summary = {"run_id": trial.run_id, "final_dev_eer": final, "final_dev_eer_low": final * 0.8,
               "final_dev_eer_high": final * 1.25, "best_dev_eer": best_eer, "averaged_epochs": [1]}
    (trial.run_dir / RUN_SUMMARY).write_text(json.dumps(summary))
    out = trial.run_dir / RUN_EVAL_DIR
    out.mkdir(exist_ok=True)
    rows = []
    for name, shift, n in (("eval", 0.03, 4000), ("in_the_wild", 0.12, 2000)):
        eer = final + shift + rng.normal(0, 0.01)
        half = 1.96 * np.sqrt(eer * (1 - eer) / n) * 1.5
        rows.append(f"{name},{name},{n // 4},{n - n // 4},{eer:.6f},0.0,{eer - half:.6f},{eer + half:.6f}")
        attacks = [f"A{k:02d}" for k in range(7, 20)] if name == "eval" else ["wild"]
        lines = ["factor,value,n_bonafide,n_spoof,eer,threshold,eer_low,eer_high",
                 f"all,pooled,{n // 4},{n - n // 4},{eer:.6f},0.0,{eer - half:.6f},{eer + half:.6f}"]
        for attack in attacks:
            a = float(np.clip(eer + rng.normal(0, 0.05), 0.001, 0.6))
            h = 1.96 * np.sqrt(a * (1 - a) / 500) * 1.5
            lines.append(f"attack,{attack},{n // 4},{(n - n // 4) // len(attacks)},{a:.6f},0.0,{a - h:.6f},{a + h:.6f}")
        (out / f"{name}.breakdown.csv").write_text("\n".join(lines) + "\n")
    (out / "metrics.csv").write_text("set,spec,n_bonafide,n_spoof,eer,threshold,eer_low,eer_high\n"
                                     + "\n".join(rows) + "\n")
    if scores:  # what dpda eval writes today, from drawn scores (the lines above keep older tests' numbers)
        _write_scored_outcome(trial, final)


def write_synthetic_experiment(
    root: str | os.PathLike,
    *,
    trials: int = 4,
    steps: int = 200,
    layers: int = 6,
    steps_per_epoch: int = 50,
    restart_trials: int = 1,
    stopped_trials: int = 0,
    flush_every: int = 64,
    seed: int = 0,
    experiment: str = "synthetic_exp",
    leaves: tuple[str, ...] = (),
    path_counts: tuple[int, ...] = (),
    scores: bool = False,
) -> list[SyntheticTrial]:
    """Write a Tune-style experiment dir (params.json, result.json, telemetry/) under `root`.

    The first `restart_trials` trials crash at 3/4 of training and restart (attempt 1) from the
    checkpoint at the end of the first half's last full epoch. The last `stopped_trials` trials
    stop after their first epoch (as ASHA stops them: no summary.json, no eval/); the others
    finish and leave summary.json and eval/ as the Trainer does. With `leaves` (e.g. PIPELINE)
    every trial records each step's applied transforms (`applied_transforms`); without, none
    (null, as before schema 4), and the same numbers as before. With `path_counts` trial i has
    `path_counts[i % len(path_counts)]` paths (2..5, `trial_paths`) and records the many-path
    statistics (`path_stats`); without, none (null, as before schema 5), and the same numbers.
    With `scores`, each finished trial's eval/ is what `dpda eval` writes (score and key files,
    metrics and breakdowns from those scores).
    """
    rng = np.random.default_rng(seed)
    exp = Path(root) / experiment
    exp.mkdir(parents=True, exist_ok=True)
    (exp / SEARCH_SPACE_FILE).write_text(json.dumps({"params": [  # as `dpda tune` snapshots its space
        {"key": "rule", "kind": "choice", "choices": list(RULES)},
        {"key": "rawboost_algo", "kind": "choice", "choices": [1, 3, 4, 5]},
        {"key": "strength", "kind": "uniform", "low": 0.2, "high": 1.0},
        {"key": "lr", "kind": "loguniform", "low": 1e-5, "high": 1e-3}]}, indent=2))
    out = []
    for i in range(trials):
        rule = RULES[i % len(RULES)]
        algo = (4, 1, 3, 5)[(i // len(RULES)) % 4]
        strength = float(np.round(rng.uniform(0.2, 1.0), 3))
        trial_id = f"{i:05d}"
        run_dir = exp / f"train_fn_{trial_id}_{i}_rule={rule},algo={algo}"
        run_dir.mkdir(parents=True, exist_ok=True)
        stopped = i >= trials - stopped_trials
        trial_steps = min(steps, steps_per_epoch) if stopped else steps
        restart = (trial_steps // 2) // steps_per_epoch * steps_per_epoch if i < restart_trials else None
        paths = trial_paths(path_counts[i % len(path_counts)]) if path_counts else ()
        trial = SyntheticTrial(run_dir, experiment, trial_id, rule, algo, strength, restart, tuple(leaves), paths)
        params = {"train_loop_config": {"rule": rule, "rawboost_algo": algo, "strength": strength,
                                        "lr": float(10 ** rng.uniform(-5, -3))}}
        (run_dir / "params.json").write_text(json.dumps(params))
        if restart is not None and restart > 0:
            crash = min(trial_steps, restart + max(1, trial_steps // 4))
            first = _write_attempt(trial, 0, 0, crash, steps_per_epoch, steps, layers, rng, flush_every, None,
                                   superseded_from=restart)
            best = min(first, _write_attempt(trial, 1, restart, trial_steps, steps_per_epoch, steps, layers, rng,
                                             flush_every, restart))
        else:
            best = _write_attempt(trial, 0, 0, trial_steps, steps_per_epoch, steps, layers, rng, flush_every, None)
        with (run_dir / "result.json").open("w") as fh:
            for epoch in range(1, trial_steps // steps_per_epoch + 1):
                fh.write(json.dumps({"trial_id": trial_id, "training_iteration": epoch, "epoch": epoch,
                                     "loss": 0.1}) + "\n")
        if not stopped:
            _write_outcome(trial, rng, best, scores)
        out.append(trial)
    return out
