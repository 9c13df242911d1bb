"""The HTML parity report: the check's table, and pictures of where each backend's error is.

One self-contained file (figures embedded as PNG data: URIs, inline CSS, no script, no
external address), so it opens offline in any browser and can be attached to an issue as is;
the same figures are PNG files in a folder beside it, for slides and bug reports.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deploykit.compare import ErrorPicture
from deploykit.errors import UserError
from deploykit.files import ensure_folder_writable, ensure_writable, write_folder_atomic, write_text_atomic
from deploykit.report import format_number
from deploykit.model_io import Shape, format_shape
from deploykit.text import printable

if TYPE_CHECKING:
    from deploykit.latency import LatencyStats
    from deploykit.check import CheckReport

HEATMAP_CMAP = "viridis"  # perceptually uniform, and readable by the colour-blind
BASELINE = "torch"  # the backend latency ratios are taken against
_DPI = 100
# Wide enough that a 256-cell heatmap (compare.HEATMAP_MAX_SIDE) keeps a screen pixel per
# cell, narrow enough that a heatmap and its histogram sit side by side on a laptop screen.
_FIGURE_INCHES = (5.6, 4.4)


@dataclass
class _Figure:
    name: str  # file name in the figures folder
    png: bytes
    description: str  # alt text


def _unique_names(figures) -> dict[str, bytes]:
    """File name -> PNG, a name made file-safe twice ('edge map', 'edge_map') numbered, never lost."""
    files: dict[str, bytes] = {}
    for figure in figures:
        name, n = figure.name, 1
        while name in files:
            n += 1
            name = figure.name.replace(".png", f"_{n}.png")
        files[name] = figure.png
    return files


def figures_folder(path: Path) -> Path:
    """Where the PNG copies go: REPORT_files/ beside REPORT.html, as browsers save pages."""
    path = Path(path)
    return path.with_name(f"{path.stem}_files")


def check_outputs(path: Path, force: bool = False) -> None:
    """Before any work: the report file and its figures folder may be written (see write_html_report)."""
    ensure_writable(Path(path), force)
    ensure_folder_writable(figures_folder(path), force)


def write_html_report(path: Path, report: CheckReport, pictures: dict[tuple[str, tuple, int], ErrorPicture],
                      latency: dict[tuple[str, tuple], LatencyStats], force: bool = False) -> list[Path]:
    """Write the report to ``path`` and its figures to ``figures_folder(path)``; return the paths
    written, the HTML first. Every figure is rendered before anything is written, and an
    existing report or figures folder is refused unless ``force``.

    ``pictures`` maps (backend, shape, output index) to that output's error picture; ``latency``
    maps (backend, shape) to its timings, and may be empty.
    """
    path = Path(path)
    folder = figures_folder(path)
    check_outputs(path, force)
    figure_class = require_matplotlib()
    environment = _environment()
    pictures = {(backend, tuple(shape), output): p for (backend, shape, output), p in pictures.items()}
    latency = {(backend, tuple(shape)): stats for (backend, shape), stats in latency.items()}
    picture_keys = list(dict.fromkeys(
        [(r.backend, tuple(r.shape), r.output) for r in report.results
         if (r.backend, tuple(r.shape), r.output) in pictures] + list(pictures)))
    shapes = list(dict.fromkeys([tuple(r.shape) for r in report.results]
                                + [shape for _, shape, _ in picture_keys] + [shape for _, shape in latency]))
    figures, sections = [], []
    for shape in shapes:
        timed = {backend: stats for (backend, at), stats in latency.items() if at == shape}
        drawn = {(backend, output): pictures[(backend, at, output)]
                 for backend, at, output in picture_keys if at == shape}
        section, section_figures = _shape_section(figure_class, shape, timed, drawn, report.tolerance.atol,
                                                  any_latency=bool(latency))
        if section_figures:  # a shape whose every backend was skipped or failed has nothing to draw
            sections.append(section)
            figures += section_figures
    page = _page(environment, report, sections, folder.name, has_latency=bool(latency))
    written = write_folder_atomic(folder, _unique_names(figures), force=force)
    write_text_atomic(path, page, force=force)
    return [path, *written]


def _shape_section(figure_class, shape: Shape, latency: dict[str, LatencyStats],
                   pictures: dict[tuple[str, int], ErrorPicture], atol: float, any_latency: bool,
                   ) -> tuple[dict, list[_Figure]]:
    """One shape's latency chart, then each (backend, output)'s heatmap beside its histogram:
    the section's values for the page template, and its figures."""
    figures, groups, chart = [], [], None
    if latency:
        chart = _Figure(f"latency_{format_shape(shape)}.png", _latency_png(figure_class, shape, latency),
                        f"latency at {format_shape(shape)}: p50 and p90 per backend")
        figures.append(chart)
        groups.append(([_figure_values(chart)], False))
    for (backend, output), picture in pictures.items():
        stem = f"{_file_safe(backend)}_{format_shape(shape)}_{_file_safe(str(output))}"
        what = f"{backend} {format_shape(shape)} output {output}"
        pair = [_Figure(f"{stem}_heatmap.png", _heatmap_png(figure_class, picture, backend, shape, output),
                        f"{what}: |{backend} - PyTorch| of batch {picture.batch}, channel {picture.channel}"),
                _Figure(f"{stem}_histogram.png", _histogram_png(figure_class, picture, backend, shape, output, atol),
                        f"{what}: histogram of |{backend} - PyTorch|")]
        figures += pair
        groups.append(([_figure_values(f) for f in pair], True))
    section = {"shape": format_shape(shape), "no_latency_note": chart is None and any_latency, "groups": groups}
    return section, figures


