"""The interactive conflict-analysis report: one self-contained, offline HTML file.

`figures` holds the table of figures (name, title, maker, in page order), drawn by `epochs`,
`rules`, `paths`, `layers`, `trials` and `evaluated`; `page` assembles the HTML around them (summary,
scripts, `trials_table`); `write` writes the file and the optional PNGs.
"""

from dpda_analysis.report.figures import EVALUATION_FIGURE, FIGURE_ORDER, FIGURES, Figure, build_figures
from dpda_analysis.report.inputs import ReportInputs, report_inputs
from dpda_analysis.report.page import render_html
from dpda_analysis.report.trials_table import TRIALS_TABLE, trials_table_html
from dpda_analysis.report.write import ReportResult, export_pngs, write_report

__all__ = [
    "EVALUATION_FIGURE",
    "FIGURES",
    "FIGURE_ORDER",
    "TRIALS_TABLE",
    "Figure",
    "ReportInputs",
    "ReportResult",
    "build_figures",
    "export_pngs",
    "render_html",
    "report_inputs",
    "trials_table_html",
    "write_report",
]
