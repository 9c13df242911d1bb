"""``deploykit convert``: DySample layers in an ONNX file made elsewhere, found, verified, replaced.

Many users hold only an ONNX file (the TorchScript exporter's, often with dynamic axes, or the
dynamo exporter's). A DySample sample step appears in it as a GridSample over a reshape of x
to (B*g, C/g, H, W) (x itself for g = 1): bilinear (``linear`` from opset 20), border padding,
``align_corners=0``, an integer upsampling s >= 2, and a grid computed from an offset tensor of
shape (B, 2*g*s*s, H, W). Each
such site is verified on its own: the file is cut so that x and the offset are inputs, run on
ONNX Runtime with random values (offsets far outside included) at every probe shape, and
compared with deploykit's NumPy reference. A verified site is replaced through onnxscript's
rewriter by the strategy's form, which computes the grid from x's shape; everything else, and
every input and output name, is kept.

The TorchScript exporter bakes the traced size into DySample's normaliser (``torch.tensor([W,
H])``): such a file is right at that size only. A site wrong at every probe is tried at the size
its constants encode; if it is right there, it is DySample specialised to that size, and the
converted file (right at every size) is checked against the original there only, as said.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.errors import UserError
from deploykit.export.dysample import METADATA_IMPL, METADATA_LAYERS, Lookalike
from deploykit.export.verify import ExportVerificationFailed, require_ort
from deploykit.model_io import Shape, format_shape

logger = logging.getLogger(__name__)

CONVERT_IMPLS = ("plugin", "gather", "roialign", "standard", "auto")
_RESHAPES = ("Reshape", "Identity", "Flatten")
_MAX_OFFSET_CANDIDATES = 8
_MAX_ANCESTORS = 400
_FAR_OUTSIDE = 40.0
# fp16 files compute the grid in half precision: their coordinates are off by up to a few
# hundredths of a pixel at these sizes, which the reference (float32) does not share.
_ATOL = {np.float32: 1e-4, np.float16: 1e-1}
_FP16_RELATIVE_L2 = 1e-2
_PROBE_X = "deploykit_probe_x"
_PROBE_OFFSET = "deploykit_probe_offset"


@dataclass
class Site:
    """One GridSample shaped like DySample's sample step, and what verification found."""

    sampler: str  # the GridSample node's name
    x: str
    grid: str
    output: str  # the GridSample's output, (B*G, C/G, sH, sW)
    offsets: list[str]  # offset-shaped ancestors of the grid, nearest first
    scale: int
    groups: int
    group_channels: int
    offset: str | None = None  # the verified one
    right_at: list[Shape] = field(default_factory=list)  # probe shapes where the original is right
    wrong_at: dict = field(default_factory=dict)  # probe shape text -> its max error
    encoded: tuple[int, int] | None = None  # (H, W) the site's constants encode, when it is specialised


@dataclass
class ConvertResult:
    path: Path
    strategy: str
    opset: int
    converted: list[dict]
    lookalikes: list[Lookalike]
    checked_shapes: list[Shape]  # where the whole converted file equals the original
    probe_shapes: list[Shape]
    specialised: list[str]  # one line per site whose original is right at one size only
    fp16_notes: list[str] = field(default_factory=list)  # fp16 files: differences the original's half grid explains
    checked_with: str = "ort"  # what ran the converted file: ort, or onnx-ref and why


