"""Verdicts that cannot be false: models that write into their input, integer outputs compared
exactly, outputs too small for atol, a file checked against other weights, a model that exits."""

import numpy as np
import pytest

from deploykit.compare import PRESETS, compare
from tests.cli_helpers import assert_user_error, run

SHAPE = ("--shape", "2x3x10x14")


def test_a_model_that_writes_into_its_input_passes_in_either_backend_order(tmp_path):
    out = tmp_path / "n.onnx"
    assert run("export", "tests.user_models:in_place", *SHAPE, "-o", out).exit_code == 0
    for order in ("torch,ort", "ort,torch"):
        result = run("check", "tests.user_models:in_place", "--onnx", out, *SHAPE, "--backends", order)
        assert result.exit_code == 0, result.output


def test_integer_outputs_compare_exactly_and_by_width():
    ids = np.arange(20000, 20012, dtype=np.int64).reshape(3, 4)
    assert compare(ids, ids.copy(), PRESETS["fp32"]).passed
    off = compare(ids, ids + 2, PRESETS["fp32"])  # the float rule passes 2 at 2e4 (rtol 1e-4)
    assert not off.passed and "12 of 12 int64 values differ" in off.reason
    narrow = compare(ids, ids.astype(np.int32), PRESETS["fp32"])
    assert not narrow.passed and "int32 is not the reference's int64" in narrow.reason
    mask = np.array([True, False])
    assert not compare(mask, ~mask, PRESETS["fp32"]).passed


def test_an_argmax_model_checks_exactly_through_the_cli():
    result = run("check", "tests.user_models:argmax_ids", *SHAPE)
    assert result.exit_code == 0, result.output


def test_outputs_below_atol_are_judged_by_their_own_scale():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 3, 8, 8)).astype(np.float32) * 1e-8
    same = compare(ref, ref * (1 + 1e-6), PRESETS["fp32"])
    assert same.passed and "compared by relative L2 error" in same.reason  # said on a pass too
    other = compare(ref, rng.standard_normal(ref.shape).astype(np.float32) * 1e-8, PRESETS["fp32"])
    assert not other.passed
    zeros = compare(ref * 1e3, np.zeros_like(ref), PRESETS["fp32"])  # an all-zero graph vs outputs ~1e-5
    assert not zeros.passed


def test_a_file_checked_against_other_weights_is_refused(tmp_path):
    out = tmp_path / "t.onnx"
    assert run("export", "tests.user_models:tiny_outputs", *SHAPE, "-o", out).exit_code == 0
    assert run("check", "tests.user_models:tiny_outputs", "--onnx", out, *SHAPE).exit_code == 0
    other = run("check", "tests.user_models:tiny_outputs", "--onnx", out, *SHAPE, "--seed", "1")
    assert_user_error(other, "exported from other weights", "seed 0")


def test_a_model_that_calls_sys_exit_is_an_error_never_a_pass(tmp_path):
    result = run("check", "tests.user_models:exits_in_forward", *SHAPE)
    assert_user_error(result, "called sys.exit(0)", "nothing was checked")
    exported = run("export", "tests.user_models:exits_in_forward", *SHAPE, "-o", tmp_path / "e.onnx")
    assert exported.exit_code == 2 and not (tmp_path / "e.onnx").exists()


def test_a_broken_onnxruntime_is_an_environment_error(tmp_path):
    import os
    import subprocess
    import sys

    broken = tmp_path / "site" / "onnxruntime"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "deploykit", "check", "pixel_shuffle", "--backends", "torch,ort"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 2, result.stderr
    assert "onnxruntime is installed but cannot be imported" in result.stderr and "Traceback" not in result.stderr


def test_empty_backends_and_a_nan_budget_are_usage_errors():
    assert_user_error(run("check", "pixel_shuffle", "--backends", ""), "no backend given")
    nan = run("bench", "pixel_shuffle", "--max-seconds", "nan")
    assert nan.exit_code == 2 and "not a finite number" in nan.stderr


def test_messages_point_at_the_real_cause(tmp_path):
    random = run("export", "tests.user_models:random_forward", *SHAPE, "-o", tmp_path / "r.onnx")
    assert_user_error(random, "different outputs for the same input", "make forward deterministic")
    half = run("export", "tests.user_models:half_weights", *SHAPE, "-o", tmp_path / "h.onnx")
    assert half.exit_code in (1, 2) and "--precision fp16" in half.stderr, half.stderr
    ids = run("check", "tests.user_models:wants_long", *SHAPE, "--backends", "torch")
    assert_user_error(ids, "cannot take input", "--input-dtype")
    long_name = run("check", "pixel_shuffle", "--report", tmp_path / ("r" * 245 + ".json"))
    assert_user_error(long_name, "too long for the staging name")


def test_a_quantized_output_is_an_input_error():
    assert_user_error(run("check", "tests.user_models:quantized_output", *SHAPE, "--backends", "torch"),
                      "returns a quantized tensor")


def test_check_gives_its_own_export_exports_proof_when_one_shape_is_checked(tmp_path):
    """A graph specialised to its traced shape passed a one-shape check: check now also compares
    its own export where export verifies files, and fails there (exit 1)."""
    import json

    report = tmp_path / "r.json"
    result = run("check", "tests.user_models:pyramid_pooling", "--shape", "2x8x40x48", "--report", report)
    assert result.exit_code == 1, result.output
    data = json.loads(report.read_text())
    assert [list(*s.values()) for s in data["proof_shapes"]] == [[3, 8, 41, 49], [3, 8, 104, 112]]
    failed = {tuple(*r["shape"].values()) for r in data["results"] if r["passed"] is False}
    assert failed and (2, 8, 40, 48) not in failed  # right at the traced shape, wrong away from it
    assert "added 3x8x41x49, 3x8x104x112" in " ".join(result.output.split())


def test_a_passing_one_shape_check_says_which_shapes_it_added(tmp_path):
    import json

    report = tmp_path / "r.json"
    result = run("check", "tests.user_models:in_place", *SHAPE, "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert [list(*s.values()) for s in data["proof_shapes"]] == [[3, 3, 11, 15], [3, 3, 74, 78]]
    assert data["untested_dims"] == []
    assert {tuple(*r["shape"].values()) for r in data["results"]} == {(2, 3, 10, 14), (3, 3, 11, 15), (3, 3, 74, 78)}


def test_shapes_that_vary_every_dim_need_no_extra_proof(tmp_path):
    import json

    report = tmp_path / "r.json"
    result = run("check", "tests.user_models:in_place", *SHAPE, "--shape", "1x3x7x9", "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["proof_shapes"] == [] and data["untested_dims"] == []


def test_a_file_checked_at_one_size_names_the_dims_that_went_untested(tmp_path):
    import json

    out = tmp_path / "n.onnx"
    assert run("export", "tests.user_models:in_place", *SHAPE, "-o", out).exit_code == 0
    report = tmp_path / "r.json"
    result = run("check", "tests.user_models:in_place", "--onnx", out, *SHAPE, "--shape", "1x3x10x14",
                 "--report", report)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["untested_dims"] == ["input height 10", "input width 14"]
    assert "untested: input height 10, input width 14 in every shape checked" in " ".join(result.output.split())
    static = tmp_path / "s.onnx"
    assert run("export", "tests.user_models:in_place", *SHAPE, "--static", "-o", static).exit_code == 0
    fixed = run("check", "tests.user_models:in_place", "--onnx", static, *SHAPE, "--report", tmp_path / "s.json")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads((tmp_path / "s.json").read_text())["untested_dims"] == []  # nothing is dynamic
