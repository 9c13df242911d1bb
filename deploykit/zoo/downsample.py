"""Downsamplers that decoders mirror: strided and dilated convolution, max and average pooling."""

from __future__ import annotations

from torch import nn

from deploykit.zoo.params import Param, groups_problem, pool_padding_problem
from deploykit.zoo.registry import ZooEntry, register


register(ZooEntry(
    name="conv",
    family="downsample",
    summary="Conv2d: strided (downsampling) or dilated (atrous) convolution",
    params=(
        Param("in_channels", int, 16, "input channels", low=1, high=4096),
        Param("out_channels", int, 16, "output channels", low=1, high=4096),
        Param("kernel_size", int, 3, "kernel size", low=1, high=11),
        Param("stride", int, 2, "stride", low=1, high=8),
        Param("padding", int, 1, "zero padding", low=0, high=16),
        Param("dilation", int, 1, "spacing between kernel elements", low=1, high=8),
        Param("groups", int, 1, "blocked connections", low=1, high=4096),
        Param("bias", bool, True, "learnable bias"),
    ),
    build=lambda **p: nn.Conv2d(**p),
    channels=lambda p: p["in_channels"],
    constraints=groups_problem,
    examples=({}, {"stride": 1, "dilation": 2, "padding": 2}, {"stride": 1, "dilation": 4, "padding": 4, "groups": 4}),
))


def _build_pool(kind: str, kernel_size: int, stride: int, padding: int, ceil_mode: bool, channels: int) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(kernel_size, stride, padding, ceil_mode=ceil_mode)
    return nn.AvgPool2d(kernel_size, stride, padding, ceil_mode=ceil_mode)


register(ZooEntry(
    name="pool",
    family="downsample",
    summary="MaxPool2d or AvgPool2d as a downsampler",
    params=(
        Param("channels", int, 16, "input channels", low=1, high=4096),
        Param("kind", str, "max", "pooling kind", choices=("max", "avg")),
        Param("kernel_size", int, 2, "pooling window", low=1, high=8),
        Param("stride", int, 2, "stride", low=1, high=8),
        Param("padding", int, 0, "implicit padding", low=0, high=4),
        Param("ceil_mode", bool, False, "round the output size up"),
    ),
    build=lambda **p: _build_pool(**p),
    channels=lambda p: p["channels"],
    constraints=pool_padding_problem,
    examples=({}, {"kind": "avg"}, {"kind": "max", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
))