def require_matplotlib():
    """matplotlib's Figure, used without pyplot: it renders with Agg, sets no global backend
    (a report made inside a notebook leaves the notebook's plotting alone) and keeps no
    registry of open figures, so each one is freed once saved."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("the HTML report needs matplotlib", "pip install 'deploykit-vision[html]' (or pip install matplotlib)") from None
    return Figure


def _environment():
    """The Jinja2 environment the page is rendered with: every value is escaped by autoescape
    (after ``printable``, which shows control characters and undecodable bytes as \\xNN), and
    a name the template uses but is not given is an error, never an empty string."""
    try:
        import jinja2
    except ImportError:
        raise UserError("the HTML report needs jinja2", "pip install 'deploykit-vision[html]' (or pip install jinja2)") from None
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, finalize=printable,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _png(figure) -> bytes:
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _heatmap_png(figure_class, picture: ErrorPicture, backend: str, shape: Shape, output: str) -> bytes:
    from matplotlib.ticker import MaxNLocator

    rows, cols = picture.heatmap.shape
    block = picture.block
    line = rows == 1  # a 3-D output: one row of L values
    figure = figure_class(figsize=(_FIGURE_INCHES[0], 2.8 if line else _FIGURE_INCHES[1]), dpi=_DPI,
                          layout="constrained")
    axes = figure.add_subplot()
    elongated = line or max(rows, cols) > 4 * min(rows, cols)
    image = axes.imshow(picture.heatmap, cmap=HEATMAP_CMAP, interpolation="nearest", vmin=0.0,
                        vmax=picture.max_abs or 1.0, aspect="auto" if elongated else "equal",
                        extent=(-0.5, cols * block - 0.5, rows * block - 0.5, -0.5))  # axes in output pixels
    figure.colorbar(image, ax=axes, label=f"|{backend} - PyTorch|")
    where = f"batch {picture.batch}, channel {picture.channel}"
    if picture.depth is not None:
        where += f", depth {picture.depth}"
    row, col = picture.position
    worst = (f"max |diff| {picture.max_abs:.3g} at x {col}" + ("" if line else f", y {row}")
             if picture.max_abs else "identical to PyTorch")
    title = f"{backend} vs PyTorch, {format_shape(shape)}, out {output}\n{where}: {worst}"
    if block > 1:
        title += f"\neach cell: max of {block}x{block} output pixels"
    axes.set_title(title, fontsize=9)
    axes.set_xlabel("x")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # pixel coordinates: no 2.5
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if line:
        axes.set_yticks([])
    else:
        axes.set_ylabel("y")
    return _png(figure)


def _histogram_png(figure_class, picture: ErrorPicture, backend: str, shape: Shape, output: str,
                   atol: float) -> bytes:
    figure = figure_class(figsize=_FIGURE_INCHES, dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    total = picture.zeros + int(picture.hist_counts.sum())
    axes.set_title(f"{backend} vs PyTorch, {format_shape(shape)}, out {output}: |diff| of all {total:,} values\n"
                   f"{picture.zeros:,} exactly 0 (not on the log axis)", fontsize=9)
    if not picture.hist_counts.size:
        axes.text(0.5, 0.5, "every difference is exactly 0", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return _png(figure)
    edges = picture.hist_edges
    # log y too: the few large differences (a seam, a border) are what matter, and on a
    # linear axis they vanish beside the bulk
    axes.bar(edges[:-1], picture.hist_counts, width=np.diff(edges), align="edge", log=True, color="tab:blue")
    axes.set_xscale("log")
    axes.set_ylim(bottom=0.5)  # a bin holding one value still shows
    if atol > 0:
        axes.axvline(atol, color="tab:red", linestyle="--", label=f"atol {atol:g}")
        axes.legend(loc="upper right", fontsize=8)
    axes.set_xlabel(f"|{backend} - PyTorch|")
    axes.set_ylabel("values")
    return _png(figure)


def _latency_png(figure_class, shape: Shape, stats: dict[str, LatencyStats]) -> bytes:
    names = sorted(stats, key=lambda name: name != BASELINE)  # the baseline first, the rest in order
    p50 = np.array([stats[name].p50_ms for name in names])
    p90 = np.array([stats[name].p90_ms for name in names])
    baseline = stats[BASELINE].p50_ms if BASELINE in stats and stats[BASELINE].p50_ms > 0 else None
    figure = figure_class(figsize=(_FIGURE_INCHES[0], 3.8), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    colours = ["0.55" if name == BASELINE else f"C{i}" for i, name in enumerate(names)]
    positions = np.arange(len(names))
    axes.bar(positions, p50, color=colours, yerr=[np.zeros_like(p50), np.maximum(p90 - p50, 0.0)], capsize=6)
    axes.set_xticks(positions, [f"{name}\n(baseline)" if name == BASELINE else name for name in names])
    for x, median, high in zip(positions, p50, np.maximum(p90, p50)):
        label = f"{median:.3g} ms" + (f"\n{median / baseline:.2f}x" if baseline else "")
        axes.text(x, high, label, ha="center", va="bottom", fontsize=8)
    if baseline:
        axes.axhline(baseline, color="0.55", linestyle="--", linewidth=1)
    axes.set_ylim(0, float(max(p90.max(), p50.max())) * 1.35 or 1.0)
    axes.set_ylabel("ms: bar p50, whisker p90")
    versus = f"ratio = p50 / {BASELINE} p50" if baseline else f"no {BASELINE} baseline at this shape"
    axes.set_title(f"latency at {format_shape(shape)} ({versus})", fontsize=9)
    return _png(figure)


def _figure_values(figure: _Figure) -> dict[str, str]:
    return {"data": base64.b64encode(figure.png).decode("ascii"), "alt": figure.description, "name": figure.name}


# Every value is escaped by autoescape: nothing here is marked safe.
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>deploykit parity: {{ spec }}</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; background: #fff; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 16px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
th[scope="row"], .text { text-align: left; }
.pass { color: #1a7f37; font-weight: bold; }
.fail { color: #c62828; font-weight: bold; }
.skip { color: #8a6100; font-weight: bold; }
.note { color: #555; font-style: italic; }
figure { display: inline-block; margin: 6px; vertical-align: top; }
figcaption { font-size: 12px; color: #555; }
img { max-width: 100%; }
</style>
</head>
<body>
<h1>deploykit parity vs PyTorch fp32: {{ spec }}</h1>
{% set note = " (%d skipped)" % skipped if skipped else "" %}
{% if failed or not ran %}
<p><span class="fail">parity FAILED</span>: {{ failed }} of {{ ran }} comparisons{{ note }}</p>
{% else %}
<p><span class="pass">parity passed</span>: {{ ran }} comparisons{{ note }}</p>
{% endif %}
<table>
{% for key, value in facts %}
<tr><th scope="row">{{ key }}</th><td class="text">{{ value }}</td></tr>
{% endfor %}
</table>
<h2>Results</h2>
<table>
<tr>{% for column, is_text in columns %}<th{% if is_text %} class="text"{% endif %}>{{ column }}</th>{% endfor %}</tr>
{% for row in rows %}
<tr><td class="text">{{ row.backend }}</td><td class="text">{{ row.shape }}</td>
{%- if row.skipped is not none -%}
<td>-</td>{% for _ in range(5) %}<td>-</td>{% endfor %}<td class="text"><span class="skip">skipped</span> {{ row.skipped }}</td></tr>
{% else -%}
{% for cell in row.cells %}<td>{{ cell }}</td>{% endfor %}<td class="text">
{%- if row.passed %}<span class="pass">pass</span>{% else %}<span class="fail">FAIL</span>{% endif %} {{ row.reason }}</td></tr>
{% endif %}
{% endfor %}
</table>
<p class="note">The figures are also PNG files in {{ folder_name }}/ beside this file.</p>
{% if not has_latency %}
<p class="note">No latency data: this report has no timings, so it has no latency charts.</p>
{% endif %}
{% for section in sections %}
<section>
<h2>Shape {{ section.shape }}</h2>
{% if section.no_latency_note %}
<p class="note">No latency was measured at this shape.</p>
{% endif %}
{# the latency chart alone, then each heatmap beside its histogram #}
{% for group, in_pair in section.groups %}
{% if in_pair %}<div class="pair">{% endif %}
{% for f in group %}<figure><img src="data:image/png;base64,{{ f.data }}" alt="{{ f.alt }}"><figcaption>{{ f.name }}</figcaption></figure>{% endfor %}
{% if in_pair %}</div>{% endif %}

{% endfor %}
</section>
{% endfor %}
</body>
</html>
"""


