"""deploykit package: a Triton model repository, through the CLI. Each config.pbtxt is read back
with Triton's own ModelConfig message (tritonclient's generated module), as the server parses
it; the custom-op wiring is proven by doing what Triton's ONNX Runtime backend does with it."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper

from deploykit.package import triton_model_config_module
from tests.cli_helpers import assert_user_error, run
from tests.ort_graphs import dysample_model, sample_inputs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def model_config():
    module = triton_model_config_module()
    if module is None:
        pytest.skip("tritonclient is not installed (pip install -e '.[test]' installs it)")
    return module


def read_config(model_config, folder):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config.ModelConfig())


def save(tmp_path, graph, name="net.onnx", metadata=None):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def relu_graph(x_dims=("batch", 3, "height", "width"), dtype=TensorProto.FLOAT, y_dims=None):
    node = helper.make_node("Relu", ["x"], ["y"])
    return helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, list(x_dims))],
                             [helper.make_tensor_value_info("y", dtype, list(y_dims or x_dims))])


def plugin_graph(tmp_path):
    """One deploykit::DySample node (tests/ort_graphs.py) with its output's dims recorded, as
    deploykit's export writes them."""
    model = onnx.load_from_string(dysample_model(channels=8))
    output = model.graph.output[0]
    output.CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, "2*height", "2*width"]))
    path = tmp_path / "dys.onnx"
    onnx.save(model, path)
    return path


