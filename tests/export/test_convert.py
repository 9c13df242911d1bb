"""deploykit convert: DySample layers in ONNX files made elsewhere (the TorchScript exporter with
and without dynamic axes, the dynamo exporter, opsets 16-20) found by what they compute,
verified, replaced; the converted file right at sizes the original is not."""

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploykit.errors import UserError
from deploykit.export.convert import convert_onnx
from deploykit.export.dysample import recorded_layers
from deploykit.export.lint import has_errors, lint_file
from tests.cli_helpers import run
from tests.inline_models import InlineDySample, TinySR

TRACED = (1, 3, 24, 36)


def _torchscript_export(module, path, opset=17, dynamic=True):
    """As most users' files were made: torch.onnx.export's TorchScript exporter with dynamic axes."""
    axes = {"input": {0: "b", 2: "h", 3: "w"}, "output": {0: "b", 2: "h2", 3: "w2"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*TRACED),), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"], dynamic_axes=axes)
    return path


def _dynamo_export(module, path, opset=18, example=None):
    batch, height, width = torch.export.Dim("b"), torch.export.Dim("h"), torch.export.Dim("w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        example = torch.randn(*TRACED) if example is None else example
        program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                    input_names=["input"],
                                    dynamic_shapes=({0: batch, 2: height, 3: width},))
    program.save(str(path))
    return path


def _ort(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def sr():
    torch.manual_seed(0)
    return TinySR().eval()


@pytest.fixture(scope="module")
def legacy_file(sr, tmp_path_factory):
    return _torchscript_export(sr, tmp_path_factory.mktemp("legacy") / "sr.onnx")


def test_a_torchscript_file_is_specialised_and_its_conversion_is_right_at_every_size(sr, legacy_file, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 19, 33)).astype(np.float32)
    with torch.no_grad():
        want = sr(torch.from_numpy(x)).numpy()
    assert np.abs(_ort(legacy_file, x) - want).max() > 0.1  # the file as exported: silently wrong off 24x36
    result = convert_onnx(legacy_file, tmp_path / "g.onnx", "gather")
    assert "GridSample" not in _ops(result.path)
    assert np.abs(_ort(result.path, x) - want).max() < 1e-4
    assert [format(s) for s in result.checked_shapes] == ["(1, 3, 24, 36)"]
    assert result.specialised and "24x36" in result.specialised[0]
    layers = recorded_layers(_meta(result.path))
    assert [(l["scale"], l["groups"], l["strategy"], l["specialised_to"]) for l in layers] == [(2, 4, "gather", [24, 36])]


@pytest.mark.parametrize("strategy, op", [("plugin", "DySample"), ("roialign", "RoiAlign"), ("standard", "GridSample")])
def test_every_strategy_keeps_the_names_and_every_other_node(legacy_file, tmp_path, strategy, op):
    result = convert_onnx(legacy_file, tmp_path / f"{strategy}.onnx", strategy)
    before, after = onnx.load(str(legacy_file)), onnx.load(str(result.path))
    assert [v.name for v in after.graph.input] == [v.name for v in before.graph.input]
    assert [v.name for v in after.graph.output] == [v.name for v in before.graph.output]
    assert _ops(result.path).count(op) == 1
    kept = {n.name for n in before.graph.node if n.op_type != "Constant" and not n.name.startswith("/to_img/")}
    kept |= {n.name for n in before.graph.node if n.op_type == "Conv"}
    assert kept <= {n.name for n in after.graph.node}
    if strategy == "plugin":
        node = next(n for n in after.graph.node if n.op_type == "DySample")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (node.domain, attrs["scale"], attrs["groups"], attrs["plugin_version"]) == ("deploykit", 2, 4, b"1")


@pytest.mark.parametrize("opset", [16, 20])
def test_torchscript_files_at_other_opsets_and_static_shapes(sr, tmp_path, opset):
    path = _torchscript_export(sr, tmp_path / "s.onnx", opset=opset, dynamic=opset == 20)
    result = convert_onnx(path, tmp_path / "c.onnx", "gather")
    assert result.opset == opset and "GridSample" not in _ops(result.path)
    if opset == 20:  # TensorRT reads 'linear' as nearest: lint says so and names convert as the fix
        [finding] = [f for f in lint_file(path, "trt") if f.op_type == "GridSample"]
        assert finding.severity == "error" and "deploykit convert" in finding.fix
        assert not has_errors(lint_file(result.path, "trt"))


