"""deploykit package: a Triton model repository, through the CLI. Each config.pbtxt is read back
with Triton's own ModelConfig message (tritonclient's generated module), as the server parses
it; the custom-op wiring is proven by doing what Triton's ONNX Runtime backend does with it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    # no batching: the scalar is plain dims [1] (Triton refuses an empty reshape where max_batch_size is 0)
    assert outputs == {"out.main": ("TYPE_FP16", [2, 1, -1, -1], False), "total": ("TYPE_FP16", [1], False),
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
    assert_user_error(run("package", "--onnx", onnx_path, "-o", repository, "--max-batch", "2"), "--force")
    assert read_config(model_config, repository / "net").max_batch_size == 4
    result = run("package", "--onnx", onnx_path, "-o", repository, "--max-batch", "2", "--force")
    assert result.exit_code == 0, result.output
    assert read_config(model_config, repository / "net").max_batch_size == 2
    assert sorted(p.name for p in repository.iterdir()) == ["net"]  # no staging or old folder left
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nor beside the repository
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


def test_a_scalar_keeps_its_empty_reshape_only_where_the_model_batches(tmp_path, model_config):
    """Triton takes reshape { shape: [] } under max_batch_size > 0 only."""
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, [])])
    onnx_path = save(tmp_path, graph)
    assert run("package", "--onnx", onnx_path, "-o", tmp_path / "repo").exit_code == 0
    config = read_config(model_config, tmp_path / "repo" / "net")
    assert config.max_batch_size == 0
    assert [(list(t.dims), t.HasField("reshape")) for t in config.output] == [([1], False)]
    batched = save(tmp_path, relu_graph(x_dims=("batch",)), "batched.onnx")
    assert run("package", "--onnx", batched, "-o", tmp_path / "repo").exit_code == 0
    config = read_config(model_config, tmp_path / "repo" / "batched")
    assert config.max_batch_size == 4 and all(t.HasField("reshape") and list(t.dims) == [1] for t in config.input)


def test_max_batch_past_int32_is_refused(tmp_path):
    result = run("package", "--onnx", save(tmp_path, relu_graph()), "-o", tmp_path / "repo", "--max-batch", 2**31)
    assert result.exit_code == 2 and "2147483647" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("high", [2**40, 0, -3, "8", 8.5])
def test_a_recorded_batch_bound_triton_cannot_take_bounds_nothing(tmp_path, model_config, high):
    bound = json.dumps([{"input": "x", "axis": 0, "dim": "batch", "low": 1, "high": high, "where": ""}])
    onnx_path = save(tmp_path, relu_graph(), metadata={"deploykit.dim_ranges": bound})
    result = run("package", "--onnx", onnx_path, "-o", tmp_path / "repo")
    assert result.exit_code == 0, result.output
    assert read_config(model_config, tmp_path / "repo" / "net").max_batch_size == 4


def test_a_dim_of_size_0_is_refused_and_a_negative_one_is_dynamic(tmp_path, model_config):
    empty = save(tmp_path, relu_graph(x_dims=("batch", 0)), "empty.onnx")
    assert_user_error(run("package", "--onnx", empty, "-o", tmp_path / "repo"), "size 0")
    old = save(tmp_path, relu_graph(x_dims=("batch", -2)), "old.onnx")  # old converters: negative for dynamic
    assert run("package", "--onnx", old, "-o", tmp_path / "repo").exit_code == 0
    config = read_config(model_config, tmp_path / "repo" / "old")
    assert [list(t.dims) for t in [*config.input, *config.output]] == [[-1], [-1]]


def test_dim_0s_symbol_in_a_later_dim_is_not_a_batch(tmp_path, model_config):
    onnx_path = save(tmp_path, relu_graph(x_dims=("batch", "batch")))
    result = run("package", "--onnx", onnx_path, "-o", tmp_path / "repo")
    assert result.exit_code == 0 and "later dim" in result.output, result.output
    config = read_config(model_config, tmp_path / "repo" / "net")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [-1, -1]


def test_a_tensor_name_that_is_not_utf8_is_refused(tmp_path):
    model = helper.make_model(relu_graph(), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "net.onnx"
    path.write_bytes(model.SerializeToString().replace(b"\n\x01x", b"\n\x01\xff"))  # the fields naming x
    assert_user_error(run("package", "--onnx", path, "-o", tmp_path / "repo"), "not UTF-8")
    assert not (tmp_path / "repo").exists()


def test_force_leaves_a_model_folder_the_user_added_a_version_to(tmp_path, model_config):
    onnx_path = save(tmp_path, relu_graph())
    repository = tmp_path / "repo"
    assert run("package", "--onnx", onnx_path, "-o", repository).exit_code == 0
    (repository / "net" / "2").mkdir()
    (repository / "net" / "2" / "model.onnx").write_bytes(onnx_path.read_bytes())
    assert_user_error(run("package", "--onnx", onnx_path, "-o", repository, "--max-batch", "2", "--force"),
                      "also holds 2")
    assert (repository / "net" / "2" / "model.onnx").is_file()
    assert read_config(model_config, repository / "net").max_batch_size == 4


@pytest.mark.parametrize("args, fragment", [
    (["--engine", "net.onnx"], "same file as --onnx"),
    (["--engine", "net.plan", "--plugin", "libp.so", "--plugin", "libp.so"], "same file as --plugin"),
    (["--engine", "net.plan", "--plugin", "libp.so", "--plugin", "other/libp.so"], "two --plugin"),
    (["--engine", "net.plan", "--plugin", "config.pbtxt"], "what package writes"),
    (["--engine", "net.plan", "--plugin", "1"], "what package writes"),
    (["--engine", "net.plan", "--plugin", "net.plan"], "same file as --engine"),
])
def test_inputs_that_would_collide_in_the_package_are_refused(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    save(tmp_path, relu_graph())
    (tmp_path / "other").mkdir()
    for name in ["net.plan", "libp.so", "other/libp.so", "config.pbtxt", "1"]:
        (tmp_path / name).write_bytes(b"\x7fELF " + name.encode())
    assert_user_error(run("package", "--onnx", "net.onnx", "-o", "repo", *args), fragment)
    assert not (tmp_path / "repo").exists()


def test_an_engine_inside_its_own_model_folder_is_refused_before_anything_is_written(tmp_path, model_config):
    onnx_path, engine = save(tmp_path, relu_graph()), tmp_path / "net.plan"
    engine.write_bytes(b"engine bytes")
    repository = tmp_path / "repo"
    assert run("package", "--onnx", onnx_path, "-o", repository, "--engine", engine).exit_code == 0
    assert_user_error(run("package", "--onnx", onnx_path, "-o", repository, "--engine",
                          repository / "net_trt" / "1" / "model.plan", "--force", "--max-batch", "3"), "inside")
    assert read_config(model_config, repository / "net").max_batch_size == 4  # the pair stays one package


def test_a_name_too_long_for_the_engine_model_says_so(tmp_path):
    engine = tmp_path / "net.plan"
    engine.write_bytes(b"engine bytes")
    onnx_path = save(tmp_path, relu_graph(), name="n" * 125 + ".onnx")
    assert_user_error(run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--engine", engine),
                      "the file's name", "at most 124")


def test_the_readme_commands_keep_an_odd_server_root_whole(tmp_path):
    root = '/my "models"$x'
    engine, plugin = tmp_path / "net.plan", tmp_path / "libp.so"
    engine.write_bytes(b"engine bytes")
    plugin.write_bytes(b"\x7fELF plugin")
    result = run("package", "--onnx", save(tmp_path, relu_graph()), "-o", tmp_path / "repo", "--engine", engine,
                 "--plugin", plugin, "--server-root", root)
    assert result.exit_code == 0, result.output
    readme = (tmp_path / "repo" / "net_trt" / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("    tritonserver"))
    words = subprocess.run(["bash", "-c", f"printf '%s\\n' {command}"], capture_output=True, text=True).stdout
    assert words.splitlines() == ["tritonserver", f"--model-repository={root}",
                                  f"--backend-config=tensorrt,plugins={root}/net_trt/libp.so"]
    mount = next(line for line in readme.splitlines() if line.startswith("docker run"))
    assert f"-v \"$PWD\":'{root}' " in mount
    for bad in ["/", "/a/../b"]:
        assert_user_error(run("package", "--onnx", tmp_path / "net.onnx", "-o", tmp_path / "repo2", "--server-root",
                              bad), "below '/'")


def test_an_output_folder_under_a_file_is_named_as_such(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    assert_user_error(run("package", "--onnx", save(tmp_path, relu_graph()), "-o", tmp_path / "file" / "repo"),
                      "is not a folder")


def test_an_interrupted_swap_puts_the_previous_package_back(tmp_path, monkeypatch, model_config):
    """Ctrl-C between moving the old folder aside and renaming the new one in."""
    import deploykit.package

    onnx_path = save(tmp_path, relu_graph())
    repository = tmp_path / "repo"
    assert run("package", "--onnx", onnx_path, "-o", repository).exit_code == 0

    def interrupted(path):
        if str(path).endswith(".old"):
            raise KeyboardInterrupt

    monkeypatch.setattr(deploykit.package, "note_scratch", interrupted)
    result = run("package", "--onnx", onnx_path, "-o", repository, "--max-batch", "2", "--force")
    assert result.exit_code == 130, result.output
    assert os.listdir(repository) == ["net"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert read_config(model_config, repository / "net").max_batch_size == 4


def test_a_failed_write_leaves_no_empty_repository_behind(tmp_path, monkeypatch):
    import errno

    import deploykit.package

    def disk_full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(deploykit.package.shutil, "copyfile", disk_full)
    result = run("package", "--onnx", save(tmp_path, relu_graph()), "-o", tmp_path / "repo")
    assert result.exit_code == 2 and "No space left" in result.output, result.output
    assert not (tmp_path / "repo").exists()


def test_folders_are_staged_out_of_the_servers_sight_and_committed_together(tmp_path, monkeypatch):
    """A polling Triton lists every folder in the repository, hidden ones too: the models are
    filled beside it and renamed in; a failure while filling the second commits neither."""
    import deploykit.package

    onnx_path, engine = save(tmp_path, relu_graph()), tmp_path / "net.plan"
    engine.write_bytes(b"engine bytes")
    repository = tmp_path / "repo"
    repository.mkdir()
    renamed = []
    real_rename = os.rename
    monkeypatch.setattr(deploykit.package.os, "rename", lambda a, b: (renamed.append(Path(a)), real_rename(a, b)))
    assert run("package", "--onnx", onnx_path, "-o", repository, "--engine", engine).exit_code == 0
    assert len(renamed) == 2 and all(stage.parent == tmp_path for stage in renamed)
    real_copy = shutil.copyfile

    def disk_full_on_the_plan(source, target):
        if Path(target).name == "model.plan":
            raise OSError(28, "No space left on device")
        return real_copy(source, target)

    monkeypatch.setattr(deploykit.package.shutil, "copyfile", disk_full_on_the_plan)
    result = run("package", "--onnx", onnx_path, "-o", repository, "--engine", engine, "--name", "other")
    assert result.exit_code != 0
    assert sorted(os.listdir(repository)) == ["net", "net_trt"]  # no 'other' without its 'other_trt'
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_semicolon_cannot_reach_tritons_plugin_list(tmp_path):
    onnx_path, engine, plugin = save(tmp_path, relu_graph()), tmp_path / "net.plan", tmp_path / "lib;x.so"
    engine.write_bytes(b"engine bytes")
    plugin.write_bytes(b"plugin")
    assert_user_error(run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--server-root", "/mo;dels"), "';'")
    assert_user_error(run("package", "--onnx", onnx_path, "-o", tmp_path / "repo", "--engine", engine,
                          "--plugin", plugin), "';'")
