"""The released AASIST checkpoints on the real-audio set, and DPDA fine-tuning from AASIST-L.

Four parts (docs/released_aasist.md has the fetch instructions and the results):

1. `compare` (with --aasist-code): dpda's `aasist` against clovaai's own models/AASIST.py on the
   same released weights and the same 64,600-sample inputs of the first N files of the set: the
   max |logit difference| per released file.
2. `score`: each released file scored on the whole set with `dpda eval`'s machinery (logit[1],
   64,600 samples, as the released main.py): EER with 95% bootstrap intervals overall, per family,
   language, prompt speaker and protocol subset (`dpda.data.realset.evaluate.summarize`).
3. `finetune`: AASIST-L fine-tuned from its release (`model.init_from`) on the set's `standard`
   train split with one method family held out of train and dev (`data.held_out_attacks`), in
   three arms with the same budget: single-path RawBoost, DPDA (dual path, rule `none`) and
   DPDA + PCGrad, over --seeds; reports the held-out family's EER (the set's `family-F` protocol
   test subset: F's spoofs against the bona fide test recordings), the probe EER and the conflict
   fraction (`dpda_analysis.conflict_fraction`), per run, as mean [95% t-interval] per arm, and
   each DPDA arm minus single-path RawBoost paired by seed (`dpda_analysis.paired`, Holm). The
   released AASIST-L, not fine-tuned, is scored on the same sets as the first row.
4. `finetune-synthetic` (with --synthetic DIR, a `dpda synth` corpus): the same three arms on the
   synthetic corpus's train split, tested on its eval set (attacks unseen in training) and its
   in-the-wild-style set, at --synthetic-length samples.

Every arm gets the same budget: --epochs, --max-steps per epoch, --batch-size, --lr; dev (for
the epoch choice) is scored on every --dev-every-th utterance per label.

    python benchmarks/released_aasist.py --weights /tmp/released --real data/real \\
        --aasist-code /tmp/aasist --out runs/released_aasist --doc docs/released_aasist_results.md
    # a smoke run: 20 compared files, 2 fine-tuning steps, one seed
    python benchmarks/released_aasist.py --weights /tmp/released --real /tmp/realset --seeds 0 \\
        --epochs 1 --max-steps 2 --parts score finetune --out /tmp/ra --doc /tmp/ra.md

--weights is a folder with AASIST.pth, AASIST-L.pth and/or best.pth (the ASVspoof 5 baseline).
Runs go to OUT/score/<file>/ and OUT/finetune-<corpus>/<arm>-s<seed>/; finished ones are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dpda.models.released_aasist import RELEASED_LENGTH

RELEASED = {"AASIST.pth": "AASIST", "AASIST-L.pth": "AASIST-L", "best.pth": "ASVspoof5"}
CONF_PATHS = {"AASIST": "config/AASIST.conf", "AASIST-L": "config/AASIST-L.conf", "ASVspoof5": "config/AASIST.conf"}
ARMS = {  # the same budget: one training run each, same steps, seeds, data and start
    "single-path RawBoost": {"augment.mode": "augmented", "align.rule": "none"},
    "DPDA (rule none)": {"augment.mode": "dual", "align.rule": "none"},
    "DPDA + PCGrad": {"augment.mode": "dual", "align.rule": "pcgrad"},
}
DRAWS = 1000


def released_code(repo: Path) -> types.ModuleType:
    """clovaai's models/AASIST.py from a clone or a bare git dir, as a module of its own."""
    path = "models/AASIST.py"
    text = ((repo / path).read_text() if (repo / path).exists() else
            subprocess.run(["git", f"--git-dir={repo}", "show", f"HEAD:{path}"], check=True,
                           capture_output=True, text=True).stdout)
    module = types.ModuleType("clovaai_aasist")
    exec(compile(text, path, "exec"), module.__dict__)
    return module


def released_config(repo: Path, name: str) -> dict:
    path = CONF_PATHS[name]
    text = ((repo / path).read_text() if (repo / path).exists() else
            subprocess.run(["git", f"--git-dir={repo}", "show", f"HEAD:{path}"], check=True,
                           capture_output=True, text=True).stdout)
    return json.loads(text)["model_config"]


