"""SegNet (Badrinarayanan et al. 2017): the decoder upsamples with the encoder's pooling indices."""

from torch import nn


class SegNetBlock(nn.Module):
    def __init__(self, channels: int = 16):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decode = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        features = self.encode(x)
        pooled, indices = self.pool(features)
        return self.decode(self.unpool(pooled, indices, output_size=features.shape[-2:]))


def build(channels: int = 16) -> nn.Module:
    return SegNetBlock(channels)
