import math

import numpy as np
import pytest

from deploykit.compare import PRESETS, compare, tolerance_for


def test_identical_outputs_pass_with_infinite_psnr():
    ref = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    m = compare(ref, ref.copy(), PRESETS["fp32"])
    assert m.passed and m.max_abs == 0 and m.cosine == pytest.approx(1.0) and math.isinf(m.psnr)
    assert m.as_json()["psnr"] is None


def test_metrics_values():
    ref = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    out = np.array([1.0, 2.5, 4.0], dtype=np.float32)
    m = compare(ref, out, PRESETS["fp32"])
    assert not m.passed
    assert m.max_abs == pytest.approx(0.5) and m.mean_abs == pytest.approx(0.5 / 3)
    assert m.max_rel == pytest.approx(0.25)
    # peak = value range 3, mse = 0.25/3
    assert m.psnr == pytest.approx(10 * math.log10(9 / (0.25 / 3)))
    assert "1 of 3 values" in m.reason


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_always_fails(bad):
    ref = np.zeros(4, dtype=np.float32)
    out = ref.copy()
    out[2] = bad
    m = compare(ref, out, tolerance_for("fp32", atol=1e9, rtol=1e9))
    assert not m.passed and "NaN/Inf" in m.reason


def test_shape_mismatch_fails():
    m = compare(np.zeros((1, 2)), np.zeros((2, 1)), PRESETS["fp32"])
    assert not m.passed and "shape" in m.reason


def test_tolerance_is_allclose_semantics_and_overridable():
    ref = np.array([100.0], dtype=np.float32)
    out = np.array([100.005], dtype=np.float32)
    assert compare(ref, out, PRESETS["fp32"]).passed  # 1e-4 + 1e-4 * 100 = 0.0101
    assert not compare(ref, out, tolerance_for("fp32", rtol=0.0)).passed
    assert tolerance_for("fp16").atol > tolerance_for("fp32").atol
