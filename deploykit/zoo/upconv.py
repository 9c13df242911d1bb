"""Learned upsampling: transposed convolution, upsample-then-conv, and pixel (un)shuffle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deploykit.zoo.params import Param, groups_problem
from deploykit.zoo.registry import ZooEntry, register


def _conv_transpose_problem(p: dict) -> str | None:
    if p["output_padding"] >= max(p["stride"], p["dilation"]):
        return "output_padding must be smaller than stride or dilation"
    return groups_problem(p)


register(ZooEntry(
    name="conv_transpose",
    family="upconv",
    summary="ConvTranspose2d; defaults are U-Net's kernel 2, stride 2 up-convolution",
    params=(
        Param("in_channels", int, 32, "input channels", low=1, high=4096),
        Param("out_channels", int, 16, "output channels", low=1, high=4096),
        Param("kernel_size", int, 2, "kernel size", low=1, high=11),
        Param("stride", int, 2, "stride (the upsampling factor)", low=1, high=8),
        Param("padding", int, 0, "implicit zero padding removed from the output", low=0, high=8),
        Param("output_padding", int, 0, "extra size added to one side of the output", low=0, high=7),
        Param("groups", int, 1, "blocked connections from input to output channels", low=1, high=4096),
        Param("dilation", int, 1, "spacing between kernel elements", low=1, high=8),
    ),
    build=lambda **p: nn.ConvTranspose2d(**p),
    channels=lambda p: p["in_channels"],
    constraints=_conv_transpose_problem,
    examples=(
        {},
        {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
        {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1, "groups": 4, "dilation": 2},
    ),
))


class UpsampleConvBN(nn.Module):
    """The artefact-free alternative to transposed conv: bilinear upsample, then 1x1 conv + BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, align_corners: bool):
        super().__init__()
        self.scale = scale
        self.align_corners = align_corners
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        # Non-trivial running statistics, so the exported (folded) BatchNorm is really checked.
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=self.align_corners)
        return self.bn(self.conv(x))


register(ZooEntry(
    name="upsample_conv",
    family="upconv",
    summary="bilinear upsample then 1x1 conv + BatchNorm",
    params=(
        Param("in_channels", int, 32, "input channels", low=1, high=4096),
        Param("out_channels", int, 16, "output channels", low=1, high=4096),
        Param("scale", int, 2, "upsampling factor", low=2, high=8),
        Param("align_corners", bool, True, "align corner pixels in the bilinear upsample"),
    ),
    build=lambda **p: UpsampleConvBN(**p),
    channels=lambda p: p["in_channels"],
    examples=({}, {"align_corners": False, "scale": 3}),
))


def _shuffle_problem(p: dict) -> str | None:
    if p["in_channels"] % p["factor"] ** 2:
        return f"in_channels ({p['in_channels']}) must be divisible by factor^2 ({p['factor'] ** 2})"
    return None


register(ZooEntry(
    name="pixel_shuffle",
    family="upconv",
    summary="PixelShuffle (depth-to-space): C*r^2 x H x W -> C x rH x rW",
    params=(
        Param("in_channels", int, 64, "input channels (divisible by factor^2)", low=1, high=4096),
        Param("factor", int, 2, "upscale factor r", low=2, high=8),
    ),
    build=lambda **p: nn.PixelShuffle(p["factor"]),
    channels=lambda p: p["in_channels"],
    constraints=_shuffle_problem,
    examples=({}, {"factor": 3, "in_channels": 27}),
))

register(ZooEntry(
    name="pixel_unshuffle",
    family="upconv",
    summary="PixelUnshuffle (space-to-depth): C x rH x rW -> C*r^2 x H x W",
    params=(
        Param("in_channels", int, 16, "input channels", low=1, high=4096),
        Param("factor", int, 2, "downscale factor r (spatial sizes must divide by it)", low=2, high=8),
    ),
    build=lambda **p: nn.PixelUnshuffle(p["factor"]),
    channels=lambda p: p["in_channels"],
    spatial_multiple=lambda p: p["factor"],
    examples=({}, {"factor": 3}),
))
