"""The fused kernel (torch.ops.deploykit.dysample_sample) against the reference sample(), and
how it is built."""

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit.ops.fused import fused_sample, load
from deploykit.ops.reference import reference_sample
from deploykit.spec import load_model


@st.composite
def problems(draw):
    scale = draw(st.integers(2, 4))
    groups = draw(st.integers(1, 4))
    batch = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 4))
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    spread = draw(st.sampled_from([0.3, 3.0, 40.0]))  # sub-pixel, a few pixels, far outside the image
    integer = draw(st.booleans())  # integer positions put samples exactly on pixels
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=gen)
    offset = torch.randn(batch, 2 * groups * scale * scale, height, width, generator=gen) * spread
    if integer:
        offset = offset.round()
    return x, offset, scale, groups


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fused_matches_reference_fp32(problem):
    x, offset, scale, groups = problem
    fused = fused_sample(x, offset, scale, groups)
    reference = reference_sample(x, offset, scale, groups)
    assert fused.shape == reference.shape and fused.dtype == torch.float32
    assert (fused - reference).abs().max().item() <= 1e-5


def test_far_outside_offsets_clamp_to_the_border():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    offset = torch.zeros(1, 8, 3, 4)
    offset[:, :4] = 1000.0  # every sample far to the east
    offset[:, 4:] = -1000.0  # and far to the north
    out = fused_sample(x, offset, 2, 1)
    assert torch.equal(out, torch.full((1, 1, 6, 8), 3.0))  # the top-right pixel


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("pixel", [(0, 0), (0, 3), (2, 0), (2, 3), (1, 1)])
def test_nan_and_inf_reach_the_output_exactly_where_the_reference_puts_them(value, pixel):
    # F.grid_sample's rule: an in-plane tap counts even with weight 0 (NaN * 0 and Inf * 0 are
    # NaN), an out-of-plane tap at the clamped border adds 0. Offsets far outside clamp every
    # sample to a corner; integer and sub-pixel offsets put zero and non-zero weights on pixels.
    x = torch.arange(12.0).view(1, 1, 3, 4)
    x[0, 0, pixel[0], pixel[1]] = value
    gen = torch.Generator().manual_seed(0)
    offsets = [torch.full((1, 8, 3, 4), 0.0), torch.randn(1, 8, 3, 4, generator=gen).round(),
               torch.randn(1, 8, 3, 4, generator=gen)]
    for east in (-1000.0, 1000.0):
        for south in (-1000.0, 1000.0):
            corner = torch.empty(1, 8, 3, 4)
            corner[:, :4], corner[:, 4:] = east, south
            offsets.append(corner)
    for offset in offsets:
        fused, reference = fused_sample(x, offset, 2, 1), reference_sample(x, offset, 2, 1)
        assert torch.equal(fused.isnan(), reference.isnan()) and torch.equal(fused.isinf(), reference.isinf())
        torch.testing.assert_close(fused, reference, equal_nan=True, rtol=0.0, atol=1e-5)


def test_fp16_in_and_out_with_fp32_arithmetic():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 11, 7, generator=gen).half()
    offset = (torch.randn(2, 2 * 2 * 9, 11, 7, generator=gen) * 2).half()
    out = fused_sample(x, offset, 3, 2)
    assert out.dtype == torch.float16
    reference = reference_sample(x.float(), offset.float(), 3, 2)
    assert (out.float() - reference).abs().max().item() <= 2e-3


@pytest.mark.parametrize("name", ["dysample", "dysample_plus", "dysample_s", "dysample_s_plus"])
def test_zoo_impl_switch_gives_the_same_output(name):
    fused = load_model(name, {"impl": "fused"}).module
    reference = load_model(name).module
    with torch.no_grad():
        for module in (fused, reference):
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
        x = torch.randn(2, 64, 13, 10)
        assert (fused(x) - reference(x)).abs().max().item() <= 1e-5


def _args(**over):
    args = {"x": torch.randn(1, 8, 5, 6), "offset": torch.randn(1, 2 * 2 * 4, 5, 6), "scale": 2, "groups": 2}
    args.update(over)
    return args


@pytest.mark.parametrize("args,message", [
    (_args(groups=3, offset=torch.randn(1, 24, 5, 6)), "divisible by groups"),
    (_args(offset=torch.randn(1, 12, 5, 6)), "2 * groups * scale^2 channels"),
    (_args(offset=torch.randn(2, 16, 5, 6)), "same batch size"),
    (_args(offset=torch.randn(1, 16, 5, 7)), "same height and width"),
    (_args(x=torch.randn(1, 8, 5, 6, dtype=torch.float64), offset=torch.randn(1, 16, 5, 6, dtype=torch.float64)),
     "float32 or float16"),
    (_args(offset=torch.randn(1, 16, 5, 6).half()), "dtype of x"),
    (_args(x=torch.randn(8, 5, 6)), "x must be 4-D"),
    (_args(scale=0), "scale must be at least 1"),
])
def test_bad_arguments_raise_clear_errors(args, message):
    load()
    with pytest.raises(RuntimeError, match=message.replace("^", r"\^").replace("*", r"\*")):
        torch.ops.deploykit.dysample_sample(args["x"], args["offset"], args["scale"], args["groups"])


def test_non_contiguous_inputs_are_handled():
    x = torch.randn(1, 6, 8, 5).transpose(2, 3)  # (1, 6, 5, 8), non-contiguous
    offset = torch.randn(1, 2 * 3 * 4, 5, 8) * 2
    assert (fused_sample(x, offset, 2, 3) - reference_sample(x, offset, 2, 3)).abs().max().item() <= 1e-5


def test_the_jit_build_takes_its_flags_from_build_flags_json(tmp_path, monkeypatch):
    from torch.utils import cpp_extension

    from deploykit.errors import UserError
    from deploykit.ops import fused

    flags = json.loads(fused.BUILD_FLAGS.read_text())
    flags["cxx"].append("-DDEPLOYKIT_MARKER")
    flags_file = tmp_path / "build_flags.json"
    flags_file.write_text(json.dumps(flags))
    given = {}

    def fake_load(**kwargs):  # records what the real build would get, and builds nothing
        given.update(kwargs)
        raise RuntimeError("not built in this test")

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    monkeypatch.setattr(fused, "BUILD_FLAGS", flags_file)
    monkeypatch.setattr(fused, "_loaded", False)
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="not built in this test"):
        fused.load()
    assert "-DDEPLOYKIT_MARKER" in given["extra_cflags"]
    assert {key: given[key] for key in fused.extension_flags()} == fused.extension_flags()


def test_a_change_of_build_flags_is_a_new_build(tmp_path, monkeypatch):
    from deploykit.ops import fused

    plugin_dir = tmp_path / "dysample"
    shutil.copytree(fused.PLUGIN_DIR, plugin_dir)
    monkeypatch.setattr(fused, "PLUGIN_DIR", plugin_dir)
    before = fused.build_dir_name(False)
    flags_file = plugin_dir / "build_flags.json"
    flags_file.write_text(flags_file.read_text().replace('"-O3"', '"-O2"'))
    assert fused.build_dir_name(False) != before
