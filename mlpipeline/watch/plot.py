"""``mlpipeline plot METRIC``: one figure, a curve per version of METRIC over the steps it was
reported at, written as PNG or SVG. matplotlib is the optional extra ``mlpipeline[plot]``."""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from mlpipeline.records.text import one_line
from mlpipeline.watch.console import ConsoleView
from mlpipeline.watch.runs import RecordedRun

FORMATS = (".png", ".svg")
LEGEND_LIMIT = 20
"""Past this many curves the figure names none: a legend of thousands of versions hides the
plot and took matplotlib most of a minute. The curves are then drawn as one collection."""

Curve = Tuple["numpy.ndarray", "numpy.ndarray"]
"""A version's steps and its values at them, finite only."""


def curves(runs: Sequence[RecordedRun], metric: str) -> Dict[str, Curve]:
    """The curve of ``metric`` for each run that reported it, by script:version. A report
    without a step (or with no finite one) is placed at its count of reports so far."""
    import numpy  # matplotlib's own dependency: here whenever plot can draw

    found: Dict[str, Curve] = {}
    for run in runs:
        series = run.series(metric)
        # None (no number reported) is NaN here; NaN and infinities have no place on a curve.
        values = numpy.array(series.values, dtype=float)
        steps = numpy.array(series.steps, dtype=float)
        steps = numpy.where(numpy.isfinite(steps), steps, numpy.arange(1, len(steps) + 1))
        kept = numpy.isfinite(values)
        if kept.any():
            found[run.label] = (steps[kept], values[kept])
    return found


def default_output(metric: str) -> str:
    return (re.sub(r"[^\w.-]+", "_", metric).strip("._") or "plot") + ".png"


def plot_metric(
    runs: Sequence[RecordedRun], view: ConsoleView, metric: str, output: Optional[str] = None, log_scale: bool = False
) -> int:
    """Write the figure of ``metric`` for ``runs``; the exit code."""
    if output is not None and not output.strip():
        view.error("-o names no file; give a path ending in .png or .svg, or leave -o out for " + default_output(metric))
        return 2
    path = Path(output or default_output(metric))
    if path.suffix.lower() not in FORMATS:
        view.error(f"-o {path}: the figure is written as PNG or SVG, by the file's suffix (.png or .svg)")
        return 2
    try:
        importlib.import_module("matplotlib.figure")
    except ImportError:
        view.error("mlpipeline plot needs matplotlib, which is not installed: pip install 'mlpipeline[plot]'")
        return 2
    if not runs:
        view.error("no run to plot: results.jsonl has no finished run of what was asked (mlpipeline -r runs the queue; --any-state takes unfinished runs too)")
        return 1
    found = curves(runs, metric)
    if not found:
        reported = sorted({name for run in runs for report in run.history() for name in report["metrics"]})
        if metric in reported:
            view.error(f"every value of '{metric}' the runs reported is NaN, infinite or no number: no curve to draw")
            return 1
        known = ", ".join(one_line(name) for name in reported) if reported else "none (their scripts never called report())"
        view.error(f"no run reported '{metric}'; the metrics reported are: {known}")
        return 1
    for run in runs:
        if run.label not in found:
            if any(metric in report["metrics"] for report in run.history()):
                view.warning(f"{run.label} reported '{metric}' as no number (NaN, infinite, or text) at every report; left out")
            else:
                view.warning(f"{run.label} reported no '{metric}'; left out")
    if log_scale and any((values <= 0).any() for _, values in found.values()):
        view.warning(f"'{metric}' has values of 0 or less, which a log scale leaves out")
    try:
        write_figure(found, metric, path, log_scale)
    except OSError as exc:
        view.error(f"{path}: cannot be written ({exc.strerror or exc})")
        return 1
    if len(found) <= LEGEND_LIMIT:
        view.info(f"wrote {path}: {metric} of {', '.join(found)}")
    else:
        view.info(f"wrote {path}: {metric} of {len(found)} versions, unnamed in the figure (name up to {LEGEND_LIMIT} to see which is which)")
    return 0


def write_figure(found: Dict[str, Curve], metric: str, path: Path, log_scale: bool) -> None:
    import warnings

    import matplotlib
    from matplotlib.figure import Figure

    metric = _literal(metric)
    found = {_literal(label): curve for label, curve in found.items()}
    # Text stays text in an SVG: searchable, and readable by a test. A glyph the font lacks
    # is drawn as a box; matplotlib's warning of it, with our file's path, says nothing more.
    with matplotlib.rc_context({"svg.fonttype": "none"}), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        figure = Figure(figsize=(8, 5), layout="constrained")
        axes = figure.add_subplot()
        if len(found) <= LEGEND_LIMIT:
            for label, (steps, values) in found.items():
                axes.plot(steps, values, label=label, marker="." if len(steps) < 30 else None)
        else:
            import numpy
            from matplotlib.collections import LineCollection

            # A lone point (a one-report version) is no segment: a dot marks it.
            lines = [numpy.column_stack(curve) for curve in found.values() if len(curve[0]) > 1]
            dots = [(steps[0], values[0]) for steps, values in found.values() if len(steps) == 1]
            axes.add_collection(LineCollection(lines, linewidths=0.6, alpha=0.5, colors="tab:blue"))
            if dots:
                axes.scatter(*zip(*dots), s=4, alpha=0.5, color="tab:blue")
            axes.autoscale_view()
        axes.set_xlabel("step")
        axes.set_ylabel(metric)
        many = f" ({len(found)} versions)" if len(found) > LEGEND_LIMIT else ""
        axes.set_title(f"{metric} over steps{many}")
        if log_scale:
            axes.set_yscale("log")
        axes.grid(True, alpha=0.3)
        if len(found) <= LEGEND_LIMIT:
            axes.legend(title="script:version")
        figure.savefig(path, dpi=120)


def _literal(text: str) -> str:
    """``text`` as matplotlib draws it as written: control characters as escapes, and each '$'
    escaped (two of them would make the text between TeX math, which may not parse)."""
    return one_line(text).replace("$", r"\$")
