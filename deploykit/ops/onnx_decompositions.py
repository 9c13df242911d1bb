"""DySample's sample step as standard ONNX ops without GridSample, for runtimes whose
GridSample is slow (ONNX Runtime's CPU kernel recomputes every coordinate for every channel).

Both strategies compute the sampling coordinates once per point, with the float operations
PyTorch's vectorised CPU grid_sample uses (normalise, ``(g + 1) * W/2 - 0.5``, clamp to the
border, floor), so they agree with the eager reference to rounding at every shape:

- ``gather``: x is laid out channels-last with each pixel's right neighbour beside it, so
  one Gather fetches a point's four taps as two contiguous rows (top, bottom); a batched
  MatMul applies the four bilinear weights. Native layers on every runtime.
- ``roialign``: every point is a zero-size RoiAlign box with one sample, which is exactly a
  border-clamped bilinear tap once the coordinates are clamped; the runtime's RoiAlign
  kernel then does the gather and weighting in one pass over NCHW x.

Both end with one Transpose from points-major to NCHW. Which is faster depends on a group's
channel count: Gather copies one row of 2*C/G floats per tap pair and the MatMul is one tiny
product per point, both amortised only by long rows, while RoiAlign's cost is per value. On
ONNX Runtime's CPU provider gather wins from 64 channels per group (0.6 of roialign's time at
C/G = 64) and roialign below (0.9 of gather's at 32, 0.5 at 16); ``auto`` picks per layer
(README, "DySample export strategies", has the measurements).
"""

from __future__ import annotations

GATHER_MIN_GROUP_CHANNELS = 48  # auto: gather at 64 channels per group and up, roialign at 32 and below
_INT64_MAX = 2**63 - 1


def translation(strategy: str):
    """The onnxscript function that replaces ``deploykit::dysample_export`` for ``strategy``."""
    from onnxscript import opset17

    def translated(x, offset, scale: int, groups: int):
        return sample_step(opset17, strategy, x, offset, scale, groups)

    return translated


def sample_step(op, strategy: str, x, offset, scale: int, groups: int, opset: int = 17):
    """The sample step of ``x`` (B, C, H, W) at ``offset`` (B, 2*groups*scale^2, H, W) as standard
    ops written through ``op``: an onnxscript opset in the exporter, a rewriter's builder in
    ``deploykit convert``. ``auto`` picks gather or roialign by the channels per group (static in
    every export; read before any cast, which loses the shape); ``standard`` is one GridSample
    (its mode is named for ``opset``). fp16 graphs compute in float32 and cast the result back,
    as the plugin does: fp16 coordinates are off by up to 1/32 pixel at 64 pixels."""
    import onnx_ir as ir

    if strategy == "auto":
        channels = x.shape[1] if x.shape is not None else None
        strategy = auto_strategy(channels, groups)
    samples = {"gather": _gather_sample, "roialign": _roialign_sample,
               "standard": lambda *args: _standard_sample(*args, opset=opset)}
    sample = samples[strategy]
    if x.dtype == ir.DataType.FLOAT:
        return sample(op, x, offset, scale, groups)
    result = sample(op, op.Cast(x, to=ir.DataType.FLOAT), op.Cast(offset, to=ir.DataType.FLOAT), scale, groups)
    return op.Cast(result, to=x.dtype)


def auto_strategy(channels, groups: int) -> str:
    """What ``auto`` exports for a layer: gather from 48 channels per group (or when the channel
    count is not static), roialign below. The exporter's Python side records the same choice."""
    wide = not isinstance(channels, int) or channels // groups >= GATHER_MIN_GROUP_CHANNELS
    return "gather" if wide else "roialign"


def _ints(op, *values):
    return op.Constant(value_ints=list(values))


def _dims(op, x):
    """B, C, H, W of x as 1-element int64 tensors (dynamic dims stay dynamic)."""
    shape = op.Shape(x)
    return [op.Gather(shape, _ints(op, i), axis=0) for i in range(4)]


