"""Users' own models, loaded through SPEC = tests.user_models:NAME: their own copies of the
published DySample class (not deploykit's), lookalikes that sample differently, and layers
that specialise a "dynamic" export to the traced shape.
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from tests.zoo.published_dysample import published_init_pos, published_sample


class PastedDySample(nn.Module):
    """The published DySample's interface and math, as users paste it into their code."""

    def __init__(self, in_channels, scale=2, style="lp", groups=4, dyscope=False):
        super().__init__()
        self.scale = scale
        self.style = style
        self.groups = groups
        if style == "pl":
            in_channels, out_channels = in_channels // scale**2, 2 * groups
        else:
            out_channels = 2 * groups * scale**2
        self.offset = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.normal_(self.offset.weight, std=0.1)  # larger than the published 0.001: offsets that matter
        if dyscope:
            self.scope = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            nn.init.normal_(self.scope.weight, std=0.1)
        self.register_buffer("init_pos", published_init_pos(scale, groups))

    def sample(self, x, offset):
        return published_sample(x, offset, self.scale, self.groups)

    def forward_lp(self, x):
        if hasattr(self, "scope"):
            offset = self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos
        else:
            offset = self.offset(x) * 0.25 + self.init_pos
        return self.sample(x, offset)

    def forward_pl(self, x):
        x_ = F.pixel_shuffle(x, self.scale)
        if hasattr(self, "scope"):
            offset = F.pixel_unshuffle(self.offset(x_) * self.scope(x_).sigmoid(), self.scale) * 0.5 + self.init_pos
        else:
            offset = F.pixel_unshuffle(self.offset(x_), self.scale) * 0.25 + self.init_pos
        return self.sample(x, offset)

    def forward(self, x):
        return self.forward_pl(x) if self.style == "pl" else self.forward_lp(x)


class LearnedUpsampler(PastedDySample):
    """The same copy under another name, as a super-resolution library ships it."""


class CornerAlignedDySample(PastedDySample):
    """Looks like DySample, samples differently (align_corners=True, zero padding): not DySample."""

    def sample(self, x, offset):
        B, _, H, W = offset.shape
        grid = offset.view(B, 2, -1, H, W)[:, :, :1].mean(2).permute(0, 2, 3, 1) * 0.1
        up = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        grid = F.interpolate(grid.permute(0, 3, 1, 2), scale_factor=self.scale).permute(0, 2, 3, 1)
        return F.grid_sample(up, grid.tanh(), align_corners=True, padding_mode="zeros")


class FpnDecoder(nn.Module):
    """A ResNet-FPN-style decoder: lateral convs, two pasted DySample upsamplers, a head; and a
    flow warp with its own grid_sample (zero padding) that is not DySample."""

    def __init__(self, channels=16, style="lp", dyscope=False, groups=4, scale=2, warp=False, cls=PastedDySample):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.up1 = cls(channels, scale=scale, style=style, groups=groups, dyscope=dyscope)
        self.mid = nn.Conv2d(channels, channels, 3, padding=1)
        self.up2 = cls(channels, scale=scale, style=style, groups=groups, dyscope=dyscope)
        self.head = nn.Conv2d(channels, 2, 1)
        self.warp = warp
        self.flow = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        y = self.up2(self.mid(self.up1(self.stem(x)).relu()))
        out = self.head(y)
        if self.warp:  # an unrelated grid_sample: the head's output warped by a predicted flow field
            grid = self.flow(out).tanh().permute(0, 2, 3, 1)
            out = out + F.grid_sample(out, grid, padding_mode="zeros", align_corners=False)
        return out


def fpn(style="lp", dyscope=False, groups=4, scale=2, warp=False, channels=16):
    return FpnDecoder(channels, style, dyscope, groups, scale, warp)


def fpn_renamed():
    return FpnDecoder(cls=LearnedUpsampler)


def fpn_lookalike():
    return FpnDecoder(cls=CornerAlignedDySample)


