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
import os
import re
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UserError, first_line
from deploykit.export.dysample import (DEFAULT_DYSAMPLE_IMPL, DYSAMPLE_IMPLS, NEEDS_A_LAYER, Conversion,
                                       converted_for_export, find_layers)
from deploykit.export.maxpool_indices import DEFAULT_MAXPOOL_IMPL, MAXPOOL_IMPLS
from deploykit.files import staged_files
from deploykit.model_io import bare_text, flatten_outputs
from deploykit.spec import LoadedModel, Shape, format_shape

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 16, 23
# Opset 20 renamed GridSample's modes (bilinear -> linear, bicubic -> cubic); TensorRT's ONNX
# parser maps names it does not know to NEAREST without a warning.
TRT_GRIDSAMPLE_MAX_OPSET = 19
TARGETS = ("ort", "trt")

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
    dysample: Conversion | None = None
    remaining_grid_samples: list[dict] = field(default_factory=list)  # GridSample nodes, with their module
    verified_shapes: list[Shape] = field(default_factory=list)  # [] with verify=False
    unverifiable: list[str] = field(default_factory=list)  # derived shapes PyTorch itself rejected
    verified_with: str | None = None  # the backend that ran it: ort, or onnx-ref for plugin graphs
    maxpool_impl: str | None = None  # how max-pool indices were exported; None: the model computes none


def dynamic_dims(rank: int) -> dict[int, str]:
    """Names for the dims that stay symbolic: batch and every spatial dim (never channels)."""
    return {0: "batch", **{2 + i: name for i, name in enumerate(_DIM_NAMES[rank])}}


