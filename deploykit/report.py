"""Human tables (rich) and JSON files for check, bench and list."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deploykit.files import write_text_atomic
from deploykit.spec import format_shape


def write_json(path: Path, data: Any, force: bool = False) -> None:
    write_text_atomic(Path(path), json.dumps(data, indent=2, allow_nan=False) + "\n", force=force)


def format_number(value: float | None, fmt: str = ".3g") -> str:
    """A metric for a table: "-" when absent, nan and inf spelled out."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, fmt)


def _runner_line(backends: dict[str, dict]) -> str:
    parts = []
    for name, info in backends.items():
        details = ", ".join(f"{k}={v}" for k, v in info.items())
        parts.append(f"{name} ({details})")
    return "; ".join(parts)


def print_check(report, console: Console) -> None:
    table = Table(title=f"parity vs PyTorch fp32: {report.spec} (seed {report.seed}, "
                        f"atol {report.tolerance.atol:g}, rtol {report.tolerance.rtol:g})")
    for column in ("backend", "shape", "out", "max abs", "mean abs", "max rel", "cosine", "PSNR dB", "result"):
        table.add_column(column, justify="left" if column in ("backend", "shape", "result") else "right")
    for r in report.results:
        if r.skipped is not None:
            table.add_row(r.backend, format_shape(r.shape), "-", *["-"] * 5, f"[yellow]skipped[/yellow] {r.skipped}")
            continue
        m = r.metrics
        verdict = "[green]pass[/green]" if m.passed else f"[red]FAIL[/red] {m.reason}"
        table.add_row(r.backend, format_shape(r.shape), str(r.output), format_number(m.max_abs), format_number(m.mean_abs),
                      format_number(m.max_rel), format_number(m.cosine, ".6f"), format_number(m.psnr, ".1f"), verdict)
    console.print(table)
    console.print(f"backends: {_runner_line(report.backends)}", highlight=False)
    ran = [r for r in report.results if r.skipped is None]
    skipped = len(report.results) - len(ran)
    note = f" ({skipped} skipped, see above)" if skipped else ""
    failed = sum(not r.metrics.passed for r in ran)
    if failed:
        console.print(f"[red]parity FAILED[/red]: {failed} of {len(ran)} comparisons{note}")
    else:
        console.print(f"[green]parity passed[/green]: {len(ran)} comparisons{note}")


def print_bench(report, console: Console) -> None:
    table = Table(title=f"latency: {report.spec} (warmup {report.warmup}, iters {report.iters}, "
                        f"threads {report.threads or 'default'})")
    columns = ("backend", "shape", "min ms", "p50 ms", "p90 ms", "p99 ms", "mean ms", "samples/s", "vs torch",
               "h2d ms", "d2h ms")
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "shape") else "right")
    for r in report.results:
        if r.skipped is not None:
            table.add_row(r.backend, format_shape(r.shape), f"[yellow]skipped[/yellow]: {r.skipped}",
                          *[""] * (len(columns) - 3))
            continue
        s = r.stats
        ratio = f"{r.ratio_to_torch:.2f}x" if r.ratio_to_torch is not None else "-"
        p99 = format_number(s.p99_ms, ".3f") + (" [yellow]![/yellow]" if s.unstable else "")
        table.add_row(r.backend, format_shape(r.shape), format_number(s.min_ms, ".3f"), format_number(s.p50_ms, ".3f"),
                      format_number(s.p90_ms, ".3f"), p99, format_number(s.mean_ms, ".3f"), format_number(s.throughput, ".1f"), ratio,
                      format_number(s.h2d_ms, ".3f"), format_number(s.d2h_ms, ".3f"))
    console.print(table)
    console.print(f"backends: {_runner_line(report.backends)}", highlight=False)
    console.print("vs torch = p50 / torch p50 at the same shape (below 1 is faster). Times are execution only; "
                  "h2d/d2h are the input and output copies, measured apart.", highlight=False)
    if any(r.stats is not None and r.stats.unstable for r in report.results):
        console.print("[yellow]![/yellow] p99 above 1.5x p50: the machine was busy or the timing is noisy; "
                      "raise --iters or close other work", highlight=False)