class PyramidPooling(nn.Module):
    """PSPNet's pooling module with bins derived from the input size (h // k): torch.export
    bakes the traced size into the pooling, so the "dynamic" graph is right at one shape only."""

    def __init__(self, channels=8, bins=(1, 2, 4)):
        super().__init__()
        self.bins = bins
        self.reduce = nn.ModuleList(nn.Conv2d(channels, channels // 2, 1) for _ in bins)
        self.fuse = nn.Conv2d(channels + channels // 2 * len(bins), channels, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        pooled = [x]
        for k, conv in zip(self.bins, self.reduce):
            p = F.adaptive_max_pool2d(x, (max(h // (8 // k), 1), max(w // (8 // k), 1)))
            pooled.append(F.interpolate(conv(p), size=(h, w), mode="bilinear", align_corners=False))
        return self.fuse(torch.cat(pooled, 1))


def pyramid_pooling(channels=8):
    return PyramidPooling(channels)


class BranchOnHeight(nn.Module):
    """Python control flow on a size: torch.export can only trace it at one height."""

    def forward(self, x):
        return x * 2 if x.shape[2] == 40 else x


def branch_on_height():
    return BranchOnHeight()


class SegHeads(nn.Module):
    """torchvision-style segmentation heads: an OrderedDict of out and aux (and, with extra, a third)."""

    def __init__(self, extra=False):
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.out = nn.Conv2d(4, 2, 1)
        self.aux = nn.Conv2d(4, 2, 1)
        self.extra = extra

    def forward(self, x):
        from collections import OrderedDict

        features = self.body(x).relu()
        heads = OrderedDict(out=F.interpolate(self.out(features), scale_factor=2.0, mode="bilinear"),
                            aux=self.aux(features))
        if self.extra:
            heads["edges"] = features.sigmoid()
        return heads


def seg_heads(extra=False):
    return SegHeads(extra)


class Nested(nn.Module):
    """Detector-style nesting: a tensor, a tuple holding a None, a dict, a Python int."""

    def forward(self, x):
        return x * 2, (x + 1, None), {"z": x.mean(1, keepdim=True)}, 3


def nested():
    return Nested()


@dataclasses.dataclass
class SegOutput:
    """A ModelOutput-like dataclass with an optional field left None."""

    logits: torch.Tensor
    hidden: torch.Tensor | None = None
    attentions: torch.Tensor | None = None


class DataclassOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return SegOutput(logits=self.head(x), hidden=x.relu())


def dataclass_output():
    return DataclassOutput()


class GuidedUpsampler(nn.Module):
    """Two inputs: an image and an integer mask that gates it; returns a dict."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image, mask):
        gated = self.conv(image) * (mask > 0).to(image.dtype)
        return {"up": F.interpolate(gated, scale_factor=2.0, mode="bilinear"), "count": mask.sum((1, 2, 3)).float()}


def guided():
    return GuidedUpsampler()


class LogIntensity(nn.Module):
    """A log of the input: NaN on N(0, 1) inputs, right on positive ones (--val-range)."""

    def forward(self, x):
        return torch.log(x) * 2.0


def log_intensity():
    return LogIntensity()


class VarPositional(nn.Module):
    """forward(*inputs): the names cannot be known, so it is fed one tensor, 'input'."""

    def forward(self, *inputs):
        return inputs[0] * 2


def var_positional():
    return VarPositional()


class DeadSampleDecoder(nn.Module):
    """One verified DySample whose result is never used (a leftover debug call) beside a live one."""

    def __init__(self):
        super().__init__()
        self.dead = PastedDySample(4, groups=2)
        self.live = PastedDySample(4, groups=2)

    def forward(self, x):
        self.dead.sample(x, self.dead.offset(x) * 0.25 + self.dead.init_pos)
        return self.live(x)


def dead_sample():
    return DeadSampleDecoder()


class Gain(nn.Module):
    """Two inputs, one broadcast: a per-channel gain of 1xCx1x1."""

    def forward(self, x, gain):
        return x * gain


def gain():
    return Gain()


class KeyedOutputs(nn.Module):
    """Dict keys that are also names the exporter gives values ('relu', 'add'), or an input's."""

    def __init__(self, keys=("relu", "add")):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.keys = keys

    def forward(self, x):
        y = self.conv(x).relu()
        return {self.keys[0]: y, self.keys[1]: y + 1}


def keyed_outputs(first="relu"):
    return KeyedOutputs((first, "add"))


class InPlaceNormalize(nn.Module):
    """Normalises its input in place (x -= mean; x /= std), as many preprocessing heads do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        x -= 0.5
        x /= 2.0
        return self.conv(x)


def in_place():
    return InPlaceNormalize()


class TinyOutputs(nn.Module):
    """Outputs around 1e-8, as a random-init head gives: below any atol."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x) * 1e-8


def tiny_outputs():
    return TinyOutputs()


class ExitsInForward(nn.Module):
    """Calls sys.exit(0) in forward (a leftover debug exit)."""

    def forward(self, x):
        import sys

        sys.exit(0)


def exits_in_forward():
    return ExitsInForward()


class ArgmaxIds(nn.Module):
    """Integer outputs: class ids per pixel, and large ids past 10^4."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x):
        ids = self.conv(x).argmax(1)
        return {"ids": ids, "big": ids + 20000}


def argmax_ids():
    return ArgmaxIds()


class GuardedWidth(nn.Module):
    """A branch on a size (`if x.shape[-1] > 64`): the traced graph is one branch, right only
    on its side of the bound."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] > 64:
            return self.conv(x)
        return self.conv(x) * 2


def guarded_width():
    return GuardedWidth()


class AssertedWidth(nn.Module):
    """A size limit the model enforces itself: PyTorch cannot run past it either."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        torch._check(x.shape[-1] <= 64)
        return self.conv(x)


def asserted_width():
    return AssertedWidth()


class FixedSizeHead(nn.Module):
    """A dense head that answers 4x6 whatever the input's size (a resize to a fixed size)."""

    def forward(self, x):
        return F.interpolate(x, size=(4, 6), mode="bilinear")


def fixed_size_head():
    return FixedSizeHead()


class CollidingKeys(nn.Module):
    """Output keys that are one file name once made file-safe ('edge map', 'edge_map')."""

    def forward(self, x):
        return {"edge map": x * 2, "edge_map": x + 1}


def colliding_keys():
    return CollidingKeys()


class RandomForward(nn.Module):
    """Draws random numbers in forward: no export can match it."""

    def forward(self, x):
        return x + torch.rand_like(x)


def random_forward():
    return RandomForward()


class HalfWeights(nn.Module):
    """Weights kept in float16 (a checkpoint saved .half()), fed float32 and cast inside."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1).half()

    def forward(self, x):
        return self.conv(x.half()).float()


def half_weights():
    return HalfWeights()


class WantsLong(nn.Module):
    """An embedding lookup: forward needs integer ids."""

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(10, 4)

    def forward(self, ids):
        return self.table(ids)


def wants_long():
    return WantsLong()


class QuantizedOutput(nn.Module):
    """Returns a quantized tensor."""

    def forward(self, x):
        return torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)


def quantized_output():
    return QuantizedOutput()


class ClassConditioned(nn.Module):
    """An image and a class-id vector [B] (an embedding added per image)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.embed = nn.Embedding(10, 4)

    def forward(self, image, class_id):
        return self.conv(image) + self.embed(class_id)[:, :, None, None]


def class_conditioned():
    return ClassConditioned()


def mlp():
    """A batch of vectors [B, K] in, [B, 3] out."""
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
