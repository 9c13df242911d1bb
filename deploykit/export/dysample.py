"""DySample's export strategies, in one place, for any model's DySample layers.

Users paste the published ``DySample`` class into their own code, so a layer is recognised by
what it computes, never by its class: a module with the published interface (a
``sample(x, offset)`` method and integer ``scale`` and ``groups`` attributes) whose ``sample``
equals deploykit's reference (``deploykit.ops.reference.reference_sample``) within fp32
rounding, on random inputs at two shapes with offsets far outside the image. A lookalike that
samples differently (another padding mode, align_corners, nearest) is left alone, and the
export says which and why.

During the export, a verified layer's ``sample`` is replaced on the instance (never on the
class) by the strategy's export form; the user's module is as it was afterwards:

- ``standard``: deploykit's reference math, which ends in one GridSample and keeps H and W
  symbolic (the published code's ``torch.tensor([W, H])`` would bake the traced size in);
- ``gather`` / ``roialign`` / ``auto``: one opaque ``deploykit::dysample_export`` op that the
  exporter translates into standard ops without GridSample (``deploykit.ops.onnx_decompositions``);
- ``plugin``: the same op, translated into one ``deploykit::DySample`` node for the TensorRT plugin.

Every call of a converted layer during the export is recorded (module path, class, scale,
groups, the strategy it really got), so the file's metadata says what the graph contains.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Iterator

# "standard": GridSample; "gather" / "roialign": standard ops without GridSample; "auto": for
# --target ort the plugin node where deploykit's ONNX Runtime library can be had (the fastest
# there), else the faster of gather / roialign per layer; "plugin": one deploykit::DySample node.
DYSAMPLE_IMPLS = ("auto", "standard", "gather", "roialign", "plugin")
# Chosen when none is asked for, by target. ort: the fastest on ONNX Runtime's CPU provider
# (python -m deploykit.ops.strategy_benchmark, README table); trt: its native GridSample layer.
DEFAULT_DYSAMPLE_IMPL = {"ort": "auto", "trt": "standard"}
# Strategies that only make sense with a DySample layer to apply them to: asking for one
# explicitly on a model where none could be converted is an error, not a silent no-op.
NEEDS_A_LAYER = ("gather", "roialign", "plugin")
AUTO_PLUGIN_NOTE = ("auto chose plugin: deploykit::DySample on ONNX Runtime with deploykit's custom-op library is "
                    "the fastest form there (python -m deploykit.ops.strategy_benchmark); serving code must register "
                    "it: SessionOptions.register_custom_ops_library(str(deploykit.ops.ort_library_path())); "
                    "--dysample-impl gather writes a file plain ONNX Runtime runs")
METADATA_LAYERS = "deploykit.dysample_layers"


def strategy_for(dysample_impl: str, target: str) -> str:
    """The strategy an export applies: ``auto`` for ONNX Runtime is ``plugin`` wherever
    deploykit's custom-op library can be had (built on first use), since the plugin graph runs
    fastest there at every setting measured; otherwise ``auto`` stays per-layer gather/roialign."""
    if dysample_impl != "auto" or target != "ort":
        return dysample_impl
    from deploykit.ops.ort_library import library_problem

    return "plugin" if library_problem() is None else "auto"
METADATA_IMPL = "deploykit.dysample_impl"

# Verification inputs: odd, non-square sizes (a swapped H/W shows), two channels per group,
# offsets mostly sub-pixel with one in eight far outside the image (the border clamp shows).
_VERIFY_SHAPES = ((2, 5, 7), (1, 9, 4))
_FAR_OUTSIDE = 40.0
# A faithful copy differs from the reference by rounding only (bit-equal for the published code,
# about 1e-6 for the fused kernel); a different padding, alignment or mode differs by 0.1 and up.
_VERIFY_ATOL = 1e-4


@dataclass(frozen=True)
class Lookalike:
    """A module with DySample's interface that was not converted, and why."""

    path: str
    cls: str
    reason: str


@dataclass(frozen=True)
class DySampleLayer:
    """A module verified to compute DySample's sample step."""

    path: str
    cls: str
    scale: int
    groups: int