def _coordinates(op, x, offset, scale: int, groups: int):
    """Border-clamped pixel coordinates (ix, iy) of every sample point, each (B, sH, sW, G)
    (points in output order, groups last so a point's C/G channels end up beside the other
    groups'), and the dims they were computed from."""
    B, C, H, W = _dims(op, x)
    s, G = _ints(op, scale), _ints(op, groups)
    sH, sW = op.Mul(H, s), op.Mul(W, s)
    # offset channels are (2, G, s, s): pixel-shuffle them to (B, 2, sH, sW, G)
    off = op.Reshape(offset, op.Concat(B, _ints(op, 2), G, s, s, H, W, axis=0))
    off = op.Transpose(off, perm=[0, 1, 5, 3, 6, 4, 2])
    off = op.Reshape(off, op.Concat(B, _ints(op, 2), sH, sW, G, axis=0))
    ix = _unnormalized(op, op.Gather(off, op.Constant(value_int=0), axis=1), sW, W, s, trailing_axes=1)
    iy = _unnormalized(op, op.Gather(off, op.Constant(value_int=1), axis=1), sH, H, s, trailing_axes=2)
    return ix, iy, (B, C, H, W, sH, sW)


def _normalized(op, off, out_size, in_size, s, trailing_axes: int):
    """The reference's ``2 * (centre + offset) / size - 1``, and the size as float."""
    zero, one = op.Constant(value_int=0), op.Constant(value_int=1)
    positions = op.Range(zero, op.Squeeze(out_size, _ints(op, 0)), one)
    centre = op.Add(op.Cast(op.Div(positions, s), to=1), op.Constant(value_float=0.5))  # input pixel centre
    if trailing_axes:  # broadcast over the axes after it
        centre = op.Unsqueeze(centre, _ints(op, *range(1, trailing_axes + 1)))
    size = op.Cast(in_size, to=1)
    g = op.Sub(op.Div(op.Mul(op.Constant(value_float=2.0), op.Add(centre, off)), size),
               op.Constant(value_float=1.0))
    return g, size


def _unnormalized(op, off, out_size, in_size, s, trailing_axes: int):
    """grid_sample's ``(g + 1) * size / 2 - 0.5`` of the normalised grid, clamped to the border
    [0, size - 1]."""
    g, size = _normalized(op, off, out_size, in_size, s, trailing_axes)
    pixel = op.Sub(op.Mul(op.Add(g, op.Constant(value_float=1.0)), op.Div(size, op.Constant(value_float=2.0))),
                   op.Constant(value_float=0.5))
    last = op.Squeeze(op.Sub(size, op.Constant(value_float=1.0)), _ints(op, 0))
    return op.Clip(pixel, op.Constant(value_float=0.0), last)


def _standard_sample(op, x, offset, scale: int, groups: int, opset: int):
    """The reference's own form: the normalised grid computed from x's shape (never a traced
    size), one bilinear border-padded GridSample over the B*G single-group images."""
    B, C, H, W = _dims(op, x)
    s, G = _ints(op, scale), _ints(op, groups)
    sH, sW = op.Mul(H, s), op.Mul(W, s)
    off = op.Reshape(offset, op.Concat(B, _ints(op, 2), G, s, s, H, W, axis=0))
    off = op.Transpose(off, perm=[0, 1, 2, 5, 3, 6, 4])  # (B, 2, G, H, s, W, s)
    off = op.Reshape(off, op.Concat(B, _ints(op, 2), G, sH, sW, axis=0))
    gx, _ = _normalized(op, op.Gather(off, op.Constant(value_int=0), axis=1), sW, W, s, trailing_axes=0)
    gy, _ = _normalized(op, op.Gather(off, op.Constant(value_int=1), axis=1), sH, H, s, trailing_axes=1)
    grid = op.Concat(op.Unsqueeze(gx, _ints(op, -1)), op.Unsqueeze(gy, _ints(op, -1)), axis=-1)  # (B, G, sH, sW, 2)
    grid = op.Reshape(grid, op.Concat(op.Mul(B, G), sH, sW, _ints(op, 2), axis=0))
    images = op.Reshape(x, op.Concat(op.Mul(B, G), op.Div(C, G), H, W, axis=0))
    sampled = op.GridSample(images, grid, mode="linear" if opset >= 20 else "bilinear", padding_mode="border",
                            align_corners=0)
    return op.Reshape(sampled, op.Concat(B, C, sH, sW, axis=0))


