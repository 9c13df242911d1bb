"""``check --localize``: the first node of a failing ONNX graph whose output leaves tolerance.

The failing backend runs a temporary copy of the graph in which every float intermediate is
also a graph output, and each value is compared with a reference in graph (topological)
order; the first node with an output outside tolerance is the culprit.

References come from PyTorch itself: the model is exported again in memory as the file was
exported (opset, dynamic or static dims, traced shape, DySample strategy), and the exported
program's FX graph is run node by node. The dynamo exporter names each ONNX value after the
FX node that computes it (``conv2d_1``, ``mul_12``, ``grid_sampler``; values inside one op's
decomposition are ``val_N``, and the graph outputs take the output names), so a value named
after an FX node, at the shape the backend computed, is that node's value. The FX node's
``nn_module_stack`` says which module computed it; the file's own node metadata is the
fallback (opset-17 exports carry none: the exporter's version conversion drops it).

Values without a PyTorch counterpart are compared with an ONNX Runtime CPU run of the same
graph when that is possible (no custom-domain nodes, and the failing backend is not "ort"
itself). That catches a backend miscomputing a node, never an export error, which is why
PyTorch comes first. Otherwise they stay unchecked, and the report counts them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.backends import RunnerOptions
from deploykit.compare import Metrics, Tolerance, compare
from deploykit.errors import BackendRunError, BackendUnavailable, EnvironmentProblem, UserError, first_line
from deploykit.export.modules import fx_module, node_module
from deploykit.files import temporary_directory
from deploykit.model_io import bare_text, case_of, shape_text
from deploykit.spec import LoadedModel

PYTORCH = "pytorch"
ORT_CPU = "ort-cpu"


@dataclass
class NodeInput:
    """One input of the diverging node: compared (``metrics``, against ``kind``), or what it is."""

    name: str
    # compared: "pytorch" or "ort-cpu"; else "graph input", "initializer", "constant", "not float", "no reference"
    kind: str
    metrics: Metrics | None = None

    def as_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "metrics": self.metrics.as_json() if self.metrics else None}


@dataclass
class DivergingNode:
    name: str
    op_type: str
    module: str | None  # innermost module path ("" is the top-level module); None when unknown
    module_class: str | None
    outputs: dict[str, tuple[str, Metrics]]  # compared output -> (reference kind, metrics)
    inputs: list[NodeInput]

    def module_text(self) -> str:
        if self.module is None:
            return "unknown"
        return f"{self.module or '<top level>'} ({(self.module_class or '?').rsplit('.', 1)[-1]})"

    def as_json(self) -> dict:
        return {"node": self.name, "op_type": self.op_type, "module": self.module, "module_class": self.module_class,
                "outputs": [{"name": n, "kind": k, "metrics": m.as_json()} for n, (k, m) in self.outputs.items()],
                "inputs": [i.as_json() for i in self.inputs]}


@dataclass
class Localization:
    backend: str
    onnx: str
    shape: dict[str, list[int]]  # input name -> dims, as every JSON report writes shapes
    node: DivergingNode | None  # None: every compared value is within tolerance (or ``error``)
    compared: dict[str, int] = field(default_factory=dict)  # float values by reference: pytorch, ort-cpu, none
    error: str | None = None  # the backend could not run the graph with its intermediates exposed

    def as_json(self) -> dict:
        return {"backend": self.backend, "onnx": self.onnx, "shape": self.shape, "compared": self.compared,
                "error": self.error, "diverging_node": self.node.as_json() if self.node else None}

    def lines(self) -> list[str]:
        head = f"localize {self.backend} at {bare_text(case_of(self.shape))}"
        if self.error:
            return [f"{head}: {self.error}"]
        counts = (f"{self.compared[PYTORCH]} values compared with PyTorch, {self.compared[ORT_CPU]} with "
                  f"ONNX Runtime CPU, {self.compared['none']} without a reference")
        if self.node is None:
            return [f"{head}: no node diverges ({counts}); with every intermediate exposed the failure "
                    "did not reproduce, or it lies in values without a reference"]
        node = self.node
        return [f"{head}: {counts}",
                f"first diverging node: {node.name} ({node.op_type}) from module {node.module_text()}",
                *(f"  output {name}: {_summary(m)} (vs {kind})" for name, (kind, m) in node.outputs.items()),
                *(f"  input {i.name}: " + (f"{_summary(i.metrics)} (vs {i.kind})" if i.metrics else i.kind)
                  for i in node.inputs)]


def _summary(m: Metrics) -> str:
    if math.isnan(m.max_abs):  # no comparison could be made, only its reason
        return m.reason
    text = f"max abs {m.max_abs:.3g}, mean abs {m.mean_abs:.3g}, max rel {m.max_rel:.3g}, cosine {m.cosine:.6f}"
    if m.passed:  # a pass may still say how it was judged (outputs below atol)
        return f"{text}; within tolerance" + (f" ({m.reason})" if m.reason else "")
    return f"{text}; {m.reason}"


def localize(model: LoadedModel, onnx_path: Path, backend: str, inputs: dict[str, np.ndarray], tolerance: Tolerance,
             *, runner_options: RunnerOptions | None = None,
             reference_at_input_shape: bool = False) -> Localization:
    """Run ``backend`` on ``onnx_path`` with every float intermediate exposed, and find the
    first node whose output differs from its reference beyond ``tolerance``.

    ``runner_options`` are the runner's, as in ``check`` (threads; precision: TensorRT 10 builds
    FP16 kernels for fp16; plugins), less any prebuilt engine.
    ``reference_at_input_shape``: PyTorch's values come from an export traced at the inputs'
    shape, for a dynamic graph that is wrong away from its traced shape (an export traced
    there is specialised to it, and would be wrong, or fail, at the shape being localized).
    Each call exports the model again (seconds): localize one failing shape per backend.
    Raises UserError (BackendUnavailable) for what the user can fix; a backend that cannot run
    the exposed graph is reported in ``Localization.error``.
    """

    from deploykit.backends import runner_class
    from deploykit.backends.runners import PLUGIN_SUBSTITUTES
    from deploykit.onnx_file import has_plugin_nodes, validate_onnx_file

    cls = runner_class(backend)
    if not cls.needs_onnx:
        raise UserError(f"backend {backend} runs the PyTorch module, not an ONNX graph: there is no node to localize",
                        "localize an ONNX backend (ort, ort-cuda, ort-trt, onnx-ref, trt)")
    cls.check_available()  # before any work: a missing backend fails in a second
    runner_options = runner_options or RunnerOptions()
    proto = validate_onnx_file(onnx_path)
    plugin = has_plugin_nodes(proto)
    if plugin and backend in PLUGIN_SUBSTITUTES:  # ONNX Runtime runs them with deploykit's custom-op library
        from deploykit.ops.ort_library import ort_library_path

        try:
            runner_options = dataclasses.replace(runner_options, ort_custom_ops=ort_library_path())
        except EnvironmentProblem as exc:
            raise UserError(f"{onnx_path} has deploykit::DySample plugin nodes, and ONNX Runtime runs them only with "
                            f"deploykit's custom-op library, which cannot be had here: {exc.problem}",
                            f"{exc.fix}; or localize on onnx-ref (or trt)") from None
    shape = {name: list(np.shape(array)) for name, array in inputs.items()}
    with temporary_directory(prefix="deploykit-localize-") as work:  # removed by the supervisor after a kill
        exposed = _expose(proto, Path(onnx_path), Path(work) / "exposed.onnx")  # (path, output names)
        try:
            actual = _run(backend, *exposed, inputs, runner_options)
        except BackendUnavailable:
            raise
        except (UserError, BackendRunError) as exc:  # the graph runs, but not with its intermediates exposed
            return Localization(backend, str(onnx_path), shape, None,
                                error=f"{backend} cannot run the graph with every intermediate exposed: {exc}")
        references = _pytorch_values(model, proto, actual, inputs, plugin, reference_at_input_shape)
        missing = set(actual) - set(references)
        fallback = {}
        if missing and not plugin and backend != "ort":
            with contextlib.suppress(UserError, BackendRunError):  # no usable ONNX Runtime: they stay unchecked
                ort_options = RunnerOptions(threads=runner_options.threads)
                fallback = {n: v for n, v in _run("ort", *exposed, inputs, ort_options).items() if n in missing}
    kinds = {**{n: PYTORCH for n in references}, **{n: ORT_CPU for n in fallback}}
    values = {**{n: v for n, (v, _) in references.items()}, **fallback}
    modules = {n: m for n, (_, m) in references.items() if m}
    compared = {PYTORCH: len(references), ORT_CPU: len(fallback), "none": len(actual) - len(kinds)}
    node = _first_diverging(proto, actual, values, kinds, modules, tolerance)
    return Localization(backend, str(onnx_path), shape, node, compared)


def _expose(proto, source: Path, path: Path) -> tuple[Path, list[str]]:
    """Write a copy of the graph whose outputs are its own, then every float value that a
    top-level node computes (int64 shape arithmetic is not compared). Weights kept in an
    external data file stay external (a graph past 2 GB must)."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    known = [*proto.graph.value_info, *proto.graph.output]
    with contextlib.suppress(Exception):  # fills in types the file lacks; a graph it rejects still runs
        known += list(onnx.shape_inference.infer_shapes(proto).graph.value_info)
    types = {v.name: v.type.tensor_type.elem_type for v in known}
    present = {o.name for o in proto.graph.output}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    exposed.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, types[name], None)
        for node in proto.graph.node if node.op_type != "Constant"
        for name in node.output if name not in present and types.get(name) in floating)
    external = any(uses_external_data(t) for t in exposed.graph.initializer)
    if external:
        load_external_data_for_model(exposed, str(source.parent))
    onnx.save(exposed, str(path), save_as_external_data=external, location=path.name + ".data")
    return path, [o.name for o in exposed.graph.output]


