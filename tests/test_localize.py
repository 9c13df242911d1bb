"""check --localize: a graph with one perturbed node is localized to exactly that node."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploykit import backends
from deploykit.backends.ort import OrtCpuRunner
from deploykit.compare import PRESETS
from deploykit.errors import BackendUnavailable, UserError
from deploykit.export import export_onnx
from deploykit.export.dysample import DYSAMPLE_IMPLS
from deploykit.export.modules import node_module
from deploykit.localize import ORT_CPU, PYTORCH, localize
from deploykit.model_io import make_inputs
from deploykit.spec import load_model

# Not the traced shape (2x16x...): references must follow the backend's dynamic shapes.
SHAPE = (1, 16, 9, 6)
FP32 = PRESETS["fp32"]


def nested_decoder():
    """A user's decoder with named submodules two deep: head, then up = (act, offset, shuffle)."""
    from collections import OrderedDict

    from torch import nn

    up = nn.Sequential(OrderedDict(act=nn.ReLU(), offset=nn.Conv2d(8, 16, 1), shuffle=nn.PixelShuffle(2)))
    return nn.Sequential(OrderedDict(head=nn.Conv2d(4, 8, 3, padding=1), up=up))


def dysample_then_affine():
    """DySample, then ops whose FX names (mul_N, add_N) depend on how many the sample step made."""
    from torch import nn

    from deploykit.zoo.dysample import DySample

    class Affine(nn.Module):
        def forward(self, x):
            return x * 2 + 1

    return nn.Sequential(DySample(16, groups=2), Affine())


@pytest.fixture(scope="module")
def dysample(tmp_path_factory):
    model = load_model("dysample_plus", {"in_channels": "16", "groups": "2"})
    path = tmp_path_factory.mktemp("localize") / "dysample.onnx"
    export_onnx(model, path, dysample_impl="standard")  # GridSample: most values named after FX nodes
    return model, path, onnx.load(str(path))


def _save(proto, path, external=False):
    onnx.save(proto, str(path), save_as_external_data=external, size_threshold=0, location=path.name + ".data")
    return path


def _copy(proto):
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def _node(proto, predicate):
    (node,) = [n for n in proto.graph.node if predicate(n)]
    return node


def _dynamic_scope(proto):
    """DySample+'s offset scaling ``offset(x) * scope(x).sigmoid() * 0.5``, found by what the
    nodes compute, not by the names the exporter chose (mul_12, mul_17): (the Mul of the offset
    conv and the sigmoid, the Mul that halves its product)."""
    sigmoid = _node(proto, lambda n: n.op_type == "Sigmoid")
    scoped = _node(proto, lambda n: n.op_type == "Mul" and sigmoid.output[0] in n.input)
    halved = _node(proto, lambda n: n.op_type == "Mul" and scoped.output[0] in n.input)
    return scoped, halved


def _fx_name_of_another_shape(model, proto, rank: int) -> str:
    """The name of a float FX node of the fresh export localize makes (as the file was exported)
    whose value is not ``rank``-D and that names no value of the ONNX graph (the optimizer
    dropped it): a name that, given to a ``rank``-D value, must not be compared with it. The
    highest-rank such node (not a scalar, which would broadcast against anything)."""
    import torch

    from deploykit.export.program import dynamic_dims, example_inputs, export_program
    from deploykit.model_io import parse_shape

    traced = parse_shape(next(p.value for p in proto.metadata_props if p.key == "deploykit.traced_shape"))
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    program, _ = export_program(model, example_inputs(model, traced), dims=(dynamic_dims(len(traced)),), opset=opset,
                                output_names=[o.name for o in proto.graph.output], dysample_impl="standard")
    named = {name for n in proto.graph.node for name in (*n.input, *n.output)}
    dropped = [n for n in program.exported_program.graph_module.graph.nodes
               if n.op == "call_function" and n.name not in named and isinstance(n.meta.get("val"), torch.Tensor)
               and n.meta["val"].is_floating_point() and n.meta["val"].dim() not in (0, rank)]
    assert dropped, "the exporter's optimizer dropped no FX node of another shape"
    return max(dropped, key=lambda n: n.meta["val"].dim()).name


