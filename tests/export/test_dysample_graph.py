"""DySample layers without a sample() method, recognised in the traced program by what they
compute (spandrel's copy samples inline in forward); shared and looped calls; opsets raised to
what the exporter's ops need."""

import onnx
import pytest

from deploykit.errors import UserError
from deploykit.export import export_onnx
from deploykit.export.dysample import recorded_layers
from deploykit.model_io import Case
from deploykit.spec import load_model
from tests.cli_helpers import run

TRACE = (2, 3, 10, 14)
STRATEGY_OPS = {"plugin": "DySample", "gather": "Gather", "roialign": "RoiAlign", "standard": "GridSample"}


def _graph(path):
    return onnx.load(str(path), load_external_data=False)


def _ops(path):
    return [n.op_type for n in _graph(path).graph.node]


def _layers(path):
    return [(l["module"], l["class"].rsplit(".", 1)[-1], l["scale"], l["groups"], l["strategy"])
            for l in recorded_layers({p.key: p.value for p in _graph(path).metadata_props})]


@pytest.mark.parametrize("strategy", ["plugin", "gather", "roialign", "standard", "auto"])
def test_an_inline_layer_gets_every_strategy_and_the_metadata_says_so(tmp_path, strategy, request):
    if strategy == "auto":  # the per-layer choice; with deploykit's ONNX Runtime library auto is the plugin
        request.getfixturevalue("without_ort_library")
    result = export_onnx(load_model("tests.inline_models:tiny_sr"), tmp_path / "sr.onnx", trace_shape=TRACE,
                         dysample_impl=strategy)
    ops = _ops(result.path)
    got = "roialign" if strategy == "auto" else strategy  # 16 channels / 4 groups: roialign
    assert _layers(result.path) == [("to_img", "InlineDySample", 2, 4, got)]
    assert ops.count("GridSample") == (1 if got == "standard" else 0)
    assert STRATEGY_OPS[got] in ops
    assert len(result.verified_shapes) == 3  # traced, +1, far


@pytest.mark.parametrize("normaliser", ["stack", "tensor"])
def test_either_normaliser_spelling_and_a_scale_of_three(tmp_path, normaliser):
    model = load_model("tests.inline_models:tiny_sr", {"normaliser": normaliser, "scale": "3", "groups": "2"})
    result = export_onnx(model, tmp_path / "s.onnx", trace_shape=TRACE, dysample_impl="plugin")
    assert _layers(result.path) == [("to_img", "InlineDySample", 3, 2, "plugin")]


@pytest.mark.parametrize("spec, reason", [("tests.inline_models:tiny_sr_zeros", "padding_mode zeros, not border"),
                                          ("tests.inline_models:tiny_sr_corners", "align_corners=True")])
def test_inline_lookalikes_are_exported_as_written_with_the_reason(tmp_path, spec, reason):
    result = export_onnx(load_model(spec), tmp_path / "l.onnx", trace_shape=TRACE)
    assert [(l.path, l.cls.rsplit(".", 1)[-1]) for l in result.dysample.lookalikes] == [("to_img", "InlineDySample")]
    assert reason in result.dysample.lookalikes[0].reason
    assert _ops(result.path).count("GridSample") == 1 and not _layers(result.path)
    with pytest.raises(UserError, match=f"to_img \\(InlineDySample\\) looks alike but .*{reason[:12]}"):
        export_onnx(load_model(spec), tmp_path / "p.onnx", trace_shape=TRACE, dysample_impl="plugin")


@pytest.mark.parametrize("strategy", ["plugin", "roialign", "gather", "auto", "standard"])
@pytest.mark.parametrize("inline", [False, True])
def test_a_layer_called_twice_on_one_input_is_one_node(tmp_path, strategy, inline):
    """The optimizer merges two identical calls: the metadata counts what the graph holds."""
    model = load_model("tests.inline_models:twin_heads", {"inline": str(inline)})
    result = export_onnx(model, tmp_path / "t.onnx", trace_shape=TRACE, dysample_impl=strategy)
    assert sum(result.dysample.counts().values()) == 1
    if strategy == "plugin":
        assert _ops(result.path).count("DySample") == 1


