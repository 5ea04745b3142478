"""`dpda models`: every model and preset with its trainable parameter count.

SSL models also show their back end alone (the published papers count it without the XLS-R front
end: the published Conformer-TCM has 2,382,628), and which released checkpoints load into each
preset (`dpda eval --checkpoint-format published` or `aasist`). Models are built on PyTorch's meta device where
they can be: counting the 300M-parameter XLS-R allocates nothing.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="models to list (default: all)")
    p.add_argument("--preset", default=None, help="only this preset (full, tiny; aasist also released, released_l)")


def run(args: argparse.Namespace) -> int:
    from dpda.errors import UserError
    from dpda.models import count_parameters, list_models
    from dpda.models.published import FORMATS
    from dpda.models.registry import build_for_shapes
    from dpda.models.ssl import SSLDetector

    known = list_models()
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise UserError(f"model {unknown[0]!r}: unknown (choose from {', '.join(known)})")
    rows = []
    for name in args.names or known:
        for preset in known[name]:
            if args.preset not in (None, preset):
                continue
            model = build_for_shapes(name, preset)
            backend = model.backend if isinstance(model, SSLDetector) else None
            rows.append((name, preset, f"{count_parameters(model, trainable_only=True):,}",
                         f"{count_parameters(backend, trainable_only=True):,}" if backend is not None else "-",
                         ", ".join(f for f, models in FORMATS.items()
                                   if name in models and preset in models[name].presets) or "-"))
    if not rows:
        presets = sorted({p for n in (args.names or known) for p in known[n]})
        raise UserError(f"--preset {args.preset!r}: no such preset (presets: {', '.join(presets)})")
    header = ("model", "preset", "trainable", "back end", "released checkpoints")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(f"{cell:<{w}}" if i < 2 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(row, widths))))
    return 0
