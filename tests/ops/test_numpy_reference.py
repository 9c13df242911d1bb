"""The NumPy implementation of the deploykit::DySample node against the PyTorch reference."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deploykit.ops.numpy_reference import numpy_sample
from deploykit.ops.reference import reference_sample


@settings(max_examples=100, deadline=None)
@given(scale=st.integers(2, 4), groups=st.integers(1, 3), per_group=st.integers(1, 3), batch=st.integers(1, 2),
       height=st.integers(1, 8), width=st.integers(1, 8), spread=st.sampled_from([0.3, 3.0, 40.0]),
       integer=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_numpy_node_matches_reference(scale, groups, per_group, batch, height, width, spread, integer, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, groups * per_group, height, width, generator=gen)
    offset = torch.randn(batch, 2 * groups * scale * scale, height, width, generator=gen) * spread
    if integer:
        offset = offset.round()
    expected = reference_sample(x, offset, scale, groups).numpy()
    actual = numpy_sample(x.numpy(), offset.numpy(), scale, groups)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= 1e-5


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="do not fit"):
        numpy_sample(np.zeros((1, 4, 3, 3), np.float32), np.zeros((1, 7, 3, 3), np.float32), 2, 1)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_an_out_of_plane_tap_adds_exactly_zero_whatever_the_pixel_it_would_read(value):
    """bilinear_sum's rule (the fused kernel's, grid_sample's): Inf or NaN in x reaches the output
    only through in-plane taps; the first pixel is what an out-of-plane tap's index points at."""
    from deploykit.ops.fused import fused_sample

    x = np.array([[[[value, 1.0, 2.0]]]], np.float32)
    offset = np.zeros((1, 2, 1, 3), np.float32)
    got = numpy_sample(x, offset, 1, 1)
    want = fused_sample(torch.from_numpy(x), torch.from_numpy(offset), 1, 1).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[0, 0, 0, 1:], [1.0, 2.0])
