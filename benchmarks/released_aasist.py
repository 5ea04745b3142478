"""The released AASIST checkpoints on the real-audio set, and DPDA fine-tuning from AASIST-L.

Three parts (docs/released_aasist.md has the fetch instructions and the results):

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
   fraction (`dpda_analysis.conflict_fraction`).

    python benchmarks/released_aasist.py --weights /tmp/released --real data/real \\
        --aasist-code /tmp/aasist --out runs/released_aasist --doc docs/released_aasist_results.md
    # a smoke run: 20 compared files, 2 fine-tuning steps, one seed
    python benchmarks/released_aasist.py --weights /tmp/released --real /tmp/realset --seeds 0 \\
        --epochs 1 --max-steps 2 --out /tmp/ra --doc /tmp/ra.md

--weights is a folder with AASIST.pth, AASIST-L.pth and/or best.pth (the ASVspoof 5 baseline).
Runs go to OUT/<part>/...; finished ones are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import types
from pathlib import Path

import pandas as pd

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
    from dpda.models.released_aasist import RELEASED_LENGTH
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
        ours, state = load_trained_model(files[file], torch.device("cpu"), "auto")
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


def finetune(files: dict[str, Path], real: Path, out: Path, seeds: list[int], epochs: int, max_steps: int | None,
             family: str, batch_size: int) -> pd.DataFrame:
    """AASIST-L from its release, each arm x seed; held-out family and probe EERs, conflict fraction."""
    from dpda.data.realset.evaluate import corpus_spec
    from dpda.dotted import set_dotted
    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer
    from dpda_analysis import conflict_fraction, open_telemetry

    corpus = pd.read_csv(real / "real.csv")
    held_out = sorted(corpus.loc[corpus["family"] == family, "attack"].unique())
    if not held_out:
        raise SystemExit(f"--family {family}: no such family in {real}/real.csv")
    protocol = real / f"protocol-family-{family}.csv"  # F's spoofs against the bona fide test recordings
    if not protocol.exists():
        raise SystemExit(f"--family {family}: {protocol} is missing (a smaller build may lack the protocol)")
    rows = []
    for arm, switches in ARMS.items():
        for seed in seeds:
            run_dir = out / "finetune" / f"{arm.split()[0].lower()}-{switches['align.rule']}-s{seed}"
            done = run_dir / "result.json"
            if done.exists():
                rows.append(json.loads(done.read_text()))
                continue
            raw: dict = {"seed": seed, "device": "auto",
                         "model": {"name": "aasist", "preset": "released_l", "init_from": str(files["AASIST-L.pth"])},
                         "data": {"train": [corpus_spec(real, "train")], "dev": [corpus_spec(real, "dev")], "eval": {},
                                  "length": 64_600, "num_workers": 0, "held_out_attacks": held_out},
                         "eval": {"score": "logit1"},
                         "optim": {"lr": 1e-5, "batch_size": batch_size, "epochs": epochs, "patience": epochs,
                                   **({"max_steps_per_epoch": max_steps} if max_steps else {})},
                         "augment": {"rawboost": {"algo": 5}}, "checkpoint": {"average_best": 1, "select_by": "dev_eer"}}
            for key, value in switches.items():
                set_dotted(raw, key, value)
            t0 = time.time()
            Trainer(config_from_dict(raw, source=arm), run_dir, progress=False).fit()
            sets = {"held_out": [f"csv:{protocol}:test"], "probe": [corpus_spec(real, "probe")]}
            result = {"arm": arm, "seed": seed, "held_out_family": family, "wall_s": round(time.time() - t0, 1)}
            for r in evaluate_sets(run_dir / "model.pt", sets, run_dir / "eval", num_workers=0,
                                   interval_draws=DRAWS):
                result |= {f"eer_{r['set']}": r["eer"], f"eer_{r['set']}_low": r.get("eer_low"),
                           f"eer_{r['set']}_high": r.get("eer_high")}
            result["conflict_fraction"] = (float(conflict_fraction(open_telemetry(run_dir))["conflict_fraction"].iloc[0])
                                           if switches["augment.mode"] == "dual" else float("nan"))
            done.write_text(json.dumps(result, indent=2))
            rows.append(result)
    return pd.DataFrame(rows)


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
    p.add_argument("--parts", nargs="+", default=["compare", "score", "finetune"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=None, help="steps per epoch (default: the whole train split)")
    p.add_argument("--batch-size", type=int, default=24, help="the released configs' batch size")
    p.add_argument("--family", default="neural", help="the method family held out of fine-tuning")
    p.add_argument("--out", type=Path, default=Path("runs/released_aasist"))
    p.add_argument("--doc", type=Path, default=None, help="write the Markdown tables here")
    args = p.parse_args()
    files = {f: args.weights / f for f in RELEASED if (args.weights / f).exists()}
    if not files:
        raise SystemExit(f"--weights {args.weights}: none of {', '.join(RELEASED)} (docs/released_aasist.md: fetching them)")
    args.out.mkdir(parents=True, exist_ok=True)
    sections, started = [], time.time()

    def done(title: str, table: pd.DataFrame) -> None:  # printed as each part ends: a long run shows progress
        sections.append((title, table))
        print(f"### {title}\n\n{markdown(table)}\n", flush=True)

    if "compare" in args.parts and args.aasist_code:
        table = compare(files, args.real, args.aasist_code, args.compare_files)
        done("dpda against the released code (max |logit difference|)", table)
    if "score" in args.parts:
        table = score(files, args.real, args.out)
        keep = table[table["scope"].isin(["all"]) | table["scope"].str.endswith(":test")]
        done("Released checkpoints on the real-audio set (EER, 95% interval)", keep)
    if "finetune" in args.parts and "AASIST-L.pth" in files:
        table = finetune(files, args.real, args.out, args.seeds, args.epochs, args.max_steps, args.family,
                         args.batch_size)
        done(f"AASIST-L fine-tuned, {args.family} held out", table)
        numeric = table.select_dtypes("number").drop(columns=["seed"], errors="ignore")
        done("mean over seeds", numeric.groupby(table["arm"]).mean().reset_index())
    text = "".join(f"### {title}\n\n{markdown(table)}\n\n" for title, table in sections)
    text += f"Wall time: {time.time() - started:.0f} s\n"
    print(text.splitlines()[-1])
    if args.doc:
        args.doc.write_text(text)


if __name__ == "__main__":
    main()
