"""A dynamic export is proven by running it at a shape it was not traced at.

PyTorch's exporter can specialise a "dynamic" graph to the traced shape (adaptive pooling with
computed bins, sizes derived from ``h // k``, Python ints taken from a tensor's shape): the
file then declares symbolic dims and is right only at the traced one. So every export is run
on ONNX Runtime's CPU provider (the NumPy plugin reference for plugin graphs) at the traced
shape and, for dynamic exports, at another batch, height and width, and compared with PyTorch
through ``deploykit.check`` (the one place parity is computed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import UserError, first_line
from deploykit.model_io import Shape, format_shape
from deploykit.spec import LoadedModel

# The largest power of two added to a spatial size in the second derived shape: it keeps the
# divisibility by every power of two up to 32 that divides the size (models that need multiples of 32).
_MAX_STEP = 32
# The third shape's step: past the patch or stride of any common backbone (ViT 14/16, 32).
_FAR_STEP = 64


class ExportVerificationFailed(UserError):
    """The written graph does not compute what PyTorch computes at some shape: a parity failure."""

    exit_code = 1


@dataclass
class Verification:
    shapes: list[Shape]  # verified, the traced shape first
    skipped: list[str]  # derived shapes PyTorch itself rejects, with why


# How each verifying backend is named to the user.
VERIFIERS = {"ort": "ONNX Runtime CPU",
             "onnx-ref": "onnx.reference with deploykit's NumPy plugin reference (plugin nodes, and deploykit's ONNX "
                         "Runtime library cannot be had here)"}


def require_ort(purpose: str, fix: str = "pip install onnxruntime") -> None:
    """ONNX Runtime's CPU provider, which verification runs on, or a UserError saying ``purpose``."""
    from deploykit.backends import runner_class
    from deploykit.errors import BackendUnavailable

    try:
        runner_class("ort").check_available()
    except BackendUnavailable as exc:
        raise UserError(f"{purpose} needs ONNX Runtime's CPU provider: {exc.problem}", fix) from None


def verification_shapes(model: LoadedModel, traced: Shape, dynamic: bool,
                        requested: list[Shape] | None = None) -> Verification:
    """The traced shape, then (dynamic exports) the requested shapes or the first derived shape
    that PyTorch accepts, each with batch + 1: every spatial size + 1 (a size that divides
    nothing the traced one did shows the most specialisations: a pooling window baked in from
    ``h // k`` is right at every multiple of k), else + its largest power-of-two divisor up to 32
    (for models that need multiples of 32), else doubled (which keeps every divisor); then a
    third, far from both (``_far``)."""
    if not dynamic:
        if requested:
            raise UserError("--verify-shape was given for a --static export, which only runs at its traced shape",
                            "drop --verify-shape, or export with dynamic shapes")
        return Verification([traced], [])
    for shape in requested or []:
        if not _fits(shape, traced, model.input_names):
            raise UserError(f"--verify-shape {format_shape(shape)} does not fit the traced {format_shape(traced)}",
                            "keep its inputs, ranks and channels; only batch and spatial sizes may differ")
        model.validate_shape(shape)
    if requested:
        return Verification([traced, *[s for s in requested if s != traced]], [])
    skipped = []
    for candidate in _derived(traced):
        problem = _rejection(model, candidate)
        if problem is None:
            return Verification([traced, candidate, *_far(model, traced, candidate, skipped)], skipped)
        skipped.append(f"{format_shape(candidate)}: {problem}")
    raise UserError(f"cannot verify the dynamic export at a second shape: PyTorch rejects "
                    f"{'; '.join(skipped)}",
                    "name one the model takes with --verify-shape, or export with --static")


def _far(model: LoadedModel, traced, second, skipped: list[str]) -> list:
    """A third shape, every spatial size + 64 (else doubled): the second moves each size by 1 or
    a small power of two, which stays in the traced size's bucket for patch and stride models
    (a ViT's patch 14, ``h // 2`` before a resize); past the largest stride, no bucket is shared."""
    from deploykit.model_io import Case

    steps = (lambda d: d + _FAR_STEP, lambda d: 2 * d)
    for step in steps:
        if isinstance(traced, Case):
            candidate = _step_case(traced, step)
        else:
            candidate = _step(traced, step)
        if candidate == second:
            continue
        problem = _rejection(model, candidate)
        if problem is None:
            return [candidate]
        skipped.append(f"{format_shape(candidate)}: {problem}")
    return []


def _fits(shape, traced, names: list[str]) -> bool:
    """Same inputs, ranks and channels: what a dynamic export keeps fixed."""
    from deploykit.model_io import case_shapes

    mine, theirs = case_shapes(shape, names), case_shapes(traced, names)
    return list(mine) == list(theirs) and all(len(mine[n]) == len(theirs[n]) and mine[n][1:2] == theirs[n][1:2]
                                              for n in mine)


