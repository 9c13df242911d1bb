"""Users' models whose DySample samples inline in ``forward`` (no ``sample`` method), written
the way super-resolution libraries write them: offsets and sampling in one forward, an end
convolution, ``torch.tensor([W, H])`` or stacked normalisers, ``.type(x.dtype).to(device)``;
plus shared upsamplers, a layer in a loop, inline lookalikes and ``torch.chunk``.

SPEC = tests.inline_models:NAME.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _init_pos(scale, groups):
    h = torch.arange((-scale + 1) / 2, (scale - 1) / 2 + 1) / scale
    return torch.stack(torch.meshgrid([h, h], indexing="ij")).transpose(1, 2).repeat(1, groups, 1).reshape(1, -1, 1, 1)


class InlineDySample(nn.Module):
    """A library's DySample: dynamic scope, sampling inline in forward, then an end convolution
    (the layout of the copy behind RealPLKSR / MoSR / MoESR)."""

    def __init__(self, in_channels, out_ch, scale=2, groups=4, end_convolution=True, end_kernel=1,
                 normaliser="tensor", padding_mode="border", align_corners=False):
        super().__init__()
        self.scale = scale
        self.groups = groups
        self.normaliser = normaliser
        self.padding_mode = padding_mode
        self.align_corners = align_corners
        out_channels = 2 * groups * scale**2
        self.offset = nn.Conv2d(in_channels, out_channels, 1)
        self.scope = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        nn.init.normal_(self.offset.weight, std=0.1)
        nn.init.normal_(self.scope.weight, std=0.1)
        self.end_conv = nn.Conv2d(in_channels, out_ch, end_kernel, padding=end_kernel // 2) if end_convolution else None
        self.register_buffer("init_pos", _init_pos(scale, groups))

    def forward(self, x):
        offset = self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos
        B, _, H, W = offset.shape
        offset = offset.view(B, 2, -1, H, W)
        coords_h = torch.arange(H) + 0.5
        coords_w = torch.arange(W) + 0.5
        coords = (torch.stack(torch.meshgrid([coords_w, coords_h], indexing="ij")).transpose(1, 2)
                  .unsqueeze(1).unsqueeze(0).type(x.dtype).to(x.device, non_blocking=True))
        if self.normaliser == "tensor":
            normalizer = torch.tensor([W, H], dtype=x.dtype, device=x.device).view(1, 2, 1, 1, 1)
        else:  # stacked scalars, as export-minded copies write it
            normalizer = torch.stack([x.new_tensor(W), x.new_tensor(H)]).view(1, 2, 1, 1, 1)
        coords = 2 * (coords + offset) / normalizer - 1
        coords = (F.pixel_shuffle(coords.view(B, -1, H, W), self.scale)
                  .view(B, 2, -1, self.scale * H, self.scale * W).permute(0, 2, 3, 4, 1).contiguous().flatten(0, 1))
        output = F.grid_sample(x.reshape(B * self.groups, -1, H, W), coords, mode="bilinear",
                               align_corners=self.align_corners, padding_mode=self.padding_mode
                               ).view(B, -1, self.scale * H, self.scale * W)
        if self.end_conv is not None:
            output = self.end_conv(output)
        return output


class TinySR(nn.Module):
    """A RealPLKSR-like super-resolution net: a conv body with a residual, an inline DySample tail."""

    def __init__(self, dim=16, scale=2, groups=4, **dysample):
        super().__init__()
        self.feats = nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))
        self.to_img = InlineDySample(dim, 3, scale=scale, groups=groups, **dysample)

    def forward(self, x):
        return self.to_img(self.feats(x) + x.repeat(1, self.feats[0].out_channels // 3 + 1, 1, 1)[:, :16])


def tiny_sr(scale=2, groups=4, normaliser="tensor"):
    return TinySR(scale=scale, groups=groups, normaliser=normaliser)


def tiny_sr_zeros():
    """Looks like DySample, pads with zeros: not DySample's step."""
    return TinySR(padding_mode="zeros")


def tiny_sr_corners():
    return TinySR(align_corners=True)


