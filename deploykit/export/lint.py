"""Lint an ONNX graph for a target runtime before any engine build.

For TensorRT it flags what the ONNX parser rejects and, worse, what it silently computes
differently (facts from TensorRT's ONNX parser and operator support matrix):
- GridSample modes other than nearest/bilinear/bicubic are parsed as NEAREST without a
  warning, and opset 20 renamed bilinear/bicubic to linear/cubic;
- MaxUnpool, MaxPool's Indices output, ScatterND's reduction and Resize antialias are
  unsupported (a max-unpool decoder exports as ScatterND, and ``--maxpool-impl window``
  computes the indices without MaxPool's Indices output);
- MaxPool's dilations are dropped without a warning (onnx-tensorrt's poolingHelper never
  reads them), so a dilated MaxPool pools a dense window;
- ScatterElements with a reduction runs through TensorRT's ScatterElements plugin;
- Resize coordinate modes beyond half_pixel, pytorch_half_pixel, align_corners,
  asymmetric and tf_half_pixel_for_nn are unsupported;
- nodes of a custom domain need a plugin library that names them (ONNX Runtime's own domains
  need none on ``ort``, and have no importer in TensorRT);
- If/Loop/Scan bodies and model-local functions are linted like the main graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from deploykit.errors import UserError
from deploykit.export.maxpool_indices import DEFAULT_MAXPOOL_IMPL
from deploykit.export.options import TARGETS

_STANDARD_DOMAINS = {"", "ai.onnx"}
# Domains whose operators ONNX Runtime implements itself (contrib, ML, layout-transformed ops).
_ORT_DOMAINS = {"com.microsoft", "ai.onnx.ml", "com.microsoft.nchwc", "com.ms.internal.nhwc",
                "ai.onnx.preview.training", "com.microsoft.experimental"}
_TRT_GRID_MODES = {"nearest", "bilinear", "bicubic"}
_TRT_RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                           "tf_half_pixel_for_nn"}


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": the target rejects or miscomputes it; "warning": worth a look
    node: str
    op_type: str
    why: str
    fix: str

    def as_json(self) -> dict:
        return asdict(self)


def lint_file(path: Path, target: str = "trt", plugins: list[Path] | None = None,
              plugin_pending: bool = False) -> list[Finding]:
    """Findings for the ONNX file at ``path`` (read without its external weights).

    ``plugin_pending``: deploykit's own plugin nodes were exported on purpose and the plugin
    library will be given at build time, so they are a reminder, not an error.
    """
    from deploykit.onnx_file import validate_onnx_file

    if target not in TARGETS:
        raise UserError(f"unknown lint target {target!r}", f"use one of {', '.join(TARGETS)}")
    proto = validate_onnx_file(Path(path), option="MODEL")
    for plugin in plugins or []:
        if not Path(plugin).is_file():
            raise UserError(f"plugin library {plugin} not found", "build it with cmake (see README) or fix the path")
    return lint(proto, target, plugins or [], plugin_pending)


def lint_json(findings: list[Finding], path: Path, target: str) -> dict:
    """What ``lint --report`` writes: passed when no finding is an error."""
    return {"passed": not has_errors(findings), "target": target, "onnx": str(path),
            "findings": [f.as_json() for f in findings]}


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def lint(proto, target: str = "trt", plugins: list[Path] | None = None, plugin_pending: bool = False) -> list[Finding]:
    """Every node of the graph, its If/Loop/Scan bodies and the model's local functions (named
    ``outer/attribute/inner``): a finding hidden in a subgraph runs all the same."""
    opset = next((o.version for o in proto.opset_import if o.domain in _STANDARD_DOMAINS), 0)
    functions = {(f.domain, f.name): f for f in proto.functions}
    provided = {Path(plugin): Path(plugin).read_bytes() for plugin in plugins or []}
    findings: list[Finding] = _fixed_outputs(proto.graph)
    for name, node, used in _nodes(proto.graph, functions, ""):
        if (node.domain, node.op_type) in functions:
            continue  # a model-local function: its body is walked instead
        attrs = {a.name: _attribute(a) for a in node.attribute}
        if node.domain not in _STANDARD_DOMAINS:
            findings.extend(_custom_node(node, name, target, plugin_pending, provided))
        elif target == "trt":
            findings.extend(_trt_node(node, name, attrs, opset, used))
    return findings


def _fixed_outputs(graph) -> list[Finding]:
    """An input with dynamic sizes that reach no output (every output's dims past the batch fixed):
    right for a classifier, a specialised graph for a dense head (a depth head answering 56x84
    whatever it is given)."""
    def symbolic(value) -> list[bool]:
        return [bool(d.dim_param) for d in value.type.tensor_type.shape.dim]

    sized = [v.name for v in graph.input if any(symbolic(v)[1:])]
    if not sized or not graph.output or any(any(symbolic(v)[1:]) for v in graph.output):
        return []
    return [Finding("warning", ", ".join(sized), "graph", "inputs with dynamic sizes, but every output's sizes are "
                    "fixed: right for a classifier, a specialised graph for a dense head",
                    "check the graph at the sizes you deploy (deploykit check --shape ...)")]


def _nodes(graph, functions: dict, prefix: str, seen: frozenset = frozenset()):
    """(qualified name, node, the value names its graph uses) for every node, depth first."""
    used = {name for node in graph.node for name in node.input if name} | {o.name for o in graph.output}
    for index, node in enumerate(graph.node):
        name = f"{prefix}{node.name or f'#{index}'}"
        yield name, node, used
        for attribute in node.attribute:
            for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _nodes(body, functions, f"{name}/{attribute.name}/", seen)
        key = (node.domain, node.op_type)
        if key in functions and key not in seen:  # a recursive function is walked once
            yield from _nodes(_FunctionBody(functions[key]), functions, f"{name}/{node.op_type}/", seen | {key})


class _FunctionBody:
    """A FunctionProto read as a GraphProto is: its nodes, and its outputs with a name."""

    def __init__(self, function):
        self.node = function.node
        self.output = [type("Output", (), {"name": name})() for name in function.output]


def _names_op(library: bytes, op_type: str) -> bool:
    """Whether the plugin library holds ``op_type`` as a NUL-terminated string: a TensorRT plugin
    registers each creator by name, a string literal in the library (the linker may share its
    bytes with a longer literal ending the same way)."""
    return op_type.encode() + b"\0" in library


def _custom_node(node, name: str, target: str, plugin_pending: bool, provided: dict[Path, bytes]) -> list[Finding]:
    op = f"{node.domain}::{node.op_type}"
    if target == "ort":
        if node.domain in _ORT_DOMAINS:
            return []  # ONNX Runtime's own contrib and ML operators
        if node.domain == "deploykit" and node.op_type == "DySample":
            return [Finding("warning", name, op, "runs on ONNX Runtime with deploykit's custom-op library only "
                            "(deploykit's commands register it; serving code must too)",
                            "SessionOptions.register_custom_ops_library(str(deploykit.ops.ort_library_path())), "
                            "or re-export without the plugin (--dysample-impl gather)")]
        return [Finding("error", name, op, "ONNX Runtime has no kernel for this custom node",
                        "check it with the onnx-ref backend, or re-export without it")]
    if not provided and plugin_pending and node.domain == "deploykit":
        return [Finding("warning", name, op, "runs as deploykit's TensorRT plugin",
                        "build with: deploykit build MODEL.onnx --plugin path/to/libdeploykit_trt_plugins.so")]
    if not provided and node.domain in _ORT_DOMAINS:
        return [Finding("error", name, op, f"an ONNX Runtime operator ({node.domain}): TensorRT's parser has no "
                        "importer for it", "export without ONNX Runtime's contrib ops (not an ORT-optimised graph), "
                        "or pass a plugin library that implements it")]
    if not provided:
        return [Finding("error", name, op, "a custom node needs a TensorRT plugin, and no plugin library was given",
                        "pass --plugin path/to/libdeploykit_trt_plugins.so (build: cmake -S plugins -B build)")]
    if not any(_names_op(library, node.op_type) for library in provided.values()):
        return [Finding("error", name, op, f"no plugin library given ({', '.join(p.name for p in provided)}) "
                        f"provides {node.op_type!r}", "pass the library that implements it with --plugin")]
    return []


def _trt_node(node, name: str, attrs: dict, opset: int, used: set[str]) -> list[Finding]:
    op = node.op_type
    if op == "GridSample":
        mode = attrs.get("mode", "linear" if opset >= 20 else "bilinear")
        if mode not in _TRT_GRID_MODES:
            return [Finding("error", name, op,
                            f"mode {mode!r} (opset {opset}) is not one TensorRT's parser knows: it silently "
                            "samples with NEAREST instead", "re-export at --opset 17 (16..19); if it is "
                            "DySample's sample step, 'deploykit convert MODEL.onnx -o OUT.onnx --dysample-impl "
                            "plugin' (or gather) replaces it without re-exporting")]
    if op == "MaxUnpool":
        return [Finding("error", name, op, "TensorRT has no MaxUnpool",
                        "export the model from PyTorch with 'deploykit export --target trt': max_unpool2d "
                        "becomes ScatterND")]
    if op == "MaxPool":
        return _trt_max_pool(node, name, attrs, used)
    if op in ("ScatterND", "ScatterElements") and attrs.get("reduction", "none") != "none":
        if op == "ScatterND":
            return [Finding("error", name, op, f"TensorRT does not support ScatterND's reduction "
                            f"({attrs['reduction']!r})", "scatter with ScatterElements, or without a reduction")]
        return [Finding("warning", name, op, f"reduction {attrs['reduction']!r} runs through TensorRT's "
                        "ScatterElements plugin", "make sure TensorRT's plugin library (libnvinfer_plugin) is loaded")]
    if op == "Resize":
        found = []
        if attrs.get("antialias", 0):
            found.append(Finding("error", name, op, "TensorRT does not support Resize antialias",
                                 "export with antialias=False, or low-pass filter with a depthwise conv first"))
        coordinates = attrs.get("coordinate_transformation_mode", "half_pixel")
        if coordinates not in _TRT_RESIZE_COORDINATES:
            found.append(Finding("error", name, op,
                                 f"coordinate_transformation_mode {coordinates!r} is not supported by TensorRT",
                                 "use align_corners, half_pixel or asymmetric resizing in the model"))
        return found
    return []


def _trt_max_pool(node, name: str, attrs: dict, used: set[str]) -> list[Finding]:
    fix = f"re-export with --maxpool-impl {DEFAULT_MAXPOOL_IMPL['trt']} (the default for --target trt)"
    found = []
    if len(node.output) > 1 and node.output[1] in used:
        found.append(Finding("error", name, "MaxPool", "TensorRT does not support MaxPool's Indices output",
                             f"{fix}: the indices become window taps (Slice, Greater, Where)"))
    if any(d != 1 for d in attrs.get("dilations", [])):
        found.append(Finding("error", name, "MaxPool", f"dilations {list(attrs['dilations'])}: TensorRT's parser "
                             "ignores them and silently pools a dense window", f"{fix}: dilated pools are computed "
                             "from window taps"))
    return found


def _attribute(attribute):
    import onnx

    value = onnx.helper.get_attribute_value(attribute)
    return value.decode() if isinstance(value, bytes) else value