@dataclass
class Conversion:
    """What one export did with the model's DySample layers."""

    strategy: str  # what was asked for (or the target's default)
    layers: list[DySampleLayer] = field(default_factory=list)  # verified
    lookalikes: list[Lookalike] = field(default_factory=list)  # left alone
    # (path, strategy it got) for each converted call the exporter traced, in call order
    calls: list[tuple[str, str]] = field(default_factory=list)

    def converted(self) -> list[dict]:
        """One entry per converted layer that the export really traced, as the metadata records it."""
        by_path = {layer.path: layer for layer in self.layers}
        seen: dict[str, dict] = {}
        for path, strategy in self.calls:
            layer = by_path[path]
            entry = seen.setdefault(path, {"module": path, "class": layer.cls, "scale": layer.scale,
                                           "groups": layer.groups, "strategies": []})
            if strategy not in entry["strategies"]:
                entry["strategies"].append(strategy)
        return [{**{k: v for k, v in e.items() if k != "strategies"}, "strategy": "+".join(e["strategies"])}
                for e in seen.values()]

    def keep_in_graph(self, exported_program, onnx_graph, module_names: set[str]) -> None:
        """Forget the traced calls the ONNX graph does not hold: a sample whose result the exporter
        dropped as dead code (or whose shape alone is read), and a call identical to another (one
        layer applied twice to one input) that the optimizer merged into it."""
        kinds = ("dysample_export", "dysample_sample", "grid_sampler")
        held = {value.name for node in onnx_graph for value in node.outputs}
        returned = {id(node) for node in exported_program.graph.output_node().all_input_nodes}
        surviving: dict[str, int] = {}
        for node in exported_program.graph.nodes:
            if node.op == "call_function" and any(kind in str(node.target) for kind in kinds) and \
                    (node.name in held or id(node) in returned):
                path, _ = call_module(node, module_names)
                surviving[path] = surviving.get(path, 0) + 1
        kept, seen = [], {}
        for path, strategy in self.calls:
            seen[path] = seen.get(path, 0) + 1
            if seen[path] <= surviving.get(path, 0):
                kept.append((path, strategy))
        self.calls = kept

    def counts(self) -> dict[str, int]:
        """Converted calls per strategy (a layer called twice becomes two nodes)."""
        counts: dict[str, int] = {}
        for _, strategy in self.calls:
            counts[strategy] = counts.get(strategy, 0) + 1
        return counts


def call_module(node, names: set[str]) -> tuple[str, str]:
    """(the module's path as ``named_modules`` gives it, its class) of the call that made ``node``;
    dynamo's strict trace writes paths through closures (``forward.__closure__[0]...__self__.up``)."""
    stack = [entry for entry in (node.meta.get("nn_module_stack") or {}).values()
             if not str(entry[0]).startswith("_empty_nn_module_stack")]
    if not stack:
        return "", "<top level>"
    path, cls = str(stack[-1][0]), stack[-1][1]
    cls = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    parts = path.split(".")
    suffixes = [".".join(parts[i:]) for i in range(len(parts))]
    return next((suffix for suffix in suffixes if suffix in names), path), cls


def find_layers(module) -> tuple[list[DySampleLayer], list[Lookalike]]:
    """Every sub-module with DySample's interface, verified (converted) or not (with the reason)."""
    verified, lookalikes = [], []
    for path, sub in module.named_modules():
        if not _has_interface(sub):
            continue
        cls = f"{type(sub).__module__}.{type(sub).__qualname__}"
        problem = _verify(sub)
        if problem is None:
            verified.append(DySampleLayer(path, cls, int(sub.scale), int(sub.groups)))
        else:
            lookalikes.append(Lookalike(path, cls, problem))
    return verified, lookalikes


def _has_interface(module) -> bool:
    """A sample(x, offset) method and whole-number scale and groups (Python or NumPy ints, or
    floats such as 2.0: copies differ), never flags (bools)."""
    return callable(getattr(module, "sample", None)) and all(
        _whole(getattr(module, name, None)) for name in ("scale", "groups"))


def _whole(value) -> bool:
    import numbers

    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()
            and value >= 1)


def _verify(module) -> str | None:
    """None when ``module.sample`` computes the reference's sample step, else why not."""
    import torch

    from deploykit.ops.reference import reference_sample

    scale, groups = int(module.scale), int(module.groups)
    if not 1 <= scale <= 16 or groups > 1024:
        return f"scale {scale} / groups {groups} outside what DySample uses"
    generator = torch.Generator().manual_seed(0)
    for batch, height, width in _VERIFY_SHAPES:
        x = torch.randn(batch, 2 * groups, height, width, generator=generator)
        offset = torch.randn(batch, 2 * groups * scale * scale, height, width, generator=generator) * 0.6
        far = torch.rand(offset.shape, generator=generator) < 0.125
        offset = torch.where(far, offset.sign() * _FAR_OUTSIDE + offset, offset)
        very_far = torch.rand(offset.shape, generator=generator) < 0.0625  # a clamp of the offsets shows
        offset = torch.where(very_far, offset.sign() * (_FAR_OUTSIDE + 4.0 * max(height, width)) + offset, offset)
        try:
            with torch.no_grad():
                got = module.sample(x, offset)
        except Exception as exc:  # whatever a lookalike raises on DySample's inputs
            return f"sample(x, offset) raised {type(exc).__name__} on DySample's inputs"
        want = reference_sample(x, offset, scale, groups)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return f"sample returned {shape}, DySample's step returns {tuple(want.shape)}"
        error = (got.detach().float() - want).abs().max().item()
        if not error <= _VERIFY_ATOL:  # also catches NaN
            return (f"sample differs from DySample's step by up to {error:.3g} at "
                    f"{batch}x{2 * groups}x{height}x{width} (another padding, alignment or mode?)")
    return None


