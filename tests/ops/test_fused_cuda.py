"""The fused kernel on a CUDA GPU: the same results as the CPU loop and the reference, NaN/Inf
placed as grid_sample places them, fp16 in and out with fp32 arithmetic (pytest -m gpu)."""

import pytest
import torch

from deploykit.ops.fused import fused_sample
from deploykit.ops.reference import reference_sample

pytestmark = pytest.mark.gpu


def _problem(seed, batch=2, channels=8, height=7, width=9, scale=2, groups=2, spread=3.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=gen)
    offset = torch.randn(batch, 2 * groups * scale * scale, height, width, generator=gen) * spread
    return x, offset, scale, groups


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("scale, groups", [(2, 4), (3, 2), (4, 1)])
def test_cuda_equals_the_cpu_loop_bit_for_bit_and_the_reference(seed, scale, groups):
    x, offset, scale, groups = _problem(seed, channels=4 * groups, scale=scale, groups=groups,
                                        spread=[0.3, 3.0, 40.0][seed % 3])
    on_cpu = fused_sample(x, offset, scale, groups)
    on_gpu = fused_sample(x.cuda(), offset.cuda(), scale, groups).cpu()
    assert torch.equal(on_gpu, on_cpu)
    torch.testing.assert_close(on_gpu, reference_sample(x, offset, scale, groups), atol=2e-5, rtol=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_land_where_the_reference_puts_them(value):
    x, offset, scale, groups = _problem(1)
    x[0, 0, 3, 4] = value
    reference = reference_sample(x, offset, scale, groups)
    on_gpu = fused_sample(x.cuda(), offset.cuda(), scale, groups).cpu()
    assert torch.equal(torch.isnan(on_gpu), torch.isnan(reference))
    assert torch.equal(torch.isinf(on_gpu), torch.isinf(reference))
    finite = torch.isfinite(reference)
    torch.testing.assert_close(on_gpu[finite], reference[finite], atol=2e-5, rtol=0)


def test_fp16_in_and_out_with_fp32_arithmetic():
    x, offset, scale, groups = _problem(2, channels=16, height=12, width=10)
    half = fused_sample(x.half().cuda(), offset.half().cuda(), scale, groups)
    assert half.dtype == torch.float16 and half.is_cuda
    exact = reference_sample(x.half().float(), offset.half().float(), scale, groups)
    torch.testing.assert_close(half.float().cpu(), exact, atol=2e-3, rtol=2e-3)


def test_a_large_problem_uses_every_block_and_stays_exact():
    x, offset, scale, groups = _problem(3, batch=2, channels=64, height=60, width=61, groups=4)
    on_gpu = fused_sample(x.cuda(), offset.cuda(), scale, groups).cpu()
    assert torch.equal(on_gpu, fused_sample(x, offset, scale, groups))
