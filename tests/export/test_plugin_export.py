"""--dysample-impl plugin: one deploykit::DySample node, verified on the CPU without TensorRT:
on ONNX Runtime with deploykit's custom-op library, or on onnx-ref where it cannot be had."""

import json

import onnx
import pytest
from click.testing import CliRunner

from deploykit.cli import main
from deploykit.export import export_onnx
from deploykit.spec import load_model


@pytest.fixture(scope="module")
def plugin_graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "dys.onnx"
    export_onnx(load_model("dysample_plus", {"scale": "3", "in_channels": "36", "groups": "2"}), path,
                dysample_impl="plugin")
    return onnx.load(str(path)), path


@pytest.fixture(params=["ort", "onnx-ref"])
def plugin_runner(request):
    """The backend that runs a plugin graph for ``--backends ort``: ONNX Runtime itself with
    deploykit's library, or onnx-ref where the library cannot be had."""
    request.getfixturevalue("ort_custom_ops" if request.param == "ort" else "without_ort_library")
    return request.param


def test_one_plugin_node_replaces_the_grid_sample_subgraph(plugin_graph):
    proto, _ = plugin_graph
    ops = [n.op_type for n in proto.graph.node]
    assert "GridSample" not in ops and "Range" not in ops
    nodes = [n for n in proto.graph.node if n.domain == "deploykit"]
    assert [n.op_type for n in nodes] == ["DySample"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {"scale": 3, "groups": 2, "plugin_version": b"1", "plugin_namespace": b"deploykit"}
    assert any(o.domain == "deploykit" and o.version == 1 for o in proto.opset_import)


def test_plugin_graph_keeps_dynamic_dims(plugin_graph):
    proto, _ = plugin_graph
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 36, "height", "width"]


def test_check_runs_the_plugin_graph_on_onnx_runtime_with_deploykits_library(plugin_graph, tmp_path, ort_custom_ops):
    _, path = plugin_graph
    report = tmp_path / "r.json"
    args = ["check", "dysample_plus", "-p", "scale=3", "-p", "in_channels=36", "-p", "groups=2", "--onnx", str(path),
            "--report", str(report), "--shape", "1x36x5x7", "--shape", "2x36x13x9", "--shape", "1x36x20x31",
            "--backends", "torch,ort"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["backends"]["ort"]["custom_ops"] == str(ort_custom_ops) and "instead_of" not in data["backends"]["ort"]
    assert [r["backend"] for r in data["results"]].count("ort") == 3 and data["passed"]


def test_without_the_library_onnx_ref_runs_the_plugin_graph_saying_why(plugin_graph, tmp_path, without_ort_library):
    _, path = plugin_graph
    report = tmp_path / "r.json"
    args = ["check", "dysample_plus", "-p", "scale=3", "-p", "in_channels=36", "-p", "groups=2", "--onnx", str(path),
            "--report", str(report), "--shape", "1x36x5x7", "--shape", "2x36x13x9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["backends"]["onnx-ref"]["instead_of"] == "ort"
    assert "DEPLOYKIT_ORT_INCLUDE_DIR" in data["backends"]["onnx-ref"]["why"]
    assert {r["backend"] for r in data["results"]} == {"torch", "onnx-ref"} and data["passed"]


def test_check_exports_with_the_plugin_strategy_when_asked(plugin_runner):
    result = CliRunner().invoke(main, ["check", "dysample", "--dysample-impl", "plugin", "--backends", "ort"])
    assert result.exit_code == 0, result.output
    if plugin_runner == "ort":
        assert "custom_ops=" in result.output and "onnx-ref" not in result.output
    else:
        assert "onnx-ref" in result.output and "instead_of=ort" in result.output


def _tampered(proto, tmp_path, tamper):
    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    tamper(next(n for n in bad.graph.node if n.domain == "deploykit"))
    path = tmp_path / "bad.onnx"
    onnx.save(bad, str(path))
    return CliRunner().invoke(main, ["check", "dysample_plus", "-p", "scale=3", "-p", "in_channels=36", "-p",
                                     "groups=2", "--onnx", str(path), "--shape", "1x36x5x7", "--backends", "ort",
                                     "--report", str(tmp_path / "r.json")])


def test_a_miswired_plugin_node_fails_parity(plugin_graph, tmp_path, plugin_runner):
    def swap_inputs(node):  # x and offset both have 36 channels here, so only the numbers can tell
        node.input[1], node.input[0] = node.input[0], node.input[1]

    result = _tampered(plugin_graph[0], tmp_path, swap_inputs)
    assert result.exit_code == 1 and "parity FAILED" in result.output


def test_a_plugin_node_that_cannot_run_is_a_failed_comparison(plugin_graph, tmp_path, plugin_runner):
    def wrong_groups(node):
        next(a for a in node.attribute if a.name == "groups").i = 1

    result = _tampered(plugin_graph[0], tmp_path, wrong_groups)
    assert result.exit_code == 1 and "Traceback" not in result.output
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert row["passed"] is False and row["max_abs"] is None
    assert row["reason"].startswith(f"backend {plugin_runner} failed at shape 1x36x5x7: ")
    assert "DySample" in row["reason"] and ("offset must" in row["reason"] or "do not fit" in row["reason"])
