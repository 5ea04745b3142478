"""The conflict study: each gradient-alignment rule against the published DPDA baseline.

Trains every variant on the synthetic corpus over several seeds with early stopping (an epoch
budget the runs do not reach, so "epochs to best" measures convergence), evaluates the averaged
model on dev, eval (unseen attacks), the In-the-Wild-style set and, when `dpda realset` has built
it (real/ beside the synthetic corpus, or --real), the real-audio set; reads each run's conflict
fraction from its telemetry through `dpda_analysis.conflict_fraction`; and writes docs/study.md:
mean [95% t-interval over seeds] per variant, the paired difference of every variant against the
published baseline (same seed, same corpus) with Holm-corrected paired t-test p-values, and one
sentence per comparison.

Two variants train the paper's other augmented paths (configs/published_musan_rir*.yaml: noise +
reverberation, and that then RawBoost) on small offline banks that the study builds once with
`dpda banks` into OUT/banks; their runs also record the conflict fraction per transform
(`dpda_analysis.conflict_by_transform`), and the doc gets a table of it. `--variants` runs a
subset (the baseline always) and `--doc` writes it elsewhere:

    python benchmarks/conflict_study.py                    # docs/study.md
    python benchmarks/conflict_study.py --seeds 0 1 --epochs 3 --out /tmp/study --doc /tmp/study.md
    python benchmarks/conflict_study.py --variants "published baseline" "dual, noise + reverb" \
        "dual, noise + reverb + RawBoost" --doc docs/study_augmentations.md

Runs go to OUT/runs/<variant>_s<seed>; finished runs are reused, so an interrupted study resumes
and a subset shares its baseline runs with the whole study in the same OUT.

The RawBoost variants also run inside the platform, as Ray Tune trials: `dpda study
studies/conflict.yaml --data DIR` (the SPEC holds this study's variants, seeds and budget;
tests/test_study.py keeps the two equal). The statistics are dpda_analysis.paired, shared by both.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from dpda.yaml_io import read_yaml
from dpda_analysis import paired

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
    # The paper's MUSAN + RIR setups as the augmented path (rule `none`, as the baseline: the
    # difference is the augmentation's alone). `augment.pipeline` names the config file whose
    # pipeline is taken, on the study's banks (`variant_settings`).
    "dual, noise + reverb": {**_JOINT, "align.rule": "none", "augment.pipeline": "configs/published_musan_rir.yaml"},
    "dual, noise + reverb + RawBoost": {**_JOINT, "align.rule": "none",
                                        "augment.pipeline": "configs/published_musan_rir_rawboost.yaml"},
}
DESCRIPTIONS = {
    BASELINE: "dual path, rule `none` (the two path losses summed), joint forward: DPDA as published",
    "single-path RawBoost": "`augment.mode: augmented`: RawBoost copies only",
    "no augmentation": "`augment.mode: none`: originals only",
    "dual, noise + reverb": "rule `none`, the augmented path of configs/published_musan_rir.yaml (per utterance "
                            "reverberation or MUSAN-style noise, music or babble) on the study's banks",
    "dual, noise + reverb + RawBoost": "the same, then the study's RawBoost on every augmented utterance "
                                       "(configs/published_musan_rir_rawboost.yaml)",
}
# column -> (heading, scale to the unit shown, unit of a difference)
METRICS: dict[str, tuple[str, float, str]] = {
    "eer_dev": ("dev EER %", 100.0, "points"),
    "eer_eval": ("eval EER % (unseen attacks)", 100.0, "points"),
    "eer_itw": ("ITW-style EER %", 100.0, "points"),
    "eer_real": ("real-audio EER %", 100.0, "points"),
    "epochs_to_best": ("epochs to best dev EER", 1.0, "epochs"),
}
ALPHA = paired.ALPHA
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
# train, dev, eval, ITW utterances: half the quickstart's training set (same generator, same
# speakers per split), its full dev, eval and ITW-style sets, so each EER rests on 300-600 trials.
STUDY_CORPUS = (600, 300, 600, 300)
# The demo search's per-trial settings that the study shares (crop length, batch): read from the
# demo space so the study trains what `dpda quickstart` trains.
DEMO_SPACE = ROOT / "search_spaces/demo.yaml"
DEFAULT_DOC = ROOT / "docs/study.md"
SHARED_SETTINGS = ("data.length", "optim.batch_size")


def study_config() -> dict:
    """configs/demo.yaml with the demo space's crop length and batch size: one run's base config."""
    from dpda.dotted import set_dotted

    raw = read_yaml(ROOT / "configs/demo.yaml")
    fixed = read_yaml(DEMO_SPACE)["set"]
    for key in SHARED_SETTINGS:
        set_dotted(raw, key, fixed[key])
    return raw


def build_banks(out: Path) -> dict[str, str]:
    """The study's noise and RIR banks: `dpda banks`' defaults (seed 0) in OUT/banks, written once
    (same seed and sizes, same bytes); returns the bank specs ({"noise": "musan:...", "rirs": ...})."""
    from dpda.data.bank_builder import write_banks
    from dpda.data.bank_config import BankSizes

    banks = (out / "banks").resolve()
    specs = {"noise": f"musan:{banks / 'musan'}", "rirs": f"rirs:{banks / 'RIRS_NOISES'}"}
    if not (banks / "README.txt").exists():  # written last: its absence means an unfinished bank
        written = write_banks(banks, BankSizes(), overwrite=True)
        assert written == specs, written
    return specs


def study_pipeline(config_file: Path, banks: dict[str, str]) -> dict:
    """A published config's `augment.pipeline` with its banks (steps `musan`, `rir`) on the study's
    and its RawBoost step (if any) the study's RawBoost (configs/demo.yaml's `augment.rawboost`),
    so that RawBoost means the same in every row."""
    from dpda.dotted import get_dotted, has_dotted, set_dotted

    pipeline = copy.deepcopy(read_yaml(config_file)["augment"]["pipeline"])
    set_dotted(pipeline, "musan.bank", banks["noise"])
    set_dotted(pipeline, "rir.bank", banks["rirs"])
    if has_dotted(pipeline, "rawboost"):
        body = get_dotted(pipeline, "rawboost")
        body.clear()
        body.update(name="rawboost", **study_config()["augment"]["rawboost"])
    return pipeline


def variant_settings(variant: str, banks: dict[str, str] | None) -> dict:
    """VARIANTS[variant] ready for set_dotted: a pipeline named by its config file read from it,
    on the study's banks (needed then)."""
    settings = dict(VARIANTS[variant])
    if "augment.pipeline" in settings:
        if banks is None:
            raise ValueError(f"{variant}: needs the study's banks (build_banks)")
        settings["augment.pipeline"] = study_pipeline(ROOT / settings["augment.pipeline"], banks)
    return settings