def print_entries(entries: dict, console: Console, detail: bool) -> None:
    if not detail:
        table = Table(title="deploykit zoo")
        for column in ("name", "family", "summary", "parameters"):
            table.add_column(column)
        for entry in entries.values():
            params = ", ".join(f"{p.name}={p.default}" for p in entry.params)
            table.add_row(entry.name, entry.family, entry.summary, params)
        console.print(table)
        console.print("details: deploykit list NAME", highlight=False)
        return
    for entry in entries.values():
        table = Table(title=f"{entry.name} ({entry.family}): {entry.summary}")
        for column in ("parameter", "default", "valid values", "meaning"):
            table.add_column(column, overflow="fold")
        for p in entry.params:
            table.add_row(p.name, str(p.default).lower() if p.default is None else str(p.default),
                          p.valid_range(), p.help)
        console.print(table)
        defaults = entry.resolve_params()
        shapes = ", ".join(format_shape(s) for s in entry.default_shapes(defaults))
        console.print(f"default shapes: {shapes}", highlight=False)


def print_findings(findings, path, target: str, console: Console) -> None:
    if not findings:
        console.print(f"[green]lint ({target}) clean[/green]: {path}", highlight=False)
        return
    table = Table(title=f"lint for {target}: {path}")
    for column in ("severity", "node", "op", "why", "fix"):
        table.add_column(column, overflow="fold")
    for f in findings:
        severity = "[red]error[/red]" if f.severity == "error" else "[yellow]warning[/yellow]"
        table.add_row(severity, f.node, f.op_type, f.why, f.fix)
    console.print(table)
    errors = sum(f.severity == "error" for f in findings)
    console.print(f"{errors} error(s), {len(findings) - errors} warning(s)", highlight=False)


def print_matrix(report, console: Console) -> None:
    """check --zoo: one row per entry, per backend its parity, worst error and time against torch."""
    table = Table(title="support matrix: every zoo entry, default parameters and shapes, vs PyTorch fp32")
    others = [b for b in report.backends if b != "torch"]
    for column in ("entry", "parameters", "export (dynamic)", *[f"{b}: parity / max abs / vs torch" for b in others]):
        table.add_column(column)
    for row in report.rows:
        exported = f"opset {row.opset}" if row.exported else f"[red]no[/red]: {row.note}"
        cells = []
        for backend in others:
            cell = row.cells.get(backend)
            if cell is None or cell.status == "skipped":
                cells.append("[yellow]skipped[/yellow]" if cell else "-")
                continue
            verdict = "[green]pass[/green]" if cell.status == "pass" else "[red]FAIL[/red]"
            ratio = "-" if cell.latency_ratio is None else f"{cell.latency_ratio:.2f}x"
            cells.append(f"{verdict} / {format_number(cell.max_abs, '.1e')} / {ratio}")
        table.add_row(row.entry, row.params, exported, *cells)
    console.print(table)
    if report.unavailable:
        console.print(f"not installed here: {', '.join(report.unavailable)} (the JSON report says why)",
                      highlight=False)
    from deploykit.matrix import LATENCY_ITERS

    console.print(f"vs torch = summed p50 over the entry's default shapes / PyTorch eager's, "
                  f"{LATENCY_ITERS} timed runs each: a ratio, not a benchmark ('deploykit bench' is one)",
                  highlight=False)
    failed = [row.entry for row in report.rows if not row.passed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(report.rows)} entries failed[/red]: {', '.join(failed)}")
    else:
        console.print(f"[green]all {len(report.rows)} entries exported and passed[/green]")


def print_localizations(report, console: Console) -> None:
    """--localize: where each failing backend's graph first diverges from PyTorch."""
    for backend, localization in report.localizations.items():
        console.print(f"[bold]localized ({backend})[/bold]", highlight=False)
        for line in localization.lines():
            console.print(f"  {line}", highlight=False, markup=False)
