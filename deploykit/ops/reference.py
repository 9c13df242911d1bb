"""DySample's sample step in pure PyTorch: the published code's math, export-friendly.

The grid constants come from ``torch.arange`` and ``torch.stack`` of the traced sizes, so
the dynamo exporter keeps H and W symbolic (``torch.tensor([W, H])`` would bake them in).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_sample(x: torch.Tensor, offset: torch.Tensor, scale: int, groups: int) -> torch.Tensor:
    """Bilinear, border-clamped sampling of x at (pixel centre + offset), pixel-shuffled by s."""
    B, _, H, W = offset.shape
    offset = offset.view(B, 2, -1, H, W)
    coords_h = torch.arange(H, device=x.device, dtype=x.dtype) + 0.5
    coords_w = torch.arange(W, device=x.device, dtype=x.dtype) + 0.5
    coords = torch.stack(torch.meshgrid([coords_w, coords_h], indexing="ij"))
    coords = coords.transpose(1, 2).unsqueeze(1).unsqueeze(0)
    normalizer = torch.stack([coords_w.new_full((), W), coords_w.new_full((), H)]).view(1, 2, 1, 1, 1)
    coords = 2 * (coords + offset) / normalizer - 1
    coords = F.pixel_shuffle(coords.view(B, -1, H, W), scale).view(
        B, 2, -1, scale * H, scale * W).permute(0, 2, 3, 4, 1).contiguous().flatten(0, 1)
    return F.grid_sample(x.reshape(B * groups, -1, H, W), coords, mode="bilinear",
                         align_corners=False, padding_mode="border").view(B, -1, scale * H, scale * W)
