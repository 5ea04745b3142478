"""EERs on the real-audio set's held-out protocols, for two models:

- the quickstart's best model (trained on the synthetic corpus only), read from the quickstart's
  `eval/real.summary.csv` (run `dpda realset data/real` first, then `dpda quickstart`);
- the demo model (`configs/demo.yaml`, 1-s inputs) trained on each protocol's own train/dev split
  and scored on that protocol's test and probe subsets.

Writes a Markdown table (EER % with 95% bootstrap intervals) to docs/real_audio_eer.md:

    python benchmarks/real_protocols.py                              # every protocol, 3 epochs
    python benchmarks/real_protocols.py --protocols standard family-neural --epochs 1   # a quick look

Runs go to OUT/<protocol>; finished ones are reused, so an interrupted run resumes.
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
from dpda.data.realset.evaluate import corpus_spec, protocol_specs
from dpda.yaml_io import read_yaml

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 1000


def specs(real: Path) -> dict[str, str]:
    return {"standard": corpus_spec(real), **protocol_specs(real)}


def run_one(name: str, spec: str, out: str, epochs: int, seed: int) -> dict:
    """Train the demo model on one protocol's train/dev split and score its test and probe subsets."""
    import torch

    torch.set_num_threads(1)
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer

    run_dir = Path(out) / name
    done = run_dir / "protocol_result.json"
    if done.exists():
        return json.loads(done.read_text())
    raw = read_yaml(ROOT / "configs/demo.yaml")
    raw.update(seed=seed, device="cpu")
    raw["data"].update(train=[f"{spec}:train"], dev=[f"{spec}:dev"], eval={}, length=16000, num_workers=0)
    raw["optim"].update(epochs=epochs, patience=epochs)
    raw["telemetry"]["enabled"] = False
    summary = Trainer(config_from_dict(raw, source=name), run_dir, progress=False).fit()
    rows = evaluate_sets(run_dir / "model.pt", {"test": [f"{spec}:test"], "probe": [f"{spec}:probe"]},
                         run_dir / "eval", num_workers=0, device="cpu", interval_draws=DRAWS)
    result = {"protocol": name, "train_time_s": summary["train_time_s"]}
    for r in rows:
        result.update({f"{r['set']}_{k}": r[k] for k in ("eer", "eer_low", "eer_high", "n_bonafide", "n_spoof")})
    done.write_text(json.dumps(result, indent=2))
    return result


def _cell(eer: float, low: float, high: float) -> str:
    return "n/a" if pd.isna(eer) else f"{100 * eer:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def table(results: pd.DataFrame, quickstart: pd.DataFrame | None) -> str:
    head = ["protocol", "test trials (bona fide + spoof)"]
    if quickstart is not None:
        head += ["quickstart model: test", "quickstart model: probe"]
    head += ["trained on the protocol: test", "trained on the protocol: probe"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    for _, r in results.iterrows():
        cells = [f"`{r['protocol']}`", f"{int(r['test_n_bonafide'])} + {int(r['test_n_spoof'])}"]
        if quickstart is not None:
            for subset in ("test", "probe"):
                q = quickstart[quickstart["scope"] == f"{r['protocol']}:{subset}"]
                cells.append(_cell(*q.iloc[0][["eer", "eer_low", "eer_high"]]) if len(q) else "n/a")
        for subset in ("test", "probe"):
            cells.append(_cell(r[f"{subset}_eer"], r[f"{subset}_eer_low"], r[f"{subset}_eer_high"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", default="data/real", help="the set built by `dpda realset`")
    p.add_argument("--quickstart", default="runs/quickstart", help="a finished quickstart's output folder")
    p.add_argument("--protocols", nargs="+", default=None, help="default: standard and every held-out protocol")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (1 thread each)")
    p.add_argument("--out", default="runs/real_protocols")
    p.add_argument("--doc", default=str(ROOT / "docs/real_audio_eer.md"), help="Markdown file to (re)write")
    args = p.parse_args()

    real = Path(args.real)
    available = specs(real)
    if not (real / "real.csv").is_file():
        sys.exit(f"{real}: no real-audio set there (build it with: dpda realset {real})")
    names = args.protocols or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        sys.exit(f"--protocols: {', '.join(unknown)} not in {real} (have: {', '.join(available)})")
    summary_csv = Path(args.quickstart) / "eval" / "real.summary.csv"
    quickstart = pd.read_csv(summary_csv) if summary_csv.is_file() else None
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(run_one, n, available[n], args.out, args.epochs, args.seed) for n in names}
        results = []
        for name, future in futures.items():
            results.append(future.result())
            print(f"done: {name} ({time.time() - start:.0f}s)", flush=True)
    frame = pd.DataFrame(results)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    frame.to_csv(Path(args.out) / "real_protocols.csv", index=False)
    text = table(frame, quickstart)
    print(text)
    demo = read_yaml(ROOT / "configs/demo.yaml")
    Path(args.doc).write_text(
        "# EERs on the real-audio set's protocols\n\n"
        "Regenerated by `python benchmarks/real_protocols.py` (this file is overwritten); the set and its "
        "protocols are described in `docs/real_audio.md`. Cells: EER % [95% bootstrap interval, "
        f"{DRAWS} draws, trials resampled per class]. Quickstart model: the best trial of `dpda quickstart` "
        "(trained on the synthetic corpus only) scored once on the whole set"
        + (f" (`{summary_csv}`)" if quickstart is not None else " (not available when this was run)")
        + f". Trained on the protocol: `configs/demo.yaml` ({demo['model']['preset']} {demo['model']['name']}, "
        f"RawBoost algo {demo['augment']['rawboost']['algo']}, {demo['align']['rule']}, 1-s inputs), {args.epochs} "
        f"epochs on the protocol's train split, the {demo['checkpoint']['average_best']} best epochs by dev EER "
        f"averaged, seed {args.seed}; training time summed over protocols: {frame['train_time_s'].sum():.0f} s on 2 "
        f"shared CPU cores.\n\n" + text + "\n\nPer-protocol numbers: `real_protocols.csv` in the output folder.\n",
        encoding="utf-8")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