def _derived(traced) -> list:
    """The three derivations, applied to every input of a case alike."""
    from deploykit.model_io import Case

    steps = (lambda d: d + 1, lambda d: d + min(d & -d, _MAX_STEP), lambda d: 2 * d)
    if isinstance(traced, Case):
        return [_step_case(traced, step) for step in steps]
    return [_step(traced, step) for step in steps]


def _step(shape: Shape, step, keep_ones: bool = False, one_batch: bool = False) -> Shape:
    """Batch + 1 and each spatial size stepped; with ``keep_ones`` (several inputs) a dim of 1
    stays 1: it broadcasts (a 1xCx1x1 gain), and export keeps it static; unless it is a batch of
    1 that every input shares (``one_batch``), which export keeps dynamic."""
    batch, channels, spatial = shape[0], tuple(shape[1:2]), tuple(shape[2:])  # ids: no channels; vectors: K
    if keep_ones:
        return (batch if batch == 1 and not one_batch else batch + 1, *channels,
                *[d if d == 1 else step(d) for d in spatial])
    return (batch + 1, *channels, *[step(d) for d in spatial])


def _step_case(case, step):
    """Every input of a case stepped alike (see _step)."""
    from deploykit.model_io import Case

    one_batch = all(shape[0] == 1 for _, shape in case)
    return Case({name: _step(shape, step, keep_ones=True, one_batch=one_batch) for name, shape in case})


def _rejection(model: LoadedModel, shape: Shape) -> str | None:
    """Why PyTorch cannot run ``model`` at ``shape`` (its own rule, or an error), else None."""
    import torch

    from deploykit.model_io import Case

    if model.shape_rule and not isinstance(shape, Case) and (problem := model.shape_rule(shape)):
        return problem
    try:
        model.forward(*[torch.from_numpy(array.copy()) for array in model.feed(shape).values()])
    except UserError as exc:
        return exc.problem.rsplit(": ", 1)[-1]
    return None


def verify_export(model: LoadedModel, path: Path, verification: Verification, *, plugin_graph: bool,
                  precision: str, threads: int | None, modules: dict[str, tuple[str, str]]) -> str:
    """Run the file at every verification shape and compare with PyTorch; returns the backend
    that ran it (ort, or onnx-ref for a graph with plugin nodes). Raise
    ExportVerificationFailed naming the shape, the error, the first diverging node when it can
    be found, and the fix. ``plugin_graph``: the file has deploykit::DySample nodes (export has
    the graph in hand); ``modules`` maps ONNX value names to the module that computed them."""
    from deploykit.compare import tolerance_for

    tolerance = tolerance_for(precision)
    verifier, failure = _first_failure(model, path, plugin_graph, verification.shapes, tolerance, threads)
    if failure is None:
        return verifier
    shape, output, metrics = failure
    traced = verification.shapes[0]
    if "reference output has NaN/Inf" in (metrics.reason or ""):  # PyTorch's own output: not the graph
        raise UserError(f"PyTorch's own output {output} of {model.spec} has NaN/Inf at {format_shape(shape)}, "
                        "so the export cannot be compared there",
                        "feed inputs the model takes (--val-range, --input-dtype, or --inputs with real data)")
    if not _deterministic(model, shape):  # no graph can match a model that draws random numbers
        raise UserError(f"{model.spec} returns different outputs for the same input at {format_shape(shape)} "
                        "(torch.rand or dropout in forward?), so no export can be compared with it",
                        "make forward deterministic for export (no random ops; eval-mode dropout)")
    where = (f"at the traced shape {format_shape(traced)}" if shape == traced else
             f"at {format_shape(shape)} (it was traced at {format_shape(traced)})")
    lines = [f"the exported graph of {model.spec} does not compute what PyTorch computes {where}: "
             f"output {output}: {metrics.reason}"]
    culprit = _first_diverging_node(model, path, verifier, shape, metrics, tolerance, threads, modules)
    if culprit:
        lines.append(f"  first diverging node: {culprit}")
    if shape != traced and precision == "fp16":
        lines.append("  in fp16 a GridSample computes its coordinates in half precision, which loses more of a "
                     "pixel the larger the image: a few values off at a larger shape is that, not a specialised "
                     "graph (the fp32 export shows which); DySample's gather, roialign and plugin forms compute "
                     "coordinates in fp32 (--dysample-impl)")
    elif shape != traced:
        lines.append(f"  the graph is specialised to the traced shape: export with --static (fixed to "
                     f"{format_shape(traced)}), or change the layer that derives sizes from the input "
                     "(adaptive pooling to computed sizes, Python ints from x.shape) so it stays symbolic")
    elif precision == "fp32" and _computes_in_half(model):
        lines.append("  the model computes in float16 (its weights are half), so an fp32 export cannot match it: "
                     "export with --precision fp16")
    else:
        lines.append("  the exporter mistranslated the model: try another --opset, or report the op to deploykit")
    lines.append(f"  nothing was written to {path.name}; --no-verify writes the graph unverified, "
                 "for 'deploykit check --localize'")
    raise ExportVerificationFailed("\n".join(lines))


