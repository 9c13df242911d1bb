"""Parity: every backend against one PyTorch fp32 reference, at every shape."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.backends import RunnerOptions
from deploykit.backends.runners import describe_runners, run_and_compare
from deploykit.compare import Metrics, Tolerance, error_picture
from deploykit.errors import UserError
from deploykit.export.options import ExportOptions
from deploykit.latency import measure
from deploykit.model_io import Shape, case_json, format_shape
from deploykit.pipeline import opened_runners, untested_dims
from deploykit.progress import ProgressCallback
from deploykit.spec import LoadedModel, reference_outputs


@dataclass
class CheckResult:
    backend: str
    shape: Shape
    output: str | None  # the output's name (deploykit.model_io); None for a skipped backend
    metrics: Metrics | None  # None when the backend was skipped
    skipped: str | None = None  # why the backend could not run here

    def as_json(self, inputs: list[str]) -> dict:
        head = {"backend": self.backend, "shape": case_json(self.shape, inputs), "output": self.output}
        if self.skipped is not None:
            return {**head, "status": "skipped", "passed": None, "reason": self.skipped}
        return {**head, "status": "passed" if self.metrics.passed else "failed", **self.metrics.as_json()}


@dataclass
class CheckReport:
    spec: str
    seed: int
    tolerance: Tolerance
    onnx: str | None
    inputs: list[str] = field(default_factory=lambda: ["input"])  # the model's input names, for the JSON's shapes
    reference: str = "PyTorch fp32"  # what every backend is compared with (ONNX-only checks: saved outputs, a file)
    backends: dict[str, dict] = field(default_factory=dict)
    results: list[CheckResult] = field(default_factory=list)
    # Filled on request, for the HTML report and --localize:
    pictures: dict[tuple, Any] = field(default_factory=dict, repr=False)  # (backend, shape, output) -> ErrorPicture
    latency: dict[tuple, Any] = field(default_factory=dict, repr=False)  # (backend, shape) -> LatencyStats
    localizations: dict[str, Any] = field(default_factory=dict)  # backend -> Localization of its first failure
    # A dynamic graph is only proven at sizes it ran: the dims the shapes checked never varied
    # (a given file), and the shapes check added to its own export's (export's proof).
    untested: list[str] = field(default_factory=list)
    proof_shapes: list = field(default_factory=list)
    # With keep_cases: each shape's (inputs, PyTorch's outputs), for check --save-outputs.
    cases: list[tuple[dict, dict]] = field(default_factory=list, repr=False)

    @property
    def ran(self) -> list[CheckResult]:
        """The comparisons made (a skipped backend makes none)."""
        return [r for r in self.results if r.skipped is None]

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.ran if not r.metrics.passed]

    @property
    def passed(self) -> bool:
        """The one verdict: every comparison that ran passed, and at least one ran (a skip is
        never a pass)."""
        return bool(self.ran) and not self.failures

    def as_json(self) -> dict:
        return {"passed": self.passed, "spec": self.spec, "reference": self.reference, "seed": self.seed,
                "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
                "onnx": self.onnx, "backends": self.backends,
                "results": [r.as_json(self.inputs) for r in self.results],
                "untested_dims": self.untested,
                "proof_shapes": [case_json(shape, self.inputs) for shape in self.proof_shapes],
                **({"localization": {name: loc.as_json() for name, loc in self.localizations.items()}}
                   if self.localizations else {})}


def run_check(model: LoadedModel, backends: list[str], shapes: list[Shape] | None, *, tolerance: Tolerance,
              onnx_path: Path | None = None, threads: int | None = None, precision: str = "fp32",
              export_options: ExportOptions | None = None, runner_options: RunnerOptions | None = None,
              pictures: bool = False,
              latency_iters: int = 0, localize: bool = False,
              progress: ProgressCallback | None = None, keep_cases: bool = False,
              reference: str = "PyTorch fp32") -> CheckReport:
    """Run each backend at each shape on seeded inputs and compare with PyTorch fp32 eager on the
    CPU. A backend that fails to compute is a failed comparison (its error is the reason).

    ``pictures``: keep each output's ErrorPicture; ``latency_iters``: also time each backend
    (deploykit.latency.measure); ``localize``: find the first diverging ONNX node of each
    backend's first failure; ``progress(done, total, next step)`` is told of each step;
    ``keep_cases``: keep each shape's inputs and reference outputs (``report.cases``);
    ``reference`` names where the PyTorch model came from, for the report.
    """
    shapes = model.shapes_or_default(shapes)
    report = CheckReport(spec=model.spec, seed=model.seed, tolerance=tolerance,
                         onnx=str(onnx_path) if onnx_path else None, inputs=list(model.input_names),
                         reference=reference)
    runner_options = dataclasses.replace(runner_options or RunnerOptions(), threads=threads, precision=precision)
    if onnx_path is None and (export_options or ExportOptions()).dynamic and untested_dims(model, shapes):
        report.proof_shapes = _proof_shapes(model, shapes)
        shapes = [*shapes, *report.proof_shapes]
        report.untested = [] if report.proof_shapes else untested_dims(model, shapes)
    with opened_runners(model, backends, shapes, onnx_path, runner_options, export_options) as (runners, skipped):
        if onnx_path is not None:  # read after opened_runners validated it
            report.untested = untested_dims(model, shapes, _declared_dynamic(onnx_path))
        report.backends = describe_runners(runners)
        total, done = len(shapes) * len(runners), 0
        for shape in shapes:
            inputs = model.feed(shape)
            references = reference_outputs(model, inputs)
            if keep_cases:
                report.cases.append((inputs, references))
            for name, runner in runners.items():
                if progress:
                    progress(done, total, f"{name} at {format_shape(shape)}")
                metrics, outputs = run_and_compare(runner, inputs, references, tolerance)
                results = [CheckResult(name, shape, output, m) for output, m in metrics.items()]
                report.results.extend(results)
                if pictures and outputs is not None:
                    report.pictures.update(_pictures(name, shape, references, outputs))
                if latency_iters and outputs is not None:
                    report.latency[(name, shape)] = measure(runner, inputs, warmup=2, iters=latency_iters)
                if localize and name not in report.localizations and not all(r.metrics.passed for r in results):
                    report.localizations[name] = _localize(model, runner, inputs, tolerance, runner_options)
                done += 1
            report.results.extend(CheckResult(name, shape, None, None, skipped=why) for name, why in skipped.items())
        if progress:
            progress(done, total, "done")
    return report


def _proof_shapes(model: LoadedModel, shapes: list[Shape]) -> list[Shape]:
    """The shapes export verifies a dynamic graph at besides its traced one (batch + 1 and every
    size moved, then every size far away), for check's own export when the shapes asked for leave
    a dim at one size: a graph specialised to it would pass there and nowhere else."""
    from deploykit.export.onnx_export import preferred_trace_shape
    from deploykit.export.verify import verification_shapes

    traced = preferred_trace_shape(shapes)
    try:
        derived = verification_shapes(model, traced, True).shapes[1:]
    except UserError:  # PyTorch takes none of them: the dims stay untested, and check says so
        return []
    return [shape for shape in derived if shape not in shapes]


def _declared_dynamic(onnx_path: Path) -> dict[str, list[int]]:
    """Input -> the axes an ONNX file declares dynamic (a name or no size)."""
    import onnx

    from deploykit.onnx_file import graph_inputs

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return {v.name: [axis for axis, d in enumerate(v.type.tensor_type.shape.dim) if not d.HasField("dim_value")]
            for v in graph_inputs(proto)}


def _pictures(name, shape, references, outputs) -> dict:
    pictures = {}
    for output, ref in references.items():
        picture = error_picture(ref, outputs[output]) if output in outputs else None
        if picture is not None:
            pictures[(name, shape, output)] = picture
    return pictures


def _localize(model, runner, inputs, tolerance, runner_options: RunnerOptions):
    """Localize in the graph this backend ran; what cannot be localized (a torch backend, an
    engine given without its ONNX file) is said in the localization, not raised."""
    from deploykit.localize import Localization, localize

    path = runner.options.onnx_path
    try:
        if path is None:
            raise UserError(f"{runner.name} ran an engine without an ONNX file", "pass --onnx to localize")
        # PyTorch's values from an export traced at the failing shape: a graph specialised to its
        # traced shape is only wrong away from it, where a reference traced there would be too
        return localize(model, Path(path), runner.name, inputs, tolerance, runner_options=runner_options,
                        reference_at_input_shape=True)
    except UserError as exc:
        return Localization(runner.name, str(path), {name: list(np.shape(a)) for name, a in inputs.items()}, None,
                            error=str(exc))
