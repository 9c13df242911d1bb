"""The support matrix: every zoo example exported and checked against ONNX Runtime.

``python -m deploykit.matrix`` prints it as the Markdown table the README carries.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploykit.compare import PRESETS
from deploykit.errors import UserError


@dataclass
class MatrixRow:
    entry: str
    params: str
    exported: bool
    opset: int | None
    parity: bool | None
    max_abs: float | None
    note: str = ""


def zoo_matrix(backend: str = "ort", threads: int = 2) -> list[MatrixRow]:
    """Export each zoo example (dynamic shapes) and check it at the entry's default shapes."""
    from deploykit import zoo
    from deploykit.check import run_check
    from deploykit.export import export_onnx
    from deploykit.spec import load_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="deploykit-matrix-") as work:
        for name, entry in zoo.entries().items():
            for index, example in enumerate(entry.examples):
                shown = ", ".join(f"{k}={v}" for k, v in example.items()) or "defaults"
                params = {k: str(v) for k, v in entry.resolve_params(typed=example).items()}
                model = load_model(name, params)
                try:
                    result = export_onnx(model, Path(work) / f"{name}-{index}.onnx")
                except UserError as exc:
                    rows.append(MatrixRow(name, shown, False, None, None, None, exc.problem[:80]))
                    continue
                report = run_check(model, [backend], None, tolerance=PRESETS["fp32"], onnx_path=result.path,
                                   threads=threads)
                worst = max(r.metrics.max_abs for r in report.results)
                rows.append(MatrixRow(name, shown, True, result.opset, report.passed, worst))
    return rows


def markdown(rows: list[MatrixRow]) -> str:
    lines = ["| entry | parameters | export (dynamic) | ORT parity, 3 shapes | max abs error |",
             "|---|---|---|---|---|"]
    for r in rows:
        exported = f"yes, opset {r.opset}" if r.exported else f"no: {r.note}"
        parity = "-" if r.parity is None else ("pass" if r.parity else "FAIL")
        error = "-" if r.max_abs is None else f"{r.max_abs:.1e}"
        lines.append(f"| {r.entry} | {r.params} | {exported} | {parity} | {error} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(zoo_matrix()))
