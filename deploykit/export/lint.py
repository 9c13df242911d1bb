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
- nodes of a custom domain need a plugin library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from deploykit.errors import UserError
from deploykit.export.maxpool_indices import DEFAULT_MAXPOOL_IMPL
from deploykit.export.options import TARGETS

_STANDARD_DOMAINS = {"", "ai.onnx"}
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
    opset = next((o.version for o in proto.opset_import if o.domain in _STANDARD_DOMAINS), 0)
    used = {name for node in proto.graph.node for name in node.input if name}
    used |= {o.name for o in proto.graph.output}
    findings: list[Finding] = []
    for index, node in enumerate(proto.graph.node):
        name = node.name or f"#{index}"
        attrs = {a.name: _attribute(a) for a in node.attribute}
        if node.domain not in _STANDARD_DOMAINS:
            findings.extend(_custom_node(node, name, target, plugins or [], plugin_pending))
        elif target == "trt":
            findings.extend(_trt_node(node, name, attrs, opset, used))
    return findings


def _custom_node(node, name: str, target: str, plugins: list[Path], plugin_pending: bool) -> list[Finding]:
    op = f"{node.domain}::{node.op_type}"
    if target == "ort":
        return [Finding("error", name, op, "ONNX Runtime has no kernel for this custom node",
                        "check it with the onnx-ref backend, or re-export without the plugin (--dysample-impl auto)")]
    if not plugins and plugin_pending and node.domain == "deploykit":
        return [Finding("warning", name, op, "runs as deploykit's TensorRT plugin",
                        "build with: deploykit build MODEL.onnx --plugin path/to/libdeploykit_trt_plugins.so")]
    if not plugins:
        return [Finding("error", name, op, "a custom node needs a TensorRT plugin, and no plugin library was given",
                        "pass --plugin path/to/libdeploykit_trt_plugins.so (build: cmake -S plugins -B build)")]
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
