"""The CLI driven through click's CliRunner: happy paths, and one line + exit 2 for every bad input."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tests.cli_helpers import assert_user_error, run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "up.onnx"
    result = run("export", "conv_transpose", "--seed", 7, "-o", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("args", [["--help"], ["check", "-h"]])
def test_help_imports_no_heavy_backend(args):
    code = ("import sys; from click.testing import CliRunner; from deploykit.cli import main;"
            f"r = CliRunner().invoke(main, {args!r}); assert r.exit_code == 0;"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_list_shows_entries_and_parameter_ranges():
    result = run("list")
    assert result.exit_code == 0 and "dysample_s_plus" in result.output and "max_unpool" in result.output
    detail = run("list", "dysample")
    assert "int in [2, 4]" in detail.output and "default shapes: 1x64x32x32" in detail.output


def test_export_then_check_same_seed_passes(exported, tmp_path):
    report = tmp_path / "r.json"
    result = run("check", "conv_transpose", "--seed", 7, "--onnx", exported, "--report", report)
    assert result.exit_code == 0, result.output
    assert "parity passed" in result.output
    data = json.loads(report.read_text())
    assert data["passed"] is True and len(data["results"]) == 6
    row = data["results"][1]
    assert {"backend", "shape", "max_abs", "mean_abs", "max_rel", "cosine", "psnr", "passed"} <= set(row)
    assert {tuple(*r["shape"].values()) for r in data["results"]} == {(1, 32, 32, 32), (2, 32, 37, 45), (3, 32, 27, 20)}


def test_every_json_report_says_its_schema_and_writes_shapes_one_way(exported, tmp_path):
    """schema_version 2: a shape is {input name: dims} for one input as for several."""
    check = tmp_path / "c.json"
    assert run("check", "conv_transpose", "--seed", 7, "--onnx", exported, "--shape", "1x32x8x8",
               "--report", check).exit_code == 0
    data = json.loads(check.read_text())
    assert data["schema_version"] == 2 and data["results"][0]["shape"] == {"input": [1, 32, 8, 8]}
    bench = tmp_path / "b.json"
    assert run("bench", "conv_transpose", "--seed", 7, "--onnx", exported, "--shape", "1x32x8x8", "--iters", 1,
               "--warmup", 0, "--report", bench).exit_code == 0
    data = json.loads(bench.read_text())
    assert data["schema_version"] == 2 and data["results"][0]["shape"] == {"input": [1, 32, 8, 8]}
    lint = tmp_path / "l.json"
    run("lint", exported, "--report", lint)
    assert json.loads(lint.read_text())["schema_version"] == 2


def test_check_with_a_different_seed_is_refused_before_comparing(exported):
    """The file records its weights' fingerprint: other weights would only measure that."""
    result = run("check", "conv_transpose", "--seed", 8, "--onnx", exported, "--backends", "ort")
    assert result.exit_code == 2 and "exported from other weights" in result.stderr


def _corrupt(src, dst, how):
    model = onnx.load(str(src))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(init).copy()
    values.flat[3] = np.nan if how == "nan" else values.flat[3] + 0.5
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("how", ["perturb", "nan"])
def test_corrupted_weight_fails_check_with_exit_1(exported, tmp_path, how):
    bad = _corrupt(exported, tmp_path / f"{how}.onnx", how)
    report = tmp_path / "r.json"
    result = run("check", "conv_transpose", "--seed", 7, "--onnx", bad, "--backends", "ort", "--report", report)
    assert result.exit_code == 1, result.output
    data = json.loads(report.read_text())
    assert data["passed"] is False and not any(r["passed"] for r in data["results"])
    if how == "nan":
        assert "NaN/Inf" in result.output


def test_antialias_scale_factor_export_divergence_is_caught():
    result = run("check", "interpolate", "-p", "antialias=true", "-p", "scale_factor=0.5", "--backends", "ort")
    assert result.exit_code == 1 and "FAIL" in result.output


