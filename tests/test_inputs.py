"""Several inputs named after forward's parameters, integer dtypes, value ranges and real data
from an .npz; every bad value of these options is one line and exit 2."""

import json

import numpy as np
import onnx
import pytest

from tests.cli_helpers import assert_user_error, run

GUIDED = "tests.user_models:guided"
MASK = ("--input-dtype", "mask=int64")
CASES = ("--shape", "image=1x3x8x8,mask=1x1x8x8", "--shape", "image=2x3x10x14,mask=2x1x10x14",
         "--shape", "image=3x3x13x6,mask=3x1x13x6")


@pytest.fixture(scope="module")
def guided_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("guided") / "g.onnx"
    result = run("export", GUIDED, *MASK, "--shape", "image=2x3x10x14,mask=2x1x10x14", "-o", path)
    assert result.exit_code == 0, result.output
    return path


def test_two_inputs_export_with_their_names_dtypes_and_dict_outputs(guided_onnx):
    graph = onnx.load(str(guided_onnx)).graph
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.input] == [
        ("image", onnx.TensorProto.FLOAT), ("mask", onnx.TensorProto.INT64)]
    assert [o.name for o in graph.output] == ["up", "count"]


def test_two_inputs_check_at_three_cases_and_bench(guided_onnx, tmp_path):
    report = tmp_path / "check.json"
    checked = run("check", GUIDED, *MASK, "--onnx", guided_onnx, *CASES, "--report", report)
    assert checked.exit_code == 0, checked.output
    rows = json.loads(report.read_text())["results"]
    assert {json.dumps(r["shape"], sort_keys=True) for r in rows} == {
        json.dumps({"image": [b, 3, h, w], "mask": [b, 1, h, w]}, sort_keys=True)
        for b, h, w in [(1, 8, 8), (2, 10, 14), (3, 13, 6)]}
    assert {r["output"] for r in rows} == {"up", "count"} and all(r["passed"] for r in rows)
    benched = run("bench", GUIDED, *MASK, "--onnx", guided_onnx, "--shape", "image=1x3x8x8,mask=1x1x8x8",
                  "--iters", 2, "--warmup", 1)
    assert benched.exit_code == 0, benched.output


def test_an_npz_is_one_more_case_of_real_data(guided_onnx, tmp_path):
    data, report = tmp_path / "data.npz", tmp_path / "check.json"
    rng = np.random.default_rng(0)
    np.savez(data, image=rng.random((1, 3, 9, 7), dtype=np.float32), mask=np.ones((1, 1, 9, 7), np.int64))
    checked = run("check", GUIDED, *MASK, "--onnx", guided_onnx, "--shape", "image=1x3x8x8,mask=1x1x8x8",
                  "--inputs", data, "--report", report)
    assert checked.exit_code == 0, checked.output
    assert "(data.npz)" in checked.stdout
    shapes = [r["shape"]["image"] for r in json.loads(report.read_text())["results"]]
    assert [1, 3, 9, 7] in shapes and [1, 3, 8, 8] in shapes


def test_a_log_needs_a_value_range(tmp_path):
    failed = run("check", "tests.user_models:log_intensity", "--shape", "1x3x8x8")
    assert failed.exit_code == 1 and "NaN" in failed.stdout
    passed = run("check", "tests.user_models:log_intensity", "--shape", "1x3x8x8", "--val-range", "0.1,2")
    assert passed.exit_code == 0, passed.output


def test_one_input_keeps_its_plain_shape_and_its_onnx_name(tmp_path):
    path = tmp_path / "p.onnx"
    assert run("export", "pixel_shuffle", "-o", path, "--no-verify").exit_code == 0
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["input"]
    assert run("check", "pixel_shuffle", "--onnx", path, "--shape", "input=1x64x8x8").exit_code == 0