def variant_config(data: str, epochs: int, patience: int, variant: str, seed: int,
                   banks: dict[str, str] | None = None) -> dict:
    """One (variant, seed)'s raw config: run_config() with the variant's settings (a pipeline
    replaces demo.yaml's `augment.rawboost`, as a config may not give both)."""
    from dpda.dotted import set_dotted

    raw = run_config(data, epochs, patience)
    raw.update(seed=seed)
    settings = variant_settings(variant, banks)
    if "augment.pipeline" in settings:
        raw["augment"].pop("rawboost", None)
    for key, value in settings.items():
        set_dotted(raw, key, value)
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


def transform_conflicts(run_dir: Path) -> list[dict]:
    """One run's conflict fraction per transform leaf (`dpda_analysis.conflict_by_transform`), in
    bit order: leaf key, transform name, steps that received it, the fraction over those steps
    and the utterance-weighted one."""
    from dpda_analysis import conflict_by_transform, open_telemetry

    table = conflict_by_transform(open_telemetry(run_dir), by="trial").sort_values("bit")
    return [{"leaf": r.leaf, "transform": r.transform, "steps": int(r.steps),
             "conflict_fraction": float(r.conflict_fraction),
             "weighted_conflict_fraction": float(r.weighted_conflict_fraction)} for r in table.itertuples()]


