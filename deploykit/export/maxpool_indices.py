"""Max-pool indices as ONNX ops TensorRT's parser accepts, for SegNet-style max-unpool decoders.

TensorRT's ONNX parser rejects MaxPool's second output (``Indices``), while the max-unpool
that consumes the indices already exports as ScatterND, which it supports. The ``window``
strategy computes PyTorch's indices from the k*k strided views of the input, one per window
tap, visited in PyTorch's scan order (rows, then columns): a tap replaces the running maximum
only if it is strictly greater, or a NaN, which is the rule of PyTorch's CPU and CUDA kernels
(``(val > maxval) || isnan(val)``). So ties keep the first maximum and a NaN is the maximum
(the last NaN of a window), with only Slice, Greater, IsNaN, Or and Where: no ArgMax or
TopK, whose tie order TensorRT does not document. Padding taps hold the dtype's lowest value
and never win; a window whose values all equal it (e.g. all -inf) gets its first in-bounds
tap, as in PyTorch.

The values still come from one plain MaxPool, except where TensorRT's parser would compute
something else: it drops MaxPool's ``dilations`` without a word (onnx-tensorrt's
poolingHelper never reads them), so dilated pools take the running maximum instead; and
its ceil_mode rounds up without PyTorch's rule that a window may not start in the right
padding, so ceil_mode values are sliced to PyTorch's output size.
"""

from __future__ import annotations

from dataclasses import dataclass

# "native": MaxPool's own Indices output (ONNX Runtime supports it, TensorRT does not);
# "window": indices from strided window taps (Slice, Greater, Where), values from MaxPool.
MAXPOOL_IMPLS = ("native", "window")
# Chosen when none is asked for, by target. ort: the faster on ONNX Runtime's CPU provider
# (python -m deploykit.export.maxpool_benchmark, README "Max-pool indices for TensorRT");
# trt: the only one its parser accepts.
DEFAULT_MAXPOOL_IMPL = {"ort": "native", "trt": "window"}


def translation_table(impl: str) -> dict:
    """``custom_translation_table`` entries for ``torch.onnx.export(dynamo=True)``.

    ``max_pool2d_with_indices`` is what ``nn.MaxPool2d(return_indices=True)`` and
    ``F.max_pool2d(..., return_indices=True)`` export as; pooling without indices exports as
    ``aten.max_pool2d``, which stays one plain MaxPool unless it is dilated or in ceil_mode.
    """
    if impl not in MAXPOOL_IMPLS:
        raise ValueError(f"unknown max-pool indices strategy {impl!r}; use one of {', '.join(MAXPOOL_IMPLS)}")
    if impl == "native":
        return {}
    import torch

    return {torch.ops.aten.max_pool2d_with_indices.default: max_pool2d_with_window_indices,
            torch.ops.aten.max_pool2d.default: max_pool2d_for_tensorrt}