class SharedUpsampler(nn.Module):
    """One DySample layer called twice: chained (x4 from a x2 layer), or on one input by two heads
    (whose identical calls the exporter merges); the pasted class with its sample(), or inline."""

    def __init__(self, inline=False, heads=False):
        super().__init__()
        from tests.user_models import PastedDySample

        self.heads = heads
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.up = InlineDySample(16, 16, end_convolution=False) if inline else PastedDySample(16, groups=4)
        self.a = nn.Conv2d(16, 2, 1) if heads else None
        self.b = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        f = self.stem(x)
        if self.heads:
            return {"a": self.a(self.up(f)), "b": self.b(self.up(f))}
        return self.b(self.up(self.up(f)))


def shared_up(inline=False):
    return SharedUpsampler(inline)


def twin_heads(inline=False):
    return SharedUpsampler(inline, heads=True)


class LoopedUpsampler(nn.Module):
    """An inline layer applied in a Python loop, and two layers reading one input."""

    def __init__(self, steps=2):
        super().__init__()
        self.steps = steps
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.up = InlineDySample(8, 8, groups=2, end_convolution=False)
        self.side = InlineDySample(8, 8, groups=2, end_convolution=False)

    def forward(self, x):
        f = self.stem(x)
        side = self.side(f)
        y = f
        for _ in range(self.steps):
            y = self.up(y)
        return {"up": y, "side": side}


def looped(steps=2):
    return LoopedUpsampler(steps)


class ChunkGate(nn.Module):
    """torch.chunk as YOLOv8's C2f and GLU use it: the exporter writes Split(num_outputs)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        a, b = self.conv(x).chunk(2, dim=1)
        return a * b.sigmoid()


def chunk_gate():
    return ChunkGate()


def _dysample_grid(offset, scale, dtype, clamp=None):
    """DySample's grid from an offset of (B, 2*G*s*s, H, W), the published way (clamped if asked)."""
    B, _, H, W = offset.shape
    offset = offset.view(B, 2, -1, H, W)
    if clamp is not None:
        offset = offset.clamp(-clamp, clamp)
    coords_h, coords_w = torch.arange(H) + 0.5, torch.arange(W) + 0.5
    coords = torch.stack(torch.meshgrid([coords_w, coords_h], indexing="ij")).transpose(1, 2).unsqueeze(1).unsqueeze(0)
    normalizer = torch.tensor([W, H], dtype=dtype).view(1, 2, 1, 1, 1)
    coords = 2 * (coords.type(dtype) + offset) / normalizer - 1
    return (F.pixel_shuffle(coords.view(B, -1, H, W), scale).view(B, 2, -1, scale * H, scale * W)
            .permute(0, 2, 3, 4, 1).contiguous().flatten(0, 1))


class GroupsOneRaw(nn.Module):
    """groups=1 written without reshapes: grid_sample's result is already (B, C, 2H, 2W)."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        return F.grid_sample(x, _dysample_grid(self.offset(x) * 0.25, 2, x.dtype), mode="bilinear",
                             padding_mode="border", align_corners=False)


def groups_one_raw():
    return GroupsOneRaw()


class ClampedOffsets(nn.Module):
    """Offsets fed in and clamped to +-60 pixels: DySample only on images below 60 pixels."""

    def forward(self, feat, offset):
        B, _, H, W = feat.shape
        return F.grid_sample(feat.reshape(B * 2, -1, H, W), _dysample_grid(offset, 2, feat.dtype, clamp=60.0),
                             mode="bilinear", padding_mode="border", align_corners=False).view(B, -1, 2 * H, 2 * W)


def clamped_offsets():
    return ClampedOffsets()


class SharedFeatures(nn.Module):
    """Two inline layers reading one feature map: the exporter merges their identical reshapes of it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = InlineDySample(8, 8, groups=2, end_convolution=False)
        self.b = InlineDySample(8, 8, groups=2, end_convolution=False)

    def forward(self, x):
        f = self.stem(x)
        return self.a(f) + self.b(f)


def shared_features():
    return SharedFeatures()
