"""DySample's sample step without GridSample (--dysample-impl gather / roialign): same results
as the eager reference at every shape, offsets far outside the image included."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit.export import export_onnx
from deploykit.export.lint import lint_file
from deploykit.model_io import make_inputs
from deploykit.spec import reference_outputs
from deploykit.spec import load_model

STRATEGIES = ("gather", "roialign")  # "auto" picks one of them per layer: tested below
# (zoo entry, parameters): both styles, the dynamic scope, odd scale, one and several groups
VARIANTS = [
    ("dysample", {"in_channels": "16", "scale": "2", "groups": "4"}),
    ("dysample_s_plus", {"in_channels": "36", "scale": "3", "groups": "2"}),
    ("dysample_plus", {"in_channels": "8", "scale": "4", "groups": "1"}),
]


def _far_offsets(model, spread: float) -> None:
    """Offsets of up to ``spread`` pixels: most samples land outside the image and must clamp."""
    with torch.no_grad():
        model.module.offset.weight.normal_(0, spread / 8, generator=torch.Generator().manual_seed(3))
        model.module.offset.bias.uniform_(-spread, spread, generator=torch.Generator().manual_seed(4))


@pytest.fixture(scope="module", params=[(s, v) for s in STRATEGIES for v in range(len(VARIANTS))],
                ids=lambda p: f"{p[0]}-{VARIANTS[p[1]][0]}")
def exported(request, tmp_path_factory):
    strategy, index = request.param
    name, params = VARIANTS[index]
    model = load_model(name, params)
    _far_offsets(model, spread=12.0)
    path = tmp_path_factory.mktemp(strategy) / f"{name}.onnx"
    result = export_onnx(model, path, dysample_impl=strategy)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return strategy, model, result, session


def _max_error(model, session, shape, seed=0):
    inputs = make_inputs(shape, seed)
    out = session.run(None, inputs)[0]
    ref = reference_outputs(model, inputs)["output"]
    assert out.shape == ref.shape
    return float(np.abs(out - ref).max())


def test_graph_has_neither_grid_sample_nor_custom_nodes(exported):
    strategy, _, result, _ = exported
    proto = onnx.load(str(result.path))
    assert "GridSample" not in result.op_counts
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    assert ("RoiAlign" in result.op_counts) == (strategy == "roialign")
    assert result.op_counts.get("MatMul", 0) == (strategy == "gather")
    assert proto.metadata_props and {p.key: p.value for p in proto.metadata_props}["deploykit.dysample_impl"] == strategy


def test_lint_for_tensorrt_accepts_it(exported):
    _, _, result, _ = exported
    assert lint_file(result.path, "trt") == []


@pytest.mark.parametrize("shape_index", range(3))
def test_matches_the_reference_at_the_default_shapes(exported, shape_index):
    _, model, result, session = exported
    shape = model.shapes_or_default(None)[shape_index]
    assert _max_error(model, session, shape) < 1e-4


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 3), height=st.integers(1, 23), width=st.integers(1, 23), seed=st.integers(0, 99))
def test_matches_the_reference_at_any_shape(exported, batch, height, width, seed):
    """Dynamic batch, height and width, down to 1x1 where every tap is a border tap."""
    _, model, _, session = exported
    channels = model.module.offset.in_channels if model.module.style == "lp" else \
        model.module.offset.in_channels * model.module.scale**2
    assert _max_error(model, session, (batch, channels, height, width), seed) < 1e-4


def test_offsets_far_outside_the_image_clamp_to_the_border(tmp_path):
    """Offsets of hundreds of pixels: every sample is clamped; any wrap-around or zero padding fails."""
    for strategy in STRATEGIES:
        model = load_model("dysample", {"in_channels": "8", "groups": "2"})
        _far_offsets(model, spread=400.0)
        result = export_onnx(model, tmp_path / f"{strategy}.onnx", dysample_impl=strategy)
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        assert _max_error(model, session, (2, 8, 7, 10)) < 1e-4


@pytest.mark.parametrize("channels, groups, picked", [("8", "2", "RoiAlign"), ("128", "4", "RoiAlign"),
                                                     ("256", "4", "MatMul"), ("128", "2", "MatMul")])
def test_ort_target_defaults_to_the_faster_strategy_per_layer(tmp_path, channels, groups, picked, without_ort_library):
    """auto without deploykit's ONNX Runtime library: gather from 64 channels per group,
    roialign below (the README's measurements)."""
    model = load_model("dysample", {"in_channels": channels, "groups": groups})
    result = export_onnx(model, tmp_path / "ort.onnx")
    assert "GridSample" not in result.op_counts and picked in result.op_counts
    assert {"RoiAlign", "MatMul"} - {picked} - set(result.op_counts), "one strategy per layer"
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert _max_error(model, session, (1, int(channels), 6, 5)) < 1e-4


def test_trt_target_defaults_to_grid_sample(tmp_path):
    model = load_model("dysample", {"in_channels": "8", "groups": "2"})
    assert export_onnx(model, tmp_path / "trt.onnx", target="trt").op_counts["GridSample"] == 1


@pytest.mark.parametrize("opset", [18, 20])
def test_other_opsets_export_and_match(tmp_path, opset):
    model = load_model("dysample", {"in_channels": "8", "groups": "2"})
    for strategy in STRATEGIES:
        result = export_onnx(model, tmp_path / f"{strategy}.onnx", dysample_impl=strategy, opset=opset)
        assert result.opset == opset
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        assert _max_error(model, session, (1, 8, 9, 6)) < 1e-4


def test_fp16_graphs_sample_in_float32(tmp_path):
    """An fp16 export keeps the coordinates in float32 (fp16 ones are off by up to 1/16 pixel at 90
    pixels), so only the fp16 rounding of values remains."""
    model = load_model("dysample", {"in_channels": "8", "groups": "2"})
    _far_offsets(model, spread=1.0)
    for strategy in STRATEGIES:
        result = export_onnx(model, tmp_path / f"{strategy}.onnx", dysample_impl=strategy, precision="fp16")
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        inputs = make_inputs((1, 8, 70, 90), 0)
        out = session.run(None, {"input": inputs["input"].astype(np.float16)})[0].astype(np.float32)
        assert np.abs(out - reference_outputs(model, inputs)["output"]).max() < 1e-2
