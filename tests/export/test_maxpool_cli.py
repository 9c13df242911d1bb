"""SegNet graphs for TensorRT through the real CLI: export with --maxpool-impl window and
--target trt, lint --target trt clean, check against PyTorch at three shapes each."""

import json

import onnx
import pytest

from deploykit.model_io import shape_text
from tests.cli_helpers import run

SHAPES = {
    "max_unpool": ["1x16x32x32", "2x16x37x45", "3x16x27x20"],
    "exports/segnet_decoder.toml": ["1x16x32x32", "2x16x37x45", "3x16x27x20"],
    "tests.segnet_models:segnet": ["1x3x32x32", "2x3x37x45", "3x3x27x20"],
}


@pytest.mark.parametrize("spec", sorted(SHAPES))
def test_segnet_exports_for_tensorrt_lints_clean_and_matches_pytorch(spec, tmp_path):
    path, report = tmp_path / "segnet.onnx", tmp_path / "check.json"
    exported = run("export", spec, "--target", "trt", "--maxpool-impl", "window", "-o", path,
                   "--shape", SHAPES[spec][1])
    assert exported.exit_code == 0, exported.output
    proto = onnx.load(str(path))
    assert "ScatterND" in {n.op_type for n in proto.graph.node}
    assert all(len(n.output) == 1 for n in proto.graph.node if n.op_type == "MaxPool")
    linted = run("lint", path, "--target", "trt")
    assert linted.exit_code == 0 and "clean" in linted.output, linted.output
    shapes = [arg for shape in SHAPES[spec] for arg in ("--shape", shape)]
    checked = run("check", spec, "--onnx", path, "--backends", "ort", *shapes, "--report", report)
    assert checked.exit_code == 0, checked.output
    rows = json.loads(report.read_text())["results"]
    assert {shape_text(*r["shape"].values()) for r in rows} == set(SHAPES[spec])
    assert all(r["passed"] for r in rows), rows


def test_recipe_default_for_tensorrt_is_the_window_strategy(tmp_path):
    """exports/segnet_decoder.toml targets TensorRT, so a plain export gives the window graph."""
    path = tmp_path / "recipe.onnx"
    result = run("export", "exports/segnet_decoder.toml", "-o", path)
    assert result.exit_code == 0, result.output
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["deploykit.maxpool_impl"] == "window"
    assert run("lint", path, "--target", "trt").exit_code == 0


def test_native_indices_are_flagged_with_the_fix(tmp_path):
    path = tmp_path / "native.onnx"
    run("export", "max_unpool", "--maxpool-impl", "native", "-o", path)
    linted = run("lint", path, "--target", "trt", "--report", tmp_path / "lint.json")
    assert linted.exit_code == 1, linted.output
    findings = json.loads((tmp_path / "lint.json").read_text())["findings"]
    assert any("--maxpool-impl window" in f["fix"] for f in findings), findings


def test_unknown_strategy_is_a_usage_error(tmp_path):
    result = run("export", "max_unpool", "--maxpool-impl", "argmax", "-o", tmp_path / "x.onnx")
    assert result.exit_code == 2 and "Traceback" not in result.output
