"""The measured effect of each published-behaviour switch on one small run (README table).

One seeded run of the CPU demo setup (configs/demo.yaml: tiny LFCC-LCNN, RawBoost algo 4, PCGrad)
on a small synthetic corpus per variant: dpda's defaults, then each switch of
configs/published.yaml flipped alone, then all of them together. Reports the final dev EER (of
the averaged model), the best dev EER during training and the conflict fraction (share of steps
with cos(g_orig, g_aug) < 0). One seed, a few epochs: differences of a few points are within
run-to-run noise; the table shows what a switch touches, not a ranking.

    nice -n 10 python benchmarks/published_switches.py            # a few minutes on 2 free cores
    python benchmarks/published_switches.py --epochs 2 --out /tmp/switches   # quicker look
    for s in 0 1 2; do python benchmarks/published_switches.py --seed $s --out runs/switches_s$s \
        --only "checkpoint.select_by: dev_loss" "eval.dev_loss: published"; done   # one switch, 3 seeds

The switches that act only on a model with a frozen table, Conformer blocks or an SSL front end
(`optim.params`, `model.overrides.identical_blocks`, `model.frontend_dropout`) run on another model
(`--model`, with `--set` for any other base override; the demo's LCNN stays the default):

    for s in 0 1 2; do python benchmarks/published_switches.py --model ssl_conformer_tcm:tiny \
        --set model.overrides.num_layers=2 optim.lr=0.0003 --epochs 8 --seed $s --out runs/ssl_switches_s$s \
        --only "dpda defaults" "optim.params: published" "model.overrides.identical_blocks: true" \
        "model.frontend_dropout: XLS-R 300M values"; done

Runs go to OUT/<variant>; finished runs are reused, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# variant -> dotted overrides of the demo config (one published switch each, then all)
SWITCHES: dict[str, dict] = {
    "dpda defaults": {},
    "align.mode: joint": {"align.mode": "joint"},
    "data.crop: first": {"data.crop": "first"},
    "data.augment_before_crop: true": {"data.augment_before_crop": True},
    "augment.rawboost.fir_alignment: published": {"augment.rawboost.fir_alignment": "published"},
    "checkpoint.average_formula: published": {"checkpoint.average_formula": "published"},
    "eval.score: logit1": {"eval.score": "logit1"},
    # the demo selects epochs by dev EER: the dev loss's definition matters once it selects by dev loss (published)
    "checkpoint.select_by: dev_loss": {"checkpoint.select_by": "dev_loss"},
    "eval.dev_loss: published": {"checkpoint.select_by": "dev_loss", "eval.dev_loss": "published"},
    "gradvac, dpda options": {"align.rule": "gradvac"},
    "gradvac, align.option_defaults: published": {"align.rule": "gradvac", "align.option_defaults": "published"},
}
SWITCHES["all published switches"] = {
    k: v for name, o in SWITCHES.items() if not name.startswith("gradvac") for k, v in o.items()
} | {"align.option_defaults": "published"}
# The XLS-R 300M checkpoint's dropout settings as explicit values (fairseq dropout 0.1,
# attention_dropout 0.1, activation_dropout 0.0, dropout_input 0.0, encoder_layerdrop 0.1), in
# torchaudio's names: no checkpoint can be downloaded here for `frontend_dropout: checkpoint` to
# read them from, and these values are not checked against the checkpoint file (docs/published.md).
XLSR_300M_DROPOUT = {"encoder_dropout": 0.1, "encoder_attention_dropout": 0.1, "encoder_ff_interm_dropout": 0.0,
                     "encoder_projection_dropout": 0.0, "encoder_layer_drop": 0.1}
# Switches that act only on models with the parts (frozen table, Conformer blocks, SSL front end):
# run them with --model ssl_conformer_tcm:tiny; not part of "all published switches" (demo model).
MODEL_SWITCHES: dict[str, dict] = {
    "optim.params: published": {"optim.params": "published"},
    "model.overrides.identical_blocks: true": {"model.overrides.identical_blocks": True},
    "model.frontend_dropout: XLS-R 300M values": {"model.frontend_dropout": XLSR_300M_DROPOUT},
}
VARIANTS = SWITCHES | MODEL_SWITCHES


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def corpus(out: Path, seed: int) -> Path:
    """A small synthetic corpus (1-3 s utterances), written once."""
    from dpda.data.synth import SynthConfig, write_synthetic_corpus

    root = out / "corpus"
    if not (root / "README.txt").exists():
        write_synthetic_corpus(root, SynthConfig(seed=seed, train=160, dev=80, eval=0, itw=0,
                                                 min_seconds=1.0, max_seconds=3.0), workers=0)
    return root


def table_drift(model_file: Path) -> float:
    """Max |table - sinusoid| of the frozen position table a model file stores (`optim.params:
    published` only; NaN without one): how far weight decay moved the "fixed" table."""
    import torch

    from dpda.models.conformer_tcm import sinusoidal_table

    tables = torch.load(model_file, weights_only=True).get("tables") or {}
    drifts = [(t - sinusoidal_table(t.shape[1], t.shape[2])).abs().max().item() for t in tables.values()]
    return max(drifts) if drifts else math.nan


def run_one(variant: str, data: str, out: str, epochs: int, seed: int, base: dict | None = None) -> dict:
    """Train one variant in a worker process with one thread; returns its row. `base`: dotted
    overrides of the demo config applied before the variant's (--model, --set)."""
    import torch

    torch.set_num_threads(1)
    from dpda.dotted import set_dotted
    from dpda.train.config import config_from_dict
    from dpda.train.loop import Trainer
    from dpda.yaml_io import read_yaml

    run_dir = Path(out) / slug(variant)
    result_file = run_dir / "switch_result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    raw = read_yaml(ROOT / "configs/demo.yaml")
    raw.update(seed=seed, device="cpu")
    raw["data"].update(train=[f"asvspoof2019:{data}/LA:train"], dev=[f"asvspoof2019:{data}/LA:dev"],
                       eval={}, length=16000, num_workers=0)
    raw["optim"].update(epochs=epochs, patience=epochs)
    raw["telemetry"]["enabled"] = False
    for key, value in {**(base or {}), **VARIANTS[variant]}.items():
        set_dotted(raw, key, value)
    start = time.time()
    summary = Trainer(config_from_dict(raw, source=variant), run_dir, progress=False).fit()
    history = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["history"]
    steps = sum(h["steps"] for h in history)
    conflict = sum(h["conflict_fraction"] * h["steps"] for h in history) / steps
    result = {"variant": variant, "final_dev_eer": summary["final_dev_eer"], "best_dev_eer": summary["best_dev_eer"],
              "conflict_fraction": conflict, "table_drift": table_drift(run_dir / "model.pt"),
              "wall_s": time.time() - start}
    result_file.write_text(json.dumps(result, indent=2))
    return result


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = ["| variant | final dev EER (%) | best dev EER (%) | conflict fraction (%) | table drift | wall (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        delta = "" if r is base else f" ({100 * (r['final_dev_eer'] - base['final_dev_eer']):+.1f})"
        conflict = "n/a" if math.isnan(r["conflict_fraction"]) else f"{100 * r['conflict_fraction']:.1f}"
        drift = r.get("table_drift", math.nan)
        lines.append(f"| {r['variant']} | {100 * r['final_dev_eer']:.1f}{delta} | {100 * r['best_dev_eer']:.1f} "
                     f"| {conflict} | {'n/a' if math.isnan(drift) else f'{drift:.2g}'} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/published_switches"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                        help="run these variants only (the first row is the baseline of the changes)")
    parser.add_argument("--model", default="lcnn:tiny", metavar="NAME:PRESET",
                        help="the model every variant trains (default: the demo's lcnn:tiny); e.g. "
                             "ssl_conformer_tcm:tiny for the optim.params / identical_blocks / frontend_dropout switches")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted overrides of the demo config for every variant (value parsed as YAML), "
                             "e.g. model.overrides.num_layers=2")
    args = parser.parse_args()
    name, _, preset = args.model.partition(":")
    base = {} if args.model == "lcnn:tiny" else {"model.name": name, "model.preset": preset or "tiny"}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        base[key] = yaml.safe_load(value)
    args.out.mkdir(parents=True, exist_ok=True)
    data = corpus(args.out, args.seed)
    variants = args.only or list(SWITCHES)
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_one, v, str(data), str(args.out), args.epochs, args.seed, base)
                   for v in variants]
        rows = [f.result() for f in futures]
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
