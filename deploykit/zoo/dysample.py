"""DySample (Liu et al., ICCV 2023): content-aware upsampling by learned point sampling.

The math is the published code's, operation for operation (``tests/zoo/test_dysample.py``
checks bit-equality against a transcription of it); the sample step lives in
``deploykit.ops`` so the fused kernel can replace it (``impl="fused"``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from deploykit.ops.fused import fused_sample
from deploykit.ops.reference import reference_sample
from deploykit.zoo.params import Param
from deploykit.zoo.registry import ZooEntry, register


# "reference": the published math in PyTorch ops; "fused": torch.ops.deploykit.dysample_sample,
# one C++/CUDA kernel. Either way export converts the layer like any user's DySample
# (deploykit.export.dysample), since it keeps the published sample(x, offset) interface.
IMPLS = ("reference", "fused")


class DySample(nn.Module):
    """DySample upsampler; ``style`` lp (linear then pixel-shuffle) or pl, ``dyscope`` for the + variants."""

    def __init__(self, in_channels: int = 64, scale: int = 2, style: str = "lp", groups: int = 4,
                 dyscope: bool = False, impl: str = "reference"):
        super().__init__()
        problem = dysample_problem(in_channels, scale, style, groups)
        if problem:
            raise ValueError(problem)
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        self.impl = impl
        self.scale = scale
        self.style = style
        self.groups = groups
        if style == "pl":
            conv_in, conv_out = in_channels // scale**2, 2 * groups
        else:
            conv_in, conv_out = in_channels, 2 * groups * scale**2
        self.offset = nn.Conv2d(conv_in, conv_out, 1)
        nn.init.normal_(self.offset.weight, mean=0.0, std=0.001)
        nn.init.constant_(self.offset.bias, 0.0)
        if dyscope:
            self.scope = nn.Conv2d(conv_in, conv_out, 1, bias=False)
            nn.init.constant_(self.scope.weight, 0.0)
        self.register_buffer("init_pos", self._init_pos())

    def _init_pos(self) -> torch.Tensor:
        """Initial sub-pixel positions of the s*s outputs around each input pixel, repeated per group."""
        h = torch.arange((-self.scale + 1) / 2, (self.scale - 1) / 2 + 1) / self.scale
        grid = torch.stack(torch.meshgrid([h, h], indexing="ij")).transpose(1, 2)
        return grid.repeat(1, self.groups, 1).reshape(1, -1, 1, 1)

    def sample(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Bilinear, border-clamped sampling of x at (pixel centre + offset), pixel-shuffled by s."""
        if self.impl == "fused":
            return fused_sample(x, offset, self.scale, self.groups)
        return reference_sample(x, offset, self.scale, self.groups)

    def forward_lp(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "scope"):
            offset = self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos
        else:
            offset = self.offset(x) * 0.25 + self.init_pos
        return self.sample(x, offset)

    def forward_pl(self, x: torch.Tensor) -> torch.Tensor:
        x_ = F.pixel_shuffle(x, self.scale)
        if hasattr(self, "scope"):
            offset = F.pixel_unshuffle(self.offset(x_) * self.scope(x_).sigmoid(), self.scale) * 0.5 + self.init_pos
        else:
            offset = F.pixel_unshuffle(self.offset(x_), self.scale) * 0.25 + self.init_pos
        return self.sample(x, offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pl(x) if self.style == "pl" else self.forward_lp(x)


@contextlib.contextmanager
def dysample_impl(module: nn.Module, impl: str) -> Iterator[None]:
    """Temporarily switch every deploykit DySample inside ``module`` to ``impl`` (the reference
    runs the published math even where the model uses the fused kernel)."""
    layers = [m for m in module.modules() if isinstance(m, DySample)]
    previous = [m.impl for m in layers]
    for layer in layers:
        layer.impl = impl
    try:
        yield
    finally:
        for layer, old in zip(layers, previous):
            layer.impl = old


def dysample_problem(in_channels: int, scale: int, style: str, groups: int) -> str | None:
    """The published code's assertions, as a message instead of an AssertionError."""
    if style == "pl" and in_channels % scale**2:
        return f"style pl needs in_channels divisible by scale^2={scale**2}, got {in_channels}"
    if in_channels % groups:
        return f"in_channels ({in_channels}) must be divisible by groups ({groups})"
    return None


_PARAMS = (
    Param("in_channels", int, 64, "input channels", low=1, high=4096),
    Param("scale", int, 2, "upsampling factor", low=2, high=4),
    Param("groups", int, 4, "offset groups (channels in a group share offsets)", low=1, high=64),
    Param("impl", str, "reference", "sample step: reference (PyTorch ops) or fused (C++/CUDA kernel)",
          choices=IMPLS),
)


def _register(name: str, style: str, dyscope: bool, summary: str) -> None:
    register(ZooEntry(
        name=name,
        family="dysample",
        summary=summary,
        params=_PARAMS,
        build=lambda **p: DySample(style=style, dyscope=dyscope, **p),
        channels=lambda p: p["in_channels"],
        constraints=lambda p: dysample_problem(p["in_channels"], p["scale"], style, p["groups"]),
        examples=({}, {"scale": 3, "in_channels": 36, "groups": 2}, {"scale": 4, "in_channels": 32, "groups": 2}),
    ))


# The paper's four variants: "-S" shuffles first (style pl), "+" learns the offset scope.
_register("dysample", "lp", False, "DySample (style lp, static scope 0.25)")
_register("dysample_plus", "lp", True, "DySample+ (style lp, dynamic scope 0.5*sigmoid(conv))")
_register("dysample_s", "pl", False, "DySample-S (style pl: pixel-shuffle first, static scope)")
_register("dysample_s_plus", "pl", True, "DySample-S+ (style pl, dynamic scope)")
