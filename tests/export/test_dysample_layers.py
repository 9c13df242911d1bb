"""Users' own DySample layers: recognised by what they compute, converted during export only,
recorded in the file for what the graph really holds; lookalikes left alone and named."""

import json
import re

import onnx
import pytest
import torch

from deploykit.errors import UserError
from deploykit.export import export_onnx
from deploykit.export.dysample import find_layers, recorded_layers
from deploykit.spec import load_model
from tests.user_models import CornerAlignedDySample, FpnDecoder, LearnedUpsampler, PastedDySample

TRACE = (2, 3, 10, 14)


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _ops(path):
    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


@pytest.mark.parametrize("style", ["lp", "pl"])
@pytest.mark.parametrize("dyscope", [False, True])
@pytest.mark.parametrize("scale, groups", [(2, 4), (3, 2), (4, 1)])
def test_pasted_copies_are_verified_at_every_variant(style, dyscope, scale, groups):
    channels = 16 * scale * scale if style == "pl" else 16
    layers, lookalikes = find_layers(PastedDySample(channels, scale, style, groups, dyscope))
    assert [(l.path, l.scale, l.groups) for l in layers] == [("", scale, groups)] and not lookalikes


def test_a_lookalike_that_samples_differently_is_named_with_its_reason():
    model = FpnDecoder(cls=CornerAlignedDySample)
    layers, lookalikes = find_layers(model)
    assert layers == []
    assert [l.path for l in lookalikes] == ["up1", "up2"]
    assert all("differs from DySample's step" in l.reason for l in lookalikes)


def test_modules_without_the_interface_are_not_candidates():
    class Scaled(torch.nn.Module):  # scale and groups, but no sample()
        scale, groups = 2, 4

    class BoolScale(PastedDySample):  # a flag, not a factor
        pass

    odd = BoolScale(16)
    odd.scale = True
    assert find_layers(torch.nn.Sequential(Scaled(), odd)) == ([], [])


@pytest.fixture(scope="module")
def fpn_exports(tmp_path_factory):
    """One pasted-DySample FPN exported with plugin and gather (the Done criteria), and with a warp."""
    folder = tmp_path_factory.mktemp("fpn")
    model = load_model("tests.user_models:fpn", {"groups": "2"})
    before = {name: param.clone() for name, param in model.module.state_dict().items()}
    results = {impl: export_onnx(model, folder / f"{impl}.onnx", trace_shape=TRACE, dysample_impl=impl)
               for impl in ("plugin", "gather", "standard")}
    return model, before, results


def test_plugin_strategy_writes_one_plugin_node_per_layer_and_no_grid_sample(fpn_exports):
    _, _, results = fpn_exports
    ops = _ops(results["plugin"].path)
    assert ops.count("DySample") == 2 and "GridSample" not in ops
    assert "GridSample" not in _ops(results["gather"].path)
    assert _ops(results["standard"].path).count("GridSample") == 2


def test_the_metadata_records_each_converted_layer_as_the_graph_holds_it(fpn_exports):
    _, _, results = fpn_exports
    for impl, result in results.items():
        meta = _meta(result.path)
        layers = recorded_layers(meta)
        assert [(l["module"], l["class"].rsplit(".", 1)[-1], l["scale"], l["groups"], l["strategy"])
                for l in layers] == [("up1", "PastedDySample", 2, 2, impl), ("up2", "PastedDySample", 2, 2, impl)]
        assert meta["deploykit.dysample_impl"] == impl
        assert meta["deploykit.verified_shapes"].split(";")[0] == "2x3x10x14"


def test_the_users_module_is_as_it_was_after_export(fpn_exports):
    model, before, _ = fpn_exports
    for layer in (model.module.up1, model.module.up2):
        assert "sample" not in vars(layer) and type(layer).sample is PastedDySample.sample
    after = model.module.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_auto_records_the_strategy_each_layer_really_got(tmp_path, without_ort_library):
    # 16 channels in 4 groups: 4 per group, so auto takes roialign (gather from 48 per group)
    result = export_onnx(load_model("tests.user_models:fpn"), tmp_path / "auto.onnx", trace_shape=TRACE)
    assert [l["strategy"] for l in recorded_layers(_meta(result.path))] == ["roialign", "roialign"]
    assert _meta(result.path)["deploykit.dysample_impl"] == "auto"
    assert _ops(result.path).count("RoiAlign") == 2