def convert_onnx(source: Path, output: Path, strategy: str, shapes: list[Shape] | None = None,
                 force: bool = False, threads: int | None = None) -> ConvertResult:
    """Write ``output``: ``source`` with each verified DySample site replaced by ``strategy``;
    nothing is written unless the converted file equals the original where the original is right."""
    import onnx_ir as ir

    from deploykit.files import staged_files
    from deploykit.onnx_file import validate_onnx_file

    if strategy not in CONVERT_IMPLS:
        raise UserError(f"unknown DySample strategy {strategy!r} for convert", f"use one of {', '.join(CONVERT_IMPLS)}")
    require_ort("convert, which verifies each layer,")
    validate_onnx_file(source, "IN.onnx")
    model = _load(source)
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 17))
    probes = _probe_shapes(model, shapes)
    sites, lookalikes = _find_sites(model, probes, threads)
    verified = [site for site in sites if site.offset]
    if not verified:
        looked_for = ("no GridSample is DySample's sample step (bilinear, border, align_corners=0, over x reshaped to "
                      "(B*groups, C/groups, H, W), an integer upsampling of at least 2, a grid from an offset of "
                      "shape (B, 2*groups*scale^2, H, W)), verified against the reference")
        found = "".join(f"; {l.path} looks alike but {l.reason}" for l in lookalikes)
        raise UserError(f"{source}: {looked_for}{found}", "convert only applies to files with DySample layers")
    candidates = list(dict.fromkeys(s for site in verified for s in site.right_at))
    checked = [s for s in candidates if all(not site.wrong_at or s in site.right_at for site in verified)]
    if not checked:
        raise UserError("the DySample layers of this file are right at no common input shape (each is "
                        "specialised to another size), so the converted file cannot be checked against it",
                        "pass --shape at which the original is right")
    converted = _replace(model, verified, strategy, opset)
    model.metadata_props[METADATA_LAYERS] = json.dumps(converted)
    model.metadata_props[METADATA_IMPL] = strategy
    model.metadata_props["deploykit.converted_from"] = source.name
    model.metadata_props["deploykit.verified_shapes"] = ";".join(_bare(s) for s in checked)
    with staged_files(Path(output), force) as staged:
        ir.save(model, str(staged))
        _check_written(staged, opset)
        fp16_notes, checked_with = _compare_files(source, staged, checked, threads, plugin_graph=strategy == "plugin")
    specialised = [f"{site.sampler}: the original is right only where this layer is {site.encoded[0]}x"
                   f"{site.encoded[1]} (its constants encode that size; "
                   + ", ".join(f"max error {error:.3g} at {text}" for text, error in site.wrong_at.items())
                   + "); the converted layer computes its grid from the input's shape"
                   for site in verified if site.encoded]
    return ConvertResult(Path(output), strategy, opset, converted, lookalikes, checked, probes, specialised,
                         fp16_notes, checked_with)


def _load(source: Path):
    """The file as onnx-ir, weights in memory, value types inferred (probes need them)."""
    import onnx
    import onnx_ir as ir

    proto = onnx.load(str(source))
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # a graph the inference cannot follow is still convertible where typed
        logger.info("shape inference failed on %s: %s", source, exc)
    return ir.from_proto(proto)


def _bare(shape) -> str:
    from deploykit.model_io import bare_text

    return bare_text(shape)


def _probe_shapes(model, shapes: list[Shape] | None) -> list[Shape]:
    """The user's shapes, or two derived from the file: static dims as they are, symbolic batch 1
    then 2, symbolic spatial sizes 64x96 then 96x64 (odd sizes break models that halve them;
    16x24 and 24x16 for fp16 files)."""
    from deploykit.model_io import Case, case_shapes

    names = [value.name for value in model.graph.inputs]
    if shapes:
        for shape in shapes:
            given = case_shapes(shape, names)
            if list(given) != names:
                raise UserError(f"--shape {format_shape(shape)} does not name the file's inputs ({', '.join(names)})",
                                "pass --shape NAME=NxCxHxW for each input")
        return list(shapes)
    derived = []
    half = any(value.dtype is not None and value.dtype.numpy() == np.float16 for value in model.graph.inputs)
    # an fp16 file's own GridSample loses coordinate precision with the image size: probe it small
    sizes_by_batch = ((1, (16, 24)), (2, (24, 16))) if half else ((1, (64, 96)), (2, (96, 64)))
    for batch, sizes in sizes_by_batch:
        case = {}
        for value in model.graph.inputs:
            dims = list(value.shape.dims) if value.shape is not None else []
            if not dims:
                raise UserError(f"input {value.name} has no recorded rank", "pass --shape")
            concrete = []
            for axis, dim in enumerate(dims):
                if isinstance(dim, int):
                    concrete.append(dim)
                elif axis == 0:
                    concrete.append(batch)
                elif axis >= len(dims) - 2:
                    concrete.append(sizes[axis - (len(dims) - 2)])
                else:
                    raise UserError(f"input {value.name} has a symbolic channel dim", "pass --shape")
            case[value.name] = tuple(concrete)
        shape = next(iter(case.values())) if len(case) == 1 else Case(case)
        if shape not in derived:
            derived.append(shape)
    return derived


