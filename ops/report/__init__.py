"""``npeff report``: one self-contained HTML page about a decomposition.

Modules:
    figures: the figures (loss curve, coefficient and component-size distributions) as inline SVG.
    page: the settings tables, :func:`build_report` and :func:`write_report`; the Jinja template
        is ``templates/report.html.j2``.
"""

from npeff.ops.report.page import build_report, write_report
from npeff.ops.report.figures import plots

__all__ = ["build_report", "plots", "write_report"]