def export_onnx(model: LoadedModel, path: Path, *, opset: int | None = None, dynamic: bool = True,
                trace_shape: Shape | None = None, target: str = "ort", dysample_impl: str | None = None,
                precision: str = "fp32", force: bool = False, verify: bool = True,
                verify_shapes: list[Shape] | None = None, threads: int | None = None,
                maxpool_impl: str | None = None) -> ExportResult:
    """Export ``model`` to ``path`` atomically; the file exists only if every check passed.

    ``opset=None`` asks for DEFAULT_OPSET and accepts a higher one when an op needs it
    (Resize antialias needs 18); an explicit opset is honoured or the export fails.
    ``dysample_impl=None`` takes the target's default; an explicit strategy that needs a
    DySample layer fails when none was converted; ``maxpool_impl=None`` likewise takes the
    target's way of exporting max-pool indices (deploykit.export.maxpool_indices). ``verify``
    runs the graph at the traced shape and (dynamic exports) at ``verify_shapes`` or a derived
    shape (deploykit.export.verify).
    """
    import onnx

    from deploykit.export.dysample import check_graph, metadata
    from deploykit.export.verify import verification_shapes, verify_export

    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(f"opset {opset} is not supported", f"use --opset {MIN_OPSET}..{MAX_OPSET}")
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
    explicit = dysample_impl is not None
    dysample_impl = dysample_impl or DEFAULT_DYSAMPLE_IMPL[target]
    if dysample_impl not in DYSAMPLE_IMPLS:
        raise UserError(f"unknown DySample export strategy {dysample_impl!r}",
                        f"use one of {', '.join(DYSAMPLE_IMPLS)}")
    maxpool_impl = maxpool_impl or DEFAULT_MAXPOOL_IMPL[target]
    if maxpool_impl not in MAXPOOL_IMPLS:
        raise UserError(f"unknown max-pool indices strategy {maxpool_impl!r}", f"use one of {', '.join(MAXPOOL_IMPLS)}")
    if precision not in ("fp32", "fp16"):
        raise UserError(f"unknown precision {precision!r}", "use fp32 or fp16")
    shape = trace_shape or _trace_shape(model)
    model.validate_shape(shape)
    example = example_inputs(model, shape)
    output_names = list(flatten_outputs(model.forward(*example)))
    if not output_names:
        raise UserError(f"{model.spec} returns no tensor", "export a module whose forward returns tensors")
    dims = dynamic_shapes(model, shape) if dynamic else None
    verification = verification_shapes(model, shape, dynamic, verify_shapes) if verify else None
    if verification:
        _require_verifier()
    layers, lookalikes = find_layers(model.module)  # on the fp32 module, before any half copy
    if explicit and dysample_impl in NEEDS_A_LAYER and not layers:
        raise UserError(_no_layer_problem(model, dysample_impl, lookalikes),
                        "DySample layers are recognised by a sample(x, offset) method with integer scale and "
                        "groups that computes DySample's step; drop --dysample-impl for this model")
    reference = model
    if precision == "fp16":  # a half copy: the caller's model stays fp32
        model = dataclasses.replace(model, module=copy.deepcopy(model.module).half())
        example = tuple(t.half() if t.is_floating_point() else t for t in example)

    with staged_files(Path(path), force) as staged:
        program, conversion = export_program(model, example, dims=dims, opset=opset or DEFAULT_OPSET,
                                             output_names=output_names, dysample_impl=dysample_impl,
                                             layers=layers, maxpool_impl=maxpool_impl)
        conversion.lookalikes = lookalikes
        if explicit and dysample_impl in NEEDS_A_LAYER and not conversion.calls:
            raise UserError(f"no DySample layer of {model.spec} is in the exported graph, so --dysample-impl "
                            f"{dysample_impl} changed nothing (verified: "
                            f"{', '.join(l.path or '<top level>' for l in layers)}; a layer forward never "
                            "calls, or whose result is unused, leaves nothing to convert)",
                            "check that forward uses the layers' sample(), or drop --dysample-impl")
        props = program.model.metadata_props
        props["deploykit.traced_shape"] = bare_text(shape)  # engine profile defaults
        props["deploykit.spec"] = model.spec
        props.update(metadata(conversion))  # only what the graph contains
        pools_with_indices = _pools_with_indices(program.exported_program)
        if pools_with_indices:
            props[METADATA_MAXPOOL_IMPL] = maxpool_impl
        program.save(str(staged))  # weights go to a .data file beside it past protobuf's 2 GB
        proto = onnx.load(str(staged), load_external_data=False)
        actual = _check_graph(staged, proto, opset, target, model.spec)
        from deploykit.localize import value_modules

        modules = value_modules(program.exported_program)
        remaining = [{**grid, "module": modules.get(grid["output"])} for grid in check_graph(conversion, proto)]
        if verification:
            verifier = verify_export(reference, staged, verification, precision=precision, threads=threads,
                                     modules=modules)
            props["deploykit.verified_shapes"] = ";".join(bare_text(s) for s in verification.shapes)
            props["deploykit.verified_with"] = verifier
            program.save(str(staged))
        result = ExportResult(
            path=Path(path), opset=actual, traced_shape=shape, dynamic=dynamic,
            inputs=[(v.name, _dims(v)) for v in proto.graph.input],
            outputs=[(v.name, _dims(v)) for v in proto.graph.output],
            op_counts=dict(collections.Counter(n.op_type for n in proto.graph.node).most_common()),
            dysample=conversion, remaining_grid_samples=remaining,
            verified_shapes=verification.shapes if verification else [],
            unverifiable=verification.skipped if verification else [],
            verified_with=verifier if verification else None,
            maxpool_impl=maxpool_impl if pools_with_indices else None,
        )
    return result


def _require_verifier() -> None:
    from deploykit.backends import runner_class
    from deploykit.errors import BackendUnavailable

    try:
        runner_class("ort").check_available()
    except BackendUnavailable as exc:
        raise UserError(f"verifying the export needs ONNX Runtime's CPU provider: {exc.problem}",
                        "pip install onnxruntime, or pass --no-verify (the graph is then never run)") from None


def _no_layer_problem(model: LoadedModel, strategy: str, lookalikes) -> str:
    if lookalikes:
        return (f"--dysample-impl {strategy}: no layer of {model.spec} computes DySample's sample step; "
                + "; ".join(f"{l.path or '<top level>'} ({l.cls.rsplit('.', 1)[-1]}): {l.reason}" for l in lookalikes))
    return f"--dysample-impl {strategy}: {model.spec} has no DySample layer (a module with sample(x, offset), scale, groups)"


def example_inputs(model: LoadedModel, case) -> tuple:
    """The tensors export traces with, in forward's order: one float input is drawn as deploykit
    always has (N(0, 1) seeded by the model's seed); several from their specs, like check's."""
    import torch

    from deploykit.model_io import InputSpec

    if len(model.inputs) == 1 and next(iter(model.inputs.values())) == InputSpec(model.input_names[0]):
        return (torch.randn(*case, generator=torch.Generator().manual_seed(model.seed)),)
    return tuple(torch.from_numpy(array) for array in model.feed(case).values())


