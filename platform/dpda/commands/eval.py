"""`dpda eval MODEL CORPUS...`: ASVspoof-style score files and a metrics table per eval set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="a trained model file (RUN_DIR/model.pt)")
    p.add_argument("corpora", nargs="+", metavar="[NAME=]SPEC",
                   help="eval sets as corpus specs (KIND:PATH[:SUBSET]), optionally named NAME=SPEC")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--check", choices=["fail", "skip"], default="fail", help="policy for bad audio")


def set_name(arg: str) -> tuple[str, str]:
    """`name=spec`, or a name made from the spec's kind and subset."""
    name, sep, spec = arg.partition("=")
    if sep and ":" not in name:
        return name, spec
    from dpda.data.readers import parse_spec

    parsed = parse_spec(arg)
    return (f"{parsed.kind}_{parsed.subset}" if parsed.subset else parsed.kind), arg


def evaluate_sets(model_path: Path, corpora: list[str], out: Path, *, batch_size: int = 16,
                  num_workers: int = 2, device: str = "auto", check: str = "fail") -> list[dict]:
    """Score each set; write `<name>.scores.txt`, `<name>.breakdown.csv`, `metrics.csv/json`."""
    import pandas as pd

    from dpda.metrics import breakdown, compute_eer, write_scores
    from dpda.train.inference import resolve_device, score_manifest
    from dpda.train.loop import load_manifest
    from dpda.train.model_file import load_trained_model

    dev = resolve_device(device)
    model, state = load_trained_model(model_path, dev)
    length = state["config"]["data"]["length"]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for arg in corpora:
        name, spec = set_name(arg)
        manifest = load_manifest([spec], check, name)
        result = score_manifest(model, manifest, length=length, batch_size=batch_size, device=dev,
                                num_workers=num_workers, progress=True)
        write_scores(out / f"{name}.scores.txt", manifest["utt"], result.scores)
        scores = pd.Series(result.scores, index=manifest["utt"].to_numpy(), name="score")
        breakdown(manifest, scores).to_csv(out / f"{name}.breakdown.csv", index=False)
        target = manifest["target"].to_numpy()
        eer, threshold = compute_eer(result.scores[target == 1], result.scores[target == 0])
        rows.append({"set": name, "spec": spec, "n_bonafide": int((target == 1).sum()),
                     "n_spoof": int((target == 0).sum()), "eer": eer, "threshold": threshold})
        print(f"[dpda] {name}: EER {100 * eer:.2f}% over {len(manifest)} trials", flush=True)
    pd.DataFrame(rows).to_csv(out / "metrics.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = evaluate_sets(args.model, args.corpora, args.out, batch_size=args.batch_size,
                         num_workers=args.num_workers, device=args.device, check=args.check)
    width = max(len(r["set"]) for r in rows)
    print(f"{'set':<{width}}  {'bonafide':>8}  {'spoof':>7}  {'EER %':>7}")
    for r in rows:
        print(f"{r['set']:<{width}}  {r['n_bonafide']:>8}  {r['n_spoof']:>7}  {100 * r['eer']:>7.2f}")
    print(f"scores and breakdowns in {args.out}")
    return 0
