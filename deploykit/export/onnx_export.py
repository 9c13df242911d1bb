"""torch -> ONNX with the dynamo exporter, dynamic batch and spatial dims, and checks.

Why dynamo only: the TorchScript exporter with ``dynamic_axes`` bakes ``torch.arange(H)`` and
similar shape-derived values into constants, so DySample exported that way is wrong by about 5
at every shape but the traced one. ``torch.export`` keeps those values symbolic.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UserError, first_line
from deploykit.files import staged_files
from deploykit.spec import LoadedModel, Shape, format_shape

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 16, 23
# Opset 20 renamed GridSample's modes (bilinear -> linear, bicubic -> cubic); TensorRT's ONNX
# parser maps names it does not know to NEAREST without a warning.
TRT_GRIDSAMPLE_MAX_OPSET = 19
TARGETS = ("ort", "trt")
# How DySample's sample step is exported: "standard" ONNX ops with GridSample; "gather" or
# "roialign", standard ops without GridSample, or "auto", the faster of the two for each layer
# (deploykit.ops.onnx_decompositions); or "plugin", one deploykit::DySample node that the
# TensorRT plugin (or the NumPy reference) runs.
DYSAMPLE_IMPLS = ("auto", "standard", "gather", "roialign", "plugin")
# Chosen when none is asked for, by target. ort: the fastest on ONNX Runtime's CPU provider
# (python -m deploykit.ops.strategy_benchmark, README table); trt: its native GridSample layer.
DEFAULT_DYSAMPLE_IMPL = {"ort": "auto", "trt": "standard"}

_DIM_NAMES = {3: ("length",), 4: ("height", "width"), 5: ("depth", "height", "width")}


class ExportError(UserError):
    """The exporter could not turn the module into a valid ONNX graph."""


@dataclass
class ExportResult:
    path: Path
    opset: int
    traced_shape: Shape
    dynamic: bool
    inputs: list[tuple[str, list]]
    outputs: list[tuple[str, list]]
    op_counts: dict[str, int] = field(default_factory=dict)


def dynamic_dims(rank: int) -> dict[int, str]:
    """Names for the dims that stay symbolic: batch and every spatial dim (never channels)."""
    return {0: "batch", **{2 + i: name for i, name in enumerate(_DIM_NAMES[rank])}}


def export_onnx(model: LoadedModel, path: Path, *, opset: int | None = None, dynamic: bool = True,
                trace_shape: Shape | None = None, target: str = "ort", dysample_impl: str | None = None,
                precision: str = "fp32", force: bool = False) -> ExportResult:
    """Export ``model`` to ``path`` atomically; the file exists only if every check passed.

    ``opset=None`` asks for DEFAULT_OPSET and accepts a higher one when an op needs it
    (Resize antialias needs 18); an explicit opset is honoured or the export fails.
    """
    import onnx
    import torch

    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(f"opset {opset} is not supported", f"use --opset {MIN_OPSET}..{MAX_OPSET}")
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
    dysample_impl = dysample_impl or DEFAULT_DYSAMPLE_IMPL[target]
    if dysample_impl not in DYSAMPLE_IMPLS:
        raise UserError(f"unknown DySample export strategy {dysample_impl!r}",
                        f"use one of {', '.join(DYSAMPLE_IMPLS)}")
    shape = trace_shape or _trace_shape(model)
    model.validate_shape(shape)
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(model.seed))
    output_names = _output_names(model.forward(example))
    dims = (dynamic_dims(len(shape)),) if dynamic else None
    if precision not in ("fp32", "fp16"):
        raise UserError(f"unknown precision {precision!r}", "use fp32 or fp16")
    if precision == "fp16":  # a half copy: the caller's model stays fp32
        model = dataclasses.replace(model, module=copy.deepcopy(model.module).half())
        example = example.half()

    with staged_files(Path(path), force) as staged:
        program = export_program(model, example, dims=dims, opset=opset or DEFAULT_OPSET, output_names=output_names,
                                 dysample_impl=dysample_impl)
        program.model.metadata_props["deploykit.traced_shape"] = format_shape(shape)  # engine profile defaults
        program.model.metadata_props["deploykit.spec"] = model.spec
        program.model.metadata_props["deploykit.dysample_impl"] = dysample_impl  # how to re-export it alike
        program.save(str(staged))  # weights go to a .data file beside it past protobuf's 2 GB
        proto = onnx.load(str(staged), load_external_data=False)
        actual = _check_graph(staged, proto, opset, target, model.spec)
        result = ExportResult(
            path=Path(path), opset=actual, traced_shape=shape, dynamic=dynamic,
            inputs=[(v.name, _dims(v)) for v in proto.graph.input],
            outputs=[(v.name, _dims(v)) for v in proto.graph.output],
            op_counts=dict(collections.Counter(n.op_type for n in proto.graph.node).most_common()),
        )
    return result


def _trace_shape(model: LoadedModel) -> Shape:
    """Trace at batch 2 with odd, non-square sizes: size 1 and equal sizes invite specialisation."""
    return preferred_trace_shape(model.shapes_or_default(None))


def preferred_trace_shape(shapes: list[Shape]) -> Shape:
    return max(shapes, key=lambda s: (s[0] > 1, s[0] == 2))


def _output_names(outputs) -> list[str]:
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def export_program(model: LoadedModel, example, *, dims, opset: int, output_names: list[str], dysample_impl: str):
    """The in-memory ONNXProgram (its ``exported_program`` is the FX graph the ONNX values are
    named after), with DySample layers exported as ``dysample_impl``; no checks, no file."""
    with _dysample_strategy(model.module, dysample_impl) as table:
        return _run_exporter(model, example, dims, opset, output_names, table)


@contextlib.contextmanager
def _dysample_strategy(module, dysample_impl: str):
    """Switch DySample layers to the implementation the strategy exports; yield the translation table."""
    from deploykit.zoo.dysample import EXPORT_IMPL
    from deploykit.zoo.dysample import dysample_impl as switch

    if dysample_impl == "standard":
        with switch(module, "reference"):
            yield None
    else:
        from deploykit.ops.onnx_translation import translation_table

        with switch(module, EXPORT_IMPL):
            yield translation_table(dysample_impl)


def _run_exporter(model: LoadedModel, example, dims, opset: int, output_names: list[str], table):
    import torch

    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), \
                contextlib.redirect_stderr(captured), _quiet_loggers():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                model.module, (example,), dynamo=True, opset_version=opset, dynamic_shapes=dims,
                input_names=["input"], output_names=output_names, verbose=False, optimize=True,
                custom_translation_table=table,
            )
    except Exception as exc:  # the exporter raises many types; all mean "could not export"
        fix = "try --static, a different --opset, or report the op to deploykit"
        raise ExportError(f"export of {model.spec} failed: {type(exc).__name__}: {first_line(exc, 300)}",
                          fix) from None


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter logs progress and converter fallbacks at INFO/WARNING; keep the CLI readable."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _check_graph(path: Path, proto, opset: int | None, target: str, spec: str) -> int:
    """Validate the exported graph (by path, so models past 2 GB work); returns its opset."""
    import onnx

    from deploykit.ops.onnx_translation import register_schema

    register_schema()  # so full_check knows deploykit::DySample's signature
    actual = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and actual != opset:
        raise ExportError(f"exporter produced opset {actual}, not the requested {opset}",
                          f"use --opset {actual} or another opset")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported graph of {spec} fails onnx.checker: {first_line(exc, 300)}",
                          "try another --opset, or report the op to deploykit") from None
    if target == "trt" and actual > TRT_GRIDSAMPLE_MAX_OPSET:
        grid = [n.name for n in proto.graph.node if n.op_type == "GridSample"]
        if grid:
            raise ExportError(
                f"opset {actual} names GridSample's modes 'linear'/'cubic', which TensorRT's parser "
                f"silently reads as nearest (node {grid[0]})",
                f"export for TensorRT with --opset {DEFAULT_OPSET} (16..{TRT_GRIDSAMPLE_MAX_OPSET})")
    return actual


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def describe(result: ExportResult) -> str:
    ins = ", ".join(f"{n}[{'x'.join(map(str, d))}]" for n, d in result.inputs)
    outs = ", ".join(f"{n}[{'x'.join(map(str, d))}]" for n, d in result.outputs)
    kind = "dynamic" if result.dynamic else "static"
    return (f"wrote {result.path} (opset {result.opset}, {kind} shapes, traced at "
            f"{format_shape(result.traced_shape)}): {ins} -> {outs}")