@dataclass(frozen=True)
class _Pool:
    """A 2-D max pool's settings as (height, width) pairs."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool

    @classmethod
    def of(cls, kernel_size, stride, padding, dilation, ceil_mode) -> _Pool:
        def pair(value) -> tuple[int, int]:
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            return value * 2 if len(value) == 1 else value

        kernel = pair(kernel_size)  # an empty stride means the kernel size
        return cls(kernel, pair(stride) if stride else kernel, pair(padding), pair(dilation), bool(ceil_mode))

    @property
    def dilated(self) -> bool:
        return self.dilation != (1, 1)


def max_pool2d_with_window_indices(self, kernel_size, stride=(), padding=(0, 0), dilation=(1, 1),
                                   ceil_mode: bool = False):
    """aten::max_pool2d_with_indices with the indices from window taps."""
    pool = _Pool.of(kernel_size, stride, padding, dilation, ceil_mode)
    return _batched(self, lambda x: _max_pool(x, pool, self.dtype))


def max_pool2d_for_tensorrt(self, kernel_size, stride=(), padding=(0, 0), dilation=(1, 1), ceil_mode: bool = False):
    """aten::max_pool2d: a plain MaxPool, or what TensorRT computes as PyTorch does when it is
    dilated or in ceil_mode (the index nodes are unused and the exporter's optimizer drops them)."""
    pool = _Pool.of(kernel_size, stride, padding, dilation, ceil_mode)
    return _batched(self, lambda x: _max_pool(x, pool, self.dtype))[0]


def _batched(self, pool):
    """Run ``pool`` on a 4-D input; an unbatched (C, H, W) input gets a batch of one around it."""
    from onnxscript import opset17 as op

    if len(self.shape) == 4:
        return pool(self)
    return tuple(op.Squeeze(result, _ints(0)) for result in pool(op.Unsqueeze(self, _ints(0))))


def _max_pool(x, pool: _Pool, dtype):
    """(values, indices) of a max pool of the NCHW ``x`` (of ``dtype``), as PyTorch computes them."""
    from onnxscript import opset17 as op

    size = op.Shape(x)
    height, width = op.Gather(size, _ints(2), axis=0), op.Gather(size, _ints(3), axis=0)
    out_h, out_w = _output_size(height, pool, 0), _output_size(width, pool, 1)
    best, indices = _window_max(x, dtype, pool, width, out_h, out_w, values_needed=pool.dilated)
    if pool.dilated:
        return best, indices
    values, _ = op.MaxPool(x, kernel_shape=list(pool.kernel), strides=list(pool.stride), pads=list(pool.padding) * 2,
                           ceil_mode=int(pool.ceil_mode))
    if pool.ceil_mode:
        values = op.Slice(values, _ints(0, 0), op.Concat(out_h, out_w, axis=0), _ints(2, 3))
    return values, indices


def _output_size(size, pool: _Pool, axis: int):
    """PyTorch's pooled size along ``axis`` (1-element int64), including ceil_mode's rule that
    the last window must start inside the input or its left padding."""
    from onnxscript import opset17 as op

    k, s, p, d = pool.kernel[axis], pool.stride[axis], pool.padding[axis], pool.dilation[axis]
    span = op.Add(size, _ints(2 * p - d * (k - 1) - 1 + (s - 1 if pool.ceil_mode else 0)))
    out = op.Add(op.Div(span, _ints(s)), _ints(1))
    if not pool.ceil_mode:
        return out
    starts_in_right_padding = op.GreaterOrEqual(op.Mul(op.Sub(out, _ints(1)), _ints(s)), op.Add(size, _ints(p)))
    return op.Sub(out, op.Cast(starts_in_right_padding, to=7))


def _window_max(x, dtype, pool: _Pool, width, out_h, out_w, values_needed: bool):
    """The running maximum over the window taps in scan order, and the flat ``row * W + column``
    input index where each window's maximum was first reached."""
    import numpy as np
    import onnx_ir as ir
    from onnxscript import opset17 as op

    dtype = np.dtype(dtype.numpy())
    floating = np.issubdtype(dtype, np.floating)
    lowest = op.Constant(value=ir.tensor(np.array(-np.inf if floating else np.iinfo(dtype).min, dtype=dtype)))
    (kh_count, kw_count), (sh, sw), (ph, pw), (dh, dw) = pool.kernel, pool.stride, pool.padding, pool.dilation
    # ceil_mode's last window may reach stride - 1 past the right padding
    end_h, end_w = (ph + sh - 1, pw + sw - 1) if pool.ceil_mode else (ph, pw)
    padded = op.Pad(x, _ints(0, 0, ph, pw, 0, 0, end_h, end_w), lowest)
    # input row (column) of every window's tap 0; rows as a column vector against the columns
    rows = op.Unsqueeze(op.Sub(op.Mul(_range(out_h), _ints(sh)), _ints(ph)), _ints(1))
    columns = op.Sub(op.Mul(_range(out_w), _ints(sw)), _ints(pw))
    tap_ends = op.Concat(op.Add(op.Mul(op.Sub(out_h, _ints(1)), _ints(sh)), _ints(1)),
                         op.Add(op.Mul(op.Sub(out_w, _ints(1)), _ints(sw)), _ints(1)), axis=0)

    # flat index = row offset (row * W) + column, each computed once per kernel row / column
    row_offsets = [op.Mul(op.Add(rows, _ints(kh * dh)), width) for kh in range(kh_count)]
    tap_columns = [op.Add(columns, _ints(kw * dw)) for kw in range(kw_count)]
    best = lowest
    indices = op.Add(op.Mul(_first_in_bounds(rows, dh), width), _first_in_bounds(columns, dw))
    last = (kh_count - 1, kw_count - 1)
    for kh in range(kh_count):
        for kw in range(kw_count):
            offset = _ints(kh * dh, kw * dw)
            tap = op.Slice(padded, offset, op.Add(tap_ends, offset), _ints(2, 3), _ints(sh, sw))
            wins = op.Greater(tap, best)
            if floating:
                wins = op.Or(wins, op.IsNaN(tap))
            indices = op.Where(wins, op.Add(row_offsets[kh], tap_columns[kw]), indices)
            if values_needed or (kh, kw) != last:
                best = op.Where(wins, tap, best)
    return best, indices


def _first_in_bounds(starts, dilation: int):
    """Each window's first tap that is not padding: ``start`` moved on by whole dilations."""
    from onnxscript import opset17 as op

    before = op.Max(op.Neg(starts), _ints(0))
    return op.Add(starts, op.Mul(op.Div(op.Add(before, _ints(dilation - 1)), _ints(dilation)), _ints(dilation)))


def _range(size):
    from onnxscript import opset17 as op

    return op.Range(op.Constant(value_int=0), op.Squeeze(size, _ints(0)), op.Constant(value_int=1))


def _ints(*values):
    from onnxscript import opset17 as op

    return op.Constant(value_ints=list(values))
