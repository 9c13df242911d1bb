"""ONNX-only checks, where the model's source is not at hand (what Polygraphy users do daily):
a file against outputs saved by ``check --save-outputs`` (deploykit.saved_outputs), or against
another ONNX file run on ONNX Runtime's CPU provider. Neither imports torch or model code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from deploykit.backends import RunnerOptions
from deploykit.backends.runners import describe_runners, open_runners, plan_backends, run_and_compare, run_backend
from deploykit.check import CheckReport, CheckResult
from deploykit.compare import Tolerance
from deploykit.errors import UserError

DEFAULT_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-4)


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
    from deploykit.model_io import InputSpec, draw_inputs, parse_case
    from deploykit.onnx_file import validate_onnx_file

    graph = validate_onnx_file(reference_path, option="--against").graph
    initializers = {t.name for t in graph.initializer}
    signature = [v for v in graph.input if v.name not in initializers]
    names = [v.name for v in signature]
    specs = {v.name: InputSpec(v.name, _numpy_dtype(v)) for v in signature}
    if shapes:
        cases = [parse_case(text, names) for text in shapes]
    else:
        dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                for v in signature}
        if any(None in d for d in dims.values()):
            raise UserError(f"{reference_path} has dynamic dims, so the inputs need a size",
                            "pass --shape (repeatable), e.g. --shape 1x3x64x64")
        from deploykit.model_io import Case

        cases = [tuple(dims[names[0]]) if len(names) == 1 else Case({n: tuple(d) for n, d in dims.items()})]
    feeds = [draw_inputs(case, seed, specs) for case in cases]
    reference = _open_one(reference_path, threads)
    with reference:
        pairs = [(feed, run_backend(reference, feed)) for feed in feeds]
    return _compare(onnx_path, backends, pairs, tolerance or DEFAULT_TOLERANCE, threads, runner_options,
                    f"{reference_path} on ONNX Runtime CPU", str(onnx_path), seed)


def _numpy_dtype(value) -> str:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)).name


def _open_one(path: Path, threads: int | None):
    """ONNX Runtime's CPU runner on ``path`` (with deploykit's library for a plugin graph)."""
    from deploykit.onnx_file import has_plugin_nodes, validate_onnx_file

    options = RunnerOptions(onnx_path=Path(path), threads=threads)
    plan = plan_backends(["ort"], options, has_plugin_nodes(validate_onnx_file(path)))
    (cls,) = plan.classes.values()
    return cls(dataclasses.replace(options, ort_custom_ops=plan.ort_custom_ops))


def _compare(onnx_path: Path, backends: list[str], pairs: list[tuple[dict, dict]], tolerance: Tolerance,
             threads: int | None, runner_options: RunnerOptions | None, reference: str, spec: str,
             seed: int) -> CheckReport:
    """Each backend on each (inputs, reference outputs) pair, compared: check's report."""
    from deploykit.backends import runner_class
    from deploykit.onnx_file import has_plugin_nodes, validate_onnx_file

    torch_backends = [name for name in backends if not runner_class(name).needs_onnx]
    if torch_backends:
        raise UserError(f"backend {torch_backends[0]} runs the PyTorch model, which an ONNX-only check does not load",
                        "pass ONNX backends only, e.g. --backends ort")
    proto = validate_onnx_file(onnx_path)
    options = dataclasses.replace(runner_options or RunnerOptions(), onnx_path=Path(onnx_path), threads=threads,
                                  shapes=[tuple(np.shape(next(iter(inputs.values())))) for inputs, _ in pairs])
    plan = plan_backends(backends, options, has_plugin_nodes(proto))
    report = CheckReport(spec=spec, seed=seed, tolerance=tolerance, onnx=str(onnx_path), inputs=list(pairs[0][0]),
                         reference=reference)
    with open_runners(plan, options) as runners:
        report.backends = describe_runners(runners)
        for inputs, references in pairs:
            shape = _case_shape(inputs)
            for name, runner in runners.items():
                metrics, _ = run_and_compare(runner, inputs, references, tolerance)
                report.results.extend(CheckResult(name, shape, output, m) for output, m in metrics.items())
            report.results.extend(CheckResult(name, shape, None, None, skipped=why) for name, why in plan.skipped.items())
    return report


def _case_shape(inputs: dict[str, np.ndarray]):
    from deploykit.model_io import Case

    shapes = {name: tuple(np.shape(array)) for name, array in inputs.items()}
    return next(iter(shapes.values())) if len(shapes) == 1 else Case(shapes)
