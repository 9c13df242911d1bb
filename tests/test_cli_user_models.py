"""A user's own network through the CLI: a pasted DySample exported with each strategy and
checked at three shapes; a specialised dynamic export refused with exit 1 and its fix."""

import pytest

from tests.cli_helpers import run

FPN = "tests.user_models:fpn"
SHAPES = ("--shape", "1x3x8x8", "--shape", "2x3x10x14", "--shape", "3x3x13x6")


@pytest.mark.parametrize("impl, target, node", [("plugin", "trt", "DySample"), ("gather", "ort", "MatMul")])
def test_pasted_dysample_exports_with_the_strategy_and_checks_at_three_shapes(tmp_path, impl, target, node):
    out = tmp_path / f"{impl}.onnx"
    exported = run("export", FPN, "-p", "groups=2", "--dysample-impl", impl, "--target", target, "-o", out,
                   "--shape", "2x3x10x14")
    assert exported.exit_code == 0, exported.output
    assert f"converted DySample layer up1 (PastedDySample, scale 2, groups 2): {impl}" in exported.stdout
    assert f"converted DySample layer up2 (PastedDySample, scale 2, groups 2): {impl}" in exported.stdout
    assert "GridSample in the graph" not in exported.stdout
    assert "verified at 2x3x10x14, 3x3x11x15" in exported.stdout
    checked = run("check", FPN, "-p", "groups=2", "--onnx", out, *SHAPES)
    assert checked.exit_code == 0, checked.output
    assert "3x3x13x6" in checked.stdout


def test_a_lookalike_is_warned_about_and_exported_as_written(tmp_path):
    result = run("export", "tests.user_models:fpn_lookalike", "-o", tmp_path / "l.onnx", "--shape", "2x3x10x14")
    assert result.exit_code == 0, result.output
    assert "warning: up1 (CornerAlignedDySample) looks like DySample but was not converted" in result.stdout
    assert "GridSample in the graph: node" in result.stdout


def test_an_explicit_strategy_without_a_layer_is_a_usage_error(tmp_path):
    result = run("export", "pixel_shuffle", "--dysample-impl", "plugin", "-o", tmp_path / "p.onnx")
    assert result.exit_code == 2 and "changed nothing in pixel_shuffle" in result.stderr
    assert not (tmp_path / "p.onnx").exists()


def test_a_specialised_dynamic_export_exits_1_and_static_passes(tmp_path):
    spec = "tests.user_models:pyramid_pooling"
    failed = run("export", spec, "-o", tmp_path / "psp.onnx", "--shape", "2x8x40x48")
    assert failed.exit_code == 1, failed.output
    assert "does not compute what PyTorch computes at 3x8x41x49" in failed.stderr
    assert "export with --static" in failed.stderr and "Traceback" not in failed.output
    assert not (tmp_path / "psp.onnx").exists()
    static = run("export", spec, "-o", tmp_path / "psp.onnx", "--shape", "2x8x40x48", "--static")
    assert static.exit_code == 0, static.output
    assert "verified at 2x8x40x48" in static.stdout


def test_no_verify_says_what_it_costs(tmp_path):
    result = run("export", "pixel_shuffle", "-o", tmp_path / "p.onnx", "--no-verify")
    assert result.exit_code == 0, result.output
    assert "not verified (--no-verify)" in result.stdout and "shapes it never ran" in result.stdout
    contradiction = run("export", "pixel_shuffle", "-o", tmp_path / "q.onnx", "--no-verify",
                        "--verify-shape", "1x64x8x8")
    assert contradiction.exit_code == 2


def test_the_export_error_line_names_the_cause(tmp_path):
    result = run("export", "tests.user_models:branch_on_height", "-o", tmp_path / "b.onnx", "--shape", "2x3x40x41")
    assert result.exit_code == 2, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "static shape of 40 for dimension inputs['x'].shape[2]" in lines[0]
    assert "full report: " in lines[0] and "Traceback" not in result.output


def test_several_inputs_traced_at_batch_one_keep_a_dynamic_batch(tmp_path):
    out = tmp_path / "g1.onnx"
    exported = run("export", "tests.user_models:guided", "--shape", "image=1x3x10x14,mask=1x1x10x14",
                   "--input-dtype", "mask=int64", "-o", out)
    assert exported.exit_code == 0, exported.output
    assert "image[image_batchx3x" in exported.stdout and "image=2x3x11x15,mask=2x1x11x15" in exported.stdout
    checked = run("check", "tests.user_models:guided", "--onnx", out, "--input-dtype", "mask=int64",
                  "--shape", "image=3x3x10x14,mask=3x1x10x14")
    assert checked.exit_code == 0, checked.output