@pytest.mark.parametrize("inline", [False, True])
def test_a_shared_upsampler_called_in_a_chain_converts_both_calls(tmp_path, inline):
    model = load_model("tests.inline_models:shared_up", {"inline": str(inline)})
    result = export_onnx(model, tmp_path / "u.onnx", trace_shape=TRACE, dysample_impl="plugin")
    assert _ops(result.path).count("DySample") == 2 and "GridSample" not in _ops(result.path)
    assert result.dysample.counts() == {"plugin": 2}


def test_a_layer_in_a_loop_and_layers_sharing_an_input(tmp_path):
    result = export_onnx(load_model("tests.inline_models:looped", {"steps": "3"}), tmp_path / "l.onnx",
                         trace_shape=TRACE, dysample_impl="plugin")
    assert _ops(result.path).count("DySample") == 4 and "GridSample" not in _ops(result.path)
    assert sorted(_layers(result.path)) == [("side", "InlineDySample", 2, 2, "plugin"),
                                            ("up", "InlineDySample", 2, 2, "plugin")]


def test_chunk_raises_the_default_opset_and_says_why(tmp_path):
    result = export_onnx(load_model("tests.inline_models:chunk_gate"), tmp_path / "c.onnx", trace_shape=TRACE)
    assert result.opset == 18 and "Split" in result.opset_note
    onnx.checker.check_model(_graph(result.path), full_check=True)
    with pytest.raises(UserError, match="fails onnx.checker at opset 17: .*Split"):
        export_onnx(load_model("tests.inline_models:chunk_gate"), tmp_path / "c17.onnx", trace_shape=TRACE, opset=17)


def test_the_cli_exports_an_inline_layer_as_a_plugin_and_check_passes_at_untraced_shapes(tmp_path):
    out = tmp_path / "sr.onnx"
    done = run("export", "tests.inline_models:tiny_sr", "--shape", "1x3x24x36", "--dysample-impl", "plugin",
               "-o", out)
    assert done.exit_code == 0, done.output
    assert "converted DySample layer to_img (InlineDySample, scale 2, groups 4): plugin" in done.stdout
    checked = run("check", "tests.inline_models:tiny_sr", "--onnx", out, "--shape", "1x3x16x16",
                  "--shape", "2x3x19x33", "--shape", "1x3x31x20")
    assert checked.exit_code == 0, checked.output
    twice = run("check", "tests.inline_models:twin_heads", "--shape", "2x3x10x14", "--dysample-impl", "roialign")
    assert twice.exit_code == 0, twice.output


def test_an_fp16_export_converts_the_inline_layer_checked_in_float32(tmp_path):
    result = export_onnx(load_model("tests.inline_models:tiny_sr"), tmp_path / "h.onnx", trace_shape=(1, 3, 12, 16),
                         precision="fp16", dysample_impl="gather")
    assert _layers(result.path) == [("to_img", "InlineDySample", 2, 4, "gather")]


def test_groups_one_without_reshapes_is_converted(tmp_path):
    result = export_onnx(load_model("tests.inline_models:groups_one_raw"), tmp_path / "g.onnx",
                         trace_shape=(1, 3, 6, 8), dysample_impl="plugin")
    assert _ops(result.path).count("DySample") == 1 and "GridSample" not in _ops(result.path)


def test_offsets_clamped_in_pixels_are_not_dysample(tmp_path):
    model = load_model("tests.inline_models:clamped_offsets")
    with pytest.raises(UserError, match="looks alike but its grid is not DySample's grid"):
        export_onnx(model, tmp_path / "c.onnx", trace_shape=Case({"feat": (1, 4, 6, 8), "offset": (1, 16, 6, 8)}),
                    dysample_impl="gather")
