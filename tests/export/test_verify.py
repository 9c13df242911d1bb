"""Exports are run before they are trusted: a dynamic graph that is right only at its traced
shape fails export (exit 1) naming the shape and the fix; export errors name their cause."""

import onnx
import pytest

from deploykit.errors import UserError
from deploykit.export import ExportError, export_onnx
from deploykit.export.verify import ExportVerificationFailed, verification_shapes
from deploykit.spec import load_model

PSP_TRACE = (2, 8, 40, 48)


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_a_specialised_dynamic_export_fails_naming_the_shape_and_the_fix(tmp_path):
    out = tmp_path / "psp.onnx"
    with pytest.raises(ExportVerificationFailed) as caught:
        export_onnx(load_model("tests.user_models:pyramid_pooling"), out, trace_shape=PSP_TRACE)
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "at 3x8x41x49 (it was traced at 2x8x40x48)" in message
    assert "values outside atol" in message and "--static" in message
    assert "nothing was written to psp.onnx" in message
    assert not list(tmp_path.iterdir())  # no file, no staging folder


def test_the_cli_prints_the_finding_in_its_lines_and_an_input_error_on_one(tmp_path):
    """Exit 1 (a finding) reads as the lines it was written in; exit 2 stays one line."""
    from tests.cli_helpers import run

    failed = run("export", "tests.user_models:pyramid_pooling", "--shape", "2x8x40x48", "-o", tmp_path / "psp.onnx")
    assert failed.exit_code == 1, failed.output
    lines = failed.stderr.splitlines()
    assert lines[0].startswith("error: the exported graph") and "\\n" not in failed.stderr
    assert any(line.startswith("  nothing was written to psp.onnx") for line in lines[1:])
    refused = run("export", "tests.user_models:pyramid_pooling", "--shape", "2x8x40", "-o", tmp_path / "x.onnx")
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_the_same_model_exported_static_passes_and_records_its_verified_shape(tmp_path):
    result = export_onnx(load_model("tests.user_models:pyramid_pooling"), tmp_path / "psp.onnx",
                         trace_shape=PSP_TRACE, dynamic=False)
    assert result.verified_shapes == [PSP_TRACE]
    assert _meta(result.path)["deploykit.verified_shapes"] == "2x8x40x48"


def test_a_shape_that_divides_like_the_traced_one_would_have_hidden_it(tmp_path):
    # h // 8 pooling baked in as an 8x8 window is right at every multiple of 8: verifying there passes
    result = export_onnx(load_model("tests.user_models:pyramid_pooling"), tmp_path / "psp.onnx",
                         trace_shape=PSP_TRACE, verify_shapes=[(1, 8, 64, 32)])
    assert result.verified_shapes == [PSP_TRACE, (1, 8, 64, 32)]


def test_no_verify_writes_the_graph_and_records_no_verified_shapes(tmp_path):
    result = export_onnx(load_model("tests.user_models:pyramid_pooling"), tmp_path / "psp.onnx",
                         trace_shape=PSP_TRACE, verify=False)
    assert result.verified_shapes == [] and "deploykit.verified_shapes" not in _meta(result.path)


def test_verified_dynamic_exports_record_three_shapes(tmp_path):
    result = export_onnx(load_model("pixel_shuffle"), tmp_path / "p.onnx")
    traced = result.traced_shape
    second = (traced[0] + 1, traced[1], traced[2] + 1, traced[3] + 1)
    far = (traced[0] + 1, traced[1], traced[2] + 64, traced[3] + 64)
    assert result.verified_shapes == [traced, second, far] and result.verified_with == "ort"
    assert _meta(result.path)["deploykit.verified_shapes"] == ";".join(
        "x".join(map(str, s)) for s in (traced, second, far))


def test_derived_shapes_skip_what_pytorch_itself_rejects():
    """A model that needs multiples of 8 rejects size + 1; size + its power-of-two divisor fits."""
    model = load_model("tests.custom_models:tiny_decoder")
    model.shape_rule = lambda s: None if all(d % 8 == 0 for d in s[2:]) else "needs multiples of 8"
    found = verification_shapes(model, (2, 8, 24, 40), dynamic=True)
    assert found.shapes == [(2, 8, 24, 40), (3, 8, 32, 48), (3, 8, 88, 104)]  # the third: + 64, far
    assert found.skipped == ["3x8x25x41: needs multiples of 8"]


def test_verify_shapes_must_fit_the_traced_rank_and_channels():
    model = load_model("tests.custom_models:tiny_decoder")
    with pytest.raises(UserError, match="keep its inputs, ranks and channels"):
        verification_shapes(model, (2, 8, 24, 40), dynamic=True, requested=[(2, 4, 24, 40)])
    with pytest.raises(UserError, match="--static export"):
        verification_shapes(model, (2, 8, 24, 40), dynamic=False, requested=[(2, 8, 24, 40)])


def test_an_export_error_names_the_reason_and_saves_the_full_report(tmp_path):
    with pytest.raises(ExportError) as caught:
        export_onnx(load_model("tests.user_models:branch_on_height"), tmp_path / "b.onnx",
                    trace_shape=(2, 3, 40, 41))
    message = str(caught.value)
    assert "tracing inferred a static shape of 40 for dimension inputs['x'].shape[2]" in message
    assert "This is step" not in message and "Next steps" not in message and "\x1b[" not in message
    report = message.split("full report: ")[1].split(")")[0]
    text = open(report, encoding="utf-8").read()
    assert "Traceback" in text and "static shape of 40" in text
    assert "--static" in caught.value.fix
    # the fix works: a static export of the same model passes
    assert export_onnx(load_model("tests.user_models:branch_on_height"), tmp_path / "s.onnx",
                       trace_shape=(2, 3, 40, 41), dynamic=False).verified_shapes == [(2, 3, 40, 41)]


def test_the_antialias_divergence_is_caught_at_export(tmp_path):
    """Resize with output sizes vs eager's kept 0.5 scale: right at the traced shape only when
    size * scale is whole; the README's example of a divergence deploykit finds."""
    model = load_model("interpolate", {"antialias": "true", "scale_factor": "0.5"})
    with pytest.raises(ExportVerificationFailed, match="at the traced shape 2x16x37x45") as caught:
        export_onnx(model, tmp_path / "a.onnx")
    # the graph's one Resize, by its op type (its name is the exporter's choice): written unverified
    unverified = export_onnx(model, tmp_path / "unverified.onnx", verify=False).path
    (resize,) = [n for n in onnx.load(str(unverified)).graph.node if n.op_type == "Resize"]
    assert f"first diverging node: {resize.name} (Resize)" in str(caught.value)