def test_bench_prints_latency_table_and_json(tmp_path):
    report = tmp_path / "b.json"
    result = run("bench", "pixel_shuffle", "--shape", "1x64x16x16", "--warmup", 1, "--iters", 3, "--threads", 1,
                 "--report", report)
    assert result.exit_code == 0, result.output
    for column in ("p50 ms", "p99 ms", "samples/s", "vs torch", "threads 1"):
        assert column in result.output
    rows = json.loads(report.read_text())["results"]
    assert [r["backend"] for r in rows] == ["torch", "ort"] and all(r["iters"] == 3 for r in rows)


def test_custom_module_spec_and_weights(tmp_path):
    spec = "tests.custom_models:tiny_decoder"
    torch.manual_seed(1)
    weights = tmp_path / "w.pt"
    from tests.custom_models import tiny_decoder

    torch.save(tiny_decoder(channels=4).state_dict(), weights)
    result = run("check", spec, "-p", "channels=4", "--weights", weights, "--shape", "1x4x8x8", "--shape", "2x4x9x13")
    assert result.exit_code == 0, result.output


def test_recipe_exports(tmp_path):
    out = tmp_path / "sr.onnx"
    result = run("export", "exports/super_resolution.toml", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.is_file() and "opset 17" in result.output


def test_existing_output_needs_force(exported, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    assert_user_error(run("export", "pool", "-o", out), "already exists", "--force")
    assert out.read_bytes() == b"precious"
    assert run("export", "pool", "-o", out, "--force").exit_code == 0


@pytest.fixture
def work_started(monkeypatch):
    """The calls a command makes once it starts working (loading SPEC, exporting, checking),
    each refused with a one-line error: what a test of "before any work" must find empty."""
    import deploykit.check
    import deploykit.export.onnx_export
    import deploykit.export.recipe
    import deploykit.spec
    from deploykit.errors import UserError

    calls = []

    def tripwire(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise UserError(f"tripwire: {name} was called", "nothing")
        return called

    for module, name in [(deploykit.export.recipe, "resolve_model"), (deploykit.export.recipe, "load_model"),
                         (deploykit.spec, "load_model"), (deploykit.export.onnx_export, "export_onnx"),
                         (deploykit.check, "run_check")]:
        monkeypatch.setattr(module, name, tripwire(f"{module.__name__}.{name}"))
    return calls


def test_existing_report_needs_force_before_any_work(tmp_path, work_started):
    report = tmp_path / "r.json"
    report.write_text("{}")
    assert_user_error(run("check", "pool", "--report", report), "already exists")
    assert work_started == [] and report.read_text() == "{}"
    # the tripwires are on the command's path: with --force the same command starts work
    assert_user_error(run("check", "pool", "--report", report, "--force"), "tripwire")
    assert work_started == ["deploykit.export.recipe.resolve_model"] and report.read_text() == "{}"


@pytest.fixture
def garbage_file(tmp_path):
    path = tmp_path / "garbage.bin"
    path.write_bytes(b"\x00\x01not a protobuf or zip\xff" * 10)
    return path


@pytest.mark.parametrize("args,fragments", [
    (["check", "dysampel"], ["unknown zoo entry 'dysampel'", "choose one of"]),
    (["check", "dysample", "-p", "bogus=1"], ["unknown parameter 'bogus'", "valid parameters"]),
    (["check", "dysample", "-p", "scale=9"], ["bad value '9' for parameter 'scale'", "int in [2, 4]"]),
    (["check", "dysample", "-p", "scale"], ["malformed parameter 'scale'", "key=value"]),
    (["check", "dysample", "--shape", "1x64xx32"], ["malformed shape '1x64xx32'", "e.g. 1x64x32x32"]),
    (["check", "dysample", "--shape", "1x32x16x16"], ["does not fit dysample", "64 channels"]),
    (["check", "dysample_s", "-p", "in_channels=10"], ["divisible by scale^2"]),
    (["check", "dysample", "--backends", "torch,onnx"], ["unknown backend 'onnx'", "choose from"]),
    (["check", "dysample", "--backends", "torch-cuda"], ["torch-cuda needs a CUDA GPU"]),
    (["bench", "dysample", "--backends", "ort-cuda"], ["ort-cuda needs CUDAExecutionProvider"]),
    (["check", "dysample", "--onnx", "missing.onnx"], ["ONNX file missing.onnx not found"]),
    (["check", "dysample", "--weights", "missing.pt"], ["weights file missing.pt not found"]),
    (["check", "tests.custom_models:nope"], ["has no attribute 'nope'"]),
    (["check", "tests.custom_models:not_a_module", "--shape", "1x1x2x2"], ["not a torch.nn.Module"]),
    (["check", "no_such_pkg.mod:fn"], ["cannot import 'no_such_pkg.mod'"]),
    (["check", "tests.custom_models:tiny_decoder"], ["no default input shapes", "--shape"]),
    (["check", "tests.custom_models:tiny_decoder", "--shape", "1x3x8x8"], ["cannot take input 1x3x8x8"]),
    (["export", "dysample", "-o", "x.onnx", "--opset", "12"], ["opset 12 is not supported"]),
    (["export", "exports/missing.toml", "-o", "x.onnx"], ["recipe exports/missing.toml not found"]),
    (["check", "pool", "--seed", "-1"], ["--seed", "0<=x<=4294967295"]),
    (["bench", "pool", "--iters", "0"], ["--iters", "deploykit bench --help"]),
    (["check", "pool", "--atol", "-1"], ["not a finite number >= 0"]),
    (["check", "pool", "--rtol", "nan"], ["not a finite number >= 0"]),
    (["check", "pool", "--nonsense"], ["No such option"]),
    (["check", "dysample", "--shape", "1x64x100000x100000"], ["elements, more than"]),
    (["check", "dysample", "--shape", "2x64"], ["shape 2x64 does not fit dysample", "takes 4-D input"]),
    (["check", "dysample", "--shape", "1x64x\u0663\u0662x32".encode().decode("unicode_escape")], ["malformed shape"]),
    (["check", "dysample", "-p", "scale=\u0663".encode().decode("unicode_escape")], ["bad value"]),
    (["check", "dysample", "-p", "scale=2", "-p", "scale=3"], ["'scale' given twice"]),
    (["check", "max_unpool", "-p", "output_size=false", "-p", "kernel_size=3"], ["kernel_size == stride"]),
    (["check", ":x"], ["malformed SPEC ':x'"]),
    (["check", "tests.bad_import:build"], ["RuntimeError: broken at import"]),
    (["check", "tests.custom_models:raises_value_error", "--shape", "1x1x2x2"], ["raised ValueError: bad k"]),
    (["check", "tests.custom_models:strict_input", "--shape", "1x4x8x8"], ["AssertionError: expects RGB"]),
    (["check", "pool", "--onnx", "tests"], ["is a directory"]),
])
def test_bad_input_is_one_line_and_exit_2(args, fragments):
    assert_user_error(run(*args), *fragments)


def test_corrupt_onnx_and_weights_files(garbage_file):
    assert_user_error(run("check", "pool", "--onnx", garbage_file), "is not a valid ONNX model", "re-export")
    assert_user_error(run("check", "pool", "--weights", garbage_file), "is not a PyTorch file")


def test_weights_for_another_model(tmp_path):
    weights = tmp_path / "w.pt"
    torch.save({"weight": torch.zeros(3)}, weights)
    assert_user_error(run("check", "conv", "--weights", weights), "does not match the model")


def test_static_onnx_at_other_shape_is_a_user_error(tmp_path):
    path = tmp_path / "s.onnx"
    assert run("export", "pool", "-o", path, "--static", "--shape", "1x16x8x8").exit_code == 0
    assert_user_error(run("check", "pool", "--onnx", path, "--backends", "ort"), "takes 1x16x8x8", "--static")


def test_fp16_runs_torch_in_half_precision_with_the_fp16_preset(tmp_path):
    report = tmp_path / "r.json"
    result = run("check", "upsample_conv", "--precision", "fp16", "--backends", "torch", "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["tolerance"] == {"atol": 1e-2, "rtol": 1e-2} and data["backends"]["torch"]["precision"] == "fp16"
    assert all(0 < r["max_abs"] < 1e-2 for r in data["results"])


def test_tolerance_override_turns_a_pass_into_a_failure():
    result = run("check", "upsample_conv", "--backends", "ort", "--atol", "0", "--rtol", "0")
    assert result.exit_code == 1 and "atol=0 rtol=0" in result.output


def test_click_usage_errors_are_one_line():
    assert_user_error(run("export", "pool"), "Missing option '-o'")


def test_recipe_with_wrong_types_is_a_user_error(tmp_path):
    recipe = tmp_path / "r.toml"
    for body, fragment in [('spec = "pool"\n[export]\nopset = "x"\n', "export.opset = 'x' has the wrong type"),
                           ('spec = "pool"\nparams = [1, 2]\n', "params = [1, 2] has the wrong type"),
                           ('spec = "pool"\n[export]\nshapes = "1x16x8x8"\n', "export.shapes"),
                           ('spec = "pool"\n[export]\nstatic = "no"\n', "export.static = 'no'")]:
        recipe.write_text(body)
        assert_user_error(run("export", recipe, "-o", tmp_path / "m.onnx"), fragment)


def test_weights_with_non_string_keys(tmp_path):
    weights = tmp_path / "w.pt"
    torch.save({1: torch.zeros(3)}, weights)
    assert_user_error(run("check", "pool", "--weights", weights), "does not hold a state dict")


def test_callable_parameters_understand_true_false_none():
    from deploykit.spec import load_model

    assert load_model("tests.custom_models:flagged", {"flag": "false"}).module.flag is False
    assert load_model("tests.custom_models:flagged", {"flag": "None"}).module.flag is None
    assert load_model("tests.custom_models:flagged", {"flag": "TRUE"}).module.flag is True


def test_a_backend_that_rejects_a_valid_model_is_a_parity_failure_without_log_noise(tmp_path):
    report = tmp_path / "r.json"
    result = run("check", "conv_transpose", "-p", "stride=1", "-p", "dilation=3", "-p", "output_padding=2",
                 "-p", "kernel_size=3", "--backends", "ort", "--shape", "1x32x8x8", "--report", report)
    assert result.exit_code == 1 and result.stderr == ""
    row = json.loads(report.read_text())["results"][0]
    assert row["reason"].startswith("backend ort failed at shape 1x32x8x8")


def test_plugin_graphs_are_not_benchmarked_through_the_numpy_reference(without_ort_library):
    result = run("bench", "dysample", "--dysample-impl", "plugin", "--iters", 1)
    assert_user_error(result, "deploykit::DySample nodes", "DEPLOYKIT_ORT_INCLUDE_DIR", "not worth timing")


def test_plugin_graphs_are_benchmarked_on_onnx_runtime_with_deploykits_library(ort_custom_ops, tmp_path):
    report = tmp_path / "b.json"
    result = run("bench", "dysample", "--dysample-impl", "plugin", "--iters", 2, "--backends", "torch,ort",
                 "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["backends"]["ort"]["custom_ops"] == str(ort_custom_ops)


def test_static_plugin_graph_refuses_other_shapes_in_onnx_ref(tmp_path):
    path = tmp_path / "p.onnx"
    assert run("export", "dysample", "--dysample-impl", "plugin", "--static", "--shape", "1x64x8x8",
               "-o", path).exit_code == 0
    assert_user_error(run("check", "dysample", "--onnx", path, "--shape", "1x64x9x8"), "takes 1x64x8x8")


def _perturbed_conv_transpose(exported, tmp_path):
    """The exported conv_transpose graph with its one ConvTranspose's weights scaled by 3."""
    proto = onnx.load(str(exported))
    node = next(n for n in proto.graph.node if n.op_type == "ConvTranspose")
    weight = next(i for i in proto.graph.initializer if i.name == node.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 3, weight.name))
    path = tmp_path / "bad.onnx"
    onnx.save(proto, str(path))
    return path, node.name


def test_check_localize_names_the_perturbed_node_and_its_module(exported, tmp_path):
    bad, node = _perturbed_conv_transpose(exported, tmp_path)
    report = tmp_path / "r.json"
    result = run("check", "conv_transpose", "--seed", 7, "--onnx", bad, "--localize", "--report", report,
                 "--shape", "1x32x9x7")
    assert result.exit_code == 1, result.output
    assert f"first diverging node: {node} (ConvTranspose) from module" in result.output
    found = json.loads(report.read_text())["localization"]["ort"]["diverging_node"]
    assert found["node"] == node and found["op_type"] == "ConvTranspose"
    assert found["inputs"][0]["kind"] == "graph input"
    assert "torch" not in json.loads(report.read_text())["localization"], "torch passed: nothing to localize"


def test_check_localize_on_a_passing_run_localizes_nothing(exported):
    result = run("check", "conv_transpose", "--seed", 7, "--onnx", exported, "--localize", "--shape", "1x32x9x7")
    assert result.exit_code == 0 and "localized" not in result.output


def test_check_html_writes_the_report_and_its_figures(exported, tmp_path):
    bad, _ = _perturbed_conv_transpose(exported, tmp_path)
    page = tmp_path / "report.html"
    result = run("check", "conv_transpose", "--seed", 7, "--onnx", bad, "--html", page, "--shape", "1x32x9x7",
                 "--shape", "2x32x5x6")
    assert result.exit_code == 1, result.output
    text = page.read_text()
    figures = 2 * 2 * 2 + 2  # (heatmap, histogram) x 2 backends x 2 shapes, and a latency chart per shape
    assert text.startswith("<!DOCTYPE html>") and text.count('src="data:image/png;base64,') == figures
    names = {p.name for p in (tmp_path / "report_files").iterdir()} - {".deploykit-files"}  # minus the manifest
    assert len(names) == figures and {"latency_1x32x9x7.png", "ort_2x32x5x6_output_heatmap.png"} <= names
    assert run("check", "conv_transpose", "--onnx", bad, "--html", page).exit_code == 2  # never overwritten


@pytest.mark.parametrize("extra", [["conv_transpose"], ["--onnx", "x.onnx"], ["--shape", "1x3x8x8"], ["--localize"],
                                   ["--html", "r.html"], ["-p", "scale=2"]])
def test_check_zoo_refuses_options_that_only_make_sense_for_one_spec(extra):
    assert_user_error(run("check", "--zoo", *extra), "check --zoo runs every entry")


def test_check_without_spec_or_zoo_is_a_usage_error():
    assert_user_error(run("check"), "missing argument 'SPEC'")


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_goes_before_or_after_the_subcommand(tmp_path, where):
    command = ["export", "pixel_shuffle", "--no-verify", "-o", tmp_path / "p.onnx"]
    result = run("-v", *command) if where == "before" else run(*command, "-v")
    assert result.exit_code == 0, result.output
    assert "deploykit: exporting pixel_shuffle" in result.stderr


@pytest.mark.parametrize("command", ["list", "export", "convert", "lint", "build", "check", "bench"])
def test_every_help_ends_with_an_example_of_its_own_command(command):
    result = run(command, "-h")
    assert result.exit_code == 0
    examples = result.output.split("Examples:", 1)[1]
    assert f"deploykit {command}" in examples and "-v, --verbose" in result.output


def test_builds_profile_option_is_named_for_what_it_is_and_keeps_its_old_name():
    text = " ".join(run("build", "-h").output.split())
    assert "--profile, --shapes NAME=MIN/OPT/MAX" in text and "--minShapes" in text


def test_export_and_convert_write_a_json_report_too(tmp_path):
    from tests.cli_helpers import run as cli

    report = tmp_path / "e.json"
    done = cli("export", "tests.inline_models:tiny_sr", "--shape", "1x3x24x36", "--dysample-impl", "standard",
               "-o", tmp_path / "sr.onnx",
               "--report", report)
    assert done.exit_code == 0, done.output
    data = json.loads(report.read_text())
    assert data["schema_version"] == 2 and data["onnx"].endswith("sr.onnx") and data["dynamic"] is True
    assert data["traced_shape"] == {"input": [1, 3, 24, 36]} and len(data["verified_shapes"]) == 3
    assert [layer["module"] for layer in data["dysample_layers"]] == ["to_img"]
    converted = tmp_path / "c.json"
    done = cli("convert", "--onnx", tmp_path / "sr.onnx", "-o", tmp_path / "c.onnx", "--dysample-impl", "gather",
               "--report", converted)
    assert done.exit_code == 0, done.output
    data = json.loads(converted.read_text())
    assert data["strategy"] == "gather" and data["checked_shapes"] and all("input" in s for s in data["checked_shapes"])


def test_the_onnx_file_is_model_or_onnx_on_every_command(exported, tmp_path):
    for args in (["lint", exported], ["lint", "--onnx", exported], ["lint", exported, "--onnx", exported]):
        assert run(*args).exit_code == 0
    assert_user_error(run("lint"), "missing the ONNX file", "--onnx")
    assert_user_error(run("lint", exported, "--onnx", tmp_path / "other.onnx"), "name two files")
    assert_user_error(run("build", "--onnx", exported, "-o", tmp_path / "e.engine", "--fp16", "--precision", "fp32"),
                      "--fp16 and --precision fp32 contradict")


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_export_prints_only_the_file_it_wrote(tmp_path, where):
    command = ["export", "pixel_shuffle", "--shape", "1x64x8x8", "-o", tmp_path / "q.onnx"]
    loud = run(*command[:-1], tmp_path / "loud.onnx")
    quiet = run("-q", *command) if where == "before" else run(*command, "-q")
    assert loud.exit_code == 0 and quiet.exit_code == 0, quiet.output
    assert any(line.startswith("verified at") for line in loud.stdout.splitlines())
    (line,) = quiet.stdout.splitlines()
    assert line.startswith(f"wrote {tmp_path / 'q.onnx'} (opset") and quiet.stderr == ""


def test_quiet_keeps_deploykits_notes_off_stderr(tmp_path, monkeypatch):
    """deploykit's warnings are notes (a first-use build, a wait for a lock): -q leaves them out."""
    import logging

    import deploykit.export.recipe

    resolve_model = deploykit.export.recipe.resolve_model

    def noting(*args, **kwargs):
        logging.getLogger("deploykit.ops").warning("building the library; first use only")
        return resolve_model(*args, **kwargs)

    monkeypatch.setattr(deploykit.export.recipe, "resolve_model", noting)
    command = ["export", "pixel_shuffle", "--no-verify", "-o"]
    assert "first use only" in run(*command, tmp_path / "a.onnx").stderr
    quiet = run(*command, tmp_path / "b.onnx", "-q")
    assert quiet.exit_code == 0 and "first use only" not in quiet.stderr


@pytest.mark.parametrize("command", ["export", "convert", "lint", "build", "check", "bench"])
def test_every_command_that_works_takes_quiet_and_refuses_it_with_verbose(command):
    assert "-q, --quiet" in run(command, "-h").output
    assert_user_error(run(command, "-q", "-v"), "-q and -v contradict each other")


def _build_double(calls):
    """build_engine as TensorRT's builder would answer, without TensorRT: writes the engine file."""
    from pathlib import Path

    from deploykit.backends.trt_engine import BuildResult, Profile

    def build_engine(onnx_path, engine_path, **options):
        calls.append(options)
        Path(engine_path).write_bytes(b"engine")
        return BuildResult(Path(engine_path), {"input": Profile((1, 32, 8, 8), (2, 32, 37, 45), (4, 32, 148, 180))},
                           "10.3.0", "fp16" if options["fp16"] else "as in the graph")

    return build_engine


def test_build_reports_what_it_built_and_refuses_an_existing_report_before_building(exported, tmp_path, monkeypatch):
    import deploykit.backends.trt_engine

    calls = []
    monkeypatch.setattr(deploykit.backends.trt_engine, "build_engine", _build_double(calls))
    engine, report, cache, plugin = (tmp_path / name for name in ("m.engine", "build.json", "cache", "libp.so"))
    cache.write_bytes(b"an earlier build's timings")
    args = ["build", "--onnx", exported, "-o", engine, "--fp16", "--plugin", plugin, "--timing-cache", cache,
            "--report", report]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text()) == {
        "schema_version": 2, "onnx": str(exported), "engine": str(engine), "tensorrt": "10.3.0",
        "precision": "fp16", "tf32": False, "workspace_mb": None,
        "profiles": {"input": {"min": [1, 32, 8, 8], "opt": [2, 32, 37, 45], "max": [4, 32, 148, 180]}},
        "plugins": [str(plugin)], "timing_cache": {"path": str(cache), "reused": True}}
    engine.unlink()
    assert_user_error(run(*args), f"{report} already exists", "--force")
    assert len(calls) == 1 and not engine.exists()  # refused before the build started
    assert run(*args, "--force").exit_code == 0 and len(calls) == 2
    assert_user_error(run("build", exported, "-o", engine, "--report", engine, "--force"), "name the same file")