def compare(files: dict[str, Path], real: Path, code: Path, n: int) -> pd.DataFrame:
    """Max |logit difference| between dpda and the released code per released file, on n files."""
    import torch

    from dpda.data.audio import fix_length, load_audio
    from dpda.train.model_file import load_trained_model

    module = released_code(code)
    manifest = pd.read_csv(real / "real.csv").sort_values("utt").head(n)
    paths = [Path(p) if Path(p).is_absolute() else real / p for p in manifest["path"]]
    batch = torch.stack([fix_length(load_audio(p, max_samples=RELEASED_LENGTH), RELEASED_LENGTH) for p in paths])
    rows = []
    for file, name in RELEASED.items():
        if file not in files:
            continue
        theirs = module.Model(released_config(code, name)).eval()
        theirs.load_state_dict(torch.load(files[file], map_location="cpu", weights_only=True))
        ours, state = load_trained_model(files[file], torch.device("cpu"), "auto")  # as `dpda eval` scores
        with torch.no_grad():
            a, b = theirs(batch)[1], ours(batch)
        rows.append({"file": file, "preset": state["config"]["model"]["preset"], "files": len(paths),
                     "max_abs_logit_diff": float((a - b).abs().max()), "max_abs_logit": float(a.abs().max())})
    return pd.DataFrame(rows)


def score(files: dict[str, Path], real: Path, out: Path) -> pd.DataFrame:
    """Each released file on the whole set: the realset summary (EER + interval per scope)."""
    from dpda.data.realset.evaluate import corpus_spec, summarize
    from dpda.train.evaluation import evaluate_sets

    tables = []
    for file in RELEASED:
        if file not in files:
            continue
        where = out / "score" / file.removesuffix(".pth")
        if not (where / "summary.csv").exists():
            evaluate_sets(files[file], {"real": [corpus_spec(real)]}, where, num_workers=0, device="cpu",
                          checkpoint_format="aasist", interval_draws=DRAWS)
            scores = pd.read_csv(where / "real.scores.txt", sep=" ", header=None, names=["utt", "score"])
            summarize(real, scores.set_index("utt")["score"], draws=DRAWS).to_csv(where / "summary.csv", index=False)
        tables.append(pd.read_csv(where / "summary.csv").assign(model=file))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


@dataclass(frozen=True)
class Task:
    """One fine-tuning question: where AASIST-L trains, what it is tested on, at what length."""

    name: str
    train: list[str]
    dev: list[str]
    tests: dict[str, list[str]]  # name -> specs: the held-out sets every arm is scored on
    held_out: list[str]  # attacks dropped from train and dev (`data.held_out_attacks`)
    length: int
    root: Path  # the corpus folder: a thinned dev manifest is written here (a corpus's paths must lie below its CSV)


def real_task(real: Path, family: str) -> Task:
    """The real-audio set's `standard` split with one method family held out of train and dev;
    tested on that family's spoofs against the bona fide test recordings, and on the probe."""
    from dpda.data.realset.evaluate import corpus_spec

    corpus = pd.read_csv(real / "real.csv")
    held_out = sorted(corpus.loc[corpus["family"] == family, "attack"].unique())
    if not held_out:
        raise SystemExit(f"--family {family}: no such family in {real}/real.csv")
    protocol = real / f"protocol-family-{family}.csv"  # F's spoofs against the bona fide test recordings
    if not protocol.exists():
        raise SystemExit(f"--family {family}: {protocol} is missing (a smaller build may lack the protocol)")
    return Task("real", [corpus_spec(real, "train")], [corpus_spec(real, "dev")],
                {"held_out": [f"csv:{protocol}:test"], "probe": [corpus_spec(real, "probe")]}, held_out,
                RELEASED_LENGTH, real)


def synthetic_task(root: Path, length: int) -> Task:
    """The synthetic corpus (`dpda synth`): train and dev on its seen attacks, tested on its eval
    set's unseen attacks and its in-the-wild-style set."""
    la = root / "LA"
    if not la.is_dir():
        raise SystemExit(f"--synthetic {root}: no LA/ folder (make one with `dpda synth {root}`)")
    return Task("synthetic", [f"asvspoof2019:{la}:train"], [f"asvspoof2019:{la}:dev"],
                {"eval": [f"asvspoof2019:{la}:eval"], "itw": [f"itw:{root / 'itw'}"]}, [], length, root)


def every_nth(specs: list[str], n: int, out: Path) -> list[str]:
    """`specs` thinned to every n-th utterance of each label (by id), written as one CSV `out`
    (in the corpus folder): scoring dev after each epoch is the fine-tuning's largest fixed cost on a CPU."""
    from dpda.data.corpora import load_manifest

    if n <= 1:
        return specs
    manifest = load_manifest(specs, "fail", "dev").sort_values("utt")
    kept = manifest[manifest.groupby("label", observed=True).cumcount() % n == 0]
    out.parent.mkdir(parents=True, exist_ok=True)
    kept.drop(columns=["source_line", "source_file"], errors="ignore").to_csv(out, index=False)
    return [f"csv:{out}"]


