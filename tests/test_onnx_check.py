"""check --onnx B --against A.onnx: one ONNX file against another run on ONNX Runtime's CPU,
without SPEC or PyTorch (ONNX-only checks against saved outputs: tests/test_saved_outputs.py)."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.cli_helpers import assert_user_error, run

SHAPES = ("--shape", "1x32x8x8", "--shape", "2x32x11x7")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("against")
    model = folder / "m.onnx"
    assert run("export", "conv_transpose", "-o", model).exit_code == 0
    proto = onnx.load(str(model))
    weight = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    changed = folder / "changed.onnx"
    onnx.save(proto, str(changed))
    return model, changed


def test_a_file_against_another_runs_without_torch(files, tmp_path, torch_unimportable):
    model, _ = files
    report = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "deploykit", "check", "--onnx", str(model), "--against", str(model),
                             *SHAPES, "--backends", "ort,onnx-ref", "--report", str(report)], capture_output=True,
                            text=True, cwd=tmp_path, env=torch_unimportable(),
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["reference"] == f"{model} on ONNX Runtime CPU"
    assert {r["backend"] for r in data["results"]} == {"ort", "onnx-ref"} and len(data["results"]) == 4


def test_a_file_that_computes_otherwise_fails_against_the_reference(files):
    model, changed = files
    result = run("check", "--onnx", changed, "--against", model, *SHAPES)
    assert result.exit_code == 1 and "parity FAILED" in result.output


def test_a_dynamic_reference_needs_a_shape_and_one_reference_at_a_time(files, tmp_path):
    model, changed = files
    assert_user_error(run("check", "--onnx", changed, "--against", model), "has dynamic dims", "--shape")
    npz = tmp_path / "ref.npz"
    np.savez(npz, x=np.zeros(1))
    assert_user_error(run("check", "--onnx", changed, "--against", model, "--load-outputs", npz),
                      "--against with --load-outputs")


def test_a_file_is_benched_alone_without_spec_or_torch(files, tmp_path, torch_unimportable):
    model, _ = files
    report = tmp_path / "b.json"
    result = subprocess.run([sys.executable, "-m", "deploykit", "bench", "--onnx", str(model), "--shape", "1x32x8x8",
                             "--iters", "3", "--warmup", "1", "--report", str(report)], capture_output=True, text=True,
                            cwd=tmp_path, env=torch_unimportable(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(report.read_text())["results"]
    assert row["backend"] == "ort" and row["shape"] == {"input": [1, 32, 8, 8]} and row["ratio_to_torch"] is None


def test_a_bench_without_spec_needs_the_file_and_no_model_options(files):
    model, _ = files
    assert_user_error(run("bench"), "missing argument 'SPEC'", "--onnx")
    assert_user_error(run("bench", "--onnx", model, "--shape", "1x32x8x8", "-p", "stride=2"), "takes no -p")
    assert_user_error(run("bench", "--onnx", model, "--shape", "1x32x8x8", "--backends", "torch,ort"),
                      "backend torch runs the PyTorch model")
