"""Parity metrics and tolerance presets: the one place that decides "matches PyTorch"."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Elementwise pass rule, as numpy.allclose: |actual - ref| <= atol + rtol * |ref|."""

    atol: float
    rtol: float


# fp32: the exporter and ORT reorder float ops (bicubic, GridSample, conv algorithms), which
# moves results by ~1e-5 on unit-scale data. fp16: ~10 bits of mantissa.
PRESETS = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-4),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2),
}


# When atol exceeds this fraction of an output's largest |value|, the elementwise rule would pass
# almost anything, so the error is judged relative to the output's own norm instead, at
# SCALE_AWARE_FACTOR * rtol (fp32: 1e-3; a faithful graph is at 1e-6 to 1e-5 there).
VACUOUS_ATOL_FRACTION = 0.01
SCALE_AWARE_FACTOR = 10.0

# |ref| below this counts as this in max_rel, so exact zeros in the reference do not turn a
# 1e-7 difference into a relative error of 1e31.
REL_FLOOR = 1e-6


def tolerance_for(precision: str, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    preset = PRESETS[precision]
    return Tolerance(atol=preset.atol if atol is None else atol, rtol=preset.rtol if rtol is None else rtol)


@dataclass
class Metrics:
    """How one output of one backend differs from the PyTorch fp32 reference."""

    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    psnr: float  # dB; inf when identical
    passed: bool
    reason: str = ""

    def as_json(self) -> dict:
        """JSON has no inf/NaN: an infinite PSNR (identical outputs) becomes null."""
        data = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def failed(reason: str) -> Metrics:
    """A comparison that could not be made: no metrics (null in JSON), not passed, and why."""
    nan = float("nan")
    return Metrics(nan, nan, nan, nan, nan, False, reason)


def not_comparable(reference: np.ndarray, actual) -> str | None:
    """Why ``actual`` cannot stand for ``reference`` at all, or None. A runtime that returns a
    sequence (a list of tensors) or a map for a tensor output has not computed the tensor, even
    when NumPy would stack the list into the right shape; a float output cannot stand for an
    integer one, nor the reverse."""
    if isinstance(actual, (list, tuple)):
        return f"output is a sequence of {len(actual)} values, not a tensor"
    if isinstance(actual, dict):
        return "output is a map, not a tensor"
    if not isinstance(actual, np.ndarray):
        return f"output is {type(actual).__name__}, not a tensor"
    kinds = {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean"}
    expected, got = kinds.get(reference.dtype.kind), kinds.get(actual.dtype.kind)
    if got is None or expected is None or got != expected:
        return f"output dtype {actual.dtype} is not {expected or reference.dtype} like the reference's {reference.dtype}"
    if expected != "floating point" and actual.dtype != reference.dtype:  # ids past int32 and indices need the width
        return f"output dtype {actual.dtype} is not the reference's {reference.dtype}"
    return None


def compare_outputs(backend: str, references: dict, outputs: dict, tolerance: Tolerance) -> dict[str, Metrics]:
    """Every output by name: PyTorch's (``references``) against a backend's. An output missing
    on either side is a failure that names it; the reference's outputs come first, in order."""
    results = {name: compare(ref, outputs[name], tolerance) if name in outputs
               else failed(f"{backend} has no output {name!r} (it has {', '.join(outputs) or 'none'})")
               for name, ref in references.items()}
    results.update({name: failed(f"{backend} has an output {name!r} that PyTorch does not return "
                                 f"(PyTorch: {', '.join(references)})")
                    for name in outputs if name not in references})
    return results


def compare(reference: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> Metrics:
    """Compare one output. NaN or Inf in ``actual`` is always a failure; so is an output that
    is not a tensor of the reference's kind of dtype (``not_comparable``)."""
    problem = not_comparable(reference, actual)
    if problem:
        return failed(problem)
    if reference.shape != actual.shape:
        return failed(f"shape {tuple(actual.shape)} != reference {tuple(reference.shape)}")
    if reference.dtype.kind != "f":
        return _compare_exactly(reference, actual)
    ref = reference.astype(np.float64)
    out = actual.astype(np.float64)
    if not np.all(np.isfinite(ref)):
        return failed("reference output has NaN/Inf")
    finite = np.isfinite(out)
    if not np.all(finite):
        return failed(f"{int(out.size - np.count_nonzero(finite))} NaN/Inf values in output")
    if out.size == 0:
        return Metrics(0.0, 0.0, 0.0, 1.0, math.inf, True)
    diff = np.abs(out - ref)
    max_abs = float(diff.max())
    mean_abs = float(diff.mean())
    max_rel = float((diff / np.maximum(np.abs(ref), REL_FLOOR)).max())
    cosine = _cosine(ref.ravel(), out.ravel())
    psnr = _psnr(ref, diff)
    scale = float(np.abs(ref).max())
    if tolerance.atol > VACUOUS_ATOL_FRACTION * scale:
        return Metrics(max_abs, mean_abs, max_rel, cosine, psnr, *_scale_aware(ref, diff, cosine, scale, tolerance))
    within = diff <= tolerance.atol + tolerance.rtol * np.abs(ref)
    passed = bool(within.all())
    reason = "" if passed else (f"{int(within.size - np.count_nonzero(within))} of {within.size} values "
                                f"outside atol={tolerance.atol:g} rtol={tolerance.rtol:g}")
    return Metrics(max_abs, mean_abs, max_rel, cosine, psnr, passed, reason)


def _scale_aware(ref: np.ndarray, diff: np.ndarray, cosine: float, scale: float, tolerance: Tolerance
                 ) -> tuple[bool, str]:
    """(passed, reason) for outputs too small for atol to mean anything (random-init heads give
    1e-8; an all-zero graph would pass against 1e-5): the error's norm relative to the
    reference's, which no scale hides; the reason is given on a pass too, so the table says it."""
    norm = float(np.linalg.norm(ref))
    relative = float(np.linalg.norm(diff)) / norm if norm else (0.0 if not diff.any() else math.inf)
    limit = SCALE_AWARE_FACTOR * tolerance.rtol
    passed = relative <= limit
    rule = (f"outputs up to {scale:.3g} are below atol={tolerance.atol:g}'s reach: compared by relative L2 error "
            f"{relative:.3g} (limit {limit:g}), cosine {cosine:.4f}")
    return passed, rule


def _compare_exactly(reference: np.ndarray, actual: np.ndarray) -> Metrics:
    """Integers and booleans (ids, indices, masks) are right or wrong: no tolerance."""
    ref, out = reference.astype(np.float64), actual.astype(np.float64)
    unequal = reference != actual
    diff = np.abs(out - ref)
    count = int(np.count_nonzero(unequal))
    max_abs = float(diff.max()) if diff.size else 0.0
    metrics = (max_abs, float(diff.mean()) if diff.size else 0.0,
               float((diff / np.maximum(np.abs(ref), 1.0)).max()) if diff.size else 0.0,
               _cosine(ref.ravel(), out.ravel()), math.inf if not count else _psnr(ref, diff))
    if count:
        return Metrics(*metrics, False, f"{count} of {unequal.size} {reference.dtype} values differ (compared exactly)")
    return Metrics(*metrics, True)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norm)


def _psnr(ref: np.ndarray, diff: np.ndarray) -> float:
    """Peak = the reference's value range, so PSNR does not depend on the data's offset."""
    mse = float(np.mean(diff**2))
    if mse == 0.0:
        return math.inf
    peak = float(ref.max() - ref.min()) or float(np.abs(ref).max()) or 1.0
    return 10.0 * math.log10(peak**2 / mse)


# The HTML report draws heatmaps at most this many cells a side, so every cell stays at least
# one screen pixel in its figure and a 4096x4096 output makes a small PNG, not a 64 MB one.
HEATMAP_MAX_SIDE = 256
# Histogram bins: decades of |actual - reference|, the smallest ones folded into the first bin.
HIST_BINS_PER_DECADE = 10
HIST_MAX_DECADES = 16


@dataclass
class ErrorPicture:
    """What the HTML report draws for one output: where the error is and how it is spread.

    An upsampler's error is spatial (a border, a seam every s pixels, a half-pixel shift), so
    the map of the worst channel says more about the cause than any single number.
    """

    channel: int  # the channel holding the largest |actual - reference|
    batch: int  # the batch item holding it
    heatmap: np.ndarray  # 2-D float32 |actual - reference| of that batch item and channel
    hist_edges: np.ndarray  # histogram of all |actual - reference| values (log-spaced bins; zeros counted apart)
    hist_counts: np.ndarray
    zeros: int  # how many differences are exactly 0
    position: tuple[int, int]  # (row, column) of the largest difference in the full-size map
    depth: int | None = None  # 5-D outputs: the depth slice the heatmap shows (the one holding the max)
    block: int = 1  # each heatmap cell is the max over block x block output pixels (1: full size)

    @property
    def max_abs(self) -> float:
        return float(self.heatmap.max())


def error_picture(reference: np.ndarray, actual: np.ndarray) -> ErrorPicture | None:
    """The heatmap and histogram of one output's error; None when there is nothing to draw
    (shapes differ, NaN/Inf on either side, empty, or not a 3-D to 5-D output)."""
    if not_comparable(reference, actual) or reference.shape != actual.shape or reference.ndim not in (3, 4, 5) \
            or reference.size == 0:
        return None
    ref = reference.astype(np.float64)
    out = actual.astype(np.float64)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(out))):
        return None
    diff = np.abs(out - ref)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    batch, channel = int(worst[0]), int(worst[1])
    depth = int(worst[2]) if diff.ndim == 5 else None
    full = diff[worst[:-2]] if diff.ndim > 3 else diff[batch, channel][np.newaxis, :]
    position = (int(worst[-2]), int(worst[-1])) if diff.ndim > 3 else (0, int(worst[-1]))
    heatmap, block = _block_max(full.astype(np.float32))
    edges, counts, zeros = _log_histogram(diff)
    return ErrorPicture(channel=channel, batch=batch, heatmap=heatmap, hist_edges=edges, hist_counts=counts,
                        zeros=zeros, position=position, depth=depth, block=block)


