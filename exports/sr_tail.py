"""Super-resolution tail (ESPCN, Shi et al. 2016): conv to C*r^2, pixel shuffle to an RGB image."""

from torch import nn


def build(channels: int = 32, scale: int = 3, out_channels: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, out_channels * scale * scale, 3, padding=1),
        nn.PixelShuffle(scale),
    )