def dynamic_shapes(model: LoadedModel, case) -> tuple:
    """Per input, its symbolic dims (batch and spatial): one input's are named batch, height,
    width; with several, each is prefixed with its input's name (their sizes may differ)."""
    from deploykit.model_io import case_shapes, forward_takes_var_positional

    shapes = case_shapes(case, model.input_names)
    if len(shapes) == 1:
        dims = dynamic_dims(len(next(iter(shapes.values()))))
        # forward(*inputs): torch.export matches dynamic_shapes to the signature, one tuple for *inputs
        return ((dims,),) if forward_takes_var_positional(model.module) else (dims,)
    # a dim traced at 1 stays 1: it broadcasts (a per-channel gain of 1xCx1x1), it does not vary
    return tuple({axis: f"{name}_{label}" for axis, label in dynamic_dims(len(shape)).items() if shape[axis] != 1}
                 for name, shape in shapes.items())


def _trace_shape(model: LoadedModel) -> Shape:
    """Trace at batch 2 with odd, non-square sizes: size 1 and equal sizes invite specialisation."""
    return preferred_trace_shape(model.shapes_or_default(None))


def preferred_trace_shape(shapes: list[Shape]) -> Shape:
    from deploykit.model_io import batch_of

    seeded = [s for s in shapes if not getattr(s, "source", "")] or shapes  # not an --inputs file's
    return max(seeded, key=lambda s: (batch_of(s) > 1, batch_of(s) == 2))


def export_program(model: LoadedModel, example, *, dims, opset: int, output_names: list[str], dysample_impl: str,
                   layers=None, maxpool_impl: str = "native"):
    """(the in-memory ONNXProgram, the DySample Conversion): the program's ``exported_program``
    is the FX graph the ONNX values are named after; the model's verified DySample layers
    (``layers``, found here when None) are exported as ``dysample_impl``, max-pool indices as
    ``maxpool_impl``. No checks, no file."""
    from deploykit.export.dysample import translation_table
    from deploykit.export.maxpool_indices import translation_table as maxpool_table

    if layers is None:
        layers, _ = find_layers(model.module)
    conversion = Conversion(dysample_impl, list(layers))
    table = {**(translation_table(dysample_impl) or {}), **maxpool_table(maxpool_impl)} or None
    with converted_for_export(model.module, conversion.layers, conversion), _flat_outputs(model.module):
        program = _run_exporter(model, example, dims, opset, output_names, table)
    _unique_output_names(program.model.graph, model.spec)
    conversion.keep_surviving(program.exported_program)
    return program, conversion


@contextlib.contextmanager
def _flat_outputs(module):
    """Within the block the module returns its outputs as one flat tuple, in the order and under
    the names of ``deploykit.model_io.flatten_outputs`` (dicts, dataclasses, nested tuples and
    None entries are not all things the exporter can flatten, nor name)."""
    import functools

    from deploykit.model_io import swapped_method

    original = module.forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        return tuple(flatten_outputs(original(*args, **kwargs)).values())

    with swapped_method(module, "forward", forward):
        yield


def _unique_output_names(graph, spec: str) -> None:
    """An output named after its dict key ('relu', 'add') can share its name with a value the
    exporter named after the FX node that computes it: the graph is then not SSA. The other
    value is renamed; a key that is an input's or a weight's name is the user's to change."""
    outputs = {id(value) for value in graph.outputs}
    wanted = {value.name for value in graph.outputs}
    fixed = {id(value): "an input" for value in graph.inputs}
    fixed |= {id(value): "a weight" for value in graph.initializers.values()}
    values = [*graph.inputs, *graph.initializers.values(), *(v for node in graph for v in node.outputs)]
    taken = {value.name for value in values}
    for value in values:
        if value.name not in wanted or id(value) in outputs:
            continue
        if id(value) in fixed:
            raise UserError(f"{spec} returns an output named {value.name!r}, which is also {fixed[id(value)]}'s name "
                            "in the graph", "rename that key of the model's output")
        n = 1
        while f"{value.name}_{n}" in taken:
            n += 1
        value.name = f"{value.name}_{n}"
        taken.add(value.name)


METADATA_MAXPOOL_IMPL = "deploykit.maxpool_impl"


