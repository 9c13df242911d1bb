"""A small segmentation decoder built from zoo parts: the shape DySample is deployed in."""

from torch import nn

from deploykit.zoo.dysample import DySample


class SegDecoder(nn.Module):
    def __init__(self, channels: int = 64, classes: int = 19, dyscope: bool = True):
        super().__init__()
        self.up1 = DySample(channels, scale=2, groups=4, dyscope=dyscope)
        self.mix1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.up2 = DySample(channels, scale=2, groups=4, dyscope=dyscope)
        self.head = nn.Conv2d(channels, classes, 1)

    def forward(self, x):
        return self.head(self.up2(self.mix1(self.up1(x))))


def build(channels: int = 64, classes: int = 19, dyscope: bool = True) -> nn.Module:
    return SegDecoder(channels, classes, dyscope)
