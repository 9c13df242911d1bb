"""Human tables (rich) and JSON files for check, bench and list."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deploykit.files import write_text_atomic
from deploykit.model_io import format_shape
from deploykit.text import markup, plain


# Every JSON report deploykit writes (check, bench, lint, check --zoo) says its schema first.
# 2: shapes are always {input name: dims}; unversioned reports wrote a bare list for one input.
JSON_SCHEMA_VERSION = 2


def write_json(path: Path, data: Any, force: bool = False) -> None:
    data = {"schema_version": JSON_SCHEMA_VERSION, **data} if isinstance(data, dict) else data
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
    """Plain text (print it with markup=False)."""
    parts = []
    for name, info in backends.items():
        details = ", ".join(f"{k}={v}" for k, v in info.items())
        parts.append(f"{name} ({details})")
    return "; ".join(parts)


def _print_plain(console: Console, text: str) -> None:
    """Text that holds names, paths or messages from outside: never markup, emoji or highlighting."""
    console.print(plain(text), highlight=False)


def _verdict(passed: bool, reason: str = ""):
    from rich.text import Text

    return Text.assemble(("pass", "green") if passed else ("FAIL", "red"), *([" ", plain(reason)] if reason else []))


def _skipped(reason: str, separator: str = " "):
    from rich.text import Text

    return Text.assemble(("skipped", "yellow"), separator, plain(reason))


def print_check(report, console: Console) -> None:
    table = Table(title=plain(f"parity vs {report.reference}: {report.spec} (seed {report.seed}, "
                              f"atol {report.tolerance.atol:g}, rtol {report.tolerance.rtol:g})"))
    for column in ("backend", "shape", "out", "max abs", "mean abs", "max rel", "cosine", "PSNR dB", "result"):
        table.add_column(column, justify="left" if column in ("backend", "shape", "result") else "right")
    for r in report.results:
        if r.skipped is not None:
            table.add_row(plain(r.backend), format_shape(r.shape), "-", *["-"] * 5, _skipped(r.skipped))
            continue
        m = r.metrics
        verdict = _verdict(m.passed, m.reason)
        table.add_row(plain(r.backend), format_shape(r.shape), plain(r.output), format_number(m.max_abs), format_number(m.mean_abs),
                      format_number(m.max_rel), format_number(m.cosine, ".6f"), format_number(m.psnr, ".1f"), verdict)
    console.print(table)
    _print_plain(console, f"backends: {_runner_line(report.backends)}")
    if report.proof_shapes:
        _print_plain(console, f"added {', '.join(format_shape(s) for s in report.proof_shapes)}: the shapes asked for "
                     "leave a dynamic dim at one size, so check's own export is also compared where export verifies "
                     "its files (a graph specialised to the traced size passes there only)")
    if report.untested:
        _print_plain(console, f"untested: {', '.join(report.untested)} in every shape checked, and the graph declares "
                     "them dynamic: a graph specialised to those sizes passes there only; add a --shape that changes "
                     "them")
    ran, failed = len(report.ran), len(report.failures)
    skipped = len(report.results) - ran
    note = f" ({skipped} skipped, see above)" if skipped else ""
    if report.passed:
        console.print(f"[green]parity passed[/green]: {ran} comparisons{note}")
    elif failed:
        console.print(f"[red]parity FAILED[/red]: {failed} of {ran} comparisons{note}")
    else:  # run_check refuses such a run before it starts; the verdict stays the report's own
        console.print(f"[red]parity FAILED[/red]: no comparison ran{note}")


def print_bench(report, console: Console, notes: bool = True) -> None:
    """The latency table; ``notes`` (off with -q) adds what its columns mean and why a p99 is flagged."""
    table = Table(title=plain(f"latency: {report.spec} (warmup {report.warmup}, iters {report.iters}, "
                              f"threads {report.threads or 'default'})"))
    columns = ("backend", "shape", "min ms", "p50 ms", "p90 ms", "p99 ms", "mean ms", "samples/s", "vs torch",
               "h2d ms", "d2h ms")
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "shape") else "right")
    for r in report.results:
        if r.skipped is not None:
            table.add_row(plain(r.backend), format_shape(r.shape), _skipped(r.skipped, ": "),
                          *[""] * (len(columns) - 3))
            continue
        s = r.stats
        ratio = f"{r.ratio_to_torch:.2f}x" if r.ratio_to_torch is not None else "-"
        p99 = format_number(s.p99_ms, ".3f") + (" [yellow]![/yellow]" if s.unstable else "")
        table.add_row(plain(r.backend), format_shape(r.shape), format_number(s.min_ms, ".3f"), format_number(s.p50_ms, ".3f"),
                      format_number(s.p90_ms, ".3f"), p99, format_number(s.mean_ms, ".3f"), format_number(s.throughput, ".1f"), ratio,
                      format_number(s.h2d_ms, ".3f"), format_number(s.d2h_ms, ".3f"))
    console.print(table)
    _print_plain(console, f"backends: {_runner_line(report.backends)}")
    ratios = any(r.ratio_to_torch is not None for r in report.results)
    if notes:
        console.print(("vs torch = p50 / torch p50 at the same shape (below 1 is faster). " if ratios else "")
                      + "Times are execution only; h2d/d2h are the input and output copies, measured apart: GPU "
                      "backends copy between pinned, preallocated host buffers and the device as trtexec does "
                      "(ort-cuda: ONNX Runtime's own copies), CPU backends prepare and fetch their arrays.",
                      highlight=False)
    short = [r for r in report.results if r.stats is not None and r.stats.stopped_by_time]
    if short:
        runs = ", ".join(f"{r.backend} at {format_shape(r.shape)}: {r.stats.iters} of {report.iters} runs"
                         for r in short)
        console.print(f"[yellow]![/yellow] the time budget (--max-seconds {getattr(report, 'max_seconds', None)}) "
                      f"ended timing early: {markup(runs)}", highlight=False)
    if notes and any(r.stats is not None and r.stats.unstable for r in report.results):
        console.print("[yellow]![/yellow] p99 above 1.5x p50: the machine was busy or the timing is noisy; "
                      "raise --iters or close other work", highlight=False)


def print_entries(entries: dict, console: Console, detail: bool) -> None:
    if not detail:
        table = Table(title="deploykit zoo")
        for column in ("name", "family", "summary", "parameters"):
            table.add_column(column)
        for entry in entries.values():
            params = ", ".join(f"{p.name}={p.default}" for p in entry.params)
            table.add_row(plain(entry.name), plain(entry.family), plain(entry.summary), plain(params))
        console.print(table)
        console.print("details: deploykit list NAME", highlight=False)
        return
    for entry in entries.values():
        table = Table(title=plain(f"{entry.name} ({entry.family}): {entry.summary}"))
        for column in ("parameter", "default", "valid values", "meaning"):
            table.add_column(column, overflow="fold")
        for p in entry.params:
            table.add_row(plain(p.name), plain(str(p.default).lower() if p.default is None else str(p.default)),
                          plain(p.valid_range()), plain(p.help))
        console.print(table)
        defaults = entry.resolve_params()
        shapes = ", ".join(format_shape(s) for s in entry.default_shapes(defaults))
        console.print(f"default shapes: {shapes}", highlight=False)


def print_findings(findings, path, target: str, console: Console) -> None:
    if not findings:
        console.print(f"[green]lint ({markup(target)}) clean[/green]: {markup(path)}", highlight=False)
        return
    table = Table(title=plain(f"lint for {target}: {path}"))
    for column in ("severity", "node", "op", "why", "fix"):
        table.add_column(column, overflow="fold")
    for f in findings:
        severity = plain("error", "red") if f.severity == "error" else plain("warning", "yellow")
        table.add_row(severity, plain(f.node), plain(f.op_type), plain(f.why), plain(f.fix))
    console.print(table)
    errors = sum(f.severity == "error" for f in findings)
    console.print(f"{errors} error(s), {len(findings) - errors} warning(s)", highlight=False)


def print_matrix(report, console: Console) -> None:
    """check --zoo: one row per entry, per backend its parity, worst error and time against torch.

    ``report`` is a deploykit.matrix.MatrixReport; what the footnote says of the timing (runs per
    shape, the smallest time a ratio is given for) comes from the report itself."""
    table = Table(title="support matrix: every zoo entry, default parameters and shapes, vs PyTorch fp32")
    others = [b for b in report.backends if b != "torch"]
    for column in ("entry", "parameters", "export (dynamic)",
                   *[f"{b}: parity / max abs / p50 ms {b} / torch (ratio)" for b in others]):
        table.add_column(plain(column))
    for row in report.rows:
        exported = plain(f"opset {row.opset}") if row.exported else _verdict(False, f"not exported: {row.note}")
        cells = []
        for backend in others:
            cell = row.cells.get(backend)
            if cell is None or cell.status == "skipped":
                cells.append(plain("skipped", "yellow") if cell else "-")
                continue
            verdict = _verdict(cell.status == "pass")
            verdict.append(plain(f" / {format_number(cell.max_abs, '.1e')} / {cell.latency_text()}"))
            cells.append(verdict)
        table.add_row(plain(row.entry), plain(row.params), exported, *cells)
    console.print(table)
    if report.unavailable:
        console.print(f"not installed here: {markup(', '.join(report.unavailable))} (the JSON report says why)",
                      highlight=False)
    console.print(f"p50 ms = summed p50 over the entry's default shapes, the backend's / PyTorch eager's, "
                  f"{report.latency_iters} timed runs each; the ratio is a hint, not a benchmark ('deploykit bench' "
                  f"is one), and is left out below {report.min_ratio_ms:g} ms, where it is timer noise",
                  highlight=False)
    failed = [row.entry for row in report.rows if not row.passed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(report.rows)} entries failed[/red]: {markup(', '.join(failed))}")
    else:
        console.print(f"[green]all {len(report.rows)} entries exported and passed[/green]")


def print_localizations(report, console: Console) -> None:
    """--localize: where each failing backend's graph first diverges from PyTorch."""
    for backend, localization in report.localizations.items():
        console.print(f"[bold]localized ({markup(backend)})[/bold]", highlight=False)
        for line in localization.lines():
            _print_plain(console, f"  {line}")
