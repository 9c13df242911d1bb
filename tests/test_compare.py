import math

import numpy as np
import pytest

from deploykit.compare import HEATMAP_MAX_SIDE, PRESETS, compare, error_picture, tolerance_for


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


def _noisy(shape, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(shape).astype(np.float32)
    return ref, ref + rng.uniform(-1e-6, 1e-6, shape).astype(np.float32)


def test_error_picture_finds_a_planted_error_where_it_was_planted():
    ref, out = _noisy((3, 5, 37, 45))
    out[2, 3, 17, 40] += 0.5
    picture = error_picture(ref, out)
    assert (picture.batch, picture.channel, picture.position) == (2, 3, (17, 40))
    assert picture.heatmap.shape == (37, 45) and picture.heatmap.dtype == np.float32 and picture.block == 1
    assert np.unravel_index(np.argmax(picture.heatmap), picture.heatmap.shape) == (17, 40)
    assert picture.max_abs == pytest.approx(0.5, rel=1e-4) and picture.depth is None


def test_error_picture_of_a_seam_shows_the_seam():
    """A seam every 2 columns (an upsampler's typical fault) is the heatmap's bright columns."""
    ref, out = _noisy((2, 4, 16, 24))
    out[1, 2, :, ::2] += 1e-3
    picture = error_picture(ref, out)
    assert (picture.batch, picture.channel) == (1, 2)
    column_max = picture.heatmap.max(axis=0)
    assert np.all(column_max[::2] > 5e-4) and np.all(column_max[1::2] < 5e-6)


def test_error_picture_3d_and_5d_outputs():
    ref, out = _noisy((2, 3, 50))
    out[1, 2, 33] += 1.0
    line = error_picture(ref, out)
    assert line.heatmap.shape == (1, 50) and (line.batch, line.channel, line.position) == (1, 2, (0, 33))

    ref, out = _noisy((2, 3, 6, 7, 8))
    out[0, 1, 4, 5, 6] += 1.0
    volume = error_picture(ref, out)
    assert (volume.batch, volume.channel, volume.depth, volume.position) == (0, 1, 4, (5, 6))
    assert volume.heatmap.shape == (7, 8) and volume.heatmap[5, 6] == volume.max_abs


def test_error_picture_histogram_counts_every_difference_once():
    ref, out = _noisy((2, 3, 20, 30))
    out[0, 0, :5] = ref[0, 0, :5]  # 150 exact zeros
    out[1, 2, 3, 4] = ref[1, 2, 3, 4] + 7.0
    picture = error_picture(ref, out)
    assert picture.zeros >= 150
    assert int(picture.hist_counts.sum()) + picture.zeros == ref.size
    edges = picture.hist_edges
    assert len(edges) == len(picture.hist_counts) + 1 and np.all(np.diff(np.log10(edges)) > 0)
    assert edges[0] <= 1e-8 and edges[-1] >= 7.0
    assert picture.hist_counts[np.searchsorted(edges, 7.0, side="right") - 1] == 1  # the planted 7.0, alone


def test_error_picture_of_identical_outputs_counts_only_zeros():
    ref, _ = _noisy((1, 2, 4, 4))
    picture = error_picture(ref, ref.copy())
    assert picture.zeros == ref.size and picture.hist_counts.size == 0 and picture.max_abs == 0.0


def test_error_picture_tiny_differences_fold_into_the_lowest_bin():
    ref = np.zeros((1, 1, 2, 2), dtype=np.float32)
    out = np.array([[[[1e-30, 1e-3], [1.0, 0.0]]]], dtype=np.float32)
    picture = error_picture(ref, out)
    assert int(picture.hist_counts.sum()) == 3 and picture.zeros == 1 and picture.hist_counts[0] == 1


def test_error_picture_downsamples_large_maps_by_block_max():
    ref = np.zeros((1, 1, 4096, 4096), dtype=np.float32)
    out = ref.copy()
    out[0, 0, 4000, 123] = 0.25
    picture = error_picture(ref, out)
    assert max(picture.heatmap.shape) <= HEATMAP_MAX_SIDE and picture.block == 16
    assert picture.heatmap[4000 // 16, 123 // 16] == 0.25 and picture.max_abs == 0.25
    assert picture.position == (4000, 123)


def test_error_picture_none_when_nothing_to_draw():
    ref = np.zeros((1, 2, 3, 3), dtype=np.float32)
    assert error_picture(ref, np.zeros((1, 2, 3, 4), dtype=np.float32)) is None
    bad = ref.copy()
    bad[0, 1, 2, 2] = np.nan
    assert error_picture(ref, bad) is None and error_picture(bad, ref) is None
    assert error_picture(np.zeros((2, 3)), np.zeros((2, 3))) is None