def run_one(variant: str, seed: int, data: str, out: str, epochs: int, patience: int,
            real: str | None = None, banks: dict[str, str] | None = None) -> dict:
    """Train and evaluate one (variant, seed); runs in a worker process with one thread."""
    import torch

    torch.set_num_threads(1)
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer
    from dpda_analysis import conflict_fraction, open_telemetry

    run_dir = Path(out) / "runs" / f"{slug(variant)}_s{seed}"
    result_file = run_dir / "study_result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    cpu = os.times()
    raw = variant_config(data, epochs, patience, variant, seed, banks)
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
    if "augment.pipeline" in VARIANTS[variant]:  # the RawBoost-only rows keep their results as they were
        result["conflict_by_transform"] = transform_conflicts(run_dir)
    result_file.write_text(json.dumps(result, indent=2))
    return result


# --------------------------------------------------------------------------------------------
# Statistics


# The statistics live in dpda_analysis.paired (shared with `dpda study`).
t_interval = paired.t_interval
holm = paired.holm


def paired_tests(results: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Every variant minus the published baseline, paired by seed, Holm over the variants in
    `results` (a subset's doc corrects over its own comparisons): dpda_analysis.paired."""
    return paired.paired_differences(results, BASELINE, metrics, variants=list(VARIANTS))


# --------------------------------------------------------------------------------------------
# Markdown


def transform_frame(results: list[dict]) -> pd.DataFrame:
    """The runs' per-transform conflict fractions, one row per (variant, seed, leaf); empty (with
    the columns) when no run recorded them."""
    rows = [{"variant": r["variant"], "seed": r["seed"], **leaf}
            for r in results for leaf in r.get("conflict_by_transform", [])]
    return pd.DataFrame(rows, columns=["variant", "seed", "leaf", "transform", "steps", "conflict_fraction",
                                       "weighted_conflict_fraction"])


def _rate_cell(values: pd.Series) -> str:
    """A rate over seeds: mean [95% t-interval, clipped to 0-100 %] in %."""
    mean, low, high = t_interval(values)
    return _cell(mean, max(low, 0.0), min(high, 1.0), 100.0)


def transform_table(results: pd.DataFrame, transforms: pd.DataFrame) -> str:
    """Variant x transform -> conflict %: per variant with a per-transform record, its whole-model
    row (the summary table's) and one row per transform leaf (pipeline order), each mean [95%
    t-interval over seeds] over the steps that received it, and utterance-weighted."""
    lines = ["| variant | transform | seeds | steps per run | conflict % (steps that received it) "
             "| utterance-weighted conflict % |", "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        sub = transforms[transforms["variant"] == variant]
        if sub.empty:
            continue
        whole = results[results["variant"] == variant]
        lines.append(f"| {variant} | (whole model) | {len(whole)} | | {_rate_cell(whole['conflict_fraction'])} | |")
        leaves = list(dict.fromkeys(sub["leaf"]))  # first-seen order = bit order
        names = sub.drop_duplicates("leaf").set_index("leaf")["transform"]
        for leaf in leaves:
            rows = sub[sub["leaf"] == leaf]
            label = names[leaf] if (names == names[leaf]).sum() == 1 else leaf  # the leaf key where names repeat
            lines.append(f"| {variant} | {label} | {len(rows)} | {rows['steps'].mean():.0f} "
                         f"| {_rate_cell(rows['conflict_fraction'])} | {_rate_cell(rows['weighted_conflict_fraction'])} |")
    return "\n".join(lines)


_cell = paired.cell


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
    return paired.differences_markdown(tests, METRICS.__getitem__)


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


def _command(args: argparse.Namespace) -> str:
    """The command line that regenerates this doc (its variants and file when not the defaults)."""
    cmd = "python benchmarks/conflict_study.py"
    if list(args.variants) != list(VARIANTS):
        cmd += " --variants " + " ".join(f'"{v}"' for v in args.variants)
    if Path(args.doc).resolve() != DEFAULT_DOC:
        cmd += f" --doc {args.doc}"
    return cmd


def _subset_note(results: pd.DataFrame) -> str:
    """For a doc of some variants: which, and that its baseline rows are docs/study.md's runs."""
    held = [v for v in VARIANTS if v in set(results["variant"])]
    if len(held) == len(VARIANTS):
        return ""
    return (f"**Variants.** This file holds {len(held)} of the study's {len(VARIANTS)} variants: "
            + ", ".join(f"*{v}*" for v in held) + f". The *{BASELINE}* rows have docs/study.md's definition (config, seeds, "
            "corpus, run folder OUT/runs/published_baseline_s<seed>, reused when both docs are written from one OUT), "
            "but they are this file's own runs: numbers written by other code may differ, so every difference below "
            "pairs runs of this file only, and the Holm correction is over this file's comparisons only.\n\n")


def _banks_note(results: pd.DataFrame, banks: dict[str, str] | None) -> str:
    """What the pipeline variants' banks are, when the doc has them."""
    if banks is None or not any("augment.pipeline" in VARIANTS[v] for v in set(results["variant"])):
        return ""
    from dpda.data.bank_config import BankSizes

    sizes = BankSizes()
    return (f"**Banks.** The noise and reverb variants draw from offline banks built once by `dpda banks` (seed "
            f"{sizes.seed}, its default sizes: {sizes.noise} noise, {sizes.music} music and {sizes.speech} speech files "
            f"of {sizes.min_seconds:g}-{sizes.max_seconds:g} s, {sizes.rooms} rooms x {sizes.rirs_per_room} simulated RIRs "
            "per room size; docs/augmentation_banks.md) into OUT/banks; the pipelines are those of "
            "configs/published_musan_rir.yaml and configs/published_musan_rir_rawboost.yaml (Kaldi's MUSAN categories and "
            "SNRs, small and medium rooms) with the banks pointed there and RawBoost as in the other rows "
            "(configs/demo.yaml's `augment.rawboost`). They run in the training process on the cropped batch "
            "(`augment_before_crop: false`, as every row here).\n\n")


def write_doc(doc: Path, results: pd.DataFrame, args: argparse.Namespace, real: bool, wall_s: float,
              transforms: pd.DataFrame | None = None, banks: dict[str, str] | None = None) -> str:
    demo = study_config()
    transforms = transform_frame([]) if transforms is None else transforms
    metrics = [c for c in METRICS if c in results.columns and results[c].notna().any()]
    tests = paired_tests(results, metrics)
    budget_hits = int((results["epochs_to_best"] >= args.epochs).sum())
    stopped = int((results["epochs_run"] < args.epochs).sum())
    model = demo["model"]
    seeds = sorted(results["seed"].unique())
    present = set(results["variant"])
    described = "; ".join(f"*{k}*: {v}" for k, v in DESCRIPTIONS.items() if k in present)
    body = (
        "# Conflict study on the synthetic corpus\n\n"
        f"Regenerate with `{_command(args)}` (this file is overwritten).\n\n"
        + ("**Inside the platform.** The RawBoost rows (the same variants, seeds, budget and run config: "
           "tests/test_study.py holds them equal) run as Ray Tune trials with `dpda study studies/conflict.yaml "
           "--data DIR` (resumable, local or object storage), which writes the per-variant and paired-difference "
           "tables into runs/tune/conflict/study.md (and runs.csv, study.csv, study.html); the ITW-style column "
           "there is the saved model's `eval_eer.itw`. The pipeline rows, the real-audio column and the per-transform "
           "table are this script's alone.\n\n")
        + _subset_note(results)
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
        f"Variants: {described}"
        + ("; *dual, X*: dual path, joint forward, rule X, same strength. " if present - set(DESCRIPTIONS) else ". ")
        + ("Real-audio EER: the whole set built by `dpda realset` (docs/real_audio.md), never trained on. " if real else "")
        + "\n\n**Cells.** Mean over seeds [95% Student-t interval of the mean, rates clipped to 0-100 %]. Conflict %: the share of "
        "training steps whose original-path and augmented-path gradients have a negative cosine, read from "
        "each run's telemetry with `dpda_analysis.conflict_fraction` (dual-path variants only).\n\n"
        + _banks_note(results, banks)
        + summary_table(results, metrics)
        + ("\n\n**Conflict per transform** (pipeline variants): the whole-model conflict % of the table above, then "
           "per transform leaf (`dpda_analysis.conflict_by_transform` over each run's telemetry) the share of the steps "
           "in which some utterance received it that conflict, and the same with each step weighted by the utterances "
           "that received it; mean over seeds [95% t-interval]. A batch of "
           f"{demo['optim']['batch_size']} almost always holds both branches of a `one_of`, so the per-step fractions "
           "of its transforms sit near the whole model's; the weighted ones separate them more, and a transform every "
           "utterance receives (RawBoost after the `one_of`) equals the whole model.\n\n"
           + transform_table(results, transforms) if not transforms.empty else "")
        + "\n\n**Paired differences** (variant minus the published baseline, same seed): mean [95% interval], "
        f"paired t-test, Holm correction over all {len(tests)} comparisons (family-wise error {ALPHA}).\n\n"
        + tests_table(tests)
        + "\n\n**What the data support** (Holm p < 0.05; otherwise 'not distinguishable' at "
        f"{len(seeds)} seed(s)):\n\n" + "\n".join(f"- {s}" for s in sentences(tests))
        + f"\n\n**Cost.** Study wall time {wall_s / 60:.1f} min with {args.jobs} runs at a time on 2 shared CPU "
        f"cores; CPU time summed over runs {results['cpu_time_s'].sum() / 60:.1f} min. Per-run numbers: "
        "`study_results.csv` in the output folder"
        + (", per transform `study_transform_conflict.csv`" if not transforms.empty else "") + ".\n"
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
    p.add_argument("--doc", default=str(DEFAULT_DOC), help="Markdown file to (re)write (required with a subset "
                   "of --variants, so that docs/study.md always holds every variant)")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: write the doc from the runs already finished in OUT (an interrupted study)")
    args = p.parse_args()
    if BASELINE not in args.variants:
        sys.exit(f"--variants: the {BASELINE} is needed (every comparison is against it)")
    args.variants = list(dict.fromkeys(args.variants))
    if set(args.variants) != set(VARIANTS) and Path(args.doc).resolve() == DEFAULT_DOC:
        sys.exit("--doc: give another file for a subset of --variants (docs/study.md holds them all)")

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
    banks = build_banks(Path(args.out)) if any("augment.pipeline" in VARIANTS[v] for v in args.variants) else None
    if args.finished_only:
        files = sorted((Path(args.out) / "runs").glob("*/study_result.json"))
        results = [r for r in (json.loads(f.read_text()) for f in files)
                   if r["variant"] in args.variants and r["seed"] in args.seeds]
        end = max((f.stat().st_mtime for f in files), default=start)
    else:
        jobs = [(v, s) for s in args.seeds for v in args.variants]  # seed-major: every variant early on
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_one, v, s, str(data.resolve()), args.out, args.epochs, args.patience,
                                   str(real.resolve()) if real else None, banks) for v, s in jobs]
            results = []
            for (v, s), f in zip(jobs, futures):
                results.append(f.result())
                print(f"done: {v} seed {s} ({time.time() - start:.0f}s)", flush=True)
        end = time.time()
    transforms = transform_frame(results)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "conflict_by_transform"} for r in results])
    frame.to_csv(Path(args.out) / "study_results.csv", index=False)
    transforms.to_csv(Path(args.out) / "study_transform_conflict.csv", index=False)
    text = write_doc(Path(args.doc), frame, args, real is not None, end - start, transforms, banks)
    print(text)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
