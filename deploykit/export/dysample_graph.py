"""DySample's sample step found in a traced program by what it computes, wherever it is written.

Libraries sample inline in ``forward`` (spandrel's DySample behind RealPLKSR, MoSR and MoESR
has no ``sample`` method), so besides the method-based layers (deploykit.export.dysample),
the program ``torch.export`` traced is searched: every bilinear, border-padded,
``align_corners=False`` grid sample that upsamples by an integer s >= 2 is a candidate, with

- ``x``: the 4-D tensor its input is a reshape of (B, C, H, W; groups g = its batch / B),
- ``offset``: an ancestor of its grid of shape (B, 2*g*s*s, H, W), the nearest that works,
- its result reshaped back to (B, C, sH, sW).

A candidate is converted only if the subgraph from (x, offset) to that result, re-run with
random x and offsets (some far outside the image), equals ``reference_sample`` at every
probed input shape (the traced one and export's second one); anything else is a lookalike,
exported as written, with the reason. A converted call becomes one
``deploykit::dysample_export`` node (the strategies' export op) in the program; ``standard``
keeps the verified grid sample as written (the traced program computes its grid from the
input's shape).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from deploykit.export.dysample import Conversion, DySampleLayer, Lookalike, call_module

logger = logging.getLogger(__name__)

# Ops a tensor passes through unchanged but for its layout.
_RESHAPES = ("view", "reshape", "_unsafe_view", "contiguous", "clone", "alias", "flatten")
_MAX_OFFSET_CANDIDATES = 8
_FAR_OUTSIDE = 40.0
_ATOL = 1e-4


@dataclass
class _Candidate:
    sampler: object  # the grid sampler fx.Node
    x: object
    output: object  # the reshape back to (B, C, sH, sW)
    offsets: list  # offset-shaped ancestors of the grid, nearest first
    scale: int
    groups: int
    path: str
    cls: str
    offset: object = None  # the verified one
    problem: str | None = None


def _is_sampler(node) -> bool:
    import torch

    aten = torch.ops.aten
    return node.op == "call_function" and node.target in (aten.grid_sampler.default, aten.grid_sampler_2d.default)


def _is_reshape(node) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", "").split(".")[0] in _RESHAPES


def _shape(env, node):
    import torch

    value = env.get(node)
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _candidate(sampler, env, names: set[str]) -> _Candidate | None:
    """The structure around one grid sampler, from the traced values' shapes; None when it is
    not an upsampling sample of a reshaped 4-D tensor (a warp, a crop)."""
    source, grid = sampler.args[0], sampler.args[1]
    source_shape, grid_shape = _shape(env, source), _shape(env, grid)
    if source_shape is None or grid_shape is None or len(source_shape) != 4 or len(grid_shape) != 4:
        return None
    n, c, h, w = source_shape
    if grid_shape[3] != 2 or grid_shape[1] % h or grid_shape[2] % w or grid_shape[1] // h != grid_shape[2] // w:
        return None
    scale = grid_shape[1] // h
    if scale < 2:
        return None
    x, node = source, source
    while _is_reshape(node) and node.args and hasattr(node.args[0], "op"):
        node = node.args[0]
        shape = _shape(env, node)
        if shape and len(shape) == 4 and shape[2:] == (h, w) and n % shape[0] == 0 and shape[1] * shape[0] == n * c:
            x = node  # the nearest: further back may be another sampler's (B*g, C/g, H, W) result
            break
    b, channels = _shape(env, x)[:2]
    groups = n // b
    output, node = (sampler if _shape(env, sampler) == (b, channels, scale * h, scale * w) else None), sampler
    while output is None and len(node.users) == 1:
        node = next(iter(node.users))
        if not _is_reshape(node):
            break
        if _shape(env, node) == (b, channels, scale * h, scale * w):
            output = node
            break
    wanted = (b, 2 * groups * scale * scale, h, w)
    offsets, seen, frontier = [], {grid}, [grid]
    while frontier and len(offsets) < _MAX_OFFSET_CANDIDATES and len(seen) < 400:
        node = frontier.pop(0)
        for parent in node.all_input_nodes:
            if parent in seen:
                continue
            seen.add(parent)
            if parent is not x and _shape(env, parent) == wanted:
                offsets.append(parent)
            frontier.append(parent)
    path, cls = call_module(sampler, names)
    return _Candidate(sampler, x, output, offsets, scale, groups, path, cls)


def _flags_problem(sampler) -> str | None:
    mode, padding, align = (list(sampler.args[2:5]) + [None] * 3)[:3]
    kwargs = sampler.kwargs
    mode, padding, align = kwargs.get("interpolation_mode", mode), kwargs.get("padding_mode", padding), \
        kwargs.get("align_corners", align)
    if mode != 0:
        return f"grid_sample mode {['bilinear', 'nearest', 'bicubic'][mode] if mode in (0, 1, 2) else mode}, not bilinear"
    if padding != 1:
        return f"grid_sample padding_mode {['zeros', 'border', 'reflection'][padding] if padding in (0, 1, 2) else padding}, not border"
    if align:
        return "grid_sample align_corners=True, not False"
    return None


def _between(sources, target) -> list:
    """The nodes on some path from ``sources`` to ``target`` (target included), in graph order; the
    walk back stops at the sources (what computed a replaced value is not re-run)."""
    ancestors, stack = set(), [target]
    while stack:
        node = stack.pop()
        if node in ancestors:
            continue
        ancestors.add(node)
        if node not in sources:
            stack.extend(node.all_input_nodes)
    inside = set(sources)
    ordered = []
    for node in target.graph.nodes:
        if node in ancestors and node not in sources and any(p in inside for p in node.all_input_nodes):
            inside.add(node)
            ordered.append(node)
    return ordered


def _rerun(nodes, env, replaced: dict, output, in_float32: bool = False):
    """``output`` recomputed with ``replaced`` values in place of some of its inputs; with
    ``in_float32``, every half-precision dtype the nodes name is float32 (an fp16 export's layer
    is checked as the fp32 model computes it: fp16 grid coordinates are off by design)."""
    import torch
    import torch.fx
    from torch.utils._pytree import tree_map

    def widened(value):
        return torch.float32 if in_float32 and value in (torch.float16, torch.bfloat16) else value

    local = dict(env)
    local.update(replaced)
    for node in nodes:
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: local[n])
        args, kwargs = tree_map(widened, (args, kwargs))
        local[node] = node.target(*args, **kwargs)
    return local[output]


def _probe_values(x_shape, offset_shape, dtype, generator):
    """Random x, and offsets mostly sub-pixel, one in eight 40 pixels outside the image and one in
    sixteen several image sizes outside it (a clamp of the offsets, at any size the probe
    reaches, shows)."""
    import torch

    x = torch.randn(x_shape, generator=generator).to(dtype)
    offset = torch.randn(offset_shape, generator=generator) * 0.6
    far = torch.rand(offset_shape, generator=generator) < 0.125
    offset = torch.where(far, offset.sign() * _FAR_OUTSIDE + offset, offset)
    very_far = torch.rand(offset_shape, generator=generator) < 0.0625
    beyond = _FAR_OUTSIDE + 4.0 * max(x_shape[-2:])
    offset = torch.where(very_far, offset.sign() * beyond + offset, offset).to(dtype)
    return x, offset


def _sample_error(candidate: _Candidate, offset_node, env, generator) -> float:
    """Largest difference from the reference of the subgraph from (x, offset_node)."""
    import torch

    from deploykit.ops.reference import reference_sample

    x_value, offset_value = env[candidate.x], env[offset_node]
    half = x_value.dtype in (torch.float16, torch.bfloat16)
    x, offset = _probe_values(tuple(x_value.shape), tuple(offset_value.shape),
                              torch.float32 if half else x_value.dtype, generator)
    nodes = _between({candidate.x, offset_node}, candidate.output)
    try:
        with torch.no_grad():
            got = _rerun(nodes, env, {candidate.x: x, offset_node: offset}, candidate.output, in_float32=half)
    except Exception:  # a subgraph that cannot take other values is not DySample's step
        return float("inf")
    want = reference_sample(x.float(), offset.float(), candidate.scale, candidate.groups)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return float("inf")
    error = (got.float() - want).abs().max().item()
    return error if error == error else float("inf")


class _Recorder:
    """Runs the program once, keeping every value, to read shapes and re-run subgraphs."""

    def __init__(self, exported_program):
        self.program = exported_program

    def values(self, user_inputs: tuple) -> dict:
        import torch
        import torch.fx

        program = self.program
        state = {**program.state_dict, **program.constants}
        flat = []
        user = iter(user_inputs)
        for spec in program.graph_signature.input_specs:
            if spec.kind.name == "USER_INPUT":
                flat.append(next(user))
            elif spec.kind.name == "BUFFER":  # a forward that writes into a buffer must not leak between probes
                flat.append(state[spec.target].clone())
            else:
                flat.append(state[spec.target])
        interpreter = torch.fx.Interpreter(program.graph_module, garbage_collect_values=False)
        with torch.no_grad():
            interpreter.run(*flat)
        return interpreter.env


def find_inline_layers(exported_program, probes: list[tuple], module_names=()) -> tuple[list[_Candidate], list[Lookalike]]:
    """The grid samplers of the program verified to compute DySample's step at every probe (user
    inputs, the traced ones first), and the lookalikes with why; ``module_names`` are the
    model's (``named_modules``), to name each layer as the user does."""
    import torch

    samplers = [node for node in exported_program.graph.nodes if _is_sampler(node)]
    if not samplers:
        return [], []
    recorder = _Recorder(exported_program)
    generator = torch.Generator().manual_seed(0)
    verified, lookalikes = [], []
    envs = []
    for probe in probes:
        try:
            envs.append(recorder.values(probe))
        except Exception as exc:  # the program rejects this shape: verify at the others
            logger.info("cannot probe the traced program at another shape: %s", exc)
            if not envs:
                return [], []
    for sampler in samplers:
        candidate = _candidate(sampler, envs[0], set(module_names))
        if candidate is None or not candidate.offsets:
            continue
        problem = _flags_problem(sampler)
        if problem is None and candidate.output is None:
            problem = f"its result is not reshaped back to (B, C, {candidate.scale}H, {candidate.scale}W)"
        if problem is None:
            errors = {}
            for offset_node in candidate.offsets:  # checked in float32, whatever the export's precision
                worst = max(_sample_error(candidate, offset_node, env, generator) for env in envs)
                errors[offset_node] = worst
                if worst <= _ATOL:
                    candidate.offset = offset_node
                    break
            if candidate.offset is None:
                error = min(errors.values())
                problem = ("its grid is not DySample's grid of any offset tensor"
                           + (f" (differs by up to {error:.3g})" if error != float("inf") else ""))
        if problem:
            lookalikes.append(Lookalike(candidate.path, candidate.cls, problem))
        else:
            verified.append(candidate)
    return verified, lookalikes


