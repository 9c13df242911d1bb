"""A user's own SegNet, loaded through SPEC = tests.segnet_models:segnet (not a zoo class):
two encoder stages that pool with indices and a decoder that unpools its own features with them."""

import torch.nn.functional as F
from torch import nn


class SegNet(nn.Module):
    def __init__(self, channels: int = 8, classes: int = 3):
        super().__init__()
        self.encode1 = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.encode2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.decode2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.decode1 = nn.Conv2d(channels, classes, 3, padding=1)

    def forward(self, x):
        features1 = self.encode1(x)
        pooled1, indices1 = F.max_pool2d(features1, 2, 2, return_indices=True)
        features2 = self.encode2(pooled1)
        pooled2, indices2 = F.max_pool2d(features2, 3, 2, 1, ceil_mode=True, return_indices=True)
        up2 = F.max_unpool2d(pooled2, indices2, 3, 2, 1, output_size=features2.shape[-2:])
        up1 = F.max_unpool2d(self.decode2(up2), indices1, 2, 2, output_size=features1.shape[-2:])
        return self.decode1(up1)


def segnet(channels: int = 8, classes: int = 3) -> nn.Module:
    return SegNet(channels, classes)
