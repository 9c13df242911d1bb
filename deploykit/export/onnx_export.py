"""torch -> a checked ONNX file: dynamic batch and spatial dims, DySample and max-pool indices
as asked, the graph checked for its target and verified against PyTorch before it is written.

The exporter call itself is deploykit.export.program.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UserError, first_line
from deploykit.export.dysample import (AUTO_PLUGIN_NOTE, DEFAULT_DYSAMPLE_IMPL, DYSAMPLE_IMPLS, NEEDS_A_LAYER, Conversion,
                                       find_layers, strategy_for)
from deploykit.export.maxpool_indices import DEFAULT_MAXPOOL_IMPL, MAXPOOL_IMPLS
from deploykit.export.options import TARGETS
from deploykit.export.program import (METADATA_MAXPOOL_IMPL, ExportError, dynamic_shapes, example_inputs,
                                      export_program, pools_with_indices)
from deploykit.files import staged_files
from deploykit.model_io import Shape, bare_text, flatten_outputs, format_shape, shape_text
from deploykit.spec import (METADATA_PARAMS, METADATA_RECIPE, METADATA_SEED, METADATA_SPEC, METADATA_WEIGHTS, LoadedModel,
                            weights_fingerprint)

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 16, 23
# Opset 20 renamed GridSample's modes (bilinear -> linear, bicubic -> cubic); TensorRT's ONNX
# parser maps names it does not know to NEAREST without a warning.
TRT_GRIDSAMPLE_MAX_OPSET = 19

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
    opset_note: str | None = None  # why the opset is above DEFAULT_OPSET, when it was chosen
    dim_ranges: list = field(default_factory=list)  # the bounds the trace holds dynamic dims to (export.guards)
    strategy_note: str | None = None  # what auto chose for DySample layers, when that changes the file's runtime needs


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
    from deploykit.export.guards import dim_ranges, violated
    from deploykit.export.guards import metadata as guard_metadata
    from deploykit.export.verify import require_ort, verification_shapes, verify_export, verify_outside_guards
    from deploykit.onnx_file import has_plugin_nodes

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
    with _counting_grid_samples() as samples:
        output_names = list(flatten_outputs(model.forward(*[t.clone() for t in example])))
    if not output_names:
        raise UserError(f"{model.spec} returns no tensor", "export a module whose forward returns tensors")
    dims = dynamic_shapes(model, shape) if dynamic else None
    verification = verification_shapes(model, shape, dynamic, verify_shapes) if verify else None
    if verification:
        require_ort("verifying the export",
                    "pip install onnxruntime, or pass --no-verify (the graph is then never run)")
    layers, lookalikes = find_layers(model.module)  # on the fp32 module, before any half copy
    asked = dysample_impl
    if layers or samples:  # the library is built (first use) only for a model that has DySample to export
        dysample_impl = strategy_for(dysample_impl, target)
    if explicit and dysample_impl in NEEDS_A_LAYER and not layers and not samples:  # before the export's seconds
        raise UserError(f"--dysample-impl {dysample_impl} changed nothing in {model.spec}: it has no DySample layer "
                        "(no sample(x, offset) method computes DySample's step, and forward samples no grid)",
                        "drop --dysample-impl for this model")
    fingerprint = weights_fingerprint(model.module)
    reference = model
    probes = [example_inputs(model, s) for s in verification.shapes[1:]] if verification else []
    if precision == "fp16":  # a half copy: the caller's model stays fp32
        model = dataclasses.replace(model, module=copy.deepcopy(model.module).half())
        example = tuple(t.half() if t.is_floating_point() else t for t in example)
        probes = [tuple(t.half() if t.is_floating_point() else t for t in probe) for probe in probes]

    logger.info("exporting %s traced at %s (opset %s, %s, DySample %s, max-pool indices %s, %s)", model.spec,
                format_shape(shape), opset or f"{DEFAULT_OPSET} or the lowest an op needs",
                "dynamic" if dynamic else "static", dysample_impl, maxpool_impl, precision)
    with staged_files(Path(path), force) as staged:
        opset_note = None
        for attempt in [opset] if opset else _auto_opsets():
            program, conversion = export_program(model, example, dims=dims, opset=attempt,
                                                 output_names=output_names, dysample_impl=dysample_impl,
                                                 layers=layers, maxpool_impl=maxpool_impl, probes=probes)
            conversion.lookalikes = lookalikes + conversion.lookalikes
            if explicit and dysample_impl in NEEDS_A_LAYER and not conversion.calls:
                raise UserError(_no_layer_problem(model, dysample_impl, conversion),
                                "drop --dysample-impl for this model, or check that forward uses its DySample layers")
            props = program.model.metadata_props
            props["deploykit.traced_shape"] = bare_text(shape)  # engine profile defaults
            props[METADATA_SPEC] = model.spec
            props[METADATA_SEED] = str(reference.seed)
            if reference.recipe is not None:
                props[METADATA_RECIPE] = reference.recipe
            props[METADATA_PARAMS] = json.dumps(reference.params, sort_keys=True, default=str)
            props[METADATA_WEIGHTS] = fingerprint
            props.update(metadata(conversion))  # only what the graph contains
            computes_indices = pools_with_indices(program.exported_program)
            if computes_indices:
                props[METADATA_MAXPOOL_IMPL] = maxpool_impl
            program.save(str(staged))  # weights go to a .data file beside it past protobuf's 2 GB
            proto = onnx.load(str(staged), load_external_data=False)
            try:
                actual = _check_graph(staged, proto, opset, target, model.spec)
                break
            except _OpsetTooLow as exc:
                if attempt == _auto_opsets()[-1]:
                    raise ExportError(exc.problem, exc.fix) from None
                opset_note = f"opset {attempt} was too low: {exc.checker_says}"
                logger.info("%s; exporting again at the next opset", opset_note)
        from deploykit.export.modules import value_modules

        modules = value_modules(program.exported_program)
        remaining = [{**grid, "module": modules.get(grid["output"])} for grid in check_graph(conversion, proto)]
        ranges = dim_ranges(program.exported_program, model.input_names,
                            {v.name: _dims(v) for v in proto.graph.input}) if dynamic else []
        props.update(guard_metadata(ranges))
        if verification:
            past = [s for s in verification.shapes if violated(s, ranges, model.input_names)]
            verification.shapes = [s for s in verification.shapes if s not in past]
            logger.info("verifying the graph at %s", ", ".join(format_shape(s) for s in verification.shapes))
            with _named_as_written(staged, Path(path)):
                verifier = verify_export(reference, staged, verification, plugin_graph=has_plugin_nodes(proto),
                                         precision=precision, threads=threads, modules=modules)
            verification.shapes += verify_outside_guards(reference, staged, shape, ranges, also=past,
                                                         plugin_graph=has_plugin_nodes(proto),
                                                         precision=precision, threads=threads)
            props["deploykit.verified_shapes"] = ";".join(bare_text(s) for s in verification.shapes)
            props["deploykit.verified_with"] = verifier
        if verification or ranges:
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
            maxpool_impl=maxpool_impl if computes_indices else None,
            opset_note=opset_note, dim_ranges=ranges,
            strategy_note=AUTO_PLUGIN_NOTE if asked != dysample_impl and conversion.calls else None,
        )
    return result


@contextlib.contextmanager
def _named_as_written(staged: Path, path: Path):
    """Errors raised within name the file being written, not its staging copy (which is gone by
    the time the user reads them)."""
    try:
        yield
    except UserError as exc:
        text = str(exc).replace(str(staged), f"{path} (being written)")
        exc.args = (text,)
        exc.problem = exc.problem.replace(str(staged), f"{path} (being written)")
        raise


@contextlib.contextmanager
def _counting_grid_samples():
    """Within the block, calls of grid_sample (any spelling) are counted in the yielded list: a
    model that samples no grid has no DySample layer to convert."""
    import torch
    from torch.overrides import TorchFunctionMode

    calls: list = []
    sampling = {torch.nn.functional.grid_sample, torch.grid_sampler, torch.grid_sampler_2d}

    class Counter(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in sampling:
                calls.append(func)
            return func(*args, **(kwargs or {}))

    with Counter():
        yield calls


def _no_layer_problem(model: LoadedModel, strategy: str, conversion) -> str:
    """Why an explicit strategy changed nothing: what was looked for, and what was found instead."""
    looked_for = ("no call in the traced graph computes DySample's sample step (a bilinear, border-padded, "
                  "align_corners=False grid sample of pixel centres plus an offset, pixel-shuffled by an "
                  "integer scale, verified against the reference)")
    if conversion.layers:
        looked_for = (f"the DySample layers {', '.join(l.path or '<top level>' for l in conversion.layers)} are "
                      "verified, but none is in the exported graph (a layer forward never calls, or whose "
                      "result is unused, leaves nothing to convert)")
    lookalikes = "".join(f"; {l.path or '<top level>'} ({l.cls.rsplit('.', 1)[-1]}) looks alike but {l.reason}"
                         for l in conversion.lookalikes)
    return f"--dysample-impl {strategy} changed nothing in {model.spec}: {looked_for}{lookalikes}"


def _trace_shape(model: LoadedModel) -> Shape:
    """Trace at batch 2 with odd, non-square sizes: size 1 and equal sizes invite specialisation."""
    return preferred_trace_shape(model.shapes_or_default(None))


def preferred_trace_shape(shapes: list[Shape]) -> Shape:
    from deploykit.model_io import batch_of

    seeded = [s for s in shapes if not getattr(s, "source", "")] or shapes  # not an --inputs file's
    return max(seeded, key=lambda s: (batch_of(s) > 1, batch_of(s) == 2))


class _OpsetTooLow(ExportError):
    """The graph at an automatically chosen opset fails the checker: try the next one."""

    def __init__(self, problem: str, fix: str, checker_says: str):
        super().__init__(problem, fix)
        self.checker_says = checker_says


def _auto_opsets() -> list[int]:
    """Opsets tried when none is asked for: DEFAULT_OPSET, then each one up to the exporter's own
    (torch.onnx writes its ops at that opset and converts down, which some ops do not survive:
    ``torch.chunk``'s Split(num_outputs) needs 18)."""
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET
    except ImportError:
        TORCHLIB_OPSET = 18
    return list(range(DEFAULT_OPSET, max(DEFAULT_OPSET, min(TORCHLIB_OPSET, MAX_OPSET)) + 1))


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
        problem = f"exported graph of {spec} fails onnx.checker at opset {actual}: {first_line(exc, 300)}"
        if opset is None:  # an op the exporter wrote needs a newer opset (Split's num_outputs: 18)
            raise _OpsetTooLow(problem, "try another --opset, or report the op to deploykit",
                               checker_says=first_line(exc, 200)) from None
        raise ExportError(problem, "try another --opset (the lowest the graph's ops need), or report the op "
                                   "to deploykit") from None
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


def _fixed_outputs_warning(result: ExportResult) -> list[str]:
    """A dynamic input whose sizes reach no output: every output's dims past the batch are fixed.
    Right for a classifier; for a dense head it means the graph ignores the input's size (a
    depth head that answers 56x84 whatever it is given)."""
    sized = [name for name, dims in result.inputs if any(isinstance(d, str) for d in dims[1:])]
    if not result.dynamic or not sized or any(isinstance(d, str) for _, dims in result.outputs for d in dims[1:]):
        return []
    outs = ", ".join(f"{n}[{shape_text(d)}]" for n, d in result.outputs)
    return [f"warning: {', '.join(sized)} has dynamic sizes but every output's are fixed ({outs}): right for a "
            "classifier; a dense output that should follow the input's size means the graph is specialised "
            "(verify at the sizes you deploy with --verify-shape)"]


def export_json(result: ExportResult) -> dict:
    """What ``export --report`` writes: the file, its signature, what became of DySample layers,
    and where the graph was run against PyTorch (shapes as {input name: dims})."""
    from deploykit.model_io import case_json

    names = [name for name, _ in result.inputs]
    return {"onnx": str(result.path), "opset": result.opset, "opset_note": result.opset_note,
            "dynamic": result.dynamic, "traced_shape": case_json(result.traced_shape, names),
            "inputs": [{"name": name, "dims": dims} for name, dims in result.inputs],
            "outputs": [{"name": name, "dims": dims} for name, dims in result.outputs],
            "dysample_layers": result.dysample.converted() if result.dysample else [],
            "dysample_note": result.strategy_note,
            "lookalikes": [{"module": l.path, "class": l.cls, "reason": l.reason}
                           for l in (result.dysample.lookalikes if result.dysample else [])],
            "maxpool_impl": result.maxpool_impl,
            "bounds": [bound.text() for bound in result.dim_ranges],
            "verified_shapes": [case_json(shape, names) for shape in result.verified_shapes],
            "verified_with": result.verified_with}


def describe(result: ExportResult) -> str:
    """What export prints: the file and its signature, what became of DySample layers, and
    at which shapes the graph was run against PyTorch."""
    from deploykit.export.dysample import summary_lines
    from deploykit.export.verify import VERIFIERS

    ins = ", ".join(f"{n}[{shape_text(d)}]" for n, d in result.inputs)
    outs = ", ".join(f"{n}[{shape_text(d)}]" for n, d in result.outputs)
    kind = "dynamic" if result.dynamic else "static"
    lines = [f"wrote {result.path} (opset {result.opset}, {kind} shapes, traced at "
             f"{format_shape(result.traced_shape)}): {ins} -> {outs}"]
    if result.opset_note:
        lines.append(f"opset {result.opset} because {result.opset_note}")
    if result.dysample:
        lines += summary_lines(result.dysample, result.remaining_grid_samples)
    if result.strategy_note:
        lines.append(result.strategy_note)
    if result.maxpool_impl:
        lines.append(f"max-pool indices exported as: {result.maxpool_impl}")
    lines += [f"bounded: the trace holds {bound.text()}; recorded in the file (build's profiles keep to it)"
              for bound in result.dim_ranges]
    lines += _fixed_outputs_warning(result)
    if result.verified_shapes:
        lines.append(f"verified at {', '.join(format_shape(s) for s in result.verified_shapes)}: "
                     f"{VERIFIERS.get(result.verified_with, result.verified_with)} matches PyTorch")
        lines += [f"  (not verified at {skipped}: PyTorch rejects it)" for skipped in result.unverifiable]
    else:
        lines.append("not verified (--no-verify): the graph was never run" +
                     (", so its dynamic dims are trusted at shapes it never ran" if result.dynamic else ""))
    return "\n".join(lines)
