"""`dpda banks OUT_DIR`: write small offline noise (MUSAN layout) and RIR (RIRS_NOISES layout)
banks and print their bank specs."""

from __future__ import annotations

import argparse

from dpda.data.bank_config import SIZE_FIELDS, BankSizes

_DEFAULTS = BankSizes()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write musan/, RIRS_NOISES/ and README.txt into")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="same seed and sizes give byte-identical files")
    sizes = parser.add_argument_group("sizes")
    for name in SIZE_FIELDS:
        default = getattr(_DEFAULTS, name)
        kind = float if isinstance(default, float) else int
        sizes.add_argument("--" + name.replace("_", "-"), type=kind, default=default, metavar="S" if kind is float else "N",
                           help=f"(default {default})" + (" per room size" if name == "rooms" else ""))
    parser.add_argument("--overwrite", action="store_true", help="replace existing musan/ and RIRS_NOISES/ in OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from dpda.console import info
    from dpda.data.bank_builder import write_banks

    sizes = BankSizes(seed=args.seed, **{name: getattr(args, name) for name in SIZE_FIELDS})
    specs = write_banks(args.out_dir, sizes, overwrite=args.overwrite)
    info(f"wrote {sizes.noise} noise, {sizes.music} music, {sizes.speech} speech files and "
         f"{3 * sizes.rooms * sizes.rirs_per_room} RIRs to {args.out_dir}")
    info("bank specs:")
    for name, spec in specs.items():  # the result: printed under --quiet too
        print(f"  {name:6s} {spec}")
    return 0
