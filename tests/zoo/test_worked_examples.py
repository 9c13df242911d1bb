"""The two worked examples from the reference material, through the zoo's own modules."""

import torch

from deploykit.spec import load_model


def test_maxpool_3x3_stride_1_indices_and_unpool():
    model = load_model("max_unpool", {"channels": "1", "kernel_size": "3", "stride": "1", "padding": "0",
                                      "output_size": "true"})
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 9.0], [7.0, 8.0, 6.0]]]])
    pooled, indices = model.module.pool(x)
    assert pooled.tolist() == [[[[9.0]]]]
    assert indices.tolist() == [[[[5]]]]
    restored = model.forward(x)
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 1, 2] = 9.0
    assert torch.equal(restored, expected)


IMAGE = [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]]
KERNEL = [[0, 1, 2], [2, 2, 0], [0, 1, 2]]


def _conv(stride, padding):
    model = load_model("conv", {"in_channels": "1", "out_channels": "1", "kernel_size": "3", "stride": str(stride),
                                "padding": str(padding), "bias": "false"})
    with torch.no_grad():
        model.module.weight.copy_(torch.tensor(KERNEL, dtype=torch.float32).view(1, 1, 3, 3))
    out = model.forward(torch.tensor(IMAGE, dtype=torch.float32).view(1, 1, 5, 5))
    return out[0, 0].to(torch.int64).tolist()


def test_conv_5x5_input_3x3_kernel_stride_1():
    assert _conv(1, 0) == [[12, 12, 17], [10, 17, 19], [9, 6, 14]]


def test_conv_5x5_input_3x3_kernel_stride_2():
    assert _conv(2, 0) == [[12, 17], [9, 14]]


def test_conv_5x5_input_3x3_kernel_padding_1():
    assert _conv(1, 1) == [[6, 14, 17, 11, 3], [14, 12, 12, 17, 11], [8, 10, 17, 19, 13],
                           [11, 9, 6, 14, 12], [6, 4, 4, 6, 4]]
    assert _conv(2, 1) == [[6, 17, 3], [8, 17, 13], [6, 4, 4]]