def finetune(model_file: Path, task: Task, out: Path, seeds: list[int], budget: dict) -> pd.DataFrame:
    """AASIST-L from its release, each arm x seed on `task` with the same `budget` (epochs,
    max_steps, batch_size, lr, dev_every); every test set's EER and the conflict fraction. The
    released model itself, scored on the same sets, is the first row (`arm` "released")."""
    from dpda.dotted import set_dotted
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer
    from dpda_analysis import conflict_fraction, open_telemetry

    where = out / f"finetune-{task.name}"
    dev = every_nth(task.dev, budget["dev_every"], task.root / f"released_aasist-dev-every{budget['dev_every']}.csv")

    def scored(model: Path, run_dir: Path, fmt: str) -> dict:
        result = {}
        for r in evaluate_sets(model, task.tests, run_dir / "eval", num_workers=0, interval_draws=DRAWS,
                               checkpoint_format=fmt, settings={"eval.length": task.length}):
            result |= {f"eer_{r['set']}": r["eer"], f"eer_{r['set']}_low": r.get("eer_low"),
                       f"eer_{r['set']}_high": r.get("eer_high")}
        return result

    rows = []
    done = where / "released" / "result.json"
    if not done.exists():
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps({"arm": "released", "seed": -1} | scored(model_file, done.parent, "aasist"), indent=2))
    rows.append(json.loads(done.read_text()))
    for arm, switches in ARMS.items():
        for seed in seeds:
            run_dir = where / f"{arm.split()[0].lower()}-{switches['align.rule']}-s{seed}"
            done = run_dir / "result.json"
            if done.exists():
                rows.append(json.loads(done.read_text()))
                continue
            raw: dict = {"seed": seed, "device": "auto",
                         "model": {"name": "aasist", "preset": "released_l", "init_from": str(model_file.resolve())},
                         "data": {"train": task.train, "dev": dev, "eval": {}, "length": task.length,
                                  "num_workers": 0, "held_out_attacks": task.held_out},
                         "eval": {"score": "logit1"},
                         "optim": {"lr": budget["lr"], "batch_size": budget["batch_size"], "epochs": budget["epochs"],
                                   "patience": budget["epochs"],
                                   **({"max_steps_per_epoch": budget["max_steps"]} if budget["max_steps"] else {})},
                         "augment": {"rawboost": {"algo": 5}}, "checkpoint": {"average_best": 1, "select_by": "dev_eer"}}
            for key, value in switches.items():
                set_dotted(raw, key, value)
            t0 = time.time()
            Trainer(config_from_dict(raw, source=arm), run_dir, progress=False).fit()
            train_s = time.time() - t0
            result = {"arm": arm, "seed": seed, "train_s": round(train_s, 1)} | scored(run_dir / "model.pt", run_dir, "dpda")
            result |= {"conflict_fraction": float("nan"), "loss_clean": float("nan"), "loss_augmented": float("nan")}
            if switches["augment.mode"] == "dual":  # the conflict fraction, and each path's mean training loss
                telemetry = open_telemetry(run_dir)
                losses = telemetry.sql("select avg(loss_orig) clean, avg(loss_aug) augmented from steps").iloc[0]
                result |= {"conflict_fraction": float(conflict_fraction(telemetry)["conflict_fraction"].iloc[0]),
                           "loss_clean": float(losses["clean"]), "loss_augmented": float(losses["augmented"])}
                telemetry.close()
            result["wall_s"] = round(time.time() - t0, 1)
            done.write_text(json.dumps(result, indent=2))
            rows.append(result)
    return pd.DataFrame(rows)