def test_auto_on_onnx_runtime_is_the_plugin_where_deploykits_library_can_be_had(tmp_path, ort_custom_ops):
    result = export_onnx(load_model("tests.user_models:fpn"), tmp_path / "auto.onnx", trace_shape=TRACE)
    assert [l["strategy"] for l in recorded_layers(_meta(result.path))] == ["plugin", "plugin"]
    assert _ops(result.path).count("DySample") == 2 and result.verified_with == "ort"
    assert "register_custom_ops_library" in result.strategy_note and "--dysample-impl gather" in result.strategy_note
    for_trt = export_onnx(load_model("tests.user_models:fpn"), tmp_path / "trt.onnx", trace_shape=TRACE,
                          target="trt", dysample_impl="auto")  # the library is ONNX Runtime's alone
    assert [l["strategy"] for l in recorded_layers(_meta(for_trt.path))] == ["roialign", "roialign"]
    assert for_trt.strategy_note is None


def test_export_says_what_auto_chose_and_how_serving_code_registers_it(tmp_path, ort_custom_ops):
    from tests.cli_helpers import run

    done = run("export", "tests.user_models:fpn", "--shape", "2x3x32x48", "-o", tmp_path / "f.onnx")
    assert done.exit_code == 0, done.output
    assert re.search(r"converted DySample layer up1 \(PastedDySample, scale 2, groups \d+\): plugin", done.output)
    assert "auto chose plugin" in done.output and "ort_library_path()" in done.output


def test_only_dysample_is_converted_beside_an_unrelated_grid_sample(tmp_path):
    result = export_onnx(load_model("tests.user_models:fpn", {"warp": "true"}), tmp_path / "w.onnx",
                         trace_shape=TRACE, dysample_impl="gather")
    assert _ops(result.path).count("GridSample") == 1  # the warp's, left as it is
    assert [g["module"][0] for g in result.remaining_grid_samples] == [""]  # from the top-level forward
    assert len(recorded_layers(_meta(result.path))) == 2


def test_a_renamed_copy_is_converted_and_named_by_its_class(tmp_path):
    result = export_onnx(load_model("tests.user_models:fpn_renamed"), tmp_path / "r.onnx", trace_shape=TRACE,
                         dysample_impl="plugin")
    assert {l["class"].rsplit(".", 1)[-1] for l in recorded_layers(_meta(result.path))} == {"LearnedUpsampler"}
    assert issubclass(LearnedUpsampler, PastedDySample)


def test_an_explicit_strategy_with_nothing_to_convert_is_an_error(tmp_path):
    with pytest.raises(UserError, match="looks|computes DySample's sample step") as caught:
        export_onnx(load_model("tests.user_models:fpn_lookalike"), tmp_path / "l.onnx", trace_shape=TRACE,
                    dysample_impl="plugin")
    assert "up1 (CornerAlignedDySample)" in str(caught.value)
    with pytest.raises(UserError, match="changed nothing in pixel_shuffle: it has no DySample layer"):
        export_onnx(load_model("pixel_shuffle"), tmp_path / "p.onnx", dysample_impl="gather")
    assert not list(tmp_path.iterdir())


def test_no_strategy_is_recorded_for_a_model_without_dysample(tmp_path):
    result = export_onnx(load_model("pixel_shuffle"), tmp_path / "p.onnx")  # the default, auto: no error
    meta = _meta(result.path)
    assert "deploykit.dysample_impl" not in meta and "deploykit.dysample_layers" not in meta


def test_the_lookalike_is_exported_as_written_and_reported(tmp_path):
    result = export_onnx(load_model("tests.user_models:fpn_lookalike"), tmp_path / "l.onnx", trace_shape=TRACE)
    assert [l.path for l in result.dysample.lookalikes] == ["up1", "up2"]
    assert result.dysample.converted() == [] and "deploykit.dysample_impl" not in _meta(result.path)
    assert json.loads(_meta(result.path).get("deploykit.dysample_layers", "[]")) == []


@pytest.mark.parametrize("impl", ["roialign", "plugin", "gather"])
def test_a_call_whose_result_is_dropped_is_not_claimed(tmp_path, impl):
    result = export_onnx(load_model("tests.user_models:dead_sample"), tmp_path / "d.onnx", trace_shape=(2, 4, 6, 7),
                         dysample_impl=impl, verify=False)
    assert [l["module"] for l in recorded_layers(_meta(result.path))] == ["live"]
    assert _ops(result.path).count({"roialign": "RoiAlign", "plugin": "DySample", "gather": "MatMul"}[impl]) == 1
