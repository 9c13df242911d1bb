"""Issue #12, one test per item: hostile inputs, interrupted runs and honest verdicts."""

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from deploykit.cli import main
from deploykit.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="deploykit")


def user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _save(graph_nodes, inputs, outputs, path, **attrs):
    model = helper.make_model(helper.make_graph(graph_nodes, "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def _identity_input():
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, "h", "w"])


@pytest.fixture(scope="module")
def conv_transpose_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "ct.onnx"
    assert run("export", "conv_transpose", "--seed", 7, "-o", path).exit_code == 0
    return path


# --- false verdicts ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["ort", "onnx-ref"])
def test_a_sequence_output_never_passes(tmp_path, backend):
    """SplitToSequence(axis 0, keepdims 0) of an identity model: NumPy would stack the list into
    exactly the reference's shape and values."""
    sequence = helper.make_value_info("output", helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    path = _save([helper.make_node("SplitToSequence", ["input"], ["output"], axis=0, keepdims=0)],
                 [_identity_input()], [sequence], tmp_path / "seq.onnx")
    report = tmp_path / "r.json"
    result = run("check", "tests.custom_models:flagged", "--onnx", path, "--shape", "2x4x3x3", "--backends", backend,
                 "--report", report)
    assert result.exit_code == 1, result.output
    row = json.loads(report.read_text())["results"][0]
    assert row["passed"] is False and "sequence of 2 values, not a tensor" in row["reason"]


def test_an_output_of_another_dtype_never_passes(tmp_path):
    integer = helper.make_tensor_value_info("output", TensorProto.INT64, ["batch", 4, "h", "w"])
    path = _save([helper.make_node("Cast", ["input"], ["output"], to=TensorProto.INT64)],
                 [_identity_input()], [integer], tmp_path / "int.onnx")
    report = tmp_path / "r.json"
    result = run("check", "tests.custom_models:flagged", "--onnx", path, "--shape", "1x4x3x3", "--backends", "ort",
                 "--report", report, "--atol", "10")
    assert result.exit_code == 1
    assert "dtype int64" in json.loads(report.read_text())["results"][0]["reason"]


def test_torch_against_itself_is_not_a_pass_when_every_exported_backend_was_skipped():
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here, so trt is not skipped")
    user_error(run("check", "pool", "--backends", "torch,trt", "--shape", "1x16x8x8"),
               "every backend that runs the exported graph or engine was skipped", "trt: ")
    user_error(run("bench", "pool", "--backends", "torch,trt", "--shape", "1x16x8x8", "--iters", 1), "was skipped")
    assert run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8").exit_code == 0  # asked for: valid


def _bad_onnx_files(folder: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {"empty": b"", "truncated": data[: len(data) // 3], "garbage": b"\x08\xff\xff\xff\x0f" * 40,
             "text": b"not an onnx model\n"}
    paths = {name: folder / f"{name}.onnx" for name in files}
    for name, body in files.items():
        paths[name].write_bytes(body)
    bad_text = helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="linear")
    bad_text.attribute[0].s = b"\xff\xfelinear"  # not UTF-8
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    graph = helper.make_graph([bad_text], "g", [_identity_input()],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], [scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    paths["not utf-8 attribute"] = folder / "utf8.onnx"
    paths["not utf-8 attribute"].write_bytes(model.SerializeToString())
    return paths


def test_lint_validates_the_file_first_as_check_does(tmp_path, conv_transpose_onnx):
    for name, path in _bad_onnx_files(tmp_path, conv_transpose_onnx).items():
        lint = user_error(run("lint", path))
        check = user_error(run("check", "pool", "--onnx", path, "--backends", "ort"))
        assert str(path) in lint and str(path) in check, name


def test_fp16_exports_an_fp16_graph_and_says_what_each_backend_ran(tmp_path):
    report = tmp_path / "r.json"
    result = run("check", "upsample_conv", "--precision", "fp16", "--shape", "1x32x8x8", "--report", report)
    assert result.exit_code == 0, result.output
    backends = json.loads(report.read_text())["backends"]
    assert backends["torch"]["precision"] == "fp16" and backends["ort"]["precision"] == "fp16"
    fp32 = tmp_path / "fp32.onnx"
    assert run("export", "upsample_conv", "-o", fp32).exit_code == 0
    bench = run("bench", "upsample_conv", "--precision", "fp16", "--onnx", fp32, "--shape", "1x32x8x8",
                "--iters", 2, "--warmup", 0, "--report", tmp_path / "b.json")
    assert bench.exit_code == 0 and "precision=fp32" in bench.output  # the graph given runs as exported, and says so
    assert json.loads((tmp_path / "b.json").read_text())["backends"]["ort"]["precision"] == "fp32"


# --- lost or damaged files ---------------------------------------------------------------------

def test_outputs_that_are_inputs_are_refused_before_any_work(conv_transpose_onnx, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(conv_transpose_onnx, model)
    before = model.read_bytes()
    user_error(run("check", "conv_transpose", "--onnx", model, "--report", model, "--force"), "is the --onnx file")
    user_error(run("check", "conv_transpose", "--onnx", model, "--html", model, "--force"), "is the --onnx file")
    user_error(run("check", "conv_transpose", "--onnx", model, "--report", tmp_path / "x", "--html", tmp_path / "x"),
               "name the same file")
    user_error(run("lint", model, "--report", model, "--force"), "is the MODEL file")
    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    user_error(run("export", "pool", "--weights", weights, "-o", weights, "--force"))
    assert model.read_bytes() == before and weights.stat().st_size > 0


def test_html_figures_folder_is_checked_before_any_work_and_force_keeps_the_users_files(tmp_path, monkeypatch):
    page = tmp_path / "R.html"
    (tmp_path / "R_files").mkdir()
    (tmp_path / "R_files" / "mine.txt").write_text("not deploykit's")
    import deploykit.check

    real = deploykit.check.run_check
    monkeypatch.setattr(deploykit.check, "run_check", lambda *a, **k: pytest.fail("ran before refusing R_files"))
    user_error(run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8", "--html", page), "R_files")
    monkeypatch.setattr(deploykit.check, "run_check", real)
    result = run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8", "--html", page, "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "R_files" / "mine.txt").read_text() == "not deploykit's"


def test_a_report_that_appears_during_the_run_is_left_alone(tmp_path, monkeypatch):
    import deploykit.report

    report = tmp_path / "r.json"
    printer = deploykit.report.print_check

    def print_and_race(result, console):
        printer(result, console)
        report.write_text("another run's")

    monkeypatch.setattr(deploykit.report, "print_check", print_and_race)
    line = user_error(run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8", "--report", report))
    assert "already exists" in line or "appeared while deploykit was writing it" in line  # checked again at the end
    assert report.read_text() == "another run's"


def test_force_never_turns_a_device_or_fifo_into_a_file(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for target in (tmp_path / "fifo", "/dev/null"):
        user_error(run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8", "--report", target, "--force"),
                   "not a regular file")
    assert (tmp_path / "fifo").is_fifo()


def _state_dict_zip(tmp_path) -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.nn.Conv2d(2, 2, 1).state_dict(), buffer)
    return buffer.getvalue()


def test_corrupt_weights_zips_are_input_errors(tmp_path):
    """Damaged archives raise TypeError, IndexError, KeyError... inside torch.load: all exit 2."""
    from deploykit.spec import load_weights

    original = _state_dict_zip(tmp_path)
    names = zipfile.ZipFile(io.BytesIO(original)).namelist()
    pickle_name = next(n for n in names if n.endswith("data.pkl"))
    pickled = zipfile.ZipFile(io.BytesIO(original)).read(pickle_name)
    variants = []
    for position in range(0, len(pickled), max(1, len(pickled) // 60)):
        for value in (0x00, 0x7F, 0xFF):
            mutated = bytearray(pickled)
            mutated[position] = value
            variants.append({pickle_name: bytes(mutated)})
    variants.append({n: b"" for n in names if n != pickle_name})  # every storage empty
    variants.append({})  # storages missing
    module = torch.nn.Conv2d(2, 2, 1)
    for index, replace in enumerate(variants):
        path = tmp_path / f"w{index}.pt"
        with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(path, "w") as target:
            for name in source.namelist():
                if replace == {} and "/data/" in name:
                    continue
                target.writestr(name, replace.get(name, source.read(name)))
        try:
            load_weights(module, path)
        except UserError:
            pass
    user_error(run("check", "conv", "--weights", tmp_path / "w0.pt"))


def test_tampered_metadata_is_an_input_error_in_localize(conv_transpose_onnx, tmp_path):
    proto = onnx.load(str(conv_transpose_onnx))
    weight = next(i for i in proto.graph.initializer if len(i.dims) == 4)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 3, weight.name))
    # (check --localize re-exports at the failing shape itself, so a tampered traced shape is not read)
    for key, value, fragment in [("deploykit.dysample_impl", "bogus", "not a DySample export strategy")]:
        tampered = onnx.ModelProto()
        tampered.CopyFrom(proto)
        onnx.helper.set_model_props(tampered, {**{p.key: p.value for p in proto.metadata_props}, key: value})
        path = tmp_path / "tampered.onnx"
        onnx.save(tampered, str(path))
        report = tmp_path / "r.json"
        result = run("check", "conv_transpose", "--seed", 7, "--onnx", path, "--localize", "--backends", "ort",
                     "--shape", "1x32x5x6", "--report", report, "--force")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert fragment in json.loads(report.read_text())["localization"]["ort"]["error"]


# --- hangs -------------------------------------------------------------------------------------

def test_bench_iterations_and_time_are_bounded(tmp_path):
    user_error(run("bench", "pool", "--iters", "99999999999999999999999"), "--iters")
    user_error(run("bench", "pool", "--warmup", "99999999999999999999999"), "--warmup")
    report = tmp_path / "b.json"
    result = run("bench", "pixel_shuffle", "--backends", "torch", "--shape", "1x64x4x4", "--iters", 1_000_000,
                 "--warmup", 100_000, "--max-seconds", 0.3, "--report", report)
    assert result.exit_code == 0, result.output
    row = json.loads(report.read_text())["results"][0]
    assert row["stopped_by_time"] is True and 1 <= row["iters"] < 1_000_000
    assert "ended timing early" in result.output


@pytest.mark.parametrize("cache,fragment", [("", "DEPLOYKIT_CACHE is set but empty"), ("file", "is not a folder")])
def test_an_unusable_kernel_cache_is_an_environment_error(tmp_path, cache, fragment):
    if cache == "file":
        cache = str(tmp_path / "file")
        Path(cache).write_text("x")
    result = subprocess.run([sys.executable, "-m", "deploykit", "check", "dysample", "-p", "impl=fused",
                             "--backends", "torch", "--shape", "1x64x8x8"], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "DEPLOYKIT_CACHE": cache, "PYTHONPATH": str(ROOT)},
                            timeout=240)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == (["file"] if cache != "" else []), "built in the cwd"


def _unpool_named(name: str, path):
    """One MaxUnpool node named ``name`` (lint --target trt reports it, by name)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 4, 4])
    indices = helper.make_tensor_value_info("indices", TensorProto.INT64, [1, 4, 4, 4])
    unpool = helper.make_node("MaxUnpool", ["input", "indices"], ["output"], kernel_shape=[2, 2], strides=[2, 2],
                              name=name)
    return _save([unpool], [x, indices], [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
                 path)


def test_markup_in_node_names_and_paths_prints_as_text(tmp_path):
    """Rich markup in a node name, an input path and a finding (MarkupError before)."""
    path = _unpool_named("[/]up[bold]:smile:", tmp_path / "[red]m[bold].onnx")
    result = run("lint", path, "--target", "trt")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "[/]up[bold]:smile:" in result.output
    clean = _save([helper.make_node("Relu", ["input"], ["output"])], [_identity_input()],
                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, "h", "w"])],
                  tmp_path / "[i]c[/i].onnx".replace("/", ""))
    ok = run("lint", clean)
    assert ok.exit_code == 0 and clean.name in ok.output.replace("\n", ""), ok.output


def test_bidirectional_controls_in_names_print_escaped(tmp_path):
    """A right-to-left override in a node name would make the terminal show another name."""
    path = _unpool_named("up\u202eslaed\u2066x", tmp_path / "m.onnx")
    result = run("lint", path, "--target", "trt")
    assert result.exit_code == 1, result.output
    assert "\u202e" not in result.output and "\u2066" not in result.output
    assert "up\\u202eslaed\\u2066x" in result.output.replace("\n", "")