def test_a_batched_graph_becomes_a_model_triton_parses(tmp_path, model_config):
    onnx_path = save(tmp_path, relu_graph())
    result = run("package", "--onnx", onnx_path, "-o", tmp_path / "repo")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "repo" / "net"
    config = read_config(model_config, folder)
    assert (config.name, config.platform, config.max_batch_size) == ("net", "onnxruntime_onnx", 4)
    assert [(t.name, model_config.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == \
        [("x", "TYPE_FP32", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("y", [3, -1, -1])]
    assert config.HasField("dynamic_batching") and not config.HasField("model_operations")
    assert (folder / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert "Triton's default" in result.output and "tritonserver --model-repository=/models" in \
        (folder / "README.md").read_text()


def test_the_batch_bound_comes_from_the_export_or_the_user_within_it(tmp_path, model_config):
    bound = json.dumps([{"input": "x", "axis": 0, "dim": "batch", "low": 1, "high": 8, "where": ""}])
    onnx_path = save(tmp_path, relu_graph(), metadata={"deploykit.dim_ranges": bound})
    assert run("package", "--onnx", onnx_path, "-o", tmp_path / "repo").exit_code == 0
    assert read_config(model_config, tmp_path / "repo" / "net").max_batch_size == 8
    result = run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--name", "small", "--max-batch", "2")
    assert result.exit_code == 0, result.output
    assert read_config(model_config, tmp_path / "repo" / "small").max_batch_size == 2
    assert_user_error(run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--name", "big", "--max-batch", "9"),
                      "batch <= 8")
    assert not (tmp_path / "repo" / "big").exists()


def test_without_one_shared_batch_dim_every_dim_is_listed(tmp_path, model_config):
    fixed = save(tmp_path, relu_graph(x_dims=(1, 3, "height", "width")), "fixed.onnx")
    result = run("package", "--onnx", fixed, "-o", tmp_path / "repo")
    assert result.exit_code == 0, result.output
    config = read_config(model_config, tmp_path / "repo" / "fixed")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, -1, -1]
    assert not config.HasField("dynamic_batching")
    assert_user_error(run("package", "--onnx", fixed, "-o", tmp_path / "repo", "--name", "b", "--max-batch", "4"),
                      "fixed at 1")
    # dim 0 named differently on the output: not provably one batch
    renamed = save(tmp_path, relu_graph(y_dims=("n", 3, "height", "width")), "renamed.onnx")
    assert run("package", "--onnx", renamed, "-o", tmp_path / "repo").exit_code == 0
    assert read_config(model_config, tmp_path / "repo" / "renamed").max_batch_size == 0


def test_several_tensors_types_scalars_and_hostile_names_read_back(tmp_path, model_config):
    image, mask = 'im"age\\0 \u00e9', "mask\n"
    nodes = [helper.make_node("Cast", [mask], ["mask_f"], to=TensorProto.FLOAT16),
             helper.make_node("Mul", [image, "mask_f"], ["out.main"]),
             helper.make_node("ReduceSum", ["out.main"], ["total"], keepdims=0),
             helper.make_node("Shape", ["out.main"], ["size"])]
    graph = helper.make_graph(nodes, "g", [
        helper.make_tensor_value_info(image, TensorProto.FLOAT16, [2, 1, "h", "w"]),
        helper.make_tensor_value_info(mask, TensorProto.BOOL, [2, 1, "h", "w"])], [
        helper.make_tensor_value_info("out.main", TensorProto.FLOAT16, [2, 1, "h", "w"]),
        helper.make_tensor_value_info("total", TensorProto.FLOAT16, []),
        helper.make_tensor_value_info("size", TensorProto.INT64, [4])])
    result = run("package", "--onnx", save(tmp_path, graph), "-o", tmp_path / "repo")
    assert result.exit_code == 0, result.output
    config = read_config(model_config, tmp_path / "repo" / "net")
    types = model_config.DataType.Name
    assert [(t.name, types(t.data_type), list(t.dims)) for t in config.input] == \
        [(image, "TYPE_FP16", [2, 1, -1, -1]), (mask, "TYPE_BOOL", [2, 1, -1, -1])]
    outputs = {t.name: (types(t.data_type), list(t.dims), t.HasField("reshape")) for t in config.output}
    assert outputs == {"out.main": ("TYPE_FP16", [2, 1, -1, -1], False), "total": ("TYPE_FP16", [1], True),
                       "size": ("TYPE_INT64", [4], False)}
    assert config.max_batch_size == 0


def test_types_triton_cannot_serve_are_refused(tmp_path):
    path = save(tmp_path, relu_graph(dtype=TensorProto.COMPLEX64))
    assert_user_error(run("package", "--onnx", path, "-o", tmp_path / "repo"), "COMPLEX64")
    assert not (tmp_path / "repo" / "net").exists()


def test_a_plugin_graph_ships_the_custom_op_library_where_the_server_finds_it(tmp_path, model_config, ort_custom_ops):
    """Triton's ONNX Runtime backend registers every op_library_filename, then loads
    <version>/model.onnx: done here with the repository 'mounted' at its own path."""
    import onnxruntime as ort

    onnx_path = plugin_graph(tmp_path)
    repository = tmp_path / "repo"
    result = run("package", "--onnx", onnx_path, "-o", repository, "--server-root", repository.resolve())
    assert result.exit_code == 0, result.output
    folder = repository / "dys"
    config = read_config(model_config, folder)
    assert list(config.model_operations.op_library_filename) == [str(folder.resolve() / "libdeploykit_ort.so")]
    options = ort.SessionOptions()
    for library in config.model_operations.op_library_filename:
        options.register_custom_ops_library(library)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    feed = sample_inputs(2, 8, 5, 7, scale=2, groups=2)
    direct = ort.SessionOptions()
    direct.register_custom_ops_library(str(ort_custom_ops))
    expected = ort.InferenceSession(dysample_model(), direct, providers=["CPUExecutionProvider"]).run(None, feed)
    np.testing.assert_array_equal(session.run(None, feed)[0], expected[0])
    assert "custom-op library" in result.output and "/models" not in config.model_operations.op_library_filename[0]


def test_a_plugin_graph_without_the_library_is_refused(tmp_path, without_ort_library):
    onnx_path = plugin_graph(tmp_path)
    result = run("package", "--onnx", onnx_path, "-o", tmp_path / "repo")
    assert_user_error(result, "DEPLOYKIT_ORT_INCLUDE_DIR")
    assert not (tmp_path / "repo" / "dys").exists()


def test_an_engine_becomes_a_tensorrt_model_with_its_plugin(tmp_path, model_config, ort_custom_ops):
    onnx_path = plugin_graph(tmp_path)
    engine, plugin = tmp_path / "dys.plan", tmp_path / "libdeploykit_trt_plugins.so"
    engine.write_bytes(b"engine bytes")
    plugin.write_bytes(b"\x7fELF plugin")
    assert_user_error(run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--engine", engine),
                      "--plugin")
    assert_user_error(run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--plugin", plugin), "--engine")
    result = run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--engine", engine, "--plugin", plugin)
    assert result.exit_code == 0, result.output
    plan_folder = tmp_path / "repo" / "dys_trt"
    config = read_config(model_config, plan_folder)
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 4)
    assert [t.name for t in config.input] == ["x", "offset"] and not config.HasField("model_operations")
    assert (plan_folder / "1" / "model.plan").read_bytes() == b"engine bytes"
    assert (plan_folder / plugin.name).read_bytes() == plugin.read_bytes()
    readme = (plan_folder / "README.md").read_text()
    assert f'--backend-config=tensorrt,plugins="/models/dys_trt/{plugin.name}"' in readme and "LD_PRELOAD" in readme
    assert (tmp_path / "repo" / "dys" / "1" / "model.onnx").is_file()


def test_an_existing_model_is_replaced_only_with_force_and_only_if_deploykit_wrote_it(tmp_path, model_config):
    onnx_path = save(tmp_path, relu_graph())
    repository = tmp_path / "repo"
    assert run("package", "--onnx", onnx_path, "-o", repository).exit_code == 0
    (repository / "net" / "1" / "extra.txt").write_text("not in the manifest")
    assert_user_error(run("package", "--onnx", onnx_path, "-o", repository, "--max-batch", "2"), "--force")
    assert read_config(model_config, repository / "net").max_batch_size == 4
    result = run("package", "--onnx", onnx_path, "-o", repository, "--max-batch", "2", "--force")
    assert result.exit_code == 0, result.output
    assert read_config(model_config, repository / "net").max_batch_size == 2
    assert sorted(p.name for p in repository.iterdir()) == ["net"]  # no staging or old folder left
    theirs = repository / "theirs"
    (theirs / "1").mkdir(parents=True)
    (theirs / "config.pbtxt").write_text('name: "theirs"')
    assert_user_error(run("package", "--onnx", onnx_path, "-o", repository, "--name", "theirs", "--force"),
                      "not written by deploykit")
    assert (theirs / "config.pbtxt").read_text() == 'name: "theirs"'


def test_an_input_inside_the_folder_it_would_replace_is_refused(tmp_path):
    onnx_path = save(tmp_path, relu_graph())
    repository = tmp_path / "repo"
    assert run("package", "--onnx", onnx_path, "-o", repository).exit_code == 0
    packaged = repository / "net" / "1" / "model.onnx"
    assert_user_error(run("package", "--onnx", packaged, "-o", repository, "--name", "net", "--force"), "inside")
    assert packaged.read_bytes() == onnx_path.read_bytes()


@pytest.mark.parametrize("args, fragment", [
    (["--name", "../up"], "model name"), (["--name", ".hidden"], "model name"),
    (["--server-root", "models"], "absolute"), (["--max-batch", "-1"], "--max-batch"),
])
def test_bad_options_are_refused(tmp_path, args, fragment):
    result = run("package", "--onnx", save(tmp_path, relu_graph()), "-o", tmp_path / "repo", *args)
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not any((tmp_path / "repo").glob("*")) if (tmp_path / "repo").exists() else True


def test_external_data_files_are_refused_not_half_copied(tmp_path):
    graph = relu_graph()
    graph.initializer.append(helper.make_tensor("w", TensorProto.FLOAT, [256], np.ones(256, np.float32).tobytes(), raw=True))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    assert_user_error(run("package", "--onnx", path, "-o", tmp_path / "repo"), "external data")


def test_the_report_lists_each_model(tmp_path):
    report = tmp_path / "package.json"
    result = run("package", "--onnx", save(tmp_path, relu_graph()), "-o", tmp_path / "repo", "--report", report)
    assert result.exit_code == 0, result.output
    written = json.loads(report.read_text())
    assert written["schema_version"] == 2
    assert [(m["name"], m["max_batch_size"], m["inputs"][0]["dims"]) for m in written["models"]] == \
        [("net", 4, [3, -1, -1])]


def test_package_never_imports_torch(tmp_path, torch_unimportable):
    onnx_path = save(tmp_path, relu_graph())
    result = subprocess.run([sys.executable, "-m", "deploykit", "package", "--onnx", str(onnx_path), "-o",
                             str(tmp_path / "repo")], capture_output=True, text=True, env=torch_unimportable(),
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / "net" / "config.pbtxt").is_file()
    assert os.listdir(tmp_path / "repo") == ["net"]
