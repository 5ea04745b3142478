"""The conflict study: each gradient-alignment rule against the published DPDA baseline.

Trains every variant on the synthetic corpus over several seeds with early stopping (an epoch
budget the runs do not reach, so "epochs to best" measures convergence), evaluates the averaged
model on dev, eval (unseen attacks), the In-the-Wild-style set and, when `dpda realset` has built
it (real/ beside the synthetic corpus, or --real), the real-audio set; reads each run's conflict
fraction from its telemetry through `dpda_analysis.conflict_fraction`; and writes docs/study.md:
mean [95% t-interval over seeds] per variant, the paired difference of every variant against the
published baseline (same seed, same corpus) with Holm-corrected paired t-test p-values, and one
sentence per comparison.

    python benchmarks/conflict_study.py                    # docs/study.md
    python benchmarks/conflict_study.py --seeds 0 1 --epochs 3 --out /tmp/study --doc /tmp/study.md

Runs go to OUT/runs/<variant>_s<seed>; finished runs are reused, so an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from dpda.yaml_io import read_yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "published baseline"
_JOINT = {"augment.mode": "dual", "align.mode": "joint"}
# Every dual-path variant runs the published joint forward, so a difference against the
# baseline is the rule's alone.
VARIANTS: dict[str, dict] = {
    BASELINE: {**_JOINT, "align.rule": "none"},
    "single-path RawBoost": {"augment.mode": "augmented"},
    "no augmentation": {"augment.mode": "none"},
    "dual, PCGrad": {**_JOINT, "align.rule": "pcgrad"},
    "dual, GradVac": {**_JOINT, "align.rule": "gradvac"},
    "dual, CAGrad": {**_JOINT, "align.rule": "cagrad"},
    "dual, MGDA": {**_JOINT, "align.rule": "mgda"},
}
DESCRIPTIONS = {
    BASELINE: "dual path, rule `none` (the two path losses summed), joint forward: DPDA as published",
    "single-path RawBoost": "`augment.mode: augmented`: RawBoost copies only",
    "no augmentation": "`augment.mode: none`: originals only",
}
# column -> (heading, scale to the unit shown, unit of a difference)
METRICS: dict[str, tuple[str, float, str]] = {
    "eer_dev": ("dev EER %", 100.0, "points"),
    "eer_eval": ("eval EER % (unseen attacks)", 100.0, "points"),
    "eer_itw": ("ITW-style EER %", 100.0, "points"),
    "eer_real": ("real-audio EER %", 100.0, "points"),
    "epochs_to_best": ("epochs to best dev EER", 1.0, "epochs"),
}
ALPHA = 0.05
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
# train, dev, eval, ITW utterances: half the quickstart's training set (same generator, same
# speakers per split), its full dev, eval and ITW-style sets, so each EER rests on 300-600 trials.
STUDY_CORPUS = (600, 300, 600, 300)
# The demo search's per-trial settings that the study shares (crop length, batch): read from the
# demo space so the study trains what `dpda quickstart` trains.
DEMO_SPACE = ROOT / "search_spaces/demo.yaml"
SHARED_SETTINGS = ("data.length", "optim.batch_size")


def study_config() -> dict:
    """configs/demo.yaml with the demo space's crop length and batch size: one run's base config."""
    from dpda.dotted import set_dotted

    raw = read_yaml(ROOT / "configs/demo.yaml")
    fixed = read_yaml(DEMO_SPACE)["set"]
    for key in SHARED_SETTINGS:
        set_dotted(raw, key, fixed[key])
    return raw


def run_config(data: str, epochs: int, patience: int) -> dict:
    """One run's config on a synthetic corpus: study_config() on the CPU, its train and dev sets,
    no eval sets (scored after), no loader processes (runs already go in parallel)."""
    raw = study_config()
    raw.update(device="cpu")
    raw["data"].update(train=[f"asvspoof2019:{data}/LA:train"], dev=[f"asvspoof2019:{data}/LA:dev"],
                       eval={}, num_workers=0)
    raw["optim"].update(epochs=epochs, patience=patience)
    return raw


def _corpus_counts(data: Path) -> str:
    """'train 200, dev 100, ...' from the corpus's protocols and ITW metadata."""
    from dpda.data.readers import load_corpus

    return ", ".join(f"{name} {len(load_corpus(spec))}" for name, spec in (
        ("train", f"asvspoof2019:{data}/LA:train"), ("dev", f"asvspoof2019:{data}/LA:dev"),
        ("eval", f"asvspoof2019:{data}/LA:eval"), ("ITW-style", f"itw:{data}/itw")))


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_one(variant: str, seed: int, data: str, out: str, epochs: int, patience: int,
            real: str | None = None) -> dict:
    """Train and evaluate one (variant, seed); runs in a worker process with one thread."""
    import torch

    torch.set_num_threads(1)
    from dpda.dotted import set_dotted
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer
    from dpda_analysis import conflict_fraction, open_telemetry

    run_dir = Path(out) / "runs" / f"{slug(variant)}_s{seed}"
    result_file = run_dir / "study_result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    cpu = os.times()
    raw = run_config(data, epochs, patience)
    raw.update(seed=seed)
    for key, value in VARIANTS[variant].items():
        set_dotted(raw, key, value)
    summary = Trainer(config_from_dict(raw, source=variant), run_dir, progress=False).fit()
    sets = [f"dev=asvspoof2019:{data}/LA:dev", f"eval=asvspoof2019:{data}/LA:eval", f"itw=itw:{data}/itw"]
    if real is not None:
        sets.append(f"real=csv:{real}/real.csv")
    rows = evaluate_sets(run_dir / "model.pt", sets, run_dir / "eval", num_workers=0, device="cpu")
    conflict = float("nan")
    if VARIANTS[variant]["augment.mode"] == "dual":
        conflict = float(conflict_fraction(open_telemetry(run_dir))["conflict_fraction"].iloc[0])
    history = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["history"]
    dev_eers = [h["dev_eer"] for h in history]
    done = os.times()
    result = {"variant": variant, "seed": seed, "conflict_fraction": conflict,
              "epochs_to_best": 1 + int(np.argmin(dev_eers)), "epochs_run": len(history),
              **{f"eer_{r['set']}": r["eer"] for r in rows}, "train_time_s": summary["train_time_s"],
              "cpu_time_s": done.user + done.system - cpu.user - cpu.system}
    result_file.write_text(json.dumps(result, indent=2))
    return result