def test_a_perturbed_mul_is_the_first_diverging_node(dysample, tmp_path):
    model, _, proto = dysample
    bad = _copy(proto)
    # offset * sigmoid(scope) * 0.5 in DySample+: give the halving its own 0.6 (the 0.5 is shared)
    product, node = _dynamic_scope(bad)
    bad.graph.initializer.append(numpy_helper.from_array(np.array(0.6, np.float32), "perturbed_scale"))
    (half,) = [i for i, name in enumerate(node.input) if name != product.output[0]]
    node.input[half] = "perturbed_scale"
    path = _save(bad, tmp_path / "bad.onnx", external=True)  # weights in a .data file beside it

    loc = localize(model, path, "ort", make_inputs(SHAPE, model.seed), FP32)

    assert loc.error is None and loc.node is not None
    assert (loc.node.name, loc.node.op_type) == (node.name, "Mul")
    assert loc.node.module == "" and loc.node.module_class == "deploykit.zoo.dysample.DySample"
    ((kind, metrics),) = loc.node.outputs.values()
    assert kind == PYTORCH and not metrics.passed and metrics.max_abs > 1e-4
    inputs = {i.name: i for i in loc.node.inputs}
    scoped = product.output[0]
    assert inputs[scoped].kind == PYTORCH and inputs[scoped].metrics.passed
    assert inputs["perturbed_scale"].kind == "initializer" and inputs["perturbed_scale"].metrics is None
    assert loc.compared[PYTORCH] > 20
    lines = loc.lines()
    assert lines[1] == f"first diverging node: {node.name} (Mul) from module <top level> (DySample)"
    assert any(line.startswith(f"  input {scoped}: max abs") and "within tolerance" in line for line in lines), lines
    json.dumps(loc.as_json(), allow_nan=False)


def test_an_unperturbed_graph_has_no_diverging_node(dysample):
    model, path, _ = dysample
    loc = localize(model, path, "ort", make_inputs(SHAPE, model.seed), FP32)
    assert loc.node is None and loc.error is None
    # what cannot be mapped to PyTorch is the Cast/Unsqueeze plumbing of shape values
    assert loc.compared[PYTORCH] > 20 and loc.compared[ORT_CPU] == 0 and loc.compared["none"] < 10
    assert "no node diverges" in loc.lines()[0]
    assert json.loads(json.dumps(loc.as_json(), allow_nan=False))["diverging_node"] is None


