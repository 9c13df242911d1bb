"""ONNX-only runs, where the model's source is not at hand (what Polygraphy and trtexec users do
daily): a file checked against outputs saved by ``check --save-outputs``
(deploykit.saved_outputs) or against another ONNX file run on ONNX Runtime's CPU provider, and
a file benched on its own. None imports torch or model code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from deploykit.backends import RunnerOptions
from deploykit.backends.runners import describe_runners, open_runners, plan_backends, run_and_compare, run_backend
from deploykit.check import CheckReport, CheckResult
from deploykit.compare import PRESETS, Tolerance
from deploykit.errors import UserError

DEFAULT_TOLERANCE = PRESETS["fp32"]


def check_saved(onnx_path: Path, saved: Path, backends: list[str], tolerance: Tolerance | None,
                threads: int | None, runner_options: RunnerOptions | None = None) -> CheckReport:
    """Every ONNX backend on the saved inputs against the saved outputs. ``tolerance`` None
    takes the one the outputs were saved with."""
    from deploykit.saved_outputs import load_outputs

    meta, cases = load_outputs(saved)
    tolerance = tolerance or Tolerance(**meta.get("tolerance", dataclasses.asdict(DEFAULT_TOLERANCE)))
    return _compare(onnx_path, backends, [(c.inputs, c.outputs) for c in cases], tolerance, threads, runner_options,
                    f"saved outputs {saved}", str(meta.get("spec", "?")), meta.get("seed", 0))


def check_against(onnx_path: Path, reference_path: Path, backends: list[str], shapes: list[str],
                  tolerance: Tolerance | None, threads: int | None, seed: int,
                  runner_options: RunnerOptions | None = None) -> CheckReport:
    """Every ONNX backend on ``onnx_path`` against ``reference_path`` run on ONNX Runtime's CPU
    provider, on seeded inputs drawn from the reference's input signature at ``shapes`` (its own
    dims when every one is fixed)."""
    from deploykit.onnx_file import has_plugin_nodes, validate_onnx_file

    proto = validate_onnx_file(reference_path, option="--against")
    feeds = [feed for _, feed in signature_feeds(proto, reference_path, shapes, seed)]
    options = RunnerOptions(onnx_path=Path(reference_path), threads=threads)
    with open_runners(plan_backends(["ort"], options, has_plugin_nodes(proto)), options) as runners:
        (reference,) = runners.values()
        pairs = [(feed, run_backend(reference, feed)) for feed in feeds]
    return _compare(onnx_path, backends, pairs, tolerance or DEFAULT_TOLERANCE, threads, runner_options,
                    f"{reference_path} on ONNX Runtime CPU", str(onnx_path), seed)


def signature_feeds(proto, path: Path, shapes: list[str], seed: int) -> list[tuple]:
    """(case, seeded inputs) for each ``--shape`` text, drawn from the input names and dtypes of
    ``proto`` (the file at ``path``; N(0, 1) floats, {0, 1} integers); the file's own dims when
    none is given and every one is fixed."""
    from deploykit.model_io import InputSpec, case_of, draw_inputs, onnx_dtype_name, parse_case
    from deploykit.onnx_file import graph_inputs

    signature = graph_inputs(proto)
    names = [v.name for v in signature]
    specs = {v.name: InputSpec(v.name, onnx_dtype_name(v, path)) for v in signature}
    if shapes:
        cases = [parse_case(text, names) for text in shapes]
    else:
        dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                for v in signature}
        if any(None in d for d in dims.values()):
            raise UserError(f"{path} has dynamic dims, so the inputs need a size",
                            "pass --shape (repeatable), e.g. --shape 1x3x64x64")
        cases = [case_of(dims)]
    return [(case, draw_inputs(case, seed, specs)) for case in cases]


def bench_file(onnx_path: Path, backends: list[str], shapes: list[str], warmup: int, iters: int,
               threads: int | None, seed: int, max_seconds: float | None = None,
               runner_options: RunnerOptions | None = None, progress=None):
    """bench without SPEC (trtexec's --onnx habit): each ONNX backend timed on seeded inputs
    drawn from the file's signature, side by side; no PyTorch, so no ratio to it."""
    from deploykit.bench import BenchReport, BenchResult
    from deploykit.latency import measure
    from deploykit.model_io import format_shape
    from deploykit.onnx_file import has_plugin_nodes, validate_onnx_file

    _refuse_torch_backends(backends)
    proto = validate_onnx_file(onnx_path)
    cases = signature_feeds(proto, onnx_path, shapes, seed)
    options = dataclasses.replace(runner_options or RunnerOptions(), onnx_path=Path(onnx_path), threads=threads,
                                  shapes=[case for case, _ in cases])
    plan = plan_backends(backends, options, has_plugin_nodes(proto), allow_substitutes=False)
    report = BenchReport(spec=str(onnx_path), warmup=warmup, iters=iters, threads=threads, max_seconds=max_seconds,
                         inputs=list(cases[0][1]))
    with open_runners(plan, options) as runners:
        report.backends = describe_runners(runners)
        total, done = len(cases) * len(runners), 0
        for case, feed in cases:
            for name, runner in runners.items():
                if progress:
                    progress(done, total, f"{name} at {format_shape(case)}")
                runner.validate(feed)
                report.results.append(BenchResult(name, case, measure(runner, feed, warmup, iters, max_seconds)))
                done += 1
            report.results.extend(BenchResult(name, case, None, skipped=why) for name, why in plan.skipped.items())
    return report


def _refuse_torch_backends(backends: list[str]) -> None:
    from deploykit.backends import runner_class

    torch_backends = [name for name in backends if not runner_class(name).needs_onnx]
    if torch_backends:
        raise UserError(f"backend {torch_backends[0]} runs the PyTorch model, which an ONNX-only run does not load",
                        "pass ONNX backends only, e.g. --backends ort")


def _compare(onnx_path: Path, backends: list[str], pairs: list[tuple[dict, dict]], tolerance: Tolerance,
             threads: int | None, runner_options: RunnerOptions | None, reference: str, spec: str,
             seed: int) -> CheckReport:
    """Each backend on each (inputs, reference outputs) pair, compared: check's report."""
    from deploykit.model_io import case_of
    from deploykit.onnx_file import has_plugin_nodes, validate_onnx_file

    _refuse_torch_backends(backends)
    proto = validate_onnx_file(onnx_path)
    options = dataclasses.replace(runner_options or RunnerOptions(), onnx_path=Path(onnx_path), threads=threads,
                                  shapes=[tuple(np.shape(next(iter(inputs.values())))) for inputs, _ in pairs])
    plan = plan_backends(backends, options, has_plugin_nodes(proto))
    report = CheckReport(spec=spec, seed=seed, tolerance=tolerance, onnx=str(onnx_path), inputs=list(pairs[0][0]),
                         reference=reference)
    with open_runners(plan, options) as runners:
        report.backends = describe_runners(runners)
        for inputs, references in pairs:
            shape = case_of({name: np.shape(array) for name, array in inputs.items()})
            for name, runner in runners.items():
                metrics, _ = run_and_compare(runner, inputs, references, tolerance)
                report.results.extend(CheckResult(name, shape, output, m) for output, m in metrics.items())
            report.results.extend(CheckResult(name, shape, None, None, skipped=why) for name, why in plan.skipped.items())
    return report
