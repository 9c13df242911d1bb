import re

import pytest
import torch

from deploykit.spec import load_model
from deploykit.zoo.dysample import DySample
from tests.zoo.published_dysample import published_forward, published_init_pos

VARIANTS = ["dysample", "dysample_plus", "dysample_s", "dysample_s_plus"]


def _randomize(module):
    """Published init makes offsets ~1e-3; larger weights exercise the sampling math properly."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("scale,groups,channels", [(2, 4, 64), (3, 2, 36), (4, 1, 16), (2, 8, 32)])
@pytest.mark.parametrize("shape_hw", [(5, 7), (16, 16)])
def test_bit_identical_to_published_math(name, scale, groups, channels, shape_hw):
    model = load_model(name, {"scale": str(scale), "groups": str(groups), "in_channels": str(channels)})
    module = _randomize(model.module)
    x = torch.randn(2, channels, *shape_hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = module(x)
        theirs = published_forward(module, x)
    assert ours.shape == (2, channels, scale * shape_hw[0], scale * shape_hw[1])
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_initialisation_follows_the_paper(scale):
    torch.manual_seed(0)
    module = DySample(64, scale=scale, style="lp", groups=4, dyscope=True)
    assert torch.equal(module.init_pos, published_init_pos(scale, 4))
    assert torch.count_nonzero(module.offset.bias) == 0
    assert module.offset.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert module.scope.bias is None and torch.count_nonzero(module.scope.weight) == 0


def test_init_pos_for_scale_2_is_the_quarter_pixel_grid():
    pos = DySample(4, scale=2, groups=1).init_pos.flatten().tolist()
    assert pos == [-0.25, 0.25, -0.25, 0.25, -0.25, -0.25, 0.25, 0.25]


def test_pl_style_shuffles_before_the_offset_conv():
    module = DySample(64, scale=2, style="pl", groups=4)
    assert module.offset.in_channels == 16 and module.offset.out_channels == 8


@pytest.mark.parametrize("kwargs,message", [
    ({"in_channels": 10, "style": "pl", "scale": 2}, "divisible by scale^2"),
    ({"in_channels": 10, "groups": 4}, "divisible by groups"),
])
def test_invalid_configurations_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DySample(**kwargs)
