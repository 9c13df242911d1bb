"""Fixed-kernel resizing: ``F.interpolate`` and ``nn.Upsample`` in every mode the exporter maps to Resize."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deploykit.zoo.params import Param
from deploykit.zoo.registry import ZooEntry, register

_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear")
_CORNER_MODES = {"linear", "bilinear", "bicubic", "trilinear"}
_RANK = {"linear": 3, "trilinear": 5}


class Interpolate(nn.Module):
    """``F.interpolate`` as a module, so antialias (which ``nn.Upsample`` lacks) is reachable."""

    def __init__(self, mode: str, scale_factor: float | None, size: int | None,
                 align_corners: bool | None, recompute_scale_factor: bool | None, antialias: bool):
        super().__init__()
        self.mode = mode
        self.scale_factor = scale_factor
        self.size = size
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor
        self.antialias = antialias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=self.align_corners, recompute_scale_factor=self.recompute_scale_factor,
                             antialias=self.antialias)


def _problem(p: dict) -> str | None:
    if (p["scale_factor"] is None) == (p["size"] is None):
        return "give exactly one of scale_factor and size (set the other to none)"
    if p["align_corners"] is not None and p["mode"] not in _CORNER_MODES:
        return f"align_corners applies only to {', '.join(sorted(_CORNER_MODES))}; set it to none for {p['mode']}"
    if p["recompute_scale_factor"] is not None and p["scale_factor"] is None:
        return "recompute_scale_factor applies only with scale_factor"
    if p.get("antialias") and p["mode"] not in {"bilinear", "bicubic"}:
        return "antialias applies only to bilinear and bicubic"
    return None


def _params(with_antialias: bool) -> tuple[Param, ...]:
    params = (
        Param("channels", int, 16, "input channels", low=1, high=4096),
        Param("mode", str, "bilinear", "interpolation mode (linear: 3-D input, trilinear: 5-D)", choices=_MODES),
        Param("scale_factor", float, 2.0, "output/input size ratio", low=0.125, high=16, optional=True),
        Param("size", int, None, "fixed output size of every spatial dim", low=1, high=16384, optional=True),
        Param("align_corners", bool, None, "align corner pixels (linear modes only; none = PyTorch default)",
              optional=True),
        Param("recompute_scale_factor", bool, None,
              "derive the coordinate scale from the output size (none = PyTorch default: use scale_factor)",
              optional=True),
    )
    if with_antialias:
        params += (Param("antialias", bool, False, "low-pass filter when downscaling (bilinear/bicubic)"),)
    return params


_EXAMPLES = (
    {},
    {"mode": "nearest"},
    {"mode": "nearest-exact"},
    {"mode": "bilinear", "align_corners": True},
    {"mode": "bicubic"},
    {"mode": "bicubic", "align_corners": True},
    {"mode": "linear"},
    {"mode": "trilinear"},
    {"mode": "bilinear", "scale_factor": None, "size": 48},
)

register(ZooEntry(
    name="interpolate",
    family="resize",
    summary="F.interpolate: nearest, nearest-exact, (bi/tri)linear, bicubic; antialias downscale",
    params=_params(with_antialias=True),
    build=lambda **p: Interpolate(**{k: v for k, v in p.items() if k != "channels"}),
    channels=lambda p: p["channels"],
    rank=lambda p: _RANK.get(p["mode"], 4),
    constraints=_problem,
    # Antialias with scale_factor alone diverges after export at sizes where size * scale is
    # fractional (the exporter emits Resize sizes, eager uses the scale): deploykit check
    # catches it, and recompute_scale_factor=True is the fix, so that is the example here.
    examples=_EXAMPLES + ({"mode": "bilinear", "scale_factor": 0.5, "antialias": True,
                           "recompute_scale_factor": True},),
))

register(ZooEntry(
    name="upsample",
    family="resize",
    summary="nn.Upsample (the module form of interpolate, no antialias)",
    params=_params(with_antialias=False),
    build=lambda **p: nn.Upsample(size=p["size"], scale_factor=p["scale_factor"], mode=p["mode"],
                                  align_corners=p["align_corners"],
                                  recompute_scale_factor=p["recompute_scale_factor"]),
    channels=lambda p: p["channels"],
    rank=lambda p: _RANK.get(p["mode"], 4),
    constraints=_problem,
    examples=({}, {"mode": "nearest"}, {"mode": "bilinear", "align_corners": True}),
))
