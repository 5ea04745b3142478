"""Benchmark: per-(trial, layer) conflict fraction over large telemetry, and log_step overhead.

1. Writes synthetic telemetry in the writer's exact schema (`dpda_analysis.schema`, same part
   layout and compression) straight with pyarrow, row group by row group (default 400 layers x
   250k steps = 100 M layer rows over 4 trials; one trial restarted so supersession is active).
2. Times `dpda_analysis.conflict_by_layer` in a fresh subprocess (open + query, 3 repeats) and
   reports its peak RSS (VmHWM; getrusage's children maxrss
   would include this parent's own peak, which Linux carries over fork+exec). Goal: <= 1.5 s, <= 300 MB.
3. Times `TelemetryWriter.log_step` with per-layer lists as `StepStats.to_host()` gives them.

    python benchmarks/bench_analysis.py                      # full size (~1.3 GB on disk)
    python benchmarks/bench_analysis.py --steps 20000 --layers 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dpda_analysis import schema as S
from dpda.telemetry.sink import COMPRESSION, parquet_options

STEPS_PER_PART = 2500  # x 400 layers = 1 M rows: one row group, as the writer's flushes give


def _dict(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **parquet_options(table.schema))  # as the writer's PartSink


def write_trial(run_dir: Path, trial_id: str, attempt: int, first: int, last: int, n_layers: int,
                resumed: int | None, rng: np.random.Generator) -> int:
    """Write steps [first, last) of one attempt; return the number of layer rows written."""
    tel = run_dir / S.TELEMETRY_DIRNAME
    ids = {"run_id": "bench", "trial_id": trial_id}
    _write(tel / S.attempt_dir("attempts", attempt) / S.part_name(0), pa.Table.from_pydict(
        {**{k: _dict(v, 1) for k, v in ids.items()}, "attempt": pa.array([attempt], pa.int16()),
         "resumed_from_step": [resumed], "world_size": pa.array([1], pa.int16()), "rule": ["pcgrad"],
         "augment_mode": ["dual"],
         "strength": pa.array([0.5], pa.float32()), "rawboost_algo": pa.array([4], pa.int16()),
         "n_layers": pa.array([n_layers], pa.int32()), "started_at": [time.time()], "config_json": [None]},
        schema=S.with_metadata(S.ATTEMPTS, "attempts")))
    _write(tel / S.attempt_dir("layer_names", attempt) / S.part_name(1), pa.Table.from_pydict(
        {**{k: _dict(v, n_layers) for k, v in ids.items()},
         "attempt": pa.array(np.full(n_layers, attempt, np.int16)),
         "layer": pa.array(np.arange(n_layers, dtype=np.int16)),
         "name": [f"layer{i:03d}.weight" for i in range(n_layers)]},
        schema=S.with_metadata(S.LAYER_NAMES, "layer_names")))
    rows = 0
    for seq, lo in enumerate(range(first, last, STEPS_PER_PART), start=2):
        hi = min(last, lo + STEPS_PER_PART)
        n, m = hi - lo, (hi - lo) * n_layers
        steps = np.arange(lo, hi)
        cos = np.clip(rng.normal(0.2, 0.4, n), -1, 1)
        _write(tel / S.attempt_dir("steps", attempt) / S.part_name(seq), pa.Table.from_pydict(
            {**{k: _dict(v, n) for k, v in ids.items()}, "attempt": pa.array(np.full(n, attempt, np.int16)),
             "epoch": pa.array((steps // 5000 + 1).astype(np.int32)), "step": pa.array(steps),
             "world_size": pa.array(np.ones(n, np.int16)), "rule": _dict("pcgrad", n),
             "augment_mode": _dict("dual", n),
             "strength": pa.array(np.full(n, 0.5, np.float32)), "rawboost_algo": pa.array(np.full(n, 4, np.int16)),
             "cos": cos, "norm_orig": np.ones(n), "norm_aug": np.ones(n), "conflict": cos < 0,
             "cos_update_orig": cos, "cos_update_aug": cos, "update_norm": np.ones(n),
             "loss_orig": np.ones(n), "loss_aug": np.ones(n), "lr": np.full(n, 1e-4),
             "skipped": np.zeros(n, bool), "wall_time": np.full(n, time.time())},
            schema=S.with_metadata(S.STEPS, "steps")))
        layer_cos = np.clip(cos.astype(np.float32)[:, None] * 0.5 + rng.normal(0, 0.3, (n, n_layers)).astype(np.float32), -1, 1)
        _write(tel / S.attempt_dir("layers", attempt) / S.part_name(seq), pa.Table.from_pydict(
            {**{k: _dict(v, m) for k, v in ids.items()}, "attempt": pa.array(np.full(m, attempt, np.int16)),
             "step": pa.array(np.tile(steps.astype(np.int32), n_layers)),  # layer-major, as the writer
             "layer": pa.array(np.repeat(np.arange(n_layers, dtype=np.int16), n)),
             "cos": layer_cos.T.reshape(-1),
             "norm_orig": rng.lognormal(-2, 0.5, m).astype(np.float32),
             "norm_aug": rng.lognormal(-2, 0.5, m).astype(np.float32)},
            schema=S.with_metadata(S.LAYERS, "layers")))
        rows += m
    return rows


def write_dataset(out: Path, steps: int, layers: int, trials: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    per_trial = steps // trials
    rows = 0
    for t in range(trials):
        run_dir = out / f"trial_{t:02d}"
        if t == 0:  # crash at 90 %, resume from the 80 % checkpoint: 10 % of its rows superseded
            crash, resume = int(per_trial * 0.9), int(per_trial * 0.8)
            rows += write_trial(run_dir, f"{t:05d}", 0, 0, crash, layers, None, rng)
            rows += write_trial(run_dir, f"{t:05d}", 1, resume, per_trial, layers, resume, rng)
        else:
            rows += write_trial(run_dir, f"{t:05d}", 0, 0, per_trial, layers, None, rng)
    return rows


_QUERY = """
import json, sys, time
import dpda_analysis as A
def hwm_mb():  # VmHWM restarts at exec; ru_maxrss would carry the parent's peak over
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024
base = hwm_mb()
times = []
for _ in range({repeats}):
    t0, c0 = time.perf_counter(), time.process_time()
    with A.open_telemetry(sys.argv[1]) as tel:
        t1 = time.perf_counter()
        df = A.conflict_by_layer(tel)
    times.append((t1 - t0, time.perf_counter() - t0, time.process_time() - c0))