@pytest.mark.parametrize("args, fragments", [
    (("--shape", "1x3x8x8"), ("gives one shape", "image=NxCxHxW,mask=NxCxHxW")),
    (("--shape", "image=1x3x8x8"), ("no shape for input 'mask'",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8,depth=1x1x8x8"), ("unknown input 'depth'",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8", "--input-dtype", "mask=complex64"), ("unknown dtype",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8", "--input-dtype", "masks=int64"), ("unknown input 'masks'",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8", "--val-range", "image=1,0"), ("LOW <= HIGH",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8", "--val-range", "image=a,b"), ("is not LOW,HIGH",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8", "--val-range", "image=0,inf"), ("finite",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8", "--val-range", "image=0,1e39"), ("does not fit float32",)),
    (("--shape", "image=1x3x8x8,mask=1x1x8x8", "--input-dtype", "image=float16", "--val-range", "image=0,70000"),
     ("does not fit float16",)),
])
def test_bad_input_options_are_one_line_and_exit_2(guided_onnx, args, fragments):
    assert_user_error(run("check", GUIDED, "--onnx", guided_onnx, *args), *fragments)


def test_a_wrong_dtype_is_named_with_its_fix(guided_onnx):
    assert_user_error(run("check", GUIDED, "--onnx", guided_onnx, "--shape", "image=1x3x8x8,mask=1x1x8x8"),
                      "input 'mask' is int64, given float32", "--input-dtype mask=int64")


@pytest.mark.parametrize("arrays, fragments", [
    ({"image": np.zeros((1, 3, 8, 8), np.float32)}, ("the model's inputs are image, mask",)),
    ({"image": np.zeros((1, 3, 8, 8), np.float32), "mask": np.zeros((1, 1, 8, 8), np.float32)},
     ("array 'mask' is float32, the input is int64",)),
    ({"image": np.zeros((8, 8), np.float32), "mask": np.zeros((1, 1, 8, 8), np.int64)},
     ("cannot take input 8x8",)),
])
def test_bad_npz_files_are_one_line_and_exit_2(guided_onnx, tmp_path, arrays, fragments):
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    assert_user_error(run("check", GUIDED, *MASK, "--onnx", guided_onnx, "--inputs", data), *fragments)


def test_an_unreadable_npz_is_one_line_and_exit_2(guided_onnx, tmp_path):
    data = tmp_path / "bad.npz"
    data.write_bytes(b"not a zip")
    assert_user_error(run("check", GUIDED, *MASK, "--onnx", guided_onnx, "--inputs", data), "not a readable .npz")


def test_a_forward_taking_star_args_is_fed_one_input(tmp_path):
    path = tmp_path / "v.onnx"
    exported = run("export", "tests.user_models:var_positional", "--shape", "2x3x9x7", "-o", path)
    assert exported.exit_code == 0, exported.output
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["input"]
    assert run("check", "tests.user_models:var_positional", "--onnx", path, "--shape", "1x3x8x8").exit_code == 0


def test_a_broadcast_input_keeps_its_ones_static_and_is_verified(tmp_path):
    path = tmp_path / "g.onnx"
    exported = run("export", "tests.user_models:gain", "--shape", "x=2x3x6x7,gain=1x3x1x1", "-o", path)
    assert exported.exit_code == 0, exported.output
    assert "x=3x3x7x8,gain=1x3x1x1" in exported.stdout
    gain = next(i for i in onnx.load(str(path)).graph.input if i.name == "gain")
    assert [d.dim_value for d in gain.type.tensor_type.shape.dim] == [1, 3, 1, 1]


def test_output_keys_named_like_graph_values_or_inputs(tmp_path):
    path = tmp_path / "k.onnx"
    exported = run("export", "tests.user_models:keyed_outputs", "--shape", "2x3x6x7", "-o", path)
    assert exported.exit_code == 0, exported.output
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["relu", "add"]
    assert_user_error(run("export", "tests.user_models:keyed_outputs", "-p", "first=input", "--shape", "2x3x6x7",
                          "-o", tmp_path / "i.onnx"), "also an input's name")


@pytest.mark.parametrize("dtype, value_range", [("uint8", "0,300"), ("int64", "0.5,9.5"), ("bool", "0,1")])
def test_a_range_the_dtype_cannot_hold_is_refused(guided_onnx, dtype, value_range):
    assert_user_error(run("check", GUIDED, "--onnx", guided_onnx, "--shape", "image=1x3x8x8,mask=1x1x8x8",
                          "--input-dtype", f"mask={dtype}", "--val-range", f"mask={value_range}"), "--val-range")


def test_a_one_input_npz_may_use_any_key(tmp_path):
    data = tmp_path / "one.npz"
    np.savez(data, x=np.random.default_rng(0).random((1, 64, 8, 8), dtype=np.float32))
    checked = run("check", "pixel_shuffle", "--shape", "1x64x8x8", "--inputs", data)
    assert checked.exit_code == 0 and "(one.npz)" in checked.stdout, checked.output


def test_a_nan_reference_at_export_is_an_input_problem(tmp_path):
    result = run("export", "tests.user_models:log_intensity", "--shape", "2x3x6x7", "-o", tmp_path / "l.onnx")
    assert_user_error(result, "has NaN/Inf", "--val-range")
    assert run("export", "tests.user_models:log_intensity", "--shape", "2x3x6x7", "--val-range", "0.1,2",
               "-o", tmp_path / "l.onnx").exit_code == 0


def test_inputs_of_rank_one_and_two_are_declared_and_checked(tmp_path):
    import numpy as np

    out = tmp_path / "cc.onnx"
    common = ("--input-dtype", "class_id=int64", "--val-range", "class_id=0,9")
    exported = run("export", "tests.user_models:class_conditioned", "--shape", "image=2x3x10x14,class_id=2",
                   *common, "-o", out)
    assert exported.exit_code == 0, exported.output
    assert "class_id[image_batch]" in exported.stdout
    data = tmp_path / "data.npz"
    np.savez(data, image=np.zeros((3, 3, 7, 9), np.float32), class_id=np.array([1, 5, 9], np.int64))
    checked = run("check", "tests.user_models:class_conditioned", "--onnx", out, *common,
                  "--shape", "image=1x3x8x8,class_id=1", "--inputs", data)
    assert checked.exit_code == 0, checked.output
    vectors = run("check", "tests.user_models:mlp", "--shape", "4x16", "--shape", "1x16")
    assert vectors.exit_code == 0, vectors.output
