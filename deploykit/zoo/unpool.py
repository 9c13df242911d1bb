"""SegNet-style upsampling: max-pool remembers where each maximum was, max-unpool puts it back."""

from __future__ import annotations

import torch
from torch import nn

from deploykit.zoo.params import Param, pool_padding_problem
from deploykit.zoo.registry import ZooEntry, register


class PoolUnpool(nn.Module):
    """MaxPool2d(return_indices) then MaxUnpool2d, optionally back to the input's exact size."""

    def __init__(self, channels: int, kernel_size: int, stride: int, padding: int, output_size: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size, stride, padding, return_indices=True)
        self.unpool = nn.MaxUnpool2d(kernel_size, stride, padding)
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled, indices = self.pool(x)
        size = x.shape[-2:] if self.output_size else None
        return self.unpool(pooled, indices, output_size=size)


def _without_output_size_problem(p: dict) -> str | None:
    """Without output_size, MaxUnpool2d's default size only covers every index for k == s, p == 0."""
    if not p["output_size"] and (p["kernel_size"] != p["stride"] or p["padding"]):
        return "output_size=false needs kernel_size == stride and padding 0; use output_size=true"
    return None


register(ZooEntry(
    name="max_unpool",
    family="unpool",
    summary="SegNet decoder step: MaxPool2d with indices, then MaxUnpool2d",
    params=(
        Param("channels", int, 16, "input channels", low=1, high=4096),
        Param("kernel_size", int, 2, "pooling window", low=1, high=8),
        Param("stride", int, 2, "pooling stride", low=1, high=8),
        Param("padding", int, 0, "pooling padding", low=0, high=4),
        Param("output_size", bool, True, "unpool to the input's exact size (needed for odd sizes)"),
    ),
    build=lambda **p: PoolUnpool(**p),
    channels=lambda p: p["channels"],
    constraints=lambda p: pool_padding_problem(p) or _without_output_size_problem(p),
    spatial_multiple=lambda p: 1 if p["output_size"] else p["stride"],
    examples=({}, {"kernel_size": 3, "stride": 1, "padding": 1}, {"kernel_size": 3, "stride": 2, "padding": 1}),
))