def _page(environment, report: CheckReport, sections: list[dict], folder_name: str, has_latency: bool) -> str:
    tolerance = report.tolerance
    facts = [("spec", report.spec), ("seed", str(report.seed)),
             ("tolerance", f"|out - ref| <= atol + rtol * |ref|, atol {tolerance.atol:g}, rtol {tolerance.rtol:g}"),
             ("ONNX file", report.onnx or "not given (exported for the check if a backend needed one)")]
    facts += [(f"backend {name}", ", ".join(f"{key}={value}" for key, value in info.items()))
              for name, info in report.backends.items()]
    page = environment.from_string(_PAGE).render(
        spec=report.spec, facts=facts, ran=len(report.ran), skipped=len(report.results) - len(report.ran),
        failed=len(report.failures), columns=_RESULT_COLUMNS, rows=_result_rows(report),
        folder_name=folder_name, has_latency=has_latency, sections=sections)
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")  # any locale can write it


# The terminal table's columns (report.print_check), and whether each is text (left-aligned).
_RESULT_COLUMNS = [(c, c in ("backend", "shape", "result"))
                   for c in ("backend", "shape", "out", "max abs", "mean abs", "max rel", "cosine", "PSNR dB", "result")]


def _result_rows(report: CheckReport) -> list[dict]:
    """The terminal table's rows (report.print_check), as values for the page template."""
    rows = []
    for r in report.results:
        row = {"backend": r.backend, "shape": format_shape(r.shape), "skipped": r.skipped,
               "cells": [], "passed": False, "reason": ""}
        if r.skipped is None:
            m = r.metrics
            row.update(cells=[r.output, format_number(m.max_abs), format_number(m.mean_abs),
                              format_number(m.max_rel), format_number(m.cosine, ".6f"), format_number(m.psnr, ".1f")],
                       passed=m.passed, reason=m.reason)
        rows.append(row)
    return rows


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
