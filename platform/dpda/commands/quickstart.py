"""`dpda quickstart`: the main job end to end on one machine, no data needed.

synthetic corpus -> demo search (Ray Tune + Optuna, local embedded Ray) -> the best trial's model
evaluated on dev, eval (unseen attacks) and the In-the-Wild-style set (and on the real-audio set
when `dpda realset` has built it beside the synthetic corpus) -> the Plotly report.
Every stage reuses what a previous run finished, so running it again is cheap and an
interrupted search resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dpda.console import Progress, info
from dpda.train.run_dir import write_json

REPO_SPACE = Path(__file__).resolve().parents[3] / "search_spaces" / "demo.yaml"
INTERVAL_DRAWS = 1000  # bootstrap draws behind each EER's 95% interval


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", type=Path, default=Path("runs/quickstart"), help="output directory")
    p.add_argument("--data", type=Path, default=Path("data/synth"), help="synthetic corpus (made if missing)")
    p.add_argument("--space", type=Path, default=REPO_SPACE, help="search space (default: the demo space)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
    p.add_argument("--num-samples", type=int, default=None, help="trials (default: the space's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the space's)")
    p.add_argument("--corpus-size", type=int, nargs=4, metavar=("TRAIN", "DEV", "EVAL", "ITW"), default=None,
                   help="utterances per split of the synthetic corpus (default: dpda synth's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a config key for every trial (YAML value)")
    p.add_argument("--real", type=Path, default=None, metavar="DIR",
                   help="real-audio set to evaluate on too (default: real/ beside --data, when `dpda realset` built it)")


def _stage(n: int, text: str) -> float:
    info(f"\n==> [{n}/4] {text}")
    return time.time()


def _synth(data: Path, seed: int, sizes: list[int] | None) -> None:
    from dpda.data.synth import SynthConfig, write_synthetic_corpus

    if (data / "README.txt").exists():
        info(f"reusing the synthetic corpus in {data}")
        return
    kw = dict(zip(("train", "dev", "eval", "itw"), sizes)) if sizes else {}
    write_synthetic_corpus(data, SynthConfig.from_options(seed=seed, **kw))


def _search(args: argparse.Namespace) -> dict:
    """Run, resume or reuse the demo search; returns {'experiment', 'best_model', ...}."""
    from dpda.commands.tune import space_with_options
    from dpda.tune.session import init_ray, tune_verbosity
    from dpda.tune.tuner import experiment_path, run_search

    # what `dpda tune SPACE --data D [--num-samples N] [--epochs E] [--set K=V ...]` would search
    space = space_with_options(args.space, data=args.data, sets=args.set, epochs=args.epochs,
                               num_samples=args.num_samples)
    storage = str((args.out / "tune").resolve())
    exp = experiment_path(storage, space.name)
    done = Path(exp) / "quickstart_search.json"
    if done.exists():
        info(f"reusing the finished search in {exp}")
        return json.loads(done.read_text())
    from ray import tune

    resume = tune.Tuner.can_restore(exp)
    if resume:
        info(f"resuming the interrupted search in {exp}")
    init_ray()
    outcome = run_search(space, storage=storage, resume=resume, verbose=min(1, tune_verbosity()))
    if outcome.best_model is None:
        from dpda.errors import UserError

        raise UserError(f"{exp}: no trial finished with a model; see the trial logs there")
    # the best trial's result, as every other tool names it: its saved model's dev metric
    result = {"experiment": outcome.experiment_path, "best_trial": outcome.best_trial_id,
              "metric": space.tune.key, "best_value": outcome.best_metric, "best_model": outcome.best_model,
              "best_config": outcome.best_config}
    if not outcome.interrupted:
        write_json(done, result)
    return result


def _real_set(args: argparse.Namespace) -> Path | None:
    """The real-audio set to evaluate on: --real (must exist), else real/ beside the synthetic corpus."""
    from dpda.data.realset.evaluate import is_real_set

    if args.real is not None:
        if not is_real_set(args.real):
            from dpda.errors import UserError

            raise UserError(f"--real {args.real}: no real-audio set there (build it with: dpda realset {args.real})")
        return args.real
    default = args.data.parent / "real"
    if is_real_set(default):
        return default
    info(f"    (no real-audio set in {default}; `dpda realset {default}` builds one from Debian packages)")
    return None


def _evaluate_real(real: Path, eval_dir: Path) -> str:
    """Per-family / speaker / protocol EERs with intervals -> eval/real.summary.csv; the headline."""
    from dpda.data.realset.evaluate import headline, summarize
    from dpda.metrics import read_scores

    table = summarize(real, read_scores(eval_dir / "real.scores.txt"), draws=INTERVAL_DRAWS)
    table.to_csv(eval_dir / "real.summary.csv", index=False)
    return headline(table)


def run(args: argparse.Namespace) -> int:
    from dpda.train.evaluation import evaluate_sets
    from dpda_analysis.report import FIGURE_ORDER, write_report

    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    t = _stage(1, f"synthetic corpus in {args.data}")
    _synth(args.data, args.seed, args.corpus_size)
    info(f"    {time.time() - t:.0f}s")

    t = _stage(2, f"demo search ({args.space.name}) on a local Ray instance")
    search = _search(args)
    info(f"    best trial {search['best_trial']}: {search.get('metric', 'model_dev_eer')} "
         f"{search.get('best_value', search.get('best_dev_eer')):.4g} (its saved model's; {time.time() - t:.0f}s)")

    t = _stage(3, "evaluating the best trial's model on dev, eval (unseen attacks) and In-the-Wild-style")
    corpora = [f"dev=asvspoof2019:{args.data}/LA:dev", f"eval=asvspoof2019:{args.data}/LA:eval",
               f"itw=itw:{args.data}/itw"]
    real = _real_set(args)
    if real is not None:
        corpora.append(f"real=csv:{real / 'real.csv'}")
    rows = evaluate_sets(Path(search["best_model"]), corpora, args.out / "eval", num_workers=0,
                         interval_draws=INTERVAL_DRAWS)
    real_line = _evaluate_real(real, args.out / "eval") if real is not None else None
    info(f"    {time.time() - t:.0f}s")

    t = _stage(4, "conflict-analysis report")
    with Progress(len(FIGURE_ORDER) + 1, "report", "figures") as bar:
        write_report(search["experiment"], args.out / "report.html", on_figure=lambda _name: bar.update(),
                     title="dpda quickstart: demo search on the synthetic corpus", evaluation=args.out / "eval")
    summary = {"experiment": search["experiment"], "best_trial": search["best_trial"],
               "best_model": search["best_model"], "report": str((args.out / "report.html").resolve()),
               "eer": {r["set"]: r["eer"] for r in rows},
               "eer_interval": {r["set"]: [r["eer_low"], r["eer_high"]] for r in rows},
               "wall_time_s": time.time() - start}
    write_json(args.out / "quickstart.json", summary)
    info(f"    {time.time() - t:.0f}s")
    print("\nEER of the best trial [95% bootstrap interval]: " + ", ".join(
        f"{r['set']} {100 * r['eer']:.1f}% [{100 * r['eer_low']:.1f}, {100 * r['eer_high']:.1f}]" for r in rows))
    if real_line is not None:
        print(f"EER on the real-audio set [95% interval]: {real_line} (per speaker and protocol: "
              f"{args.out / 'eval' / 'real.summary.csv'})")
    print(f"Total {summary['wall_time_s']:.0f}s. Open the report: {summary['report']}")
    return 0