def _image_index(op, B, G):
    """(B, 1, 1, G): which of the B*G single-group images a point of batch b, group g samples."""
    images = op.Range(op.Constant(value_int=0), op.Squeeze(op.Mul(B, G), _ints(op, 0)), op.Constant(value_int=1))
    return op.Reshape(images, op.Concat(B, _ints(op, 1, 1), G, axis=0))


def _to_nchw(op, points, dims):
    """Per-point channel rows, in (B, sH, sW, G) point order -> (B, C, sH, sW). The Transpose
    is the last node, so a graph output is written once (a final Reshape would copy it)."""
    B, C, H, W, sH, sW = dims
    return op.Transpose(op.Reshape(points, op.Concat(B, sH, sW, C, axis=0)), perm=[0, 3, 1, 2])


def _gather_sample(op, x, offset, scale: int, groups: int):
    ix, iy, dims = _coordinates(op, x, offset, scale, groups)
    B, C, H, W, sH, sW = dims
    G = _ints(op, groups)
    Cg = op.Div(C, G)
    # rows of (pixel, right neighbour) channels-last; the last column's neighbour is itself (border)
    xl = op.Transpose(op.Reshape(x, op.Concat(B, G, Cg, H, W, axis=0)), perm=[0, 1, 3, 4, 2])
    right = op.Concat(op.Slice(xl, _ints(op, 1), _ints(op, _INT64_MAX), _ints(op, 3)),
                      op.Slice(xl, _ints(op, -1), _ints(op, _INT64_MAX), _ints(op, 3)), axis=3)
    pairs = op.Reshape(op.Concat(xl, right, axis=-1), op.Concat(_ints(op, -1), op.Mul(Cg, _ints(op, 2)), axis=0))

    x0, y0 = op.Floor(ix), op.Floor(iy)
    column = op.Cast(x0, to=7)
    top = op.Add(op.Mul(_image_index(op, B, G), H), op.Cast(y0, to=7))
    bottom = op.Add(top, op.Cast(op.Less(y0, op.Squeeze(op.Sub(op.Cast(H, to=1), op.Constant(value_float=1.0)),
                                                        _ints(op, 0))), to=7))
    rows = op.Concat(op.Unsqueeze(op.Add(op.Mul(top, W), column), _ints(op, -1)),
                     op.Unsqueeze(op.Add(op.Mul(bottom, W), column), _ints(op, -1)), axis=-1)
    taps = op.Gather(pairs, rows, axis=0)  # (B, sH, sW, G, 2, 2*Cg): the four taps, one row each side
    taps = op.Reshape(taps, op.Concat(B, sH, sW, G, _ints(op, 4), Cg, axis=0))

    wx, wy = op.Sub(ix, x0), op.Sub(iy, y0)
    one = op.Constant(value_float=1.0)
    ux, uy = op.Sub(one, wx), op.Sub(one, wy)
    weights = op.Concat(*[op.Unsqueeze(w, _ints(op, -1)) for w in
                          (op.Mul(uy, ux), op.Mul(uy, wx), op.Mul(wy, ux), op.Mul(wy, wx))], axis=-1)
    # one tiny MatMul per point beats Mul + ReduceSum, which writes the four taps a second time
    return _to_nchw(op, op.MatMul(op.Unsqueeze(weights, _ints(op, -2)), taps), dims)


def _roialign_sample(op, x, offset, scale: int, groups: int):
    ix, iy, dims = _coordinates(op, x, offset, scale, groups)
    B, C, H, W, sH, sW = dims
    G = _ints(op, groups)
    images = op.Reshape(x, op.Concat(op.Mul(B, G), op.Div(C, G), H, W, axis=0))
    # half_pixel boxes: the one sample of a zero-size box at (x1, y1) lands on (x1 - 0.5, y1 - 0.5)
    half = op.Constant(value_float=0.5)
    column = _ints(op, -1, 1)
    bx, by = op.Reshape(op.Add(ix, half), column), op.Reshape(op.Add(iy, half), column)
    boxes = op.Concat(bx, by, bx, by, axis=1)
    image_of_box = op.Reshape(op.Expand(_image_index(op, B, G), op.Concat(B, sH, sW, G, axis=0)), _ints(op, -1))
    sampled = op.RoiAlign(images, boxes, image_of_box, coordinate_transformation_mode="half_pixel",
                          mode="avg", output_height=1, output_width=1, sampling_ratio=1, spatial_scale=1.0)
    return _to_nchw(op, sampled, dims)
