"""TensorRT: what runs everywhere (profiles, skips, errors) and what needs TensorRT and a GPU."""

import importlib.util
import json

import pytest
from click.testing import CliRunner

from deploykit.backends.trt import Profile, default_profile, parse_profile, profile_from_shapes
from deploykit.cli import main
from deploykit.errors import UserError


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="deploykit")


def _trt_and_gpu() -> str | None:
    """Why the TensorRT tests cannot run here, or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (its builder library is not on this machine's package index)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


needs_trt = pytest.mark.skipif(_trt_and_gpu() is not None, reason=f"TensorRT tests need TensorRT and a GPU: "
                                                                      f"{_trt_and_gpu()}")


def test_profiles():
    assert parse_profile("input=1x64x16x16/2x64x64x64/4x64x128x128") == (
        "input", Profile((1, 64, 16, 16), (2, 64, 64, 64), (4, 64, 128, 128)))
    assert profile_from_shapes([(1, 64, 32, 32), (2, 64, 37, 45), (3, 64, 27, 20)]) == Profile(
        (1, 64, 27, 20), (1, 64, 32, 32), (3, 64, 37, 45))
    assert default_profile((2, 64, 37, 45)) == Profile((1, 64, 9, 11), (2, 64, 37, 45), (4, 64, 148, 180))
    for bad in ["input=1x64x16x16/2x64x64x64", "1x64x16x16/2x64x64x64/4x64x128x128",
                "input=4x64x16x16/2x64x64x64/4x64x128x128"]:
        with pytest.raises(UserError):
            parse_profile(bad)


@pytest.mark.skipif(_trt_and_gpu() is None, reason="TensorRT and a GPU are present: nothing is skipped")
def test_without_tensorrt_trt_is_skipped_with_the_reason_and_the_others_decide(tmp_path):
    report = tmp_path / "r.json"
    result = run("check", "pixel_shuffle", "--backends", "torch,ort,trt", "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    skipped = [r for r in data["results"] if r["backend"] == "trt"]
    assert len(skipped) == 3 and all(r["status"] == "skipped" and r["reason"] for r in skipped)
    assert data["passed"] is True and "skipped" in result.output


@pytest.mark.skipif(_trt_and_gpu() is None, reason="TensorRT and a GPU are present: nothing is skipped")
def test_a_skip_never_passes_alone():
    result = run("check", "pixel_shuffle", "--backends", "trt")
    assert result.exit_code == 2 and "no backend can run here" in result.stderr
    bench = run("bench", "pixel_shuffle", "--backends", "torch,trt", "--iters", 1, "--warmup", 0)
    assert bench.exit_code == 0 and "skipped" in bench.output


@pytest.mark.skipif(_trt_and_gpu() is None, reason="TensorRT and a GPU are present: nothing is skipped")
def test_build_without_tensorrt_is_one_line(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", "pixel_shuffle", "-o", onnx_path).exit_code == 0
    result = run("build", onnx_path, "-o", tmp_path / "m.engine")
    assert result.exit_code == 2 and result.stderr.startswith("error: TensorRT")


@needs_trt
def test_engine_build_and_parity(tmp_path):
    onnx_path, engine = tmp_path / "m.onnx", tmp_path / "m.engine"
    assert run("export", "dysample", "--target", "trt", "-o", onnx_path).exit_code == 0
    built = run("build", onnx_path, "-o", engine, "--timing-cache", tmp_path / "cache")
    assert built.exit_code == 0, built.output
    checked = run("check", "dysample", "--onnx", onnx_path, "--engine", engine, "--backends", "trt")
    assert checked.exit_code == 0, checked.output


@needs_trt
def test_engine_built_on_the_fly_and_cuda_graph_bench(tmp_path):
    assert run("check", "conv_transpose", "--backends", "torch,trt").exit_code == 0
    bench = run("bench", "conv_transpose", "--backends", "trt", "--cuda-graph", "--iters", 5)
    assert bench.exit_code == 0 and "h2d ms" in bench.output


@needs_trt
def test_parser_errors_name_the_node(tmp_path):
    onnx_path = tmp_path / "p.onnx"
    assert run("export", "dysample", "--dysample-impl", "plugin", "-o", onnx_path).exit_code == 0
    result = run("build", onnx_path, "-o", tmp_path / "p.engine")  # no --plugin: the parser cannot map the node
    assert result.exit_code == 2 and "DySample" in result.stderr