def _deterministic(model: LoadedModel, shape: Shape) -> bool:
    """Whether two PyTorch runs on one input agree exactly."""
    import numpy as np

    from deploykit.spec import reference_outputs

    feed = model.feed(shape)
    first, second = reference_outputs(model, feed), reference_outputs(model, feed)
    return all(np.array_equal(first[name], second.get(name), equal_nan=True) for name in first)


def _computes_in_half(model: LoadedModel) -> bool:
    import torch

    return any(p.dtype in (torch.float16, torch.bfloat16) for p in model.module.parameters())


def verify_outside_guards(model: LoadedModel, path: Path, traced: Shape, ranges, *, plugin_graph: bool,
                          precision: str, threads: int | None, also: list[Shape] = ()) -> list[Shape]:
    """Run the file just past every bound the trace recorded (deploykit.export.guards), and at
    the verification shapes ``also`` that lie past one, where PyTorch runs; returns the shapes
    verified there. A graph that differs there is one branch of several:
    ExportVerificationFailed naming the guard and the user's line."""
    from deploykit.compare import tolerance_for
    from deploykit.export.guards import outside_shapes, violated

    past = [*outside_shapes(traced, ranges, model.input_names),
            *[(shape, violated(shape, ranges, model.input_names)) for shape in also]]
    verified = []
    for shape, bound in past:
        if _rejection(model, shape) is not None:
            continue  # PyTorch cannot run there either: the bound is the model's own limit
        _, failure = _first_failure(model, path, plugin_graph, [shape], tolerance_for(precision), threads)
        if failure is not None:
            _, output, metrics = failure
            raise ExportVerificationFailed(
                f"the exported graph of {model.spec} is one branch of several: the trace holds "
                f"{bound.text()}, and at {format_shape(shape)}, past that bound, PyTorch computes something else "
                f"(output {output}: {metrics.reason})",
                "export with --static, or make the branch not depend on the input's size; "
                f"nothing was written to {path.name}")
        verified.append(shape)
    return verified


def _first_failure(model: LoadedModel, path: Path, plugin_graph: bool, shapes: list[Shape], tolerance,
                   threads: int | None):
    """(the backend that ran the file, the first (shape, output, Metrics) that failed or None):
    ONNX Runtime's CPU provider, or onnx-ref for a graph with plugin nodes."""
    from deploykit.backends import RunnerOptions
    from deploykit.backends.runners import open_runners, plan_backends, run_and_compare
    from deploykit.spec import reference_outputs

    shapes = model.shapes_or_default(shapes)  # an --inputs file's case too
    options = RunnerOptions(onnx_path=path, threads=threads, shapes=list(shapes))
    with open_runners(plan_backends(["ort"], options, plugin_graph), options) as runners:
        (verifier, runner), = runners.items()
        for shape in shapes:
            feed = model.feed(shape)
            metrics, _ = run_and_compare(runner, feed, reference_outputs(model, feed), tolerance)
            failure = next(((output, m) for output, m in metrics.items() if not m.passed), None)
            if failure:
                return verifier, (shape, *failure)
    return verifier, None


def _first_diverging_node(model, path, verifier, shape, metrics, tolerance, threads, modules) -> str | None:
    """The node where the graph first leaves PyTorch, compared with a reference traced at the
    failing shape itself (not specialised to the traced one); or the node ONNX Runtime names
    when it could not run the graph at all."""
    from deploykit.backends import RunnerOptions
    from deploykit.localize import localize

    failed_to_run = re.search(r"running (\w+) node\. Name:'([^']+)'", metrics.reason or "")
    if failed_to_run:
        return _node_text(path, failed_to_run.group(2), failed_to_run.group(1), modules)
    try:
        found = localize(model, path, verifier, model.feed(shape), tolerance,
                         runner_options=RunnerOptions(threads=threads), reference_at_input_shape=True)
    except UserError as exc:
        return (f"not found (the model could not be traced again at {format_shape(shape)} to localize it: "
                f"{first_line(exc)})")
    if found.node is None:
        return None
    return f"{found.node.name} ({found.node.op_type}) from module {found.node.module_text()}"


def _node_text(path: Path, name: str, op_type: str, modules: dict[str, tuple[str, str]]) -> str:
    import onnx

    node = next((n for n in onnx.load(str(path), load_external_data=False).graph.node if n.name == name), None)
    module = next((modules[o] for o in (node.output if node is not None else []) if o in modules), None)
    origin = f" from module {module[0] or '<top level>'} ({module[1].rsplit('.', 1)[-1]})" if module else ""
    return f"{name} ({op_type}){origin}"
