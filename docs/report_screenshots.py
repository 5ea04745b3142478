"""Regenerate the report screenshots in docs/ (docs/report_*.png) from synthetic telemetry.

    PYTHONPATH=platform:analysis python docs/report_screenshots.py

Each PNG is a page holding a few of the report's views, rendered by headless Chromium
(/usr/bin/chromium) and reduced to a 256-colour palette (128 where that passes 200 KB) so each stays under 200 KB. Demo scale:
8 trials (2 restarted, 2 stopped early by ASHA), 24 parameter tensors, each finished trial with an
eval folder as `dpda eval` writes it (scores, keys; 3,000 + 1,500 trials); XLS-R scale: 400 tensors.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic-telemetry helper

from synthetic_telemetry import write_synthetic_experiment  # noqa: E402
from dpda_analysis.report import build_figures, render_html, report_inputs  # noqa: E402
from dpda_analysis.store import Telemetry  # noqa: E402

DOCS = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
WIDTH = 1300
SHOTS = {  # file -> (scale, views)
    "report_demo.png": ("demo", ["conflict_by_rule_algo", "test_eer"]),  # with the headline and the trials table
    "report_demo_overview.png": ("demo", ["conflict_by_epoch", "eer_vs_conflict"]),
    "report_demo_search.png": ("demo", ["conflict_by_rule_algo", "search_parcoords", "test_eer"]),
    "report_400_layers.png": ("xlsr", ["layer_heatmap", "layer_conflict"]),
    "report_demo_det.png": ("demo", ["det_curves", "score_histograms"]),
    "report_demo_attacks.png": ("demo", ["test_eer_by_attack", "test_eer_by_condition", "det_by_attack"]),
}
WITH_SUMMARY = {"report_demo.png", "report_demo_overview.png"}
WITH_TABLE = {"report_demo.png", "report_demo_search.png"}
SCALES = {"demo": {"trials": 8, "steps": 200, "layers": 24, "steps_per_epoch": 40, "restart_trials": 2, "stopped_trials": 2, "seed": 11,
                   "scores": True},
          "xlsr": {"trials": 4, "steps": 120, "layers": 400, "steps_per_epoch": 30, "restart_trials": 1, "stopped_trials": 1, "seed": 12}}


def screenshot(page: Path, out: Path, work: Path, height: int = 5000) -> None:
    raw = work / f"{out.stem}.raw.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={work / 'profile'}", f"--window-size={WIDTH},{height}",
                    "--virtual-time-budget=8000", f"--screenshot={raw}", page.as_uri()],
                   check=True, capture_output=True, timeout=240)
    image = Image.open(raw).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    image = image.crop((0, 0, WIDTH, min(image.height, box[3] + 20)))
    image = image.resize((int(image.width * 0.75), int(image.height * 0.75)), Image.LANCZOS)
    for colors in (256, 128):  # 256 keeps the trials' colours apart; 128 where that passes 200 KB
        image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        if out.stat().st_size <= 200_000:
            break
    print(f"{out}: {out.stat().st_size // 1024} KB, {image.width}x{image.height}")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tels = {}
        for scale, kwargs in SCALES.items():
            write_synthetic_experiment(work / scale, experiment=f"synthetic_{scale}", **kwargs)
            tels[scale] = Telemetry(work / scale / f"synthetic_{scale}")
        for name, (scale, views) in SHOTS.items():
            tel = tels[scale]
            inputs = report_inputs(tel)
            figures = {k: v for k, v in build_figures(tel, inputs=inputs, det_by_attack=True).items() if k in views}
            page = work / f"{name}.html"
            html = render_html(tel, figures, f"DPDA gradient-conflict report (synthetic telemetry, {scale} scale)", inputs)
            if name not in WITH_SUMMARY:
                html = html.replace('<table class="summary"', '<table class="summary" style="display:none"')
                html = html.replace('<p class="note">Conflict:', '<p class="note" style="display:none">Conflict:')
            if name not in WITH_TABLE:
                html = html.replace('id="section-trials_table"', 'id="section-trials_table" style="display:none"')
            page.write_text(html, encoding="utf-8")
            screenshot(page, DOCS / name, work)
        for tel in tels.values():
            tel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