def _feed(model, shape, generator) -> dict[str, np.ndarray]:
    from deploykit.model_io import case_shapes

    names = [value.name for value in model.graph.inputs]
    feed = {}
    for value in model.graph.inputs:
        dims = case_shapes(shape, names)[value.name]
        dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        feed[value.name] = (generator.standard_normal(dims).astype(dtype) if np.issubdtype(dtype, np.floating)
                            else np.zeros(dims, dtype=dtype))
    return feed


def _session(model, threads: int | None):
    import onnx_ir as ir
    import onnxruntime as ort

    from deploykit.backends.ort import ort_session_options

    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), ort_session_options(threads),
                                providers=["CPUExecutionProvider"])


def _values(model) -> dict:
    values = {value.name: value for value in model.graph.inputs}
    values.update(model.graph.initializers)
    for node in model.graph:
        values.update({value.name: value for value in node.outputs if value.name})
    return values


def _attribute(node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _flags_problem(sampler, opset: int) -> str | None:
    mode = _attribute(sampler, "mode", "linear" if opset >= 20 else "bilinear")
    if mode not in ("bilinear", "linear"):
        return f"GridSample mode {mode}, not bilinear"
    padding = _attribute(sampler, "padding_mode", "zeros")
    if padding != "border":
        return f"GridSample padding_mode {padding}, not border"
    if _attribute(sampler, "align_corners", 0):
        return "GridSample align_corners=1, not 0"
    return None


def _structure(model):
    """Per GridSample: (node, x value, its output, ancestors of its grid nearest first). x is the
    tensor a Reshape feeds it (itself without one: groups 1); what comes after the GridSample does
    not matter, since the site is verified and replaced at the GridSample's own output."""
    structures = []
    graph_inputs = set(model.graph.inputs)
    for node in model.graph:
        if node.op_type != "GridSample" or node.domain not in ("", "ai.onnx"):
            continue
        source = node.inputs[0]
        producer = source.producer()
        x = producer.inputs[0] if producer is not None and producer.op_type in _RESHAPES else source
        ancestors, seen, frontier = [], {node.inputs[1]}, [node.inputs[1]]
        while frontier and len(seen) < _MAX_ANCESTORS:
            value = frontier.pop(0)
            producer = value.producer()
            if producer is None:
                continue
            for parent in producer.inputs:  # computed values and the graph's inputs (an offset fed in)
                if parent is not None and parent not in seen and (parent.producer() is not None
                                                                   or parent in graph_inputs):
                    seen.add(parent)
                    ancestors.append(parent)
                    frontier.append(parent)
        structures.append((node, x, node.outputs[0], ancestors, node.inputs[1]))
    return structures


def _observe(model, structures, shape, threads, generator) -> dict[str, np.ndarray]:
    """The original run at ``shape`` with every value the sites need exposed, by name."""
    graph = model.graph
    exposed = []
    for node, x, output, ancestors, grid in structures:
        for value in [node.inputs[0], x, grid, output, *ancestors]:
            if value is not None and value.type is not None and value not in exposed and value not in graph.outputs:
                exposed.append(value)
    originals = list(graph.outputs)
    graph.outputs.extend(exposed)
    try:
        session = _session(model, threads)
        names = [out.name for out in session.get_outputs()]
        results = session.run(None, _feed(model, shape, generator))
    finally:
        graph.outputs.clear()
        graph.outputs.extend(originals)
    return dict(zip(names, results))


def _find_sites(model, probes: list[Shape], threads) -> tuple[list[Site], list[Lookalike]]:
    opset = model.opset_imports.get("", 17)
    structures = _structure(model)
    if not structures:
        return [], []
    generator = np.random.default_rng(0)
    try:
        observed = [_observe(model, structures, probe, threads, generator) for probe in probes]
    except Exception as exc:  # ONNX Runtime's own words
        raise UserError(f"the file does not run on ONNX Runtime at {format_shape(probes[0])}: {exc}".splitlines()[0],
                        "pass --shape at which it runs") from None
    sites, lookalikes = [], []
    first = observed[0]
    for node, x, output, ancestors, grid in structures:
        shapes = {name: value.shape for name, value in first.items()}
        source_shape, grid_shape, x_shape = shapes.get(node.inputs[0].name), shapes.get(grid.name), shapes.get(x.name)
        if not (source_shape and grid_shape and x_shape) or len(source_shape) != 4 or len(x_shape) != 4:
            continue
        n, c, h, w = source_shape
        if grid_shape[1] % h or grid_shape[2] % w or grid_shape[1] // h != grid_shape[2] // w or grid_shape[1] < 2 * h:
            continue
        if x_shape[2:] != (h, w) or n % x_shape[0] or x_shape[0] * x_shape[1] != n * c:
            continue
        scale, groups = grid_shape[1] // h, n // x_shape[0]
        wanted = (x_shape[0], 2 * groups * scale * scale, h, w)
        offsets = [a.name for a in ancestors if shapes.get(a.name) == wanted and a is not x][:_MAX_OFFSET_CANDIDATES]
        if not offsets:
            continue
        name = node.name or grid.name
        problem = _flags_problem(node, opset)
        if problem is None and shapes.get(output.name) != (n, c, scale * h, scale * w):
            problem = f"its result is not the upsampled (B*G, C/G, {scale}H, {scale}W)"
        if problem:
            lookalikes.append(Lookalike(name, "GridSample", problem))
            continue
        site = Site(name, x.name, grid.name, output.name, offsets, scale, groups, c)
        _verify(model, site, probes, observed, threads, generator)
        if site.offset is None:
            error = min(site.wrong_at.values(), default=float("inf"))
            lookalikes.append(Lookalike(name, "GridSample", "its grid is not DySample's grid of any offset tensor"
                                        + (f" (differs by up to {error:.3g})" if error != float("inf") else "")))
        else:
            sites.append(site)
    return sites, lookalikes


def _verify(model, site: Site, probes, observed, threads, generator) -> None:
    """Find the offset for which the site is DySample's step at every probe; or, right at some
    probes only, or at none but the size its constants encode, the one for which it is DySample
    specialised to that size."""
    for offset in site.offsets:
        errors = {format_shape(probe): _site_error(model, site, offset, probe, seen[site.x].shape,
                                                    seen[offset].shape, threads, generator)
                  for probe, seen in zip(probes, observed)}
        tolerance = _ATOL.get(observed[0][site.x].dtype.type, 1e-4)
        right = [probe for probe in probes if errors[format_shape(probe)] <= tolerance]
        wrong = {text: error for text, error in errors.items() if error > tolerance}
        if right:
            x_shape = observed[probes.index(right[0])][site.x].shape
            site.offset, site.right_at, site.wrong_at = offset, right, wrong
            site.encoded = tuple(x_shape[2:]) if wrong else None
            return
        if not site.wrong_at or min(wrong.values()) < min(site.wrong_at.values()):
            site.wrong_at = wrong  # the closest offset's errors, for the lookalike's reason
        encoded = _encoded_size(model, offset, site)
        probe = _probe_at(model, probes[0], observed[0][site.x].shape, encoded) if encoded else None
        if probe is None:
            continue
        seen = _observe(model, _structure_of(model, site), probe, threads, generator)
        if seen[site.x].shape[2:] != encoded:
            continue
        error = _site_error(model, site, offset, probe, seen[site.x].shape, seen[offset].shape, threads, generator)
        if error <= tolerance:
            site.offset, site.right_at, site.wrong_at, site.encoded = offset, [probe], wrong, encoded
            return


def _structure_of(model, site: Site):
    return [s for s in _structure(model) if (s[0].name or s[4].name) == site.sampler]


def _encoded_size(model, offset: str, site: Site) -> tuple[int, int] | None:
    """(H, W) from a two-value constant [W, H] in the grid's computation (``torch.tensor([W, H])``
    as the TorchScript exporter bakes it), or None."""
    import onnx_ir as ir

    values = _values(model)
    for node in _between(model, {values[offset]}, values[site.grid]):
        for value in node.inputs:
            tensor = ir.convenience.get_const_tensor(value) if value is not None else None
            if tensor is None:
                continue
            array = tensor.numpy().reshape(-1)
            if array.size == 2 and np.all(array >= 1) and np.all(array == np.round(array)):
                return int(array[1]), int(array[0])
    return None


def _probe_at(model, probe, x_shape, encoded) -> Shape | None:
    """The input shape at which the site's x is ``encoded`` (H, W), from the ratio seen at ``probe``."""
    from deploykit.model_io import Case, case_shapes

    names = [value.name for value in model.graph.inputs]
    shapes = case_shapes(probe, names)
    first = shapes[names[0]]
    if len(first) != 4:
        return None
    height, width = (first[2] * encoded[0], first[3] * encoded[1])
    if height % x_shape[2] or width % x_shape[3]:
        return None
    size = (height // x_shape[2], width // x_shape[3])
    scaled = {name: (*dims[:2], *size) if len(dims) == 4 and dims[2:] == first[2:] else dims
              for name, dims in shapes.items()}
    return scaled[names[0]] if len(names) == 1 else Case(scaled)


def _between(model, sources: set, target) -> list:
    """The nodes on some path from ``sources`` to ``target``, in graph order; the walk back stops
    at the sources (what computed a replaced value is not re-run)."""
    ancestors, stack = set(), [target]
    while stack:
        value = stack.pop()
        if value in sources:
            continue
        producer = value.producer()
        if producer is None or producer in ancestors:
            continue
        ancestors.add(producer)
        stack.extend(v for v in producer.inputs if v is not None)
    inside, ordered = set(sources), []
    for node in model.graph:
        if node in ancestors and any(v in inside for v in node.inputs):
            inside.update(node.outputs)
            ordered.append(node)
    return ordered


def _site_error(model, site: Site, offset: str, probe, x_shape, offset_shape, threads, generator) -> float:
    """Largest difference from the reference of the site's output, re-run from random x and offsets."""
    from deploykit.ops.numpy_reference import numpy_sample

    cut = _cut(model, site, offset)
    feed = _feed(model, probe, generator)
    x_type = next(v for v in cut.graph.inputs if v.name == _PROBE_X).dtype.numpy()
    x = generator.standard_normal(x_shape).astype(x_type)
    shift = generator.standard_normal(offset_shape) * 0.6
    far = generator.random(offset_shape) < 0.125
    shift = np.where(far, np.sign(shift) * _FAR_OUTSIDE + shift, shift)
    very_far = generator.random(offset_shape) < 0.0625  # several image sizes outside: a clamp shows
    shift = np.where(very_far, np.sign(shift) * (_FAR_OUTSIDE + 4.0 * max(x_shape[-2:])) + shift, shift).astype(x_type)
    feed.update({_PROBE_X: x, _PROBE_OFFSET: shift})
    try:
        got = _session(cut, threads).run(None, feed)[0]
    except Exception as exc:  # a site that cannot take other values is not DySample's step here
        logger.info("site %s with offset %s did not run: %s", site.sampler, offset, exc)
        return float("inf")
    want = numpy_sample(x.astype(np.float32), shift.astype(np.float32), site.scale, site.groups)
    want = want.reshape(-1, site.group_channels, *want.shape[2:])  # as the GridSample lays it out
    if got.shape != want.shape:
        return float("inf")
    error = float(np.abs(got.astype(np.float32) - want).max())
    return error if error == error else float("inf")


def _cut(model, site: Site, offset: str):
    """A copy of the file whose only output is the site's, with x and ``offset`` as inputs of
    the nodes between them and that output (shape computations from the inputs are kept)."""
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    copy = ir.from_proto(ir.to_proto(model))
    values = _values(copy)
    x, off, output = values[site.x], values[offset], values[site.output]
    probe_x = ir.Value(name=_PROBE_X, type=x.type, shape=x.shape)
    probe_offset = ir.Value(name=_PROBE_OFFSET, type=off.type, shape=off.shape)
    for node in _between(copy, {x, off}, output):
        for index, value in enumerate(node.inputs):
            if value is x:
                node.replace_input_with(index, probe_x)
            elif value is off:
                node.replace_input_with(index, probe_offset)
    copy.graph.inputs.extend([probe_x, probe_offset])
    copy.graph.outputs.clear()
    copy.graph.outputs.append(output)
    RemoveUnusedNodesPass()(copy)
    return copy


def _replace(model, sites: list[Site], strategy: str, opset: int) -> list[dict]:
    """Each verified site replaced by the strategy's form through onnxscript's rewriter; returns
    what the metadata records."""
    from onnx_ir.passes.common import RemoveUnusedNodesPass
    from onnxscript.rewriter import pattern

    from deploykit.ops.onnx_decompositions import auto_strategy, sample_step
    from deploykit.ops.onnx_translation import DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION, register_schema

    values = _values(model)
    by_key = {(site.output, site.grid): site for site in sites}
    chosen: dict[str, str] = {}

    # The GridSample alone: a shared Reshape of x (the exporter merges identical ones) or none
    # (groups 1) cannot stop the match; the replacement takes x and the offset by name and ends in
    # the GridSample's own layout, (B*G, C/G, sH, sW), so whatever followed it is kept as it was.
    def target(op, source, grid):
        return op.GridSample(source, grid, _allow_other_attributes=True, _outputs=["sampled"])

    def condition(context, source, grid, sampled, **_):
        return (sampled.name, grid.name) in by_key

    def replacement(op, source, grid, sampled, **_):
        site = by_key[(sampled.name, grid.name)]
        x, offset = values[site.x], values[site.offset]
        if strategy == "plugin":
            chosen[site.sampler] = "plugin"
            result = getattr(op, OP_TYPE)(x, offset, scale=site.scale, groups=site.groups,
                                          plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE,
                                          _domain=DOMAIN)
        else:
            channels = x.shape[1] if x.shape is not None and isinstance(x.shape[1], int) else None
            chosen[site.sampler] = auto_strategy(channels, site.groups) if strategy == "auto" else strategy
            result = sample_step(op, chosen[site.sampler], x, offset, site.scale, site.groups, opset=opset)
        if site.groups == 1 and x is source:
            return result
        layout = op.Concat(op.Constant(value_ints=[-1, site.group_channels]), op.Shape(result, start=2), axis=0)
        return op.Reshape(result, layout)

    rule = pattern.RewriteRule(target, replacement, condition, name="deploykit_dysample")
    count = rule.apply_to_model(model)
    if count != len(sites):
        raise AssertionError(f"replaced {count} of {len(sites)} verified DySample sites")
    if strategy == "plugin":
        register_schema()
        model.opset_imports[DOMAIN] = 1
    RemoveUnusedNodesPass()(model)
    return [{"module": site.sampler, "class": "GridSample", "scale": site.scale, "groups": site.groups,
             "strategy": chosen[site.sampler], **({"specialised_to": list(site.encoded)} if site.encoded else {})}
            for site in sites]


def _check_written(path: Path, opset: int) -> None:
    import onnx

    from deploykit.ops.onnx_translation import register_schema

    register_schema()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise AssertionError(f"the converted graph fails onnx.checker at opset {opset}: {exc}") from None


def _compare_files(source: Path, converted: Path, shapes: list[Shape], threads, plugin_graph: bool
                   ) -> tuple[list[str], str]:
    """The converted file against the original, output by output, at ``shapes`` (where the
    original's DySample layers are right); a difference is a parity failure. An fp16 original
    computes GridSample's coordinates in half precision, which the converted forms do not: a few
    values past fp16's elementwise tolerance pass when the output's relative L2 error is within
    1e-2, and the returned notes say so. Also returns what ran the converted file (a plugin graph
    runs on onnx-ref where deploykit's ONNX Runtime library cannot be had, and that says why)."""
    from deploykit.backends import RunnerOptions, runner_class
    from deploykit.backends.runners import open_runners, plan_backends, run_and_compare, run_backend
    from deploykit.compare import tolerance_for

    original = runner_class("ort")(RunnerOptions(onnx_path=source, threads=threads))
    options = RunnerOptions(onnx_path=converted, threads=threads)
    plan = plan_backends(["ort"], options, plugin_graph)  # plugin nodes: deploykit's ORT library, or onnx-ref
    generator = np.random.default_rng(1)
    import onnx_ir as ir

    header = ir.load(str(source))
    half = any(value.dtype is not None and value.dtype.numpy() == np.float16 for value in header.graph.inputs)
    tolerance = tolerance_for("fp16" if half else "fp32")  # an fp16 file is compared at fp16's tolerance
    notes = []
    with original, open_runners(plan, options) as runners:
        (mine,) = runners.values()
        for shape in shapes:
            feed = _feed(header, shape, generator)
            references = run_backend(original, feed)
            metrics, outputs = run_and_compare(mine, feed, references, tolerance)
            failures = {name: m for name, m in metrics.items() if not m.passed}
            if half and outputs is not None:
                for name in list(failures):
                    relative = _relative_l2(references[name], outputs.get(name))
                    if relative <= _FP16_RELATIVE_L2:
                        notes.append(f"{name} at {format_shape(shape)}: {failures.pop(name).reason} (the original's "
                                     f"fp16 GridSample coordinates); relative L2 error {relative:.2g}")
            if failures:
                details = "; ".join(f"{name}: {m.reason or f'max abs error {m.max_abs:.3g}'}"
                                    for name, m in failures.items())
                raise ExportVerificationFailed(f"the converted file differs from {source} at {format_shape(shape)}: "
                                               f"{details}", "report it to deploykit with both files")
    return notes, f"onnx-ref ({plan.substitute_why})" if plan.substitute_why else "ort"


def _relative_l2(reference, actual) -> float:
    if actual is None or np.shape(actual) != np.shape(reference):
        return float("inf")
    reference, actual = np.asarray(reference, np.float64), np.asarray(actual, np.float64)
    norm = float(np.linalg.norm(reference))
    return float(np.linalg.norm(actual - reference)) / norm if norm else float("inf")


def convert_json(result: ConvertResult, names: list[str]) -> dict:
    """What ``convert --report`` writes: each converted layer, and where the file was proven
    (shapes as {input name: dims}, ``names`` the file's inputs)."""
    from deploykit.model_io import case_json

    return {"onnx": str(result.path), "opset": result.opset, "strategy": result.strategy,
            "converted": result.converted,
            "lookalikes": [{"site": l.path, "reason": l.reason} for l in result.lookalikes],
            "specialised": result.specialised, "fp16_notes": result.fp16_notes,
            "probe_shapes": [case_json(shape, names) for shape in result.probe_shapes],
            "checked_shapes": [case_json(shape, names) for shape in result.checked_shapes],
            "checked_with": result.checked_with}


def describe(result: ConvertResult) -> str:
    """What convert prints: the file, each converted layer, lookalikes left alone, and which
    sizes were proven."""
    lines = [f"wrote {result.path} (opset {result.opset}): {len(result.converted)} DySample layer"
             f"{'s' if len(result.converted) != 1 else ''} converted"]
    lines += [f"converted DySample layer at {entry['module']} (scale {entry['scale']}, groups {entry['groups']}): "
              f"{entry['strategy']}" for entry in result.converted]
    lines += [f"warning: {l.path} looks like DySample but was not converted: {l.reason}" for l in result.lookalikes]
    lines += [f"specialised: {line}" for line in result.specialised]
    lines += [f"fp16: {line}" for line in result.fp16_notes]
    probes = ", ".join(format_shape(s) for s in result.probe_shapes)
    lines.append(f"each layer verified against the reference at {probes}"
                 + (" or at the size its constants encode" if result.specialised else ""))
    lines.append(f"the converted file equals the original at {', '.join(format_shape(s) for s in result.checked_shapes)}"
                 + (" (where the original is right)" if result.specialised else "")
                 + f", run on {'ONNX Runtime CPU' if result.checked_with == 'ort' else result.checked_with}")
    return "\n".join(lines)