def _run(backend: str, path: Path, names: list[str], inputs: dict[str, np.ndarray],
         runner_options: RunnerOptions) -> dict[str, np.ndarray]:
    """Every output of the exposed graph on ``backend``, by name. A prebuilt engine is not
    used: it has the original outputs only, so TensorRT builds one from the exposed graph."""
    from deploykit.backends import runner_class
    from deploykit.backends.runners import run_backend

    cls = runner_class(backend)
    cls.check_available()
    runner = cls(dataclasses.replace(runner_options, onnx_path=path, engine_path=None,
                                     shapes=[tuple(np.shape(a)) for a in inputs.values()][:1]))
    with runner:
        outputs = run_backend(runner, inputs)
    missing = [name for name in names if name not in outputs]
    if missing:
        raise BackendRunError(f"backend {backend} did not return {', '.join(missing[:3])} of the exposed graph")
    return {name: outputs[name] for name in names}


def _pytorch_values(model: LoadedModel, proto, actual: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
                    plugin: bool, at_input_shape: bool) -> dict[str, tuple[np.ndarray, tuple[str, str] | None]]:
    """ONNX value name -> (PyTorch's value, (module path, module class) or None), for the
    values of ``actual`` named after a node of the FX graph that a fresh export, made as the
    file was, translates; kept only at the shape the backend computed (else not the same value)."""
    import torch

    from deploykit.export.program import dynamic_dims, example_inputs, export_program
    meta = {p.key: p.value for p in proto.metadata_props}
    shapes = {name: tuple(np.shape(a)) for name, a in inputs.items()}
    # several inputs: traced at the inputs' own shapes (the recorded trace is one input's)
    at_input_shape = at_input_shape or len(shapes) > 1
    dynamic = not at_input_shape and any(d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim)
    traced = meta.get("deploykit.traced_shape")
    trace_shape = _recorded_trace_shape(traced, next(iter(shapes.values()))) if dynamic and traced \
        else next(iter(shapes.values()))
    # files from before deploykit recorded its DySample strategy used one of these two
    strategy = _recorded_strategy(meta.get("deploykit.dysample_impl")) or ("plugin" if plugin else "standard")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise UserError("the ONNX file imports no default-domain opset, so it cannot be exported again alike",
                        "re-export it with 'deploykit export'")
    if len(shapes) == 1:
        example = example_inputs(model, trace_shape)  # as export traced it
    else:
        example = tuple(torch.from_numpy(np.array(inputs[name])) for name in model.input_names)
    program, _ = export_program(model, example, dims=(dynamic_dims(len(trace_shape)),) if dynamic else None,
                                opset=opset, output_names=[o.name for o in proto.graph.output],
                                dysample_impl=strategy, maxpool_impl=_recorded_maxpool_impl(meta))
    graph = program.exported_program.graph_module.graph
    fx_nodes = {n.name: n for n in graph.nodes if n.op == "call_function"}
    matched = {name: fx_nodes[name] for name in actual if name in fx_nodes}
    (results,) = graph.find_nodes(op="output")[0].args  # the graph outputs, which take the output names
    matched |= {v.name: n for v, n in zip(proto.graph.output, results) if isinstance(n, torch.fx.Node)}
    values = _run_fx(program.exported_program, inputs, {n.name for n in matched.values()}, model.spec)
    return {name: (values[n.name], fx_module(n)) for name, n in matched.items()
            if n.name in values and values[n.name].shape == actual[name].shape}