def test_the_module_comes_from_the_name_scopes(tmp_path):
    model = load_model("tests.test_localize:nested_decoder")
    path = tmp_path / "nested.onnx"
    export_onnx(model, path, trace_shape=(2, 4, 5, 7))
    proto = onnx.load(str(path))
    conv = _node(proto, lambda n: n.op_type == "Conv" and "up.offset.weight" in n.input)
    weight = next(t for t in proto.graph.initializer if t.name == "up.offset.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))

    loc = localize(model, _save(proto, tmp_path / "bad.onnx"), "ort", make_inputs((1, 4, 6, 9), 0), FP32)

    assert loc.node.name == conv.name
    assert (loc.node.module, loc.node.module_class) == ("up.offset", "torch.nn.modules.conv.Conv2d")
    assert "from module up.offset (Conv2d)" in loc.lines()[1]
    inputs = {i.name: i for i in loc.node.inputs}
    act = _node(proto, lambda n: n.op_type == "Relu").output[0]  # up.act's output
    assert inputs[act].kind == PYTORCH and inputs[act].metrics.passed
    assert inputs["up.offset.weight"].kind == "initializer"


def test_opset_18_files_carry_the_module_in_node_metadata(tmp_path):
    """Where a value has no FX node (inside a decomposition), the module comes from the file."""
    model = load_model("tests.test_localize:nested_decoder")
    export_onnx(model, tmp_path / "n18.onnx", opset=18, trace_shape=(2, 4, 5, 7))
    conv = _node(onnx.load(str(tmp_path / "n18.onnx")), lambda n: "up.offset.weight" in n.input)
    assert node_module(conv) == ("up.offset", "torch.nn.modules.conv.Conv2d")


class SkewedRunner(OrtCpuRunner):
    """ONNX Runtime that returns one value off by one: a backend miscomputing a node."""

    name = "skewed"
    value = None  # set by the test

    def fetch(self, outputs):
        return {n: a + 1 if n == self.value else a for n, a in super().fetch(outputs).items()}


def test_values_without_a_pytorch_counterpart_are_checked_against_onnx_runtime(dysample, tmp_path, monkeypatch):
    model, _, proto = dysample
    graph = _copy(proto)
    # a node the exporter never made: x * 1 between offset(x) * sigmoid(scope(x)) and its
    # consumer. Its 4-D value is named after an FX node the exporter's optimizer drops (such as
    # "clone", .contiguous() in the sample step, 5-D): by its shape not this value, which must
    # not be compared with it.
    collision = _fx_name_of_another_shape(model, proto, rank=len(SHAPE))
    product, consumer = _dynamic_scope(graph)
    graph.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    nodes = list(graph.graph.node)
    inserted = onnx.helper.make_node("Mul", [product.output[0], "one"], [collision], name="inserted")
    nodes.insert(nodes.index(consumer), inserted)
    consumer.input[list(consumer.input).index(product.output[0])] = collision
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    path = _save(graph, tmp_path / "inserted.onnx")
    monkeypatch.setitem(backends._BACKENDS, "skewed", (__name__, "SkewedRunner"))
    monkeypatch.setattr(SkewedRunner, "value", collision)

    loc = localize(model, path, "skewed", make_inputs(SHAPE, model.seed), FP32)

    assert (loc.node.name, loc.node.module) == ("inserted", None)
    kind, metrics = loc.node.outputs[collision]
    assert kind == ORT_CPU and metrics.max_abs == pytest.approx(1)
    assert {i.name: i.kind for i in loc.node.inputs} == {product.output[0]: PYTORCH, "one": "initializer"}
    assert loc.compared[ORT_CPU] >= 1 and "from module unknown" in loc.lines()[1]


@pytest.mark.skipif("gather" not in DYSAMPLE_IMPLS, reason="no gather export strategy")
def test_the_graph_is_reexported_with_its_own_dysample_strategy(tmp_path):
    model = load_model("tests.test_localize:dysample_then_affine")
    path = tmp_path / "gather.onnx"
    export_onnx(model, path, dysample_impl="gather", trace_shape=(2, 16, 5, 7))
    proto = onnx.load(str(path))
    add = _node(proto, lambda n: n.op_type == "Add" and n.output[0] == "output")  # x * 2 + 1
    # its own 1.001: the optimizer shares one constant 1 with the gather decomposition
    proto.graph.initializer.append(numpy_helper.from_array(np.array(1.001, np.float32), "perturbed_one"))
    add.input[1] = "perturbed_one"

    loc = localize(model, _save(proto, tmp_path / "bad.onnx"), "ort", make_inputs(SHAPE, 0), FP32)

    assert loc.node.name == add.name and loc.node.outputs["output"][0] == PYTORCH
    (product,) = [i for i in loc.node.inputs if i.name != "perturbed_one"]
    # named after the fresh export's FX node only if that export made the sample step one op too
    assert product.kind == PYTORCH and product.metrics.passed


@pytest.mark.parametrize("backend", ["onnx-ref", "ort"])
def test_a_plugin_graph_is_localized_on_the_numpy_reference_and_on_onnx_runtime(tmp_path, backend, request):
    if backend == "ort":
        request.getfixturevalue("ort_custom_ops")
    model = load_model("dysample", {"in_channels": "16", "groups": "2"})
    path = tmp_path / "plugin.onnx"
    export_onnx(model, path, dysample_impl="plugin")
    proto = onnx.load(str(path))
    inputs = make_inputs(SHAPE, model.seed)

    clean = localize(model, path, backend, inputs, FP32)
    assert clean.node is None and clean.error is None and clean.compared["none"] == 0
    assert clean.compared[PYTORCH] == sum(len(n.output) for n in proto.graph.node)  # the plugin's output too

    plugin = _node(proto, lambda n: n.domain == "deploykit")
    offset = plugin.input[1]
    producer = _node(proto, lambda n: offset in n.output)  # offset * 0.25 + init_pos: perturb the addend
    addend = next(t for t in proto.graph.initializer if t.name in producer.input)
    addend.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(addend) + 0.01, addend.name))
    loc = localize(model, _save(proto, tmp_path / "bad.onnx"), backend, inputs, FP32)
    assert loc.node.name == producer.name and loc.node.module == ""


def test_a_plugin_graph_is_not_localized_on_onnx_runtime_without_the_library(tmp_path, without_ort_library):
    model = load_model("dysample", {"in_channels": "16", "groups": "2"})
    path = tmp_path / "plugin.onnx"
    export_onnx(model, path, dysample_impl="plugin")
    with pytest.raises(UserError, match="runs them only with deploykit's custom-op library.*onnx-ref"):
        localize(model, path, "ort", make_inputs(SHAPE, model.seed), FP32)


class MissingRunner(OrtCpuRunner):
    name = "missing"

    @classmethod
    def check_available(cls):
        raise BackendUnavailable("backend missing needs the Missing runtime, which is not installed",
                                 "pip install missing")


def test_user_errors_are_one_line_and_come_first(tmp_path, monkeypatch):
    model = load_model("dysample", {"in_channels": "16", "groups": "2"})
    monkeypatch.setitem(backends._BACKENDS, "missing", (__name__, "MissingRunner"))
    with pytest.raises(BackendUnavailable, match="not installed; pip install missing"):
        localize(model, tmp_path / "absent.onnx", "missing", make_inputs(SHAPE, 0), FP32)
    with pytest.raises(UserError, match="not an ONNX graph: there is no node to localize"):
        localize(model, tmp_path / "absent.onnx", "torch", make_inputs(SHAPE, 0), FP32)
    with pytest.raises(UserError, match="not found") as caught:
        localize(model, tmp_path / "absent.onnx", "ort", make_inputs(SHAPE, 0), FP32)
    assert "\n" not in str(caught.value)