# --------------------------------------------------------------------------------------------
# Statistics


def t_interval(values: pd.Series) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of the mean over seeds."""
    x = values.dropna().astype(float).to_numpy()
    if x.size < 2:
        m = float(x.mean()) if x.size else float("nan")
        return m, float("nan"), float("nan")
    low, high = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    if not np.isfinite(low):  # every seed equal: a zero-width interval
        low = high = x.mean()
    return float(x.mean()), float(low), float(high)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over all comparisons)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    m = p.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


def paired_tests(results: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Every variant minus the published baseline, paired by seed: mean difference, its 95%
    interval, the paired t-test p-value and its Holm-adjusted value over the whole family."""
    base = results[results["variant"] == BASELINE].set_index("seed")
    rows = []
    for variant in VARIANTS:
        if variant == BASELINE:
            continue
        other = results[results["variant"] == variant].set_index("seed")
        seeds = base.index.intersection(other.index)
        for col in metrics:
            diff = (other.loc[seeds, col] - base.loc[seeds, col]).astype(float)
            mean, low, high = t_interval(diff)
            if len(seeds) < 2:
                p = float("nan")
            elif np.allclose(diff, diff.iloc[0]):
                p = 1.0 if diff.iloc[0] == 0 else 0.0
            else:
                p = float(stats.ttest_rel(other.loc[seeds, col].astype(float), base.loc[seeds, col].astype(float)).pvalue)
            rows.append({"variant": variant, "metric": col, "seeds": len(seeds), "diff": mean, "low": low,
                         "high": high, "p": p})
    tests = pd.DataFrame(rows)
    finite = tests["p"].notna()
    tests["p_holm"] = np.nan
    tests.loc[finite, "p_holm"] = holm(tests.loc[finite, "p"].to_numpy())
    return tests


# --------------------------------------------------------------------------------------------
# Markdown