def loss_cell(mean: float, low: float, high: float) -> str:
    """A mean training loss [interval] to 3 significant digits (losses span 1e-6 to 10 here)."""
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3g}" if not math.isfinite(low) else f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def arm_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Mean [95% t-interval over seeds] per arm, and every DPDA arm minus single-path RawBoost
    paired by seed (Holm over arms x sets), from `dpda_analysis.paired`."""
    from dpda_analysis.paired import cell, differences_markdown, paired_differences, t_interval

    eers = [c for c in table.columns if c.startswith("eer_") and not c.endswith(("_low", "_high"))]
    metrics = [*eers, "conflict_fraction"]
    losses = ["loss_clean", "loss_augmented"]
    runs = table[table["arm"] != "released"].rename(columns={"arm": "variant"})
    rows = []
    for arm, group in runs.groupby("variant", sort=False):
        rows.append({"arm": arm, "seeds": len(group)} | {m: cell(*t_interval(group[m].dropna()), 100) for m in metrics}
                    | {m: loss_cell(*t_interval(group[m].dropna())) for m in losses if m in group})
    released = table[table["arm"] == "released"]
    if len(released):
        rows.insert(0, {"arm": "released (no fine-tuning)", "seeds": 0}
                    | {m: f"{100 * released[m].iloc[0]:.1f}" for m in eers} | {m: "-" for m in [*metrics[len(eers):], *losses]})
    tests = paired_differences(runs, "single-path RawBoost", eers, variants=list(ARMS))
    text = differences_markdown(tests, lambda m: (f"{m} (points)", 100, "%"))
    return pd.DataFrame(rows), text


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (4 significant digits), without pandas' optional tabulate."""
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help="folder with AASIST.pth, AASIST-L.pth, best.pth")
    p.add_argument("--real", type=Path, required=True, help="a real-audio set built by `dpda realset`")
    p.add_argument("--aasist-code", type=Path, help="clone or bare git dir of clovaai/aasist (for `compare`)")
    p.add_argument("--compare-files", type=int, default=20)
    p.add_argument("--parts", nargs="+", default=["compare", "score", "finetune", "finetune-synthetic"],
                   choices=["compare", "score", "finetune", "finetune-synthetic"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=None, help="steps per epoch (default: the whole train split)")
    p.add_argument("--batch-size", type=int, default=24, help="the released configs' batch size")
    p.add_argument("--family", default="neural", help="the method family held out of fine-tuning")
    p.add_argument("--lr", type=float, default=1e-5, help="Adam's learning rate for every arm")
    p.add_argument("--dev-every", type=int, default=1, help="score every n-th dev utterance per label after each epoch")
    p.add_argument("--synthetic", type=Path, default=None, help="a `dpda synth` corpus (for finetune-synthetic)")
    p.add_argument("--synthetic-length", type=int, default=32_000, help="samples per crop on the synthetic corpus")
    p.add_argument("--out", type=Path, default=Path("runs/released_aasist"))
    p.add_argument("--doc", type=Path, default=None, help="write the Markdown tables here")
    args = p.parse_args()
    files = {f: args.weights / f for f in RELEASED if (args.weights / f).exists()}
    if not files:
        raise SystemExit(f"--weights {args.weights}: none of {', '.join(RELEASED)} (docs/released_aasist.md: fetching them)")
    if "finetune-synthetic" in args.parts and args.synthetic is None:
        raise SystemExit("--parts finetune-synthetic needs --synthetic DIR (a `dpda synth` corpus)")
    args.out.mkdir(parents=True, exist_ok=True)
    sections, started = [], time.time()
    budget = {"epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr,
              "dev_every": args.dev_every}

    def done(title: str, table: pd.DataFrame | str) -> None:  # printed as each part ends: a long run shows progress
        text = table if isinstance(table, str) else markdown(table)
        sections.append((title, text))
        print(f"### {title}\n\n{text}\n", flush=True)

    if "compare" in args.parts and args.aasist_code:
        table = compare(files, args.real, args.aasist_code, args.compare_files)
        done("dpda against the released code (max |logit difference|)", table)
    if "score" in args.parts:
        table = score(files, args.real, args.out)
        keep = table[table["scope"].isin(["all"]) | table["scope"].str.endswith(":test")]
        done("Released checkpoints on the real-audio set (EER, 95% interval)", keep)
    tasks = {"finetune": lambda: real_task(args.real, args.family),
             "finetune-synthetic": lambda: synthetic_task(args.synthetic, args.synthetic_length)}
    for part, make in tasks.items():
        if part not in args.parts or "AASIST-L.pth" not in files:
            continue
        task = make()
        table = finetune(files["AASIST-L.pth"], task, args.out, args.seeds, budget)
        what = f"{args.family} family held out" if task.held_out else "unseen attacks in eval"
        done(f"AASIST-L fine-tuned on the {task.name} corpus ({what}; {budget}): every run", table)
        means, differences = arm_tables(table)
        done(f"{task.name}: EER % and conflict fraction % (and each path's mean training loss), mean [95% t-interval over seeds]", means)
        done(f"{task.name}: each DPDA arm minus single-path RawBoost, paired by seed", differences)
    text = "".join(f"### {title}\n\n{body}\n\n" for title, body in sections)
    text += f"Wall time: {time.time() - started:.0f} s\n"
    print(text.splitlines()[-1])
    if args.doc:
        args.doc.write_text(text)


if __name__ == "__main__":
    main()
