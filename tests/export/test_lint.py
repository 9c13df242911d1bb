"""deploykit lint --target trt on graphs exported from the zoo."""

import json

import onnx
import pytest
from click.testing import CliRunner

from deploykit.cli import main
from deploykit.export import export_onnx
from deploykit.export.lint import lint, lint_file
from deploykit.spec import load_model


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="deploykit")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lint")
    made = {}
    for key, spec, params, options in [
        ("segnet", "max_unpool", {}, {}),
        ("dysample", "dysample", {}, {"dysample_impl": "standard"}),
        ("dysample20", "dysample", {}, {"opset": 20, "dysample_impl": "standard"}),
        ("plugin", "dysample", {}, {"dysample_impl": "plugin"}),
        ("antialias", "interpolate",
         {"antialias": "true", "scale_factor": "0.5", "recompute_scale_factor": "true"}, {}),
    ]:
        made[key] = export_onnx(load_model(spec, params), folder / f"{key}.onnx", **options).path
    return made


def _ops(findings):
    return {(f.severity, f.op_type) for f in findings}


def test_segnet_pool_unpool_is_flagged(graphs):
    findings = lint_file(graphs["segnet"])
    assert ("error", "MaxPool") in _ops(findings)
    assert all("Indices" in f.why and "--maxpool-impl window" in f.fix for f in findings)


def test_opset_20_grid_sample_is_flagged_as_silently_nearest(graphs):
    (finding,) = lint_file(graphs["dysample20"])
    assert finding.op_type == "GridSample" and "NEAREST" in finding.why and "--opset 17" in finding.fix


def test_default_dysample_export_is_clean(graphs):
    assert lint_file(graphs["dysample"]) == []


def test_plugin_export_needs_the_plugin_library(graphs, tmp_path):
    (finding,) = lint_file(graphs["plugin"])
    assert finding.severity == "error" and finding.op_type == "deploykit::DySample" and "--plugin" in finding.fix
    library = tmp_path / "libdeploykit_trt_plugins.so"
    library.write_bytes(b"\x7fELF...\0DySample\0deploykit\0")  # the creator's name, as a built library holds it
    assert lint_file(graphs["plugin"], plugins=[library]) == []
    other = tmp_path / "libother_plugins.so"
    other.write_bytes(b"\x7fELF...\0ScatterPlugin\0")  # a library for something else silences nothing
    (finding,) = lint_file(graphs["plugin"], plugins=[other])
    assert finding.severity == "error" and "no plugin library given (libother_plugins.so) provides 'DySample'" in finding.why


def test_antialias_resize_is_flagged(graphs):
    assert ("error", "Resize") in _ops(lint_file(graphs["antialias"]))


def _graph(*nodes, opset=17):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = onnx.helper.make_graph(list(nodes), "g", [x], [y])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])


def test_dilated_maxpool_is_flagged_as_silently_dense():
    dilated = onnx.helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], dilations=[2, 2])
    (finding,) = lint(_graph(dilated))
    assert finding.severity == "error" and "dilations" in finding.why and "--maxpool-impl window" in finding.fix
    plain = onnx.helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], dilations=[1, 1])
    assert lint(_graph(plain)) == []


def test_unused_maxpool_indices_are_not_flagged():
    pool = onnx.helper.make_node("MaxPool", ["x"], ["y", "unused"], name="pool", kernel_shape=[2, 2])
    assert lint(_graph(pool)) == []


def test_scatter_reductions():
    def scatter(op):
        return onnx.helper.make_node(op, ["x", "i", "u"], ["y"], name=op, reduction="max")

    (nd,) = lint(_graph(scatter("ScatterND"), opset=18))
    assert nd.severity == "error" and "reduction" in nd.why
    (elements,) = lint(_graph(scatter("ScatterElements"), opset=18))
    assert elements.severity == "warning" and "plugin" in elements.why
    plain = onnx.helper.make_node("ScatterND", ["x", "i", "u"], ["y"], name="unpool")
    assert lint(_graph(plain)) == []


def test_unsupported_resize_coordinate_mode_and_explicit_maxunpool():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [onnx.helper.make_node("Resize", ["x", "", "scales"], ["r"], name="resize",
                                   coordinate_transformation_mode="tf_crop_and_resize"),
             onnx.helper.make_node("MaxUnpool", ["r", "i"], ["y"], name="unpool", kernel_shape=[2, 2])]
    graph = onnx.helper.make_graph(nodes, "g", [x], [y])
    findings = lint(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]))
    assert {(f.node, f.op_type) for f in findings} == {("resize", "Resize"), ("unpool", "MaxUnpool")}


def test_ort_target_warns_that_the_plugin_node_needs_deploykits_library(graphs):
    (finding,) = lint_file(graphs["plugin"], target="ort")
    assert finding.severity == "warning" and "register_custom_ops_library" in finding.fix