def _run_fx(program, inputs: dict[str, np.ndarray], keep: set[str], spec: str) -> dict[str, np.ndarray]:
    """Run the exported program's FX graph on ``inputs``; the float values of the ``keep`` nodes."""
    import torch
    from torch.export.graph_signature import InputKind

    from deploykit.model_io import describe_feed

    recorded = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if node.name in keep and isinstance(result, torch.Tensor) and result.is_floating_point():
                recorded[node.name] = result.detach().float().numpy()
            return result

    state = {**program.state_dict, **program.constants}
    user = iter([torch.from_numpy(np.array(a)) for a in inputs.values()])
    args = [next(user) if s.kind == InputKind.USER_INPUT else state[s.target]
            for s in program.graph_signature.input_specs]
    try:
        with torch.no_grad():
            Recorder(program.graph_module).run(*args)
    except Exception as exc:  # whatever an op raises on an input the exported program cannot take
        shape = describe_feed(inputs)
        raise UserError(f"the exported program of {spec} cannot run at {shape}: {first_line(exc)}",
                        "localize at a shape the model takes") from None
    return recorded


# The re-export traces at the recorded shape: a file's metadata is not trusted with more than
# this many elements (64 MB of float32) unless the shape being localized is that large itself.
MAX_RECORDED_TRACE_ELEMENTS = 1 << 24


