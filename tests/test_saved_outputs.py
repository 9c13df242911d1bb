"""check --save-outputs / --load-outputs: an ONNX file checked later without SPEC, the model's
code or PyTorch, as Polygraphy users do."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.cli_helpers import assert_user_error, run

SPEC = ("conv_transpose", "--seed", "3")
SHAPES = ("--shape", "1x32x8x8", "--shape", "2x32x11x7")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    model = folder / "m.onnx"
    assert run("export", *SPEC, "-o", model).exit_code == 0
    done = run("check", *SPEC, "--onnx", model, *SHAPES, "--save-outputs", folder / "ref.npz")
    assert done.exit_code == 0, done.output
    assert f"saved 2 cases' inputs and PyTorch's outputs to {folder / 'ref.npz'}" in done.output
    return model, folder / "ref.npz"


def test_a_file_is_checked_against_saved_outputs_without_spec_or_torch(saved, tmp_path, torch_unimportable):
    """torch made unimportable: the check still runs, on ONNX Runtime, at the saved cases."""
    model, reference = saved
    report = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "deploykit", "check", "--onnx", str(model), "--load-outputs",
                             str(reference), "--report", str(report)], capture_output=True, text=True, cwd=tmp_path,
                            env=torch_unimportable(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and {r["backend"] for r in data["results"]} == {"ort"}
    assert [list(*r["shape"].values()) for r in data["results"]] == [[1, 32, 8, 8], [2, 32, 11, 7]]
    assert data["tolerance"] == {"atol": 1e-4, "rtol": 1e-4}  # as saved


def test_a_file_that_differs_from_the_saved_outputs_fails(saved, tmp_path):
    model, reference = saved
    proto = onnx.load(str(model))
    weight = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(proto, str(changed))
    result = run("check", "--onnx", changed, "--load-outputs", reference)
    assert result.exit_code == 1 and "parity FAILED" in result.output


@pytest.mark.parametrize("extra, fragments", [
    (["conv_transpose"], ["takes no SPEC"]),
    (["--backends", "torch,ort"], ["backend torch runs the PyTorch model", "--backends ort"]),
    (["--localize"], ["takes no --localize"]),
])
def test_what_a_saved_check_cannot_do_is_refused(saved, extra, fragments):
    model, reference = saved
    assert_user_error(run("check", "--onnx", model, "--load-outputs", reference, *extra), *fragments)


def test_a_saved_check_needs_the_file_and_a_file_deploykit_saved(saved, tmp_path):
    model, reference = saved
    assert_user_error(run("check", "--load-outputs", reference), "needs the file to check", "--onnx")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    assert_user_error(run("check", "--onnx", model, "--load-outputs", other), "holds no outputs saved by deploykit")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    assert_user_error(run("check", "--onnx", model, "--load-outputs", garbage), "is not a readable .npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(reference.read_bytes()[:200])
    assert_user_error(run("check", "--onnx", model, "--load-outputs", truncated), "is not a readable .npz")


def test_saving_never_overwrites_without_force(saved, tmp_path):
    model, _ = saved
    taken = tmp_path / "taken.npz"
    taken.write_bytes(b"mine")
    assert_user_error(run("check", *SPEC, "--onnx", model, *SHAPES, "--save-outputs", taken), "--force")
    assert taken.read_bytes() == b"mine"