def test_ort_target_refuses_other_custom_nodes(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    node = onnx.helper.make_node("Mystery", ["x"], ["y"], domain="acme", name="m")
    graph = onnx.helper.make_graph([node], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                         onnx.helper.make_opsetid("acme", 1)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    (finding,) = lint_file(tmp_path / "m.onnx", target="ort")
    assert finding.severity == "error" and "no kernel" in finding.why


def test_cli_exit_codes_and_report(graphs, tmp_path):
    report = tmp_path / "lint.json"
    result = run("lint", graphs["segnet"], "--report", report)
    assert result.exit_code == 1 and "MaxPool" in result.output
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["findings"][0]["fix"]
    clean = run("lint", graphs["dysample"])
    assert clean.exit_code == 0 and "clean" in clean.output


def test_cli_bad_inputs(tmp_path):
    missing = run("lint", tmp_path / "nope.onnx")
    assert missing.exit_code == 2 and "not found" in missing.stderr
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x00garbage")
    assert run("lint", garbage).exit_code == 2


def test_export_for_trt_lints_automatically(tmp_path):
    native = run("export", "max_unpool", "--target", "trt", "--maxpool-impl", "native", "-o", tmp_path / "n.onnx")
    assert native.exit_code == 1 and "MaxPool" in native.output and (tmp_path / "n.onnx").is_file()
    assert "exit 1 from lint, not parity: the graph matches PyTorch at every verified shape" in \
        " ".join(native.output.split())
    window = run("export", "max_unpool", "--target", "trt", "-o", tmp_path / "m.onnx")  # window by default
    assert window.exit_code == 0, window.output
    plugin = run("export", "dysample", "--target", "trt", "--dysample-impl", "plugin", "-o", tmp_path / "p.onnx")
    assert plugin.exit_code == 0 and "0 error(s), 1 warning(s)" in plugin.output


def _model(nodes, opset=20, functions=(), domains=()):
    """A small graph x -> y around ``nodes`` (tests build the odd graphs other tools write)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    g = helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 4, 4, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    graph = helper.make_graph(nodes, "graph", [x, g], [y])
    imports = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, 1) for d in domains]]
    return helper.make_model(graph, opset_imports=imports, functions=list(functions))


def _linear_grid_sample(name="grid"):
    from onnx import helper

    return helper.make_node("GridSample", ["x", "g"], ["y"], name=name, mode="linear")


def test_a_grid_sample_inside_an_if_is_linted(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    branch = helper.make_graph([_linear_grid_sample("inner")], "then", [], [out])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "else", [], [out])
    cond = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True]))
    model = _model([cond, helper.make_node("If", ["c"], ["y"], name="branch", then_branch=branch, else_branch=other)])
    path = tmp_path / "if.onnx"
    onnx.save(model, str(path))
    findings = lint_file(path, "trt")
    assert [(f.node, f.severity) for f in findings] == [("branch/then_branch/inner", "error")]
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 1 and "branch/then_branch/inner" in result.stdout


def test_a_model_local_function_is_linted_and_not_taken_for_a_plugin(tmp_path):
    import onnx
    from onnx import helper

    function = helper.make_function("local", "Warp", ["x", "g"], ["y"], [_linear_grid_sample("body")],
                                    [helper.make_opsetid("", 20)])
    model = _model([helper.make_node("Warp", ["x", "g"], ["y"], name="call", domain="local")],
                   functions=[function], domains=["local"])
    path = tmp_path / "f.onnx"
    onnx.save(model, str(path))
    assert [(f.node, f.op_type) for f in lint_file(path, "trt")] == [("call/Warp/body", "GridSample")]
    assert lint_file(path, "ort") == []


def test_onnx_runtime_domains_are_its_own_and_not_tensorrts(tmp_path):
    import onnx
    from onnx import helper

    model = _model([helper.make_node("FusedGemm", ["x", "x"], ["y"], name="gemm", domain="com.microsoft")],
                   opset=17, domains=["com.microsoft"])
    path = tmp_path / "ms.onnx"
    onnx.save(model, str(path))
    assert lint_file(path, "ort") == []
    (finding,) = lint_file(path, "trt")
    assert finding.severity == "error" and "TensorRT's parser has no importer" in finding.why


def test_a_dynamic_input_whose_sizes_reach_no_output_is_a_warning(tmp_path):
    path = tmp_path / "f.onnx"
    export_onnx(load_model("tests.user_models:fixed_size_head"), path, trace_shape=(2, 3, 16, 24))
    (finding,) = lint_file(path, "trt")
    assert finding.severity == "warning" and "every output's sizes are fixed" in finding.why
