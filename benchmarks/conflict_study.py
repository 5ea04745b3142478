"""The first conflict study: dual-path rules against single-path DA and no augmentation.

Trains every variant on the synthetic corpus over several seeds, evaluates the averaged model on
dev, eval (unseen attacks), the In-the-Wild-style set and, when `dpda realset` has built it (real/
beside the synthetic corpus, or --real), the real-audio set; reads the conflict fraction from the
run's telemetry, and writes a Markdown table (mean +- sample std over seeds) to docs/study.md.

    python benchmarks/conflict_study.py                    # the table in docs/study.md
    python benchmarks/conflict_study.py --seeds 0 --epochs 2 --out /tmp/study   # a quick look

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

import pandas as pd
from dpda.yaml_io import read_yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict] = {
    "no augmentation": {"augment.mode": "none"},
    "DA (RawBoost only)": {"augment.mode": "da"},
    "dual, none (mean)": {"augment.mode": "dual", "align.rule": "none"},
    "dual, PCGrad": {"augment.mode": "dual", "align.rule": "pcgrad"},
    "dual, GradVac": {"augment.mode": "dual", "align.rule": "gradvac"},
    "dual, CAGrad": {"augment.mode": "dual", "align.rule": "cagrad"},
    "dual, MGDA": {"augment.mode": "dual", "align.rule": "mgda"},
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_one(variant: str, seed: int, data: str, out: str, epochs: int, real: str | None = None) -> dict:
    """Train and evaluate one (variant, seed); runs in a worker process with one thread."""
    import torch

    torch.set_num_threads(1)
    from dpda.train.evaluation import evaluate_sets
    from dpda.dotted import set_dotted
    from dpda.train.config import config_from_dict
    from dpda.train.loop import Trainer
    from dpda_analysis import conflict_fraction, open_telemetry

    run_dir = Path(out) / "runs" / f"{slug(variant)}_s{seed}"
    result_file = run_dir / "study_result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    raw = read_yaml(ROOT / "configs/demo.yaml")
    raw.update(seed=seed, device="cpu")
    raw["data"].update(train=[f"asvspoof2019:{data}/LA:train"], dev=[f"asvspoof2019:{data}/LA:dev"],
                       eval={}, length=16000, num_workers=0)
    raw["optim"].update(epochs=epochs, patience=epochs)
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
    state = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)
    history = state["history"]
    best_epoch = min(history, key=lambda h: h["dev_eer"])["epoch"] + 1
    result = {"variant": variant, "seed": seed, "conflict_fraction": conflict, "epochs_to_best": best_epoch,
              "best_dev_eer_during_training": summary["best_dev_eer"],
              **{f"eer_{r['set']}": r["eer"] for r in rows}, "train_time_s": summary["train_time_s"]}
    result_file.write_text(json.dumps(result, indent=2))
    return result


def table(results: pd.DataFrame) -> str:
    cols = {"conflict_fraction": "conflict %", "epochs_to_best": "epochs to best dev EER",
            "eer_dev": "dev EER %", "eer_eval": "eval EER % (unseen attacks)", "eer_itw": "ITW-style EER %"}
    if "eer_real" in results.columns:
        cols["eer_real"] = "real-audio EER %"
    lines = ["| variant | " + " | ".join(cols.values()) + " |", "|---|" + "---|" * len(cols)]
    for variant in VARIANTS:
        sub = results[results["variant"] == variant]
        if sub.empty:
            continue
        cells = []
        for col in cols:
            values = sub[col].astype(float)
            scale = 1 if col == "epochs_to_best" else 100
            if values.isna().all():
                cells.append("n/a")
            elif len(values) > 1:
                cells.append(f"{scale * values.mean():.1f} ± {scale * values.std(ddof=1):.1f}")
            else:
                cells.append(f"{scale * values.mean():.1f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synth", help="synthetic corpus (made with --synth-seed if missing)")
    p.add_argument("--synth-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (1 thread each)")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--real", default=None, help="real-audio set (default: real/ beside --data when it was built)")
    p.add_argument("--doc", default=str(ROOT / "docs/study.md"), help="Markdown file to (re)write")
    args = p.parse_args()

    data = Path(args.data)
    if not (data / "README.txt").exists():
        from dpda.data.synth import SynthConfig, write_synthetic_corpus

        write_synthetic_corpus(data, SynthConfig(seed=args.synth_seed))
    real = Path(args.real) if args.real else data.parent / "real"
    if not (real / "real.csv").is_file():
        if args.real:
            sys.exit(f"{real}: no real-audio set there (build it with: dpda realset {real})")
        real = None
    start = time.time()
    jobs = [(v, s) for v in args.variants for s in args.seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, v, s, str(data.resolve()), args.out, args.epochs,
                               str(real.resolve()) if real else None) for v, s in jobs]
        results = []
        for (v, s), f in zip(jobs, futures):
            results.append(f.result())
            print(f"done: {v} seed {s} ({time.time() - start:.0f}s)", flush=True)
    frame = pd.DataFrame(results)
    frame.to_csv(Path(args.out) / "study_results.csv", index=False)
    text = table(frame)
    print(text)
    doc = Path(args.doc)
    demo = read_yaml(ROOT / "configs/demo.yaml")
    elapsed = frame["train_time_s"].sum()
    doc.write_text(
        "# Conflict study on the synthetic corpus\n\n"
        "Regenerate with `python benchmarks/conflict_study.py` (this file is overwritten). Setup: "
        f"`configs/demo.yaml` ({demo['model']['preset']} {demo['model']['name']}, RawBoost algo "
        f"{demo['augment']['rawboost']['algo']}, lr {demo['optim']['lr']}, 1-s inputs), {args.epochs} epochs, "
        f"seeds {', '.join(map(str, args.seeds))}, synthetic corpus seed {args.synth_seed} (default size); "
        f"the model evaluated is the average of the {demo['checkpoint']['average_best']} best epochs by "
        f"{demo['checkpoint']['select_by'].replace('_', ' ')}; 'epochs to best' is bounded by the epoch "
        "budget (runs were still improving). Cells: mean ± sample standard "
        "deviation over seeds. Conflict %: share of training steps whose original and augmented "
        "gradients had negative cosine (dual-path variants only). Training time summed over runs: "
        f"{elapsed:.0f} s on 2 CPU cores, 2 runs at a time."
        + (" Real-audio EER: the whole set built by `dpda realset` (docs/real_audio.md), never trained on."
           if real else "") + "\n\n" + text + "\n\n"
        "Per-run numbers: `study_results.csv` in the output folder.\n"
    )
    print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
