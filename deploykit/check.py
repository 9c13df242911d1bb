"""Parity: every backend against one PyTorch fp32 reference, at every shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deploykit.compare import Metrics, Tolerance, compare, failed
from deploykit.errors import BackendRunError
from deploykit.pipeline import describe_runners, make_inputs, open_runners, reference_outputs, run_backend
from deploykit.spec import LoadedModel, Shape


@dataclass
class CheckResult:
    backend: str
    shape: Shape
    output: int
    metrics: Metrics | None  # None when the backend was skipped
    skipped: str | None = None  # why the backend could not run here

    def as_json(self) -> dict:
        head = {"backend": self.backend, "shape": list(self.shape), "output": self.output}
        if self.skipped is not None:
            return {**head, "status": "skipped", "passed": None, "reason": self.skipped}
        return {**head, "status": "passed" if self.metrics.passed else "failed", **self.metrics.as_json()}


@dataclass
class CheckReport:
    spec: str
    seed: int
    tolerance: Tolerance
    onnx: str | None
    backends: dict[str, dict] = field(default_factory=dict)
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every comparison that ran passed, and at least one ran: a skip is never a pass."""
        ran = [r for r in self.results if r.skipped is None]
        return bool(ran) and all(r.metrics.passed for r in ran)

    def as_json(self) -> dict:
        return {"passed": self.passed, "spec": self.spec, "seed": self.seed,
                "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
                "onnx": self.onnx, "backends": self.backends,
                "results": [r.as_json() for r in self.results]}


def run_check(model: LoadedModel, backends: list[str], shapes: list[Shape] | None, *, tolerance: Tolerance,
              onnx_path: Path | None = None, threads: int | None = None, precision: str = "fp32",
              export_options: dict | None = None, runner_options: dict | None = None) -> CheckReport:
    """Run each backend at each shape on seeded inputs and compare with PyTorch fp32 eager on the
    CPU. A backend that fails to compute is a failed comparison (its error is the reason)."""
    shapes = model.shapes_or_default(shapes)
    report = CheckReport(spec=model.spec, seed=model.seed, tolerance=tolerance,
                         onnx=str(onnx_path) if onnx_path else None)
    with open_runners(model, backends, shapes, onnx_path, threads, precision, export_options,
                      runner_options=runner_options) as (runners, skipped):
        report.backends = describe_runners(runners)
        for shape in shapes:
            inputs = make_inputs(shape, model.seed)
            references = reference_outputs(model, inputs)
            for name, runner in runners.items():
                report.results.extend(_compare_backend(name, runner, shape, inputs, references, tolerance))
            report.results.extend(CheckResult(name, shape, 0, None, skipped=why) for name, why in skipped.items())
    return report


def _compare_backend(name, runner, shape, inputs, references, tolerance) -> list[CheckResult]:
    try:
        outputs = run_backend(runner, inputs)
    except BackendRunError as exc:
        return [CheckResult(name, shape, i, failed(str(exc))) for i in range(len(references))]
    if len(outputs) != len(references):
        reason = f"{name} returned {len(outputs)} outputs, PyTorch returns {len(references)}"
        return [CheckResult(name, shape, i, failed(reason)) for i in range(len(references))]
    return [CheckResult(name, shape, i, compare(ref, out, tolerance))
            for i, (ref, out) in enumerate(zip(references, outputs))]
