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


def compare(reference: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> Metrics:
    """Compare one output. NaN or Inf in ``actual`` is always a failure."""
    if reference.shape != actual.shape:
        return failed(f"shape {tuple(actual.shape)} != reference {tuple(reference.shape)}")
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
    within = diff <= tolerance.atol + tolerance.rtol * np.abs(ref)
    passed = bool(within.all())
    reason = "" if passed else (f"{int(within.size - np.count_nonzero(within))} of {within.size} values "
                                f"outside atol={tolerance.atol:g} rtol={tolerance.rtol:g}")
    return Metrics(max_abs, mean_abs, max_rel, cosine, psnr, passed, reason)


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