print(json.dumps({{"times": times, "groups": len(df), "rows": int(df["rows"].sum()),
                  "import_rss_mb": base, "peak_rss_mb": hwm_mb()}}))
"""


def time_query(data: Path, repeats: int) -> dict:
    """Run the query in a fresh interpreter; its peak RSS is the child's own VmHWM."""
    out = subprocess.run([sys.executable, "-c", _QUERY.format(repeats=repeats), str(data)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def time_log_step(n_layers: int, n_steps: int, seed: int) -> dict:
    from dpda.telemetry import TelemetryWriter

    rng = np.random.default_rng(seed)
    keys = ("loss_orig", "loss_aug", "cos", "norm_orig", "norm_aug", "cos_update_orig", "cos_update_aug", "update_norm")
    stats = [
        {**{k: float(v) for k, v in zip(keys, rng.random(len(keys)))}, "conflict": False, "skipped": False,
         "layer_cos": rng.random(n_layers).tolist(), "layer_norm_orig": rng.random(n_layers).tolist(),
         "layer_norm_aug": rng.random(n_layers).tolist()}
        for _ in range(min(n_steps, 500))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        writer = TelemetryWriter(tmp, "bench", "t", 0, [f"l{i}" for i in range(n_layers)], flush_every=1000)
        per_call = np.empty(n_steps)
        for step in range(n_steps):
            t0 = time.perf_counter()
            writer.log_step(step, 1, stats[step % len(stats)], 1e-4)
            per_call[step] = time.perf_counter() - t0
        t0 = time.perf_counter()
        writer.close()
        drain = time.perf_counter() - t0
    flush_calls = per_call[999::1000]
    plain = np.delete(per_call, np.arange(999, n_steps, 1000))
    return {"mean_us": per_call.mean() * 1e6, "median_us": np.median(plain) * 1e6,
            "flush_call_ms": float(np.median(flush_calls) * 1e3) if len(flush_calls) else float("nan"),
            "close_ms": drain * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=250_000, help="total steps over all trials")
    parser.add_argument("--layers", type=int, default=400)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--out", type=Path, help="data dir (default: a temp dir, removed afterwards)")
    parser.add_argument("--reuse", action="store_true", help="reuse data already in --out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-steps", type=int, default=5000, help="log_step calls to time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="dpda_bench_"))
    try:
        if not args.reuse:
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            rows = write_dataset(out, args.steps, args.layers, args.trials, args.seed)
            write_s = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in out.rglob("*.parquet"))
            print(f"wrote {rows:,} layer rows ({args.layers} layers x {args.steps:,} steps, {args.trials} trials, "
                  f"{COMPRESSION}, cos plain) in {write_s:.1f} s, {size / 2**30:.2f} GiB on disk")
        res = time_query(out, args.repeats)
        times = np.asarray(res["times"])
        print("\nconflict fraction per (trial, layer), DuckDB, fresh process, supersession active")
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: CPU s is the load-independent figure)")
        # Import RSS moves by tens of MB with the page cache (shared-library fault-around);
        # peak minus imports is the steadier figure for what open + query add.
        print("| groups | rows kept | open s (median) | open+query s best | median | CPU s median | peak RSS MB "
              "| RSS after imports MB | peak - imports MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(f"| {res['groups']:,} | {res['rows']:,} | {np.median(times[:, 0]):.3f} | {times[:, 1].min():.3f} | "
              f"{np.median(times[:, 1]):.3f} | {np.median(times[:, 2]):.2f} | {res['peak_rss_mb']:.0f} | "
              f"{res['import_rss_mb']:.0f} | {res['peak_rss_mb'] - res['import_rss_mb']:.0f} |")
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)

    lg = time_log_step(args.layers, args.log_steps, args.seed)
    print(f"\nTelemetryWriter.log_step, {args.layers} layers, flush every 1000 steps ({args.log_steps} calls)")
    print("| mean us/call | median us/call (no flush) | flush call ms | close ms | overhead @10 ms step | @100 ms step |")
    print("|---|---|---|---|---|---|")
    print(f"| {lg['mean_us']:.1f} | {lg['median_us']:.1f} | {lg['flush_call_ms']:.2f} | {lg['close_ms']:.0f} | "
          f"{lg['mean_us'] / 1e4 * 100:.2f}% | {lg['mean_us'] / 1e5 * 100:.3f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
