"""The support matrix: every zoo entry exported once (dynamic shapes), checked against every
backend at its default shapes, and timed against PyTorch eager.

``deploykit check --zoo`` runs it at each entry's defaults; ``python -m deploykit.matrix``
prints the same run as the README's Markdown table (``--all-examples``: every worked example).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.compare import PRESETS
from deploykit.errors import BackendUnavailable, UserError
from deploykit.progress import ProgressCallback

# Run by default wherever it is installed: runtimes, not the (slow, check-only) onnx-ref evaluator.
_NOT_BY_DEFAULT = {"onnx-ref"}
LATENCY_ITERS = 20  # a ratio to eager, not a benchmark: 'deploykit bench' measures properly
# Below this (summed p50 over an entry's default shapes, either side) a ratio is timer and
# call-overhead noise (it moved 30x between runs): the times are shown, the ratio is not.
MIN_RATIO_MS = 1.0


@dataclass
class BackendCell:
    status: str  # "pass", "FAIL" or "skipped"
    max_abs: float | None = None
    latency_ratio: float | None = None  # sum of p50 over the default shapes / torch's (None: too fast to compare)
    reason: str = ""
    p50_ms: float | None = None  # summed p50 over the default shapes: what the ratio is computed from
    torch_p50_ms: float | None = None

    def as_json(self) -> dict:
        return {"status": self.status, "max_abs": self.max_abs, "latency_ratio": self.latency_ratio,
                "p50_ms": self.p50_ms, "torch_p50_ms": self.torch_p50_ms, "reason": self.reason}

    def latency_text(self) -> str:
        """'0.41 / 0.32 ms (1.28x)': the backend's and torch's summed p50, then their ratio, or
        '(too fast to compare)' when either is below MIN_RATIO_MS."""
        if self.p50_ms is None or self.torch_p50_ms is None:
            return "-" if self.latency_ratio is None else f"{self.latency_ratio:.3g}x"
        times = f"{self.p50_ms:.3g} / {self.torch_p50_ms:.3g} ms"
        if self.latency_ratio is None:
            return f"{times} (too fast to compare)"
        return f"{times} ({self.latency_ratio:.3g}x)"


@dataclass
class MatrixRow:
    entry: str
    params: str
    exported: bool
    opset: int | None = None
    note: str = ""
    cells: dict[str, BackendCell] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.exported and all(c.status != "FAIL" for c in self.cells.values())

    def as_json(self) -> dict:
        return {"entry": self.entry, "params": self.params, "exported": self.exported, "opset": self.opset,
                "note": self.note, "passed": self.passed,
                "backends": {name: cell.as_json() for name, cell in self.cells.items()}}


@dataclass
class MatrixReport:
    backends: list[str]
    unavailable: dict[str, str]  # backend -> why it is not in the matrix
    rows: list[MatrixRow] = field(default_factory=list)
    # How the latency columns were measured, for whoever prints the report (its footnote):
    latency_iters: int = LATENCY_ITERS  # timed runs per backend and shape
    min_ratio_ms: float = MIN_RATIO_MS  # below this summed p50 (either side) no ratio is given

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def as_json(self) -> dict:
        return {"passed": self.passed, "backends": self.backends, "unavailable": self.unavailable,
                "rows": [row.as_json() for row in self.rows]}


def installed_backends() -> tuple[list[str], dict[str, str]]:
    """(backends that can run here, {backend: why not} for the rest); torch first."""
    from deploykit.backends import names, runner_class

    available, unavailable = [], {}
    for name in names():
        if name in _NOT_BY_DEFAULT:
            continue
        try:
            runner_class(name).check_available()
            available.append(name)
        except BackendUnavailable as exc:
            unavailable[name] = str(exc)
    return available, unavailable


def zoo_matrix(backends: list[str] | None = None, threads: int | None = 2, all_examples: bool = False,
               progress: ProgressCallback | None = None) -> MatrixReport:
    """Export each entry (or each worked example) and check it with ``backends`` (default: all installed)."""
    from deploykit import zoo
    from deploykit.check import run_check
    from deploykit.export import export_onnx
    from deploykit.spec import load_model

    unavailable = {}
    if backends is None:
        backends, unavailable = installed_backends()
    backends = ["torch"] + [b for b in backends if b != "torch"]  # the latency baseline
    cases = [(name, example) for name, entry in zoo.entries().items()
             for example in (entry.examples if all_examples else ({},))]
    report = MatrixReport(backends=backends, unavailable=unavailable)
    from deploykit.files import temporary_directory

    with temporary_directory(prefix="deploykit-matrix-") as work:
        for index, (name, example) in enumerate(cases):
            shown = ", ".join(f"{k}={v}" for k, v in example.items()) or "defaults"
            if progress:
                progress(index, len(cases), f"{name} ({shown})")
            params = {k: str(v) for k, v in zoo.get(name).resolve_params(typed=example).items()}
            model = load_model(name, params)
            try:
                result = export_onnx(model, Path(work) / f"{name}-{index}.onnx", verify=False)  # checked next
            except UserError as exc:
                report.rows.append(MatrixRow(name, shown, False, note=exc.problem))
                continue
            check = run_check(model, backends, None, tolerance=PRESETS["fp32"], onnx_path=result.path,
                              threads=threads, latency_iters=report.latency_iters)
            report.rows.append(MatrixRow(name, shown, True, result.opset,
                                         cells=backend_cells(check, report.min_ratio_ms)))
        if progress:
            progress(len(cases), len(cases), "done")
    return report


def backend_cells(check, min_ratio_ms: float = MIN_RATIO_MS) -> dict[str, BackendCell]:
    """One cell per backend of a CheckReport (deploykit.check), in the order the backends ran.

    The verdict is the CheckReport's own, taken over that backend's results: "skipped" when it
    made no comparison, else "pass" or "FAIL" (with its first failure's reason). The latency
    ratio is left out when either summed p50 is below ``min_ratio_ms``.
    """
    cells = {}
    for backend in dict.fromkeys(r.backend for r in check.results):
        own = dataclasses.replace(check, results=[r for r in check.results if r.backend == backend])
        if not own.ran:
            cells[backend] = BackendCell("skipped", reason=own.results[0].skipped)
            continue
        failures = own.failures
        errors = [r.metrics.max_abs for r in own.ran if r.metrics.max_abs == r.metrics.max_abs]  # not NaN
        timed = [(shape, stats) for (name, shape), stats in check.latency.items() if name == backend]
        torch_ms = sum(check.latency[("torch", shape)].p50_ms for shape, _ in timed if ("torch", shape) in check.latency)
        own_ms = sum(stats.p50_ms for _, stats in timed)
        measured = bool(timed) and torch_ms > 0
        ratio = own_ms / torch_ms if measured and min(own_ms, torch_ms) >= min_ratio_ms else None
        cells[backend] = BackendCell("pass" if own.passed else "FAIL", max(errors, default=None), ratio,
                                     failures[0].metrics.reason if failures else "", own_ms if measured else None,
                                     torch_ms if measured else None)
    return cells


def markdown(report: MatrixReport) -> str:
    """The matrix as the README's Markdown table."""
    head = ["entry", "parameters", "export (dynamic)"] + [f"{b}: parity, max abs, p50 ms {b} / torch (ratio)"
                                                         for b in report.backends if b != "torch"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in report.rows:
        exported = f"yes, opset {row.opset}" if row.exported else f"no: {row.note}"
        cells = [_cell_text(row.cells.get(b)) for b in report.backends if b != "torch"]
        lines.append(f"| {row.entry} | {row.params} | {exported} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell_text(cell: BackendCell | None) -> str:
    if cell is None:
        return "-"
    if cell.status == "skipped":
        return "skipped"
    error = "-" if cell.max_abs is None else f"{cell.max_abs:.1e}"
    return f"{cell.status}, {error}, {cell.latency_text()}"


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deploykit.matrix",
                                     description="Print the support matrix (every zoo entry exported, checked "
                                                 "against every installed backend, timed against PyTorch) as "
                                                 "the README's Markdown table.")
    parser.add_argument("--all-examples", action="store_true",
                        help="every worked example of every entry, not only the defaults")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    args = parser.parse_args(argv)
    print(markdown(zoo_matrix(threads=args.threads, all_examples=args.all_examples)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main())
