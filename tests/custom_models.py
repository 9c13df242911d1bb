"""A user's own model, loaded through SPEC = tests.custom_models:tiny_decoder."""

from torch import nn


def tiny_decoder(channels=8, scale=2):
    return nn.Sequential(nn.Conv2d(channels, channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale))


def not_a_module():
    return 42