def _pools_with_indices(exported_program) -> bool:
    """Whether the model computes max-pool indices (so the strategy shaped the graph)."""
    import torch

    return any(node.target is torch.ops.aten.max_pool2d_with_indices.default
               for node in exported_program.graph.nodes)


def _run_exporter(model: LoadedModel, example, dims, opset: int, output_names: list[str], table):
    import torch

    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), \
                contextlib.redirect_stderr(captured), _quiet_loggers():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                model.module, tuple(example), dynamo=True, opset_version=opset, dynamic_shapes=dims,
                input_names=model.input_names, output_names=output_names, verbose=False, optimize=True,
                custom_translation_table=table,
            )
    except Exception as exc:  # the exporter raises many types; all mean "could not export"
        saved = _save_exporter_report(model.spec, exc, captured.getvalue())
        fix = "try --static, a different --opset, or report the op to deploykit"
        if "static shape" in exporter_reason(exc) or "specializ" in exporter_reason(exc):
            fix = "export with --static, or make the layer that fixes this size keep it symbolic"
        raise ExportError(f"export of {model.spec} failed: {exporter_reason(exc)} (full report: {saved})",
                          fix) from None


# Lines of the exporter's own wrapping that say nothing about the model.
_BOILERPLATE = re.compile(r"^(Failed to (export|convert|decompose)|This is step|Next steps|- (Modify|Debug|Create|"
                          r"If you|Please|Refer)|## |\(Refer to|For more information|Set TORCH_LOGS|"
                          r"from user code|The error above)", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def exporter_reason(exc: BaseException, limit: int = 300) -> str:
    """The sentence that says why the exporter failed: the innermost cause's message without
    the exporter's advice (e.g. "tracing inferred a static shape of 160 for dimension
    inputs['x'].shape[2]"), prefixed by its exception type."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 16:
        chain.append(chain[-1].__cause__)
    for error in reversed(chain):
        lines = [_ANSI.sub("", line).strip() for line in str(error).splitlines()]
        lines = [line for line in lines if line and not _BOILERPLATE.match(line)]
        if not lines:
            continue
        text = lines[0]
        for line in lines[1:]:  # "Found the following conflicts:" is a heading for the next line
            if not text.endswith(":") or len(text) >= limit:
                break
            text = f"{text} {line.lstrip('- ')}"
        return f"{type(error).__name__}: {text}"[:limit]
    return type(exc).__name__


def _save_exporter_report(spec: str, exc: BaseException, output: str) -> Path:
    """Everything the exporter said and raised, for the user to read or attach to a bug report."""
    folder = Path(tempfile.gettempdir()) / "deploykit-reports"
    folder.mkdir(mode=0o700, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"export-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as report:
        report.write(f"deploykit export of {spec}: the exporter failed\n\n## What the exporter printed\n\n")
        report.write(_ANSI.sub("", output) or "(nothing)\n")
        report.write("\n## The exception, with its causes\n\n")
        report.write(_ANSI.sub("", "".join(traceback.format_exception(exc))))
    return Path(name)


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
    """What export prints: the file and its signature, what became of DySample layers, and
    at which shapes the graph was run against PyTorch."""
    from deploykit.export.dysample import summary_lines
    from deploykit.export.verify import VERIFIERS

    ins = ", ".join(f"{n}[{'x'.join(map(str, d))}]" for n, d in result.inputs)
    outs = ", ".join(f"{n}[{'x'.join(map(str, d))}]" for n, d in result.outputs)
    kind = "dynamic" if result.dynamic else "static"
    lines = [f"wrote {result.path} (opset {result.opset}, {kind} shapes, traced at "
             f"{format_shape(result.traced_shape)}): {ins} -> {outs}"]
    if result.dysample:
        lines += summary_lines(result.dysample, result.remaining_grid_samples)
    if result.maxpool_impl:
        lines.append(f"max-pool indices exported as: {result.maxpool_impl}")
    if result.verified_shapes:
        lines.append(f"verified at {', '.join(format_shape(s) for s in result.verified_shapes)}: "
                     f"{VERIFIERS.get(result.verified_with, result.verified_with)} matches PyTorch")
        lines += [f"  (not verified at {skipped}: PyTorch rejects it)" for skipped in result.unverifiable]
    else:
        lines.append("not verified (--no-verify): the graph was never run" +
                     (", so its dynamic dims are trusted at shapes it never ran" if result.dynamic else ""))
    return "\n".join(lines)