def _block_max(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Shrink to HEATMAP_MAX_SIDE a side by the max of square blocks, so no error disappears."""
    block = max(1, math.ceil(max(image.shape) / HEATMAP_MAX_SIDE))
    if block == 1:
        return image, 1
    rows, cols = (math.ceil(n / block) for n in image.shape)
    padded = np.zeros((rows * block, cols * block), dtype=image.dtype)  # |diff| >= 0: zero padding never wins
    padded[: image.shape[0], : image.shape[1]] = image
    return padded.reshape(rows, block, cols, block).max(axis=(1, 3)), block


def _log_histogram(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Decade-aligned log bins over the nonzero differences (exact zeros have no place on a log
    axis, so they are counted apart); differences below the lowest decade count in its bin."""
    nonzero = diff[diff > 0]
    zeros = int(diff.size - nonzero.size)
    if nonzero.size == 0:
        return np.empty(0), np.empty(0, dtype=np.int64), zeros
    top = math.ceil(math.log10(nonzero.max()))
    bottom = max(math.floor(math.log10(nonzero.min())), top - HIST_MAX_DECADES)
    top = max(top, bottom + 1)
    edges = np.logspace(bottom, top, (top - bottom) * HIST_BINS_PER_DECADE + 1)
    counts, _ = np.histogram(np.clip(nonzero, edges[0], edges[-1]), edges)
    return edges, counts, zeros