@contextlib.contextmanager
def converted_for_export(module, layers: list[DySampleLayer], conversion: Conversion) -> Iterator[None]:
    """Within the block, each verified layer's ``sample`` is its export form for
    ``conversion.strategy``; each traced call is appended to ``conversion.calls``."""
    from deploykit.model_io import swapped_method

    by_path = dict(module.named_modules())
    with contextlib.ExitStack() as stack:
        for layer in layers:
            stack.enter_context(swapped_method(by_path[layer.path], "sample", _export_form(layer, conversion)))
        yield


def _export_form(layer: DySampleLayer, conversion: Conversion):
    from deploykit.ops.onnx_decompositions import auto_strategy
    from deploykit.ops.onnx_translation import export_sample
    from deploykit.ops.reference import reference_sample

    def sample(x, offset):
        strategy = conversion.strategy
        if strategy == "auto":
            strategy = auto_strategy(x.shape[1], layer.groups)
        conversion.calls.append((layer.path, strategy))
        if strategy == "standard":
            return reference_sample(x, offset, layer.scale, layer.groups)
        return export_sample(x, offset, layer.scale, layer.groups)

    return sample


def translation_table(strategy: str) -> dict | None:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: the export op (and
    the fused kernel, when a model calls it directly) become the plugin node or a standard-op
    decomposition; None for ``standard``, which exports the reference's own ops."""
    import torch

    from deploykit.ops import fused
    from deploykit.ops.onnx_translation import define_export_op, plugin_node

    if strategy == "standard":
        return None
    if strategy == "plugin":
        translate = plugin_node()
    else:
        from deploykit.ops.onnx_decompositions import translation

        translate = translation(strategy)
    define_export_op()
    table = {torch.ops.deploykit.dysample_export.default: translate}
    if fused.is_loaded():  # a model calling the fused kernel directly gets the same treatment
        table[torch.ops.deploykit.dysample_sample.default] = translate
    return table


def check_graph(conversion: Conversion, proto) -> list[dict]:
    """Confirm the graph holds what the conversion claims; returns the GridSample nodes that
    remain, each with the module it came from when the exporter recorded it."""
    from deploykit.ops.onnx_translation import plugin_nodes

    counts = conversion.counts()
    plugins = len(plugin_nodes(proto))
    if plugins != counts.get("plugin", 0):
        raise AssertionError(f"the graph has {plugins} plugin nodes for {counts.get('plugin', 0)} converted calls")
    roialigns = sum(node.op_type == "RoiAlign" for node in proto.graph.node)
    if roialigns < counts.get("roialign", 0):
        raise AssertionError(f"the graph has {roialigns} RoiAlign nodes for {counts['roialign']} converted calls")
    return [{"node": node.name, "output": node.output[0]} for node in proto.graph.node if node.op_type == "GridSample"]


def metadata(conversion: Conversion) -> dict[str, str]:
    """What the file records: the converted layers and how (only when there are any)."""
    layers = conversion.converted()
    if not layers:
        return {}
    return {METADATA_LAYERS: json.dumps(layers), METADATA_IMPL: conversion.strategy}


def recorded_layers(meta: dict[str, str]) -> list[dict]:
    """The converted layers a file's metadata records ([] for none or unreadable metadata)."""
    try:
        layers = json.loads(meta.get(METADATA_LAYERS, "[]"))
    except ValueError:
        return []
    return [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []


def summary_lines(conversion: Conversion, remaining: list[dict]) -> list[str]:
    """What the export did with DySample, for the user: converted layers, lookalikes left alone,
    GridSample nodes that remain and where they came from."""
    lines = [f"converted DySample layer {e['module'] or '<top level>'} ({e['class'].rsplit('.', 1)[-1]}, "
             f"scale {e['scale']}, groups {e['groups']}): {e['strategy']}" for e in conversion.converted()]
    lines += [f"warning: {l.path or '<top level>'} ({l.cls.rsplit('.', 1)[-1]}) looks like DySample but was not "
              f"converted: {l.reason}" for l in conversion.lookalikes]
    for grid in remaining:
        origin = grid.get("module")
        where = f"from module {origin[0] or '<top level>'} ({origin[1].rsplit('.', 1)[-1]})" if origin else \
            "from an unrecorded module"
        lines.append(f"GridSample in the graph: node {grid['node']} {where}")
    return lines