def _recorded_trace_shape(text: str, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """``deploykit.traced_shape`` from a file, checked: metadata is text anyone can edit."""
    import math

    from deploykit.model_io import parse_shape

    try:
        shape = parse_shape(text)
    except UserError:
        shape = None
    if shape is None or len(shape) != len(input_shape) or shape[1:2] != input_shape[1:2] \
            or math.prod(shape) > max(MAX_RECORDED_TRACE_ELEMENTS, math.prod(input_shape)):
        raise UserError(f"the file's deploykit.traced_shape metadata {text[:60]!r} is not a shape deploykit "
                        f"traces for input {shape_text(input_shape)}",
                        "re-export the file with 'deploykit export' (its metadata was edited or damaged)")
    return shape


def _recorded_maxpool_impl(meta: dict[str, str]) -> str:
    """``deploykit.maxpool_impl`` from a file, checked ("native" for files without it)."""
    from deploykit.export.maxpool_indices import MAXPOOL_IMPLS
    from deploykit.export.program import METADATA_MAXPOOL_IMPL

    text = meta.get(METADATA_MAXPOOL_IMPL) or "native"
    if text not in MAXPOOL_IMPLS:
        raise UserError(f"the file's {METADATA_MAXPOOL_IMPL} metadata {text[:60]!r} is not a max-pool indices "
                        f"strategy ({', '.join(MAXPOOL_IMPLS)})",
                        "re-export the file with 'deploykit export' (its metadata was edited or damaged)")
    return text


def _recorded_strategy(text: str | None) -> str | None:
    """``deploykit.dysample_impl`` from a file, checked against the strategies that exist."""
    from deploykit.export.dysample import DYSAMPLE_IMPLS

    if not text:
        return None
    if text not in DYSAMPLE_IMPLS:
        raise UserError(f"the file's deploykit.dysample_impl metadata {text[:60]!r} is not a DySample export "
                        f"strategy ({', '.join(DYSAMPLE_IMPLS)})",
                        "re-export the file with 'deploykit export' (its metadata was edited or damaged)")
    return text


def _first_diverging(proto, actual, values, kinds, modules, tolerance) -> DivergingNode | None:
    graph_inputs = {v.name for v in proto.graph.input}
    initializers = {t.name for t in proto.graph.initializer}
    constants = {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    metrics: dict[str, Metrics] = {}

    def describe(name: str) -> NodeInput:
        if name in metrics:
            return NodeInput(name, kinds[name], metrics[name])
        kind = ("initializer" if name in initializers else "graph input" if name in graph_inputs
                else "constant" if name in constants else "no reference" if name in actual else "not float")
        return NodeInput(name, kind)

    for node in proto.graph.node:  # ONNX requires topological order
        outputs = {}
        for name in node.output:
            if name in kinds:
                metrics[name] = compare(values[name], actual[name], tolerance)
                outputs[name] = (kinds[name], metrics[name])
        if any(not m.passed for _, m in outputs.values()):
            module = next((modules[o] for o in node.output if o in modules), None) or node_module(node)
            return DivergingNode(node.name, node.op_type, *(module or (None, None)), outputs,
                                 [describe(i) for i in node.input if i])
    return None
