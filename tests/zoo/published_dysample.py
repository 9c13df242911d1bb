"""A transcription of the published DySample math (tiny-smart/dysample, dysample.py), as
functions over a deploykit DySample's weights, so tests can demand bit-equality.

Kept deliberately literal: integer ``torch.arange`` plus 0.5, ``torch.tensor([W, H])`` as the
normalizer, the 5-D view before pixel_shuffle. Do not "clean it up".
"""

import torch
import torch.nn.functional as F


def published_init_pos(scale, groups):
    h = torch.arange((-scale + 1) / 2, (scale - 1) / 2 + 1) / scale
    return torch.stack(torch.meshgrid([h, h], indexing="ij")).transpose(1, 2).repeat(1, groups, 1).reshape(1, -1, 1, 1)


def published_sample(x, offset, scale, groups):
    B, _, H, W = offset.shape
    offset = offset.view(B, 2, -1, H, W)
    coords_h = torch.arange(H) + 0.5
    coords_w = torch.arange(W) + 0.5
    coords = torch.stack(torch.meshgrid([coords_w, coords_h], indexing="ij")
                         ).transpose(1, 2).unsqueeze(1).unsqueeze(0).type(x.dtype).to(x.device)
    normalizer = torch.tensor([W, H], dtype=x.dtype, device=x.device).view(1, 2, 1, 1, 1)
    coords = 2 * (coords + offset) / normalizer - 1
    coords = F.pixel_shuffle(coords.view(B, -1, H, W), scale).view(
        B, 2, -1, scale * H, scale * W).permute(0, 2, 3, 4, 1).contiguous().flatten(0, 1)
    return F.grid_sample(x.reshape(B * groups, -1, H, W), coords, mode="bilinear",
                         align_corners=False, padding_mode="border").view(B, -1, scale * H, scale * W)


def published_forward(module, x):
    """The published forward_lp / forward_pl, reading weights from a deploykit DySample."""
    s, g = module.scale, module.groups
    scope = getattr(module, "scope", None)
    if module.style == "pl":
        x_ = F.pixel_shuffle(x, s)
        if scope is not None:
            offset = F.pixel_unshuffle(module.offset(x_) * scope(x_).sigmoid(), s) * 0.5 + module.init_pos
        else:
            offset = F.pixel_unshuffle(module.offset(x_), s) * 0.25 + module.init_pos
    elif scope is not None:
        offset = module.offset(x) * scope(x).sigmoid() * 0.5 + module.init_pos
    else:
        offset = module.offset(x) * 0.25 + module.init_pos
    return published_sample(x, offset, s, g)
