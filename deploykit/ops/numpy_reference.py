"""The ``deploykit::DySample`` ONNX node in NumPy, so plugin graphs run without TensorRT.

Like Polygraphy's ``pluginref``: ``onnx.reference`` evaluates the standard nodes and this
evaluates ours. The arithmetic follows ``plugins/dysample/dysample_sample.h`` in float32.
"""

from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_grid_sample import GridSample as _OnnxGridSample

from deploykit.ops.onnx_translation import DOMAIN


def numpy_sample(x: np.ndarray, offset: np.ndarray, scale: int, groups: int) -> np.ndarray:
    """x (B, C, H, W), offset (B, 2*G*s^2, H, W) -> (B, C, s*H, s*W), computed in float32."""
    B, C, H, W = x.shape
    s, G = int(scale), int(groups)
    if C % G or offset.shape != (B, 2 * G * s * s, H, W):
        raise ValueError(f"DySample: x {x.shape} and offset {offset.shape} do not fit scale {s}, groups {G}")
    f32 = np.float32
    off = offset.astype(f32).reshape(B, 2, G, s, s, H, W)
    # (B, 2, G, H, i, W, j) -> output rows h*s+i, columns w*s+j
    off = off.transpose(0, 1, 2, 5, 3, 6, 4).reshape(B, 2, G, s * H, s * W)
    rows = (np.arange(s * H) // s).astype(f32)[:, None]
    cols = (np.arange(s * W) // s).astype(f32)[None, :]
    sx = _source_coordinate(cols, off[:, 0], W)
    sy = _source_coordinate(rows, off[:, 1], H)
    x0, y0 = np.floor(sx), np.floor(sy)
    we, ws = sx - x0, sy - y0
    ww, wn = f32(1) - we, f32(1) - ws
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    planes = x.astype(f32).reshape(B, G, C // G, H * W)
    shape = (B, G, C // G, s * H, s * W)
    out = None
    taps = ((iy, ix, wn * ww), (iy, ix + 1, wn * we), (iy + 1, ix, ws * ww), (iy + 1, ix + 1, ws * we))
    for ty, tx, weight in taps:  # bilinear_sum's rule: an out-of-plane tap adds exactly 0, NaN/Inf in x or not
        valid = (tx >= 0) & (tx < W) & (ty >= 0) & (ty < H)
        index = np.where(valid, ty * W + tx, 0).reshape(B, G, 1, -1)
        values = np.take_along_axis(planes, np.broadcast_to(index, (B, G, C // G, index.shape[-1])), axis=3)
        values = np.where(valid[:, :, None], values.reshape(shape), f32(0))
        term = values * weight[:, :, None]
        out = term if out is None else out + term
    return out.reshape(B, C, s * H, s * W).astype(x.dtype)


def _source_coordinate(pixel: np.ndarray, offset: np.ndarray, size: int) -> np.ndarray:
    f32 = np.float32
    normalised = f32(2) * ((pixel + f32(0.5)) + offset) / f32(size) - f32(1)
    unnormalised = (normalised + f32(1)) * (f32(size) / f32(2)) - f32(0.5)
    return np.clip(unnormalised, f32(0), f32(size - 1))


class DySample(OpRun):
    """``onnx.reference`` implementation of ``deploykit::DySample`` (the class name is the op type)."""

    op_domain = DOMAIN

    def _run(self, x, offset, scale=None, groups=None, plugin_version=None, plugin_namespace=None):
        return (numpy_sample(x, offset, scale, groups),)


class GridSample(_OnnxGridSample):
    """GridSample under its opset 16-19 mode names too: ``onnx.reference`` knows only opset 20's
    (linear, cubic) and rejects the bilinear/bicubic that every opset-17 export carries (a plugin
    graph can hold a user's own grid_sample beside the DySample nodes)."""

    op_domain = ""
    _RENAMED = {"bilinear": "linear", "bicubic": "cubic"}

    def _run(self, X, grid, mode=None, padding_mode=None, align_corners=None):
        mode = mode or self.mode
        return super()._run(X, grid, mode=self._RENAMED.get(mode, mode), padding_mode=padding_mode,
                            align_corners=align_corners)