def test_a_dynamo_file_is_right_at_every_size_already_and_converted(sr, tmp_path):
    path = _dynamo_export(sr, tmp_path / "d.onnx")
    result = convert_onnx(path, tmp_path / "p.onnx", "roialign")
    assert not result.specialised and len(result.checked_shapes) == 2  # right at both probes, checked at both
    x = np.random.default_rng(1).standard_normal((1, 3, 17, 23)).astype(np.float32)
    with torch.no_grad():
        want = sr(torch.from_numpy(x)).numpy()
    assert np.abs(_ort(result.path, x) - want).max() < 1e-4


def test_lookalikes_are_named_and_an_explicit_strategy_with_nothing_found_fails(tmp_path):
    torch.manual_seed(0)
    path = _torchscript_export(TinySR(padding_mode="zeros").eval(), tmp_path / "z.onnx")
    with pytest.raises(UserError, match="no GridSample is DySample's sample step.*padding_mode zeros"):
        convert_onnx(path, tmp_path / "out.onnx", "plugin")
    assert not (tmp_path / "out.onnx").exists()


class _TwoLayers(torch.nn.Module):
    """Two layers of different scale and groups, one fed by the other (MoSR-like stacking)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.a = InlineDySample(8, 8, scale=2, groups=2, end_convolution=False)
        self.b = InlineDySample(8, 3, scale=3, groups=1)

    def forward(self, x):
        return self.b(self.a(self.stem(x)))


def test_several_layers_each_verified_at_their_own_encoded_size(tmp_path):
    torch.manual_seed(0)
    model = _TwoLayers().eval()
    path = _torchscript_export(model, tmp_path / "two.onnx")
    result = convert_onnx(path, tmp_path / "two_plugin.onnx", "plugin")
    assert sorted((e["scale"], e["groups"]) for e in result.converted) == [(2, 2), (3, 1)]
    assert _ops(result.path).count("DySample") == 2 and "GridSample" not in _ops(result.path)


def test_the_cli_converts_lints_for_tensorrt_and_refuses_to_overwrite(legacy_file, tmp_path):
    out = tmp_path / "trt.onnx"
    done = run("convert", legacy_file, "-o", out, "--dysample-impl", "plugin", "--target", "trt")
    assert done.exit_code == 0, done.output
    assert "converted DySample layer at /to_img/GridSample (scale 2, groups 4): plugin" in done.stdout
    assert "the converted file equals the original at 1x3x24x36" in done.stdout
    assert "lint for trt" in done.stdout
    again = run("convert", legacy_file, "-o", out, "--dysample-impl", "gather")
    assert again.exit_code == 2 and "--force" in again.stderr
    same = run("convert", legacy_file, "-o", legacy_file, "--dysample-impl", "gather", "--force")
    assert same.exit_code == 2 and "reads" in same.stderr
    assert json.loads(_meta(out)["deploykit.dysample_layers"])[0]["strategy"] == "plugin"


@pytest.mark.parametrize("factory", ["shared_features", "groups_one_raw", "looped"])
def test_dynamo_files_with_merged_or_missing_reshapes_are_converted(tmp_path, factory):
    import tests.inline_models as models

    torch.manual_seed(0)
    module = getattr(models, factory)().eval()
    if factory == "looped":  # a dict output: wrap it into a tuple for torch.onnx
        module = _TupleOutputs(module)
    path = _dynamo_export(module, tmp_path / "d.onnx")
    result = convert_onnx(path, tmp_path / "g.onnx", "gather")
    assert "GridSample" not in _ops(result.path) and result.converted


class _TupleOutputs(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return tuple(self.inner(x).values())


def test_an_offset_fed_as_an_input_is_found_and_a_clamp_is_not_dysample(tmp_path):
    """A file right at every size (dynamo) whose offsets are clamped to 60 pixels: DySample on
    small images only, which offsets several image sizes long show at the probe sizes."""
    from tests.inline_models import ClampedOffsets

    b, h, w = torch.export.Dim("b"), torch.export.Dim("h"), torch.export.Dim("w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ClampedOffsets(), (torch.randn(1, 4, 6, 8), torch.randn(1, 16, 6, 8)),
                                    dynamo=True, opset_version=18, input_names=["feat", "offset"],
                                    dynamic_shapes=({0: b, 2: h, 3: w}, {0: b, 2: h, 3: w}))
    program.save(str(tmp_path / "c.onnx"))
    with pytest.raises(UserError, match="not DySample's grid"):
        convert_onnx(tmp_path / "c.onnx", tmp_path / "out.onnx", "gather")
    assert not (tmp_path / "out.onnx").exists()


def test_an_fp16_file_is_converted_and_compared_at_fp16(sr, tmp_path):
    import copy

    path = _dynamo_export(copy.deepcopy(sr).half(), tmp_path / "h.onnx", example=torch.randn(*TRACED).half())
    result = convert_onnx(path, tmp_path / "g.onnx", "gather")
    assert "GridSample" not in _ops(result.path)
