"""Shape guards a model's branches impose: recorded, verified past every bound, refused when the
graph is one branch of several; a third verification shape far from the traced one."""

import onnx
import pytest

from deploykit.backends.trt_engine import Profile, within_bounds
from deploykit.export import export_onnx
from deploykit.export.verify import ExportVerificationFailed
from deploykit.onnx_file import recorded_ranges
from deploykit.spec import load_model
from tests.cli_helpers import run

TRACE = (2, 3, 10, 14)


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.mark.parametrize("trace", [(2, 3, 10, 14), (2, 3, 10, 80)])
def test_a_graph_that_is_one_branch_is_refused_on_either_side_of_the_guard(tmp_path, trace):
    with pytest.raises(ExportVerificationFailed) as caught:
        export_onnx(load_model("tests.user_models:guarded_width"), tmp_path / "g.onnx", trace_shape=trace)
    message = str(caught.value)
    assert caught.value.exit_code == 1 and "one branch of several" in message
    assert "user_models.py" in message and "if x.shape[-1] > 64:" in message
    assert not list(tmp_path.iterdir())


def test_a_bound_the_model_enforces_is_recorded_and_kept_by_build_profiles(tmp_path):
    result = export_onnx(load_model("tests.user_models:asserted_width"), tmp_path / "a.onnx", trace_shape=TRACE)
    [bound] = recorded_ranges(_meta(result.path))
    assert (bound.input, bound.axis, bound.dim, bound.high) == ("input", 3, "width", 64)
    assert "torch._check(x.shape[-1] <= 64)" in bound.where
    assert all(shape[3] <= 64 for shape in result.verified_shapes)
    clamped = within_bounds(Profile((1, 3, 4, 4), (2, 3, 10, 14), (4, 3, 40, 256)), "input", [bound])
    assert clamped.max == (4, 3, 40, 64) and clamped.opt == (2, 3, 10, 14)


def test_dynamic_exports_are_verified_far_from_the_traced_shape_too(tmp_path):
    result = export_onnx(load_model("pixel_shuffle"), tmp_path / "p.onnx")
    traced, _, far = result.verified_shapes
    assert all(f - t >= 64 for f, t in zip(far[2:], traced[2:]))
    assert len(_meta(result.path)["deploykit.verified_shapes"].split(";")) == 3


def test_a_dynamic_input_that_reaches_no_output_size_is_flagged(tmp_path):
    done = run("export", "tests.user_models:fixed_size_head", "--shape", "2x3x16x24", "-o", tmp_path / "f.onnx")
    assert done.exit_code == 0, done.output
    assert "warning: input has dynamic sizes but every output's are fixed" in done.stdout


def test_the_cli_names_the_guard(tmp_path):
    result = run("export", "tests.user_models:guarded_width", "--shape", "2x3x10x14", "-o", tmp_path / "g.onnx")
    assert result.exit_code == 1 and "width <= 64" in result.stderr
