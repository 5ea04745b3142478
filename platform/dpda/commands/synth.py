"""`dpda synth OUT_DIR`: write the deterministic synthetic corpus and print its corpus specs."""

from __future__ import annotations

import argparse
import time

from dpda.cli import add_deprecated
from dpda.console import info
from dpda.data.synth_config import SynthConfig

_DEFAULTS = SynthConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write LA/, itw/ and README.txt into")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="same seed and sizes give byte-identical files")
    sizes = parser.add_argument_group("sizes")
    for name in ("train", "dev", "eval", "itw"):
        sizes.add_argument(f"--{name}", type=int, default=getattr(_DEFAULTS, name), metavar="N",
                           help=f"utterances in {name} (default {getattr(_DEFAULTS, name)})")
    sizes.add_argument("--min-seconds", type=float, default=_DEFAULTS.min_seconds)
    sizes.add_argument("--max-seconds", type=float, default=_DEFAULTS.max_seconds)
    sizes.add_argument("--bonafide-fraction", type=float, default=_DEFAULTS.bonafide_fraction)
    for split in ("train", "dev", "eval", "itw"):
        sizes.add_argument(f"--speakers-{split}", type=int, default=getattr(_DEFAULTS, f"speakers_{split}"), metavar="N")
    parser.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="utterances synthesised at once")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="processes synthesising in parallel (default: one per core, at most 4; output identical)")
    add_deprecated(parser, "--workers", "--processes", "processes", type=int)
    parser.add_argument("--overwrite", action="store_true", help="replace existing LA/ and itw/ in OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from dpda.data.synth import write_synthetic_corpus

    cfg = SynthConfig.from_options(
        seed=args.seed, train=args.train, dev=args.dev, eval=args.eval, itw=args.itw,
        min_seconds=args.min_seconds, max_seconds=args.max_seconds,
        bonafide_fraction=args.bonafide_fraction, speakers_train=args.speakers_train,
        speakers_dev=args.speakers_dev, speakers_eval=args.speakers_eval,
        speakers_itw=args.speakers_itw, batch_size=args.batch_size,
    )
    start = time.perf_counter()
    result = write_synthetic_corpus(args.out_dir, cfg, overwrite=args.overwrite, workers=args.processes)
    total = sum(sum(c.values()) for c in result.counts.values())
    info(f"wrote {total} utterances to {result.root} in {time.perf_counter() - start:.1f} s "
         f"(see {result.root / 'README.txt'})")
    for split, counts in result.counts.items():
        info(f"  {split:5s} " + "  ".join(f"{k}:{v}" for k, v in counts.items()))
    info("corpus specs:")
    for split, spec in result.specs.items():  # the result: printed under --quiet too
        print(f"  {split:5s} {spec}")
    return 0