def convert_inline(exported_program, candidates: list[_Candidate], conversion: Conversion) -> None:
    """Each verified call becomes the strategy's export op (``standard``: kept as written), and
    is recorded in ``conversion`` like a method-based layer's call."""
    import torch

    from deploykit.ops.onnx_decompositions import auto_strategy
    from deploykit.ops.onnx_translation import define_export_op

    define_export_op()
    graph = exported_program.graph
    known = {layer.path for layer in conversion.layers}
    replaced: dict = {}  # a converted call's result -> its export node (a later call may read it)
    for candidate in candidates:
        if candidate.path not in known:
            conversion.layers.append(DySampleLayer(candidate.path, candidate.cls, candidate.scale, candidate.groups))
            known.add(candidate.path)
        strategy = conversion.strategy
        if strategy == "auto":
            channels = candidate.x.meta["val"].shape[1] if "val" in candidate.x.meta else None
            strategy = auto_strategy(channels if isinstance(channels, int) else None, candidate.groups)
        conversion.calls.append((candidate.path, strategy))
        if strategy == "standard":
            continue
        with graph.inserting_before(candidate.output):
            node = graph.call_function(torch.ops.deploykit.dysample_export.default,
                                       (replaced.get(candidate.x, candidate.x), replaced.get(candidate.offset, candidate.offset),
                                        candidate.scale, candidate.groups))
        node.meta.update({key: value for key, value in candidate.output.meta.items()
                          if key in ("val", "tensor_meta", "stack_trace")})
        node.meta["nn_module_stack"] = candidate.sampler.meta.get("nn_module_stack", {})
        candidate.output.replace_all_uses_with(node)
        replaced[candidate.output] = node
    graph.eliminate_dead_code()
    exported_program.graph_module.recompile()
