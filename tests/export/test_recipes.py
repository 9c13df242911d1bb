"""Every recipe in exports/ loads, exports as it says, and its export matches PyTorch."""

from pathlib import Path

import pytest

from deploykit.check import run_check
from deploykit.compare import PRESETS
from deploykit.errors import UserError
from deploykit.export import export_onnx
from deploykit.export.recipe import load_recipe
from deploykit.export.recipe import resolve_model

RECIPES = sorted(Path(__file__).resolve().parents[2].joinpath("exports").glob("*.toml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_exports_and_matches_torch(path, tmp_path):
    recipe = load_recipe(path)
    model, _ = resolve_model(str(path))
    result = export_onnx(model, tmp_path / "m.onnx", opset=recipe.opset, target=recipe.target or "ort")
    report = run_check(model, ["ort"], None, tolerance=PRESETS["fp32"], onnx_path=result.path, threads=2)
    assert report.passed, [(r.shape, r.metrics.reason) for r in report.results if not r.metrics.passed]
    assert ["x".join(map(str, r.shape)) for r in report.results] == recipe.shapes


def test_a_recipe_names_several_inputs_their_dtypes_and_ranges(tmp_path):
    recipe = tmp_path / "guided.toml"
    recipe.write_text('spec = "tests.user_models:guided"\n[export]\n'
                      'shapes = ["image=1x3x8x8,mask=1x1x8x8", "image=2x3x9x7,mask=2x1x9x7"]\n'
                      'trace_shape = "image=2x3x10x14,mask=2x1x10x14"\n'
                      'input_dtypes = ["mask=int64"]\nval_ranges = ["image=0,1"]\n')
    model, loaded = resolve_model(str(recipe))
    assert model.inputs["mask"].dtype == "int64" and (model.inputs["image"].low, model.inputs["image"].high) == (0, 1)
    assert [str(s) for s in model.default_shapes] == ["image=1x3x8x8,mask=1x1x8x8", "image=2x3x9x7,mask=2x1x9x7"]
    result = export_onnx(model, tmp_path / "g.onnx", trace_shape=loaded.trace_shape)
    report = run_check(model, ["ort"], None, tolerance=PRESETS["fp32"], onnx_path=result.path, threads=2)
    assert report.passed and len(report.results) == 4


def test_command_line_params_override_the_recipe():
    path = next(p for p in RECIPES if p.stem == "super_resolution")
    model, _ = resolve_model(str(path), {"scale": "2"})
    assert model.params["scale"] == 2 and model.module[1].upscale_factor == 2


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
