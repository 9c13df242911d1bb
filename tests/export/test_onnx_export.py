import onnx
import onnxruntime as ort
import pytest
import torch

from deploykit.errors import UserError
from deploykit.export import ExportError, export_onnx
from deploykit.model_io import make_inputs
from deploykit.spec import reference_outputs
from deploykit.spec import load_model


@pytest.fixture(scope="module")
def dysample_export(tmp_path_factory):
    model = load_model("dysample")
    with torch.no_grad():  # offsets of a few pixels, so a wrong grid could not hide
        model.module.offset.weight.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("export") / "dysample.onnx"
    return model, export_onnx(model, path, dysample_impl="standard")


def test_dims_are_named_and_symbolic(dysample_export):
    _, result = dysample_export
    assert result.inputs == [("input", ["batch", 64, "height", "width"])]
    name, dims = result.outputs[0]
    assert name == "output" and dims[1] == 64 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    assert result.opset == 17 and result.op_counts["GridSample"] == 1


@pytest.mark.parametrize("shape", [(1, 64, 8, 8), (3, 64, 13, 29), (1, 64, 64, 17)])
def test_dysample_is_right_at_shapes_other_than_the_traced_one(dysample_export, shape):
    """The TorchScript exporter's baked-in arange is wrong by ~5 here; ours must not be."""
    model, result = dysample_export
    assert shape != result.traced_shape
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    inputs = make_inputs(shape, 1)
    out = session.run(None, inputs)[0]
    ref = reference_outputs(model, inputs)["output"]
    assert abs(out - ref).max() < 1e-4


def test_gridsample_keeps_opset_17_mode_names(dysample_export):
    _, result = dysample_export
    node = next(n for n in onnx.load(str(result.path)).graph.node if n.op_type == "GridSample")
    attrs = {a.name: a.s.decode() for a in node.attribute if a.type == onnx.AttributeProto.STRING}
    assert attrs["mode"] == "bilinear" and attrs["padding_mode"] == "border"


def test_trt_target_refuses_opset_20_gridsample(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="silently reads as nearest"):
        export_onnx(load_model("dysample"), out, opset=20, target="trt")
    assert not out.exists() and not list(tmp_path.iterdir()), "a refused export leaves no file behind"


def test_opset_20_is_fine_for_ort(tmp_path):
    result = export_onnx(load_model("dysample"), tmp_path / "m.onnx", opset=20, dysample_impl="standard")
    node = next(n for n in onnx.load(str(result.path)).graph.node if n.op_type == "GridSample")
    assert {a.name: a.s for a in node.attribute}["mode"] == b"linear"


def test_static_export_fixes_every_dim(tmp_path):
    result = export_onnx(load_model("pixel_shuffle"), tmp_path / "m.onnx", dynamic=False, trace_shape=(1, 64, 8, 6))
    assert result.inputs == [("input", [1, 64, 8, 6])]
    assert result.outputs[0][1] == [1, 16, 16, 12]


def test_antialias_needs_opset_18(tmp_path):
    model = load_model("interpolate", {"antialias": "true", "scale_factor": "0.5", "recompute_scale_factor": "true"})
    assert export_onnx(model, tmp_path / "a.onnx").opset == 18
    with pytest.raises(ExportError, match="not the requested 17"):
        export_onnx(model, tmp_path / "b.onnx", opset=17)


def test_existing_file_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        export_onnx(load_model("pool"), out)
    assert out.read_text() == "keep me"
    export_onnx(load_model("pool"), out, force=True)
    onnx.checker.check_model(onnx.load(str(out)))


def test_unsupported_opset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="opset 9"):
        export_onnx(load_model("pool"), tmp_path / "m.onnx", opset=9)


def test_fp16_export_and_traced_shape_metadata(tmp_path):
    model = load_model("dysample")
    result = export_onnx(model, tmp_path / "h.onnx", precision="fp16")
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {p.key: p.value for p in proto.metadata_props}["deploykit.traced_shape"] == "2x64x37x45"
    assert next(model.module.parameters()).dtype == torch.float32, "the caller's model stays fp32"


def test_an_exporter_failure_names_the_node_it_failed_at(tmp_path, monkeypatch):
    """The useful line is often not the innermost cause's: it is found wherever it is."""
    import torch

    from deploykit.export import export_onnx
    from deploykit.export.program import ExportError
    from deploykit.spec import load_model

    def failing(*args, **kwargs):
        try:
            raise ValueError("constant folding failed for node 'node_split' (SplitToSequence)")
        except ValueError as cause:
            raise RuntimeError("Failed to convert the exported program to an ONNX model") from cause

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(ExportError, match="failed for node 'node_split' \\(SplitToSequence\\)"):
        export_onnx(load_model("pixel_shuffle"), tmp_path / "p.onnx")


def test_a_runtime_error_during_verification_names_the_file_not_its_staging_copy(tmp_path, monkeypatch):
    import onnxruntime

    from deploykit.errors import UserError
    from deploykit.export import export_onnx
    from deploykit.spec import load_model

    def refusing(path, *args, **kwargs):
        raise RuntimeError(f"Load model from {path} failed: protobuf parsing failed")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refusing)
    with pytest.raises(UserError) as caught:
        export_onnx(load_model("pixel_shuffle"), tmp_path / "p.onnx")
    message = str(caught.value)
    assert f"{tmp_path / 'p.onnx'} (being written)" in message and "/.p.onnx." not in message
