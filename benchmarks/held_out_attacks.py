"""Leave one training attack out: how well a config detects a spoofing attack it never trained on,
measured on dev alone.

For each training attack of the corpus, trains the config with that attack held out of train and
dev (`data.held_out_attacks`), then scores the whole dev set: the held-out attack's EER against
the dev bona fide is an unseen-attack EER that never touches the eval set. Design choices meant
to generalise (front end, loss, augmentation, alignment rule) can so be compared without tuning
on eval. One invocation runs one variant (the demo's run config of benchmarks/conflict_study.py
plus --set keys); its rows replace that variant's in OUT/held_out.csv, and the Markdown table of
every variant there is printed and written to --doc.

    python benchmarks/held_out_attacks.py --data data/synth --name "demo config"
    python benchmarks/held_out_attacks.py --data data/synth --name "no augmentation" --set augment.mode=none

Runs go to OUT/runs/<variant>/<attack>; finished runs are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("conflict_study", ROOT / "benchmarks/conflict_study.py")
study = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(study)


def run_fold(variant: str, settings: dict, attack: str, data: str, out: str, epochs: int, patience: int) -> dict:
    """Train with `attack` held out, score dev; one worker process, one thread."""
    import torch

    torch.set_num_threads(1)
    from dpda.dotted import set_dotted
    from dpda.metrics.bootstrap import DEFAULT_DRAWS
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer

    run_dir = Path(out) / "runs" / study.slug(variant) / attack
    result_file = run_dir / "held_out_result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    raw = study.run_config(data, epochs, patience)
    for key, value in settings.items():
        set_dotted(raw, key, value)
    set_dotted(raw, "data.held_out_attacks", [attack])
    summary = Trainer(config_from_dict(raw, source=variant), run_dir, progress=False).fit()
    evaluate_sets(run_dir / "model.pt", [f"dev=asvspoof2019:{data}/LA:dev"], run_dir / "eval",
                  num_workers=0, device="cpu", interval_draws=DEFAULT_DRAWS)
    rows = pd.read_csv(run_dir / "eval" / "dev.breakdown.csv")
    row = rows[(rows["factor"] == "attack") & (rows["value"] == attack)].iloc[0]
    result = {"variant": variant, "settings": json.dumps(settings, sort_keys=True), "attack": attack,
              "eer_held_out": float(row["eer"]), "eer_held_out_low": float(row["eer_low"]),
              "eer_held_out_high": float(row["eer_high"]), "eer_dev_seen": summary["final_dev_eer"],
              "epochs_run": summary["epochs"], "train_time_s": summary["train_time_s"]}
    result_file.write_text(json.dumps(result, indent=2))
    return result


def training_attacks(data: Path) -> list[str]:
    from dpda.data.corpora import spoof_attacks
    from dpda.data.readers import load_corpus

    return sorted(spoof_attacks(load_corpus(f"asvspoof2019:{data}/LA:train")))


def table(results: pd.DataFrame) -> str:
    """One row per variant: the held-out EER of each attack [bootstrap 95% interval] and their mean."""
    attacks = sorted(results["attack"].unique())
    lines = ["| variant | " + " | ".join(f"{a} held out" for a in attacks) + " | mean | seen-attack dev EER, mean |",
             "|---|" + "---|" * (len(attacks) + 2)]
    for variant, rows in results.groupby("variant", sort=False):
        by = rows.set_index("attack")
        cells = [f"{100 * by.at[a, 'eer_held_out']:.1f} [{100 * by.at[a, 'eer_held_out_low']:.0f}, "
                 f"{100 * by.at[a, 'eer_held_out_high']:.0f}]" if a in by.index else "n/a" for a in attacks]
        mean = f"{100 * rows['eer_held_out'].mean():.1f}" if len(rows) == len(attacks) else "n/a"  # not yet every fold
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {mean} | {100 * rows['eer_dev_seen'].mean():.1f} |")
    return "\n".join(lines)


def corpus_options(data: Path) -> str:
    """The `dpda synth` options line of the corpus's README (how to make the same corpus again)."""
    readme = data / "README.txt"
    lines = readme.read_text().splitlines() if readme.is_file() else []
    return next((line.removeprefix("Options: ") for line in lines if line.startswith("Options: ")), "not recorded")


def base_summary() -> str:
    """The base config's model, augmentation and rule, as read from it."""
    raw = study.study_config()
    return (f"{raw['model']['name']} {raw['model']['preset']}, augment.mode {raw['augment']['mode']}, "
            f"align.rule {raw['align']['rule']}, RawBoost algo {raw['augment']['rawboost']['algo']}")


def write_doc(doc: Path, results: pd.DataFrame, args: argparse.Namespace) -> str:
    settings = "\n".join(f"- {v}: " + ("the base config as it is" if s == "{}" else f"`{s}`")
                         for v, s in results.groupby("variant", sort=False)["settings"].first().items())
    body = f"""# Leave one training attack out (dev only)

Generated by `python benchmarks/held_out_attacks.py` (one invocation per variant) on a `dpda
synth` corpus ({study._corpus_counts(Path(args.data))} utterances; options
{corpus_options(Path(args.data))}).

Each cell: the EER of one training attack against the dev bona fide, by a model trained and
selected (early stopping, averaged best epochs, on dev without that attack) with the attack held
out of train and dev (`data.held_out_attacks`); bootstrap 95% interval over dev trials. One seed
per cell: an interval covers the dev trials' sampling, not seed-to-seed variation, so read
differences between variants of a few points as noise. The last column is the dev EER on the
attacks each model did see. The eval set is never scored, so choosing a variant by this table
does not tune on eval. Base config: configs/demo.yaml ({base_summary()})
with the demo space's crop and batch, as in the conflict study; up to {args.epochs} epochs, patience {args.patience}. Variants' settings:

{settings}

{table(results)}
"""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(body)
    return body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="synthetic corpus (dpda synth DIR)")
    p.add_argument("--name", required=True, help="the variant's name in the table")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="config key for every fold of this variant (YAML value), repeatable")
    p.add_argument("--attacks", nargs="+", default=None, help="training attacks to hold out (default: all)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="folds in parallel (1 thread each)")
    p.add_argument("--out", default="runs/held_out")
    p.add_argument("--doc", default=None, help="Markdown file to (re)write (default: OUT/held_out.md)")
    args = p.parse_args()
    from dpda.errors import UserError
    from dpda.yaml_io import parse_set

    try:
        settings = parse_set(args.settings)
    except UserError as exc:
        sys.exit(str(exc))
    data = Path(args.data).resolve()
    attacks = args.attacks or training_attacks(data)
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_fold, args.name, settings, a, str(data), args.out, args.epochs, args.patience)
                   for a in attacks]
        new = []
        for attack, future in zip(attacks, futures):
            new.append(future.result())
            print(f"done: {args.name}, {attack} held out ({time.time() - start:.0f}s)", flush=True)
    csv = Path(args.out) / "held_out.csv"
    old = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=list(new[0]))
    results = pd.concat([old[old["variant"] != args.name], pd.DataFrame(new)], ignore_index=True)
    order = list(dict.fromkeys([*old["variant"], args.name]))  # a rerun variant keeps its row
    results = results.sort_values("variant", key=lambda v: v.map(order.index), kind="stable")
    results.to_csv(csv, index=False)
    print(write_doc(Path(args.doc) if args.doc else Path(args.out) / "held_out.md", results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
