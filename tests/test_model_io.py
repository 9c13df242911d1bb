"""Outputs by name: dicts, nested tuples with None entries, dataclasses; the same names in
the ONNX file, check's rows and the JSON report; an output missing on either side fails."""

import json
from collections import OrderedDict, namedtuple

import onnx
import pytest

from deploykit.errors import UserError
import torch

from deploykit.model_io import flatten_outputs
from tests.cli_helpers import assert_user_error, run
from tests.user_models import SegOutput

SHAPES = ("--shape", "1x3x8x8", "--shape", "2x3x10x14", "--shape", "3x3x13x6")


def test_names_follow_keys_fields_and_positions():
    t = torch.zeros(1)
    Pair = namedtuple("Pair", "left right")
    assert list(flatten_outputs(t)) == ["output"]
    assert list(flatten_outputs(OrderedDict(out=t, aux=t))) == ["out", "aux"]
    assert list(flatten_outputs((t, (t, None), {"z": t}, 3))) == ["0", "1.0", "2.z"]
    assert list(flatten_outputs(SegOutput(logits=t))) == ["logits"]
    assert list(flatten_outputs([Pair(t, t), {"a": [t, t]}])) == ["0.left", "0.right", "1.a.0", "1.a.1"]
    assert list(flatten_outputs({"0": {"1": t}, "0.1": t})) == ["0.1", "0.1_1"]  # never two outputs of one name
    assert flatten_outputs((None, 3, "text")) == {}


@pytest.mark.parametrize("spec, names", [
    ("tests.user_models:seg_heads", ["out", "aux"]),
    ("tests.user_models:nested", ["0", "1.0", "2.z"]),
    ("tests.user_models:dataclass_output", ["logits", "hidden"]),
])
def test_export_check_and_bench_name_outputs_by_their_keys(tmp_path, spec, names):
    path, report, timings = tmp_path / "m.onnx", tmp_path / "check.json", tmp_path / "bench.json"
    exported = run("export", spec, "-o", path, "--shape", "2x3x10x14")
    assert exported.exit_code == 0, exported.output
    assert [o.name for o in onnx.load(str(path)).graph.output] == names
    checked = run("check", spec, "--onnx", path, *SHAPES, "--report", report)
    assert checked.exit_code == 0, checked.output
    rows = json.loads(report.read_text())["results"]
    assert [r["output"] for r in rows if r["backend"] == "ort" and list(r["shape"].values()) == [[1, 3, 8, 8]]] == names
    assert all(r["passed"] for r in rows)
    benched = run("bench", spec, "--onnx", path, "--shape", "1x3x8x8", "--iters", 2, "--warmup", 1,
                  "--report", timings)
    assert benched.exit_code == 0, benched.output


def test_an_output_missing_from_the_graph_fails_naming_it(tmp_path):
    path, report = tmp_path / "m.onnx", tmp_path / "check.json"
    assert run("export", "tests.user_models:seg_heads", "-o", path, "--shape", "2x3x10x14").exit_code == 0
    checked = run("check", "tests.user_models:seg_heads", "-p", "extra=true", "--onnx", path,
                  "--shape", "1x3x8x8", "--report", report)
    assert checked.exit_code == 1, checked.output
    failed = [r for r in json.loads(report.read_text())["results"] if not r["passed"]]
    assert [(r["backend"], r["output"]) for r in failed] == [("ort", "edges")]
    assert "ort has no output 'edges'" in failed[0]["reason"]


def test_an_output_pytorch_does_not_return_fails_naming_it(tmp_path):
    path, report = tmp_path / "m.onnx", tmp_path / "check.json"
    assert run("export", "tests.user_models:seg_heads", "-p", "extra=true", "-o", path,
               "--shape", "2x3x10x14").exit_code == 0
    checked = run("check", "tests.user_models:seg_heads", "--onnx", path, "--shape", "1x3x8x8", "--report", report)
    assert checked.exit_code == 1, checked.output
    failed = [r for r in json.loads(report.read_text())["results"] if not r["passed"]]
    assert [r["output"] for r in failed] == ["edges"] and "PyTorch does not return" in failed[0]["reason"]


@pytest.mark.parametrize("text", ["image=1x3x64x64,mask=1x1x64x64", "image:1x3x64x64,mask:1x1x64x64",
                                  "image:[1,3,64,64] mask:[1,1,64,64]", "image:[1,3,64,64],mask:[1,1,64,64]",
                                  " mask:[1, 1, 64, 64]  image=1x3x64x64 "])
def test_shapes_in_deploykits_trtexecs_and_polygraphys_forms(text):
    from deploykit.model_io import parse_case

    case = parse_case(text, ["image", "mask"])
    assert case.shapes == {"image": (1, 3, 64, 64), "mask": (1, 1, 64, 64)}


def test_a_name_holding_a_colon_and_a_bracketed_shape_alone():
    from deploykit.model_io import parse_case

    assert parse_case("input:0:[1,3,8,8]", ["input:0"]) == (1, 3, 8, 8)
    assert parse_case("[1,3,8,8]", ["x"]) == (1, 3, 8, 8)
    with pytest.raises(UserError, match="without an input name"):
        parse_case(":1x3x8x8,mask:1x1x8x8", ["image", "mask"])


def _identity_file(path, value_info):
    """A one-node graph taking ``value_info``, as another exporter may write one."""
    output = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", [value_info.name], ["y"])], "g", [value_info],
                                   [output])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("make, what", [
    (lambda: onnx.helper.make_tensor_sequence_value_info("x", onnx.TensorProto.FLOAT, None), "is sequence"),
    (lambda: onnx.helper.make_tensor_value_info("x", onnx.TensorProto.BFLOAT16, [1, 4]), "is bfloat16"),
    (lambda: onnx.helper.make_tensor_value_info("x", onnx.TensorProto.STRING, [1, 4]), "is string"),
])
def test_an_input_deploykit_cannot_draw_is_named_not_a_crash_or_a_wrong_dtype(tmp_path, make, what):
    """A sequence input was a KeyError (exit 3); bfloat16 and strings were reported as float32 inputs."""
    path = _identity_file(tmp_path / "other.onnx", make())
    for command in (["bench", "--onnx", path, "--iters", 1, "--warmup", 0],
                    ["check", "--onnx", path, "--against", path]):
        assert_user_error(run(*command, "--shape", "x=1x4"), f"input 'x' {what}", "float, integer and bool tensors")


def test_an_element_type_onnx_does_not_know_is_named_not_a_crash(tmp_path):
    value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    value.type.tensor_type.elem_type = 99  # the checker lets it through
    path = _identity_file(tmp_path / "odd.onnx", value)
    assert_user_error(run("bench", "--onnx", path, "--shape", "x=1x4"), "tensor of element type 99")
