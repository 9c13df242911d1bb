"""Every recipe in exports/ loads, exports as it says, and its export matches PyTorch.

Exports and checks go through the real commands (``deploykit export RECIPE.toml``), so what is
tested is the recipe wiring users get, not a copy of it."""

import json
from pathlib import Path

import onnx
import pytest

from deploykit.errors import UserError
from deploykit.export.recipe import load_recipe, resolve_model
from deploykit.model_io import shape_text
from tests.cli_helpers import run

RECIPES = sorted(Path(__file__).resolve().parents[2].joinpath("exports").glob("*.toml"))


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _export_and_check(recipe: Path, tmp_path: Path, *extra) -> tuple[Path, dict]:
    """``deploykit export RECIPE -o m.onnx``, then ``deploykit check RECIPE --onnx m.onnx`` on ort:
    (the ONNX file, the check's JSON report)."""
    onnx_path, report = tmp_path / "m.onnx", tmp_path / "check.json"
    exported = run("export", recipe, "-o", onnx_path, *extra)
    assert exported.exit_code == 0, exported.output
    checked = run("check", recipe, "--onnx", onnx_path, "--backends", "ort", "--threads", 2, "--report", report, *extra)
    data = json.loads(report.read_text())
    failures = [(r["shape"], r["output"], r["reason"]) for r in data["results"] if not r["passed"]]
    assert checked.exit_code == 0 and data["passed"], (checked.output, failures)
    return onnx_path, data


def test_there_are_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_exports_and_matches_torch(path, tmp_path):
    recipe = load_recipe(path)
    onnx_path, report = _export_and_check(path, tmp_path)
    if recipe.opset is not None:
        proto = onnx.load(str(onnx_path))
        assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [recipe.opset]
    assert [shape_text(*r["shape"].values()) for r in report["results"]] == recipe.shapes


def test_a_recipe_names_several_inputs_their_dtypes_and_ranges(tmp_path):
    recipe = tmp_path / "guided.toml"
    recipe.write_text('spec = "tests.user_models:guided"\n[export]\n'
                      'shapes = ["image=1x3x8x8,mask=1x1x8x8", "image=2x3x9x7,mask=2x1x9x7"]\n'
                      'trace_shape = "image=2x3x10x14,mask=2x1x10x14"\n'
                      'input_dtypes = ["mask=int64"]\nval_ranges = ["image=0,1"]\n')
    model, loaded = resolve_model(str(recipe))
    assert model.inputs["mask"].dtype == "int64" and (model.inputs["image"].low, model.inputs["image"].high) == (0, 1)
    assert [str(s) for s in model.default_shapes] == ["image=1x3x8x8,mask=1x1x8x8", "image=2x3x9x7,mask=2x1x9x7"]
    onnx_path, report = _export_and_check(recipe, tmp_path)
    assert _metadata(onnx_path)["deploykit.traced_shape"] == "image=2x3x10x14,mask=2x1x10x14"
    dtypes = {i.name: i.type.tensor_type.elem_type for i in onnx.load(str(onnx_path)).graph.input}
    assert dtypes == {"image": onnx.TensorProto.FLOAT, "mask": onnx.TensorProto.INT64}
    assert len(report["results"]) == 4


def test_command_line_params_override_the_recipe(tmp_path):
    path = next(p for p in RECIPES if p.stem == "super_resolution")
    model, _ = resolve_model(str(path), {"scale": "2"})
    assert model.params["scale"] == 2 and model.module[1].upscale_factor == 2
    exported = run("export", path, "-p", "scale=2", "-o", tmp_path / "sr.onnx")  # the recipe says scale = 3
    assert exported.exit_code == 0 and "-> output[batchx3x2*heightx2*width]" in exported.output, exported.output


def test_malformed_recipes_are_user_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("spec = [")
    with pytest.raises(UserError, match="not valid TOML"):
        load_recipe(bad)
    bad.write_text('spec = "pool"\n[export]\nopsett = 17\n')
    with pytest.raises(UserError, match="unknown keys: export.opsett"):
        load_recipe(bad)
    bad.write_text('description = "no spec"\n')
    with pytest.raises(UserError, match="no 'spec'"):
        load_recipe(bad)


def test_a_file_exported_from_a_recipe_names_the_recipe_in_the_check_it_asks_for(tmp_path, monkeypatch):
    """The recipe's module imports from the recipe's folder only: the command check prints for
    the file (its code is not imported on the file's word) names the recipe, and runs anywhere."""
    import shlex

    recipe = next(p for p in RECIPES if p.stem == "super_resolution")
    onnx_path = tmp_path / "sr.onnx"
    assert run("export", recipe, "-o", onnx_path, "--shape", "1x32x8x8").exit_code == 0
    assert _metadata(onnx_path)["deploykit.recipe"] == str(recipe)
    monkeypatch.chdir(tmp_path)  # away from exports/, where sr_tail is not importable
    refused = run("check", "--onnx", onnx_path, "--shape", "2x32x9x7")
    assert refused.exit_code == 2, refused.output
    command = shlex.split(refused.stderr.split("run: ", 1)[1])
    assert command[2] == str(recipe)
    checked = run(*command[1:], "--shape", "2x32x9x7", "--backends", "ort")
    assert checked.exit_code == 0, checked.output