def _cell(mean: float, low: float, high: float, scale: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(low):
        return f"{scale * mean:.1f}"
    return f"{scale * mean:.1f} [{scale * low:.1f}, {scale * high:.1f}]"


def summary_table(results: pd.DataFrame, metrics: list[str]) -> str:
    cols = {"conflict_fraction": ("conflict %", 100.0), **{c: METRICS[c][:2] for c in metrics}}
    lines = ["| variant | seeds | " + " | ".join(h for h, _ in cols.values()) + " |",
             "|---|---|" + "---|" * len(cols)]
    for variant in VARIANTS:
        sub = results[results["variant"] == variant]
        if sub.empty:
            continue
        cells = []
        for col, (_, scale) in cols.items():
            mean, low, high = t_interval(sub[col])
            if scale == 100.0:  # a rate: the interval shown within [0, 100] %
                low, high = max(low, 0.0), min(high, 1.0)
            cells.append(_cell(mean, low, high, scale))
        lines.append(f"| {variant} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tests_table(tests: pd.DataFrame) -> str:
    lines = ["| variant | metric | seed pairs | difference [95% interval] | p (paired t) | p (Holm) |",
             "|---|---|---|---|---|---|"]
    for r in tests.itertuples():
        heading, scale, _ = METRICS[r.metric]
        lines.append(f"| {r.variant} | {heading} | {r.seeds} | {_cell(r.diff, r.low, r.high, scale)} | {r.p:.3g} "
                     f"| {r.p_holm:.3g} |")
    return "\n".join(lines)


def sentences(tests: pd.DataFrame) -> list[str]:
    """One sentence per variant: each difference the data support, the rest 'not distinguishable'."""
    out = []
    for variant, sub in tests.groupby("variant", sort=False):
        claims, unclear = [], []
        for r in sub.itertuples():
            heading, scale, unit = METRICS[r.metric]
            name = heading.split(" (")[0].replace(" %", "")
            if np.isfinite(r.p_holm) and r.p_holm < ALPHA:
                direction = "higher" if r.diff > 0 else "lower"
                claims.append(f"a {direction} {name} by {abs(scale * r.diff):.1f} {unit} "
                              f"(95% interval {scale * r.low:+.1f} to {scale * r.high:+.1f}, Holm p = {r.p_holm:.2g})")
            else:
                unclear.append(name)
        text = f"**{variant}** against the {BASELINE}: "
        if claims:
            text += "; ".join(claims)
            text += f"; not distinguishable on {', '.join(unclear)}." if unclear else "."
        else:
            text += f"not distinguishable on any measure ({', '.join(unclear)})."
        out.append(text)
    return out


def write_doc(doc: Path, results: pd.DataFrame, args: argparse.Namespace, real: bool, wall_s: float) -> str:
    demo = study_config()
    metrics = [c for c in METRICS if c in results.columns and results[c].notna().any()]
    tests = paired_tests(results, metrics)
    budget_hits = int((results["epochs_to_best"] >= args.epochs).sum())
    stopped = int((results["epochs_run"] < args.epochs).sum())
    model = demo["model"]
    seeds = sorted(results["seed"].unique())
    described = "; ".join(f"*{k}*: {v}" for k, v in DESCRIPTIONS.items())
    body = (
        "# Conflict study on the synthetic corpus\n\n"
        "Regenerate with `python benchmarks/conflict_study.py` (this file is overwritten).\n\n"
        + (f"**Interrupted study.** Written with `--finished-only`: {len(seeds)} of the {len(DEFAULT_SEEDS)} default "
           "seeds finished for every variant before the run was stopped; with so few seeds the intervals are wide.\n\n"
           if args.finished_only and len(seeds) < len(DEFAULT_SEEDS) else "")
        + f"**Setup.** `configs/demo.yaml` with the demo search's crop and batch ({model['preset']} {model['name']}, RawBoost algo "
        f"{demo['augment']['rawboost']['algo']}, lr {demo['optim']['lr']}, batch {demo['optim']['batch_size']}, "
        f"{demo['data']['length'] / 16000:g}-s training crops, dev and eval scored on the first "
        f"{(demo.get('eval', {}).get('length') or demo['data']['length']) / 16000:g} s of each file, "
        f"strength {demo['align']['strength']}); "
        f"seeds {', '.join(map(str, seeds))} (the table gives how many finished per variant), each seed shared by all variants "
        f"(same initialisation and batch order); synthetic corpus seed {args.synth_seed} ({args.corpus_counts} "
        f"utterances). Early stopping: budget {args.epochs} epochs, patience {args.patience}; {stopped} of "
        f"{len(results)} runs stopped early and {budget_hits} reached their best dev EER in the last epoch "
        "of the budget, so 'epochs to best' is "
        + ("not capped by the budget" if budget_hits == 0 else "capped for those runs (read it as a lower bound)")
        + ". The model evaluated is the average of the "
        f"{demo['checkpoint']['average_best']} best epochs by {demo['checkpoint']['select_by'].replace('_', ' ')}. "
        f"Variants: {described}; *dual, X*: dual path, joint forward, rule X, same strength. "
        + ("Real-audio EER: the whole set built by `dpda realset` (docs/real_audio.md), never trained on. " if real else "")
        + "\n\n**Cells.** Mean over seeds [95% Student-t interval of the mean, rates clipped to 0-100 %]. Conflict %: the share of "
        "training steps whose original-path and augmented-path gradients have a negative cosine, read from "
        "each run's telemetry with `dpda_analysis.conflict_fraction` (dual-path variants only).\n\n"
        + summary_table(results, metrics)
        + "\n\n**Paired differences** (variant minus the published baseline, same seed): mean [95% interval], "
        f"paired t-test, Holm correction over all {len(tests)} comparisons (family-wise error {ALPHA}).\n\n"
        + tests_table(tests)
        + "\n\n**What the data support** (Holm p < 0.05; otherwise 'not distinguishable' at "
        f"{len(seeds)} seed(s)):\n\n" + "\n".join(f"- {s}" for s in sentences(tests))
        + f"\n\n**Cost.** Study wall time {wall_s / 60:.1f} min with {args.jobs} runs at a time on 2 shared CPU "
        f"cores; CPU time summed over runs {results['cpu_time_s'].sum() / 60:.1f} min. Per-run numbers: "
        "`study_results.csv` in the output folder.\n"
    )
    doc.write_text(body)
    return body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="synthetic corpus (default: OUT/synth, made with --synth-seed "
                   "and --corpus-size if missing)")
    p.add_argument("--synth-seed", type=int, default=0)
    p.add_argument("--corpus-size", type=int, nargs=4, metavar=("TRAIN", "DEV", "EVAL", "ITW"),
                   default=list(STUDY_CORPUS), help="utterances per split when the corpus is made")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    p.add_argument("--epochs", type=int, default=20, help="epoch budget (early stopping ends runs before it)")
    p.add_argument("--patience", type=int, default=3, help="epochs without a better dev EER before stopping")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (1 thread each)")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--real", default=None, help="real-audio set (default: real/ beside --data when it was built)")
    p.add_argument("--doc", default=str(ROOT / "docs/study.md"), help="Markdown file to (re)write")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: write the doc from the runs already finished in OUT (an interrupted study)")
    args = p.parse_args()
    if BASELINE not in args.variants:
        sys.exit(f"--variants: the {BASELINE} is needed (every comparison is against it)")

    data = Path(args.data) if args.data else Path(args.out) / "synth"
    if not (data / "README.txt").exists():
        from dpda.data.synth import SynthConfig, write_synthetic_corpus

        sizes = dict(zip(("train", "dev", "eval", "itw"), args.corpus_size))
        write_synthetic_corpus(data, SynthConfig(seed=args.synth_seed, **sizes))
    args.corpus_counts = _corpus_counts(data)
    real = Path(args.real) if args.real else data.parent / "real"
    if not (real / "real.csv").is_file():
        if args.real:
            sys.exit(f"{real}: no real-audio set there (build it with: dpda realset {real})")
        real = None
    started = Path(args.out) / "started_at.txt"  # the first invocation's start: wall time across resumes
    if not started.exists():
        started.parent.mkdir(parents=True, exist_ok=True)
        started.write_text(f"{time.time()}\n")
    start = float(started.read_text())
    if args.finished_only:
        files = sorted((Path(args.out) / "runs").glob("*/study_result.json"))
        results = [r for r in (json.loads(f.read_text()) for f in files)
                   if r["variant"] in args.variants and r["seed"] in args.seeds]
        end = max((f.stat().st_mtime for f in files), default=start)
    else:
        jobs = [(v, s) for s in args.seeds for v in args.variants]  # seed-major: every variant early on
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_one, v, s, str(data.resolve()), args.out, args.epochs, args.patience,
                                   str(real.resolve()) if real else None) for v, s in jobs]
            results = []
            for (v, s), f in zip(jobs, futures):
                results.append(f.result())
                print(f"done: {v} seed {s} ({time.time() - start:.0f}s)", flush=True)
        end = time.time()
    frame = pd.DataFrame(results)
    frame.to_csv(Path(args.out) / "study_results.csv", index=False)
    text = write_doc(Path(args.doc), frame, args, real is not None, end - start)
    print(text)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
