import pytest
import torch

from deploykit import zoo
from deploykit.errors import UserError
from deploykit.spec import load_model

ALL = zoo.entries()


def test_every_family_is_present():
    families = {e.family for e in ALL.values()}
    assert families == {"dysample", "resize", "upconv", "unpool", "downsample"}
    for name in ["dysample", "dysample_plus", "dysample_s", "dysample_s_plus", "interpolate", "upsample",
                 "conv_transpose", "upsample_conv", "pixel_shuffle", "pixel_unshuffle", "max_unpool", "conv", "pool"]:
        assert name in ALL


@pytest.mark.parametrize("name", list(ALL))
def test_every_example_builds_and_runs_at_its_default_shapes(name):
    entry = ALL[name]
    for example in entry.examples:
        params = entry.resolve_params(typed=example)
        shapes = entry.default_shapes(params)
        assert len(shapes) == 3 and any(s[0] > 1 for s in shapes)
        assert any(s[-1] != s[-2] for s in shapes) or entry.input_rank(params) == 3
        module = entry.build(**params).eval()
        for shape in shapes:
            assert entry.shape_problem(shape, params) is None
            with torch.no_grad():
                assert torch.isfinite(module(torch.randn(*shape))).all()


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(UserError, match="valid parameters: in_channels, scale, groups"):
        zoo.get("dysample").resolve_params({"bogus": "1"})


@pytest.mark.parametrize("key,value,hint", [
    ("scale", "5", r"int in \[2, 4\]"),
    ("scale", "two", r"int in \[2, 4\]"),
    ("groups", "0", r"int in \[1, 64\]"),
])
def test_bad_values_name_the_range(key, value, hint):
    with pytest.raises(UserError, match=hint):
        zoo.get("dysample").resolve_params({key: value})


def test_cross_parameter_constraints_are_checked():
    with pytest.raises(UserError, match="divisible by groups"):
        zoo.get("dysample").resolve_params({"in_channels": "10"})
    with pytest.raises(UserError, match="exactly one of scale_factor and size"):
        zoo.get("interpolate").resolve_params({"size": "64"})
    with pytest.raises(UserError, match="align_corners applies only"):
        zoo.get("interpolate").resolve_params({"mode": "nearest", "align_corners": "true"})


def test_choices_and_optional_values_parse():
    params = zoo.get("interpolate").resolve_params({"mode": "bicubic", "scale_factor": "none", "size": "48",
                                                    "align_corners": "TRUE"})
    assert params["mode"] == "bicubic" and params["scale_factor"] is None and params["size"] == 48
    assert params["align_corners"] is True
    with pytest.raises(UserError, match="nearest|nearest-exact"):
        zoo.get("interpolate").resolve_params({"mode": "area"})


def test_shape_problems_are_explained():
    entry = zoo.get("dysample")
    params = entry.resolve_params()
    assert "64 channels" in entry.shape_problem((1, 32, 8, 8), params)
    assert "4-D input" in entry.shape_problem((1, 64, 8), params)
    unshuffle = zoo.get("pixel_unshuffle")
    assert "divisible by 2" in unshuffle.shape_problem((1, 16, 7, 8), unshuffle.resolve_params())


def test_seed_makes_weights_deterministic():
    a = load_model("conv", seed=3).module.weight
    b = load_model("conv", seed=3).module.weight
    c = load_model("conv", seed=4).module.weight
    assert torch.equal(a, b) and not torch.equal(a, c)
