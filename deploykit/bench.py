"""bench: every backend at every shape, side by side in one process and one run.

The timing itself is deploykit.latency's ``measure``; this module runs it over the backends
and shapes, and relates each backend to torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from deploykit.backends import RunnerOptions
from deploykit.backends.runners import describe_runners
from deploykit.export.options import ExportOptions
from deploykit.latency import LatencyStats, measure
from deploykit.model_io import Shape, case_json, format_shape
from deploykit.pipeline import opened_runners
from deploykit.progress import ProgressCallback
from deploykit.spec import LoadedModel, reference_outputs


@dataclass
class BenchResult:
    backend: str
    shape: Shape
    stats: LatencyStats | None  # None when the backend was skipped
    ratio_to_torch: float | None = None  # p50 / torch p50 at the same shape
    skipped: str | None = None

    def as_json(self, inputs: list[str]) -> dict:
        head = {"backend": self.backend, "shape": case_json(self.shape, inputs)}
        if self.skipped is not None:
            return {**head, "status": "skipped", "reason": self.skipped}
        return {**head, "status": "measured", **asdict(self.stats), "ratio_to_torch": self.ratio_to_torch,
                "unstable": self.stats.unstable}


@dataclass
class BenchReport:
    spec: str
    warmup: int
    iters: int
    threads: int | None
    inputs: list[str] = field(default_factory=lambda: ["input"])  # the model's input names, for the JSON's shapes
    backends: dict[str, dict] = field(default_factory=dict)
    results: list[BenchResult] = field(default_factory=list)
    max_seconds: float | None = None

    def as_json(self) -> dict:
        return {"spec": self.spec, "warmup": self.warmup, "iters": self.iters, "threads": self.threads,
                "max_seconds": self.max_seconds, "backends": self.backends,
                "results": [r.as_json(self.inputs) for r in self.results]}


def run_bench(model: LoadedModel, backends: list[str], shapes: list[Shape] | None, *, warmup: int, iters: int,
              threads: int | None, onnx_path=None, precision: str = "fp32",
              export_options: ExportOptions | None = None, runner_options: RunnerOptions | None = None,
              progress: ProgressCallback | None = None, max_seconds: float | None = None) -> BenchReport:
    """Measure every backend at every shape, side by side in one process and one run;
    ``progress(done, total, next step)`` is told of each step; ``max_seconds`` bounds each
    backend's warm-up and timing at each shape (``measure``)."""
    shapes = model.shapes_or_default(shapes)
    report = BenchReport(spec=model.spec, warmup=warmup, iters=iters, threads=threads, max_seconds=max_seconds,
                         inputs=list(model.input_names))
    runner_options = dataclasses.replace(runner_options or RunnerOptions(), threads=threads, precision=precision)
    with opened_runners(model, backends, shapes, onnx_path, runner_options, export_options,
                        allow_substitutes=False) as (runners, skipped):
        report.backends = describe_runners(runners)
        total, done = len(shapes) * len(runners), 0
        for shape in shapes:
            inputs = model.feed(shape)
            reference_outputs(model, inputs)  # a shape the module cannot take fails here, clearly
            row = {}
            for name, runner in runners.items():
                if progress:
                    progress(done, total, f"{name} at {format_shape(shape)}")
                row[name] = measure(runner, inputs, warmup, iters, max_seconds)
                done += 1
            torch_p50 = row["torch"].p50_ms if "torch" in row else None
            for name, stats in row.items():
                ratio = stats.p50_ms / torch_p50 if torch_p50 else None
                report.results.append(BenchResult(name, shape, stats, ratio))
            report.results.extend(BenchResult(name, shape, None, skipped=why) for name, why in skipped.items())
    return report
