"""Max-pool indices exported as window taps (--maxpool-impl window) are PyTorch's, exactly.

Each export costs seconds, so one graph holds a bank of pools side by side (together every
kernel 1..4 with every stride 1..3, padding up to kernel // 2, dilation 1 and 2, ceil_mode off
and on) and every test input runs through all of them at once.
"""

import contextlib
import io
import logging
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from deploykit.export.lint import lint
from deploykit.export.maxpool_indices import DEFAULT_MAXPOOL_IMPL, MAXPOOL_IMPLS, translation_table

DYNAMIC = ({0: "batch", 2: "height", 3: "width"},)
TRT_SAFE = DEFAULT_MAXPOOL_IMPL["trt"]


def export(module, impl=TRT_SAFE, trace_shape=(2, 3, 13, 11)):
    """``module`` exported with dynamic batch, height and width: (ONNX model, ORT session)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            program = torch.onnx.export(module, (torch.randn(*trace_shape),), dynamo=True, optimize=True,
                                        dynamic_shapes=DYNAMIC, custom_translation_table=translation_table(impl))
        finally:
            logging.disable(logging.NOTSET)
    proto = program.model_proto
    return proto, ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run(session, x):
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def _pool(kernel_size, stride, padding, dilation, ceil_mode):
    return dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)


# every kernel 1..4 with every stride 1..3, every padding PyTorch allows (up to kernel // 2),
# dilation 1 and 2, ceil_mode off and on; rectangular settings last
BANKS = {
    "kernel 1-2": [_pool(1, 1, 0, 1, False), _pool(1, 2, 0, 2, True), _pool(1, 3, 0, 1, True),
                   _pool(2, 1, 1, 2, True), _pool(2, 2, 0, 1, False), _pool(2, 3, 1, 1, True)],
    "kernel 3": [_pool(3, 1, 1, 2, True), _pool(3, 2, 0, 1, False), _pool(3, 3, 1, 1, True)],
    "kernel 4": [_pool(4, 1, 2, 2, True), _pool(4, 2, 1, 1, False), _pool(4, 3, 0, 1, True)],
    "rectangular": [_pool((2, 3), (1, 2), (1, 0), (1, 3), True), _pool((4, 1), (3, 1), (2, 0), (2, 1), False),
                    _pool((3, 2), (2, 3), (0, 1), 1, True)],
}


class PoolBank(nn.Module):
    """Several max pools with indices applied to one input: (values, indices) of each, flat."""

    def __init__(self, configs):
        super().__init__()
        self.configs = configs

    def forward(self, x):
        return tuple(out for config in self.configs for out in F.max_pool2d(x, return_indices=True, **config))


@pytest.fixture(scope="module", params=sorted(BANKS))
def bank(request):
    configs = BANKS[request.param]
    proto, session = export(PoolBank(configs))
    return configs, proto, session


def assert_indices_match(configs, session, x, values_too=True):
    got = run(session, x)
    for i, config in enumerate(configs):
        values, indices = F.max_pool2d(x, return_indices=True, **config)
        assert got[2 * i + 1].dtype == np.int64
        np.testing.assert_array_equal(got[2 * i + 1], indices.numpy(), err_msg=str(config))
        if values_too:
            np.testing.assert_array_equal(got[2 * i], values.numpy(), err_msg=str(config))


def _tie_heavy_inputs():
    """Inputs where windows have several maxima: integer-valued, ReLU'd, constant."""
    generator = torch.Generator().manual_seed(0)
    for b, h, w in [(1, 9, 9), (2, 13, 11), (3, 10, 17), (4, 12, 12)]:
        yield "integers", torch.randint(-2, 3, (b, 3, h, w), generator=generator).float()
        yield "relu", torch.relu(torch.randn(b, 3, h, w, generator=generator))
        yield "zeros", torch.zeros(b, 3, h, w)
        yield "ones", torch.ones(b, 3, h, w)
    yield "distinct", torch.randn(2, 3, 15, 19, generator=generator)


@pytest.mark.parametrize("kind, x", list(_tie_heavy_inputs()), ids=lambda v: v if isinstance(v, str) else "")
def test_indices_and_values_match_pytorch_exactly(bank, kind, x):
    configs, _, session = bank
    assert_indices_match(configs, session, x)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 3), height=st.integers(9, 16), width=st.integers(9, 16),
       levels=st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.0, -1.0]), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_random_shapes_and_few_distinct_values(bank, batch, height, width, levels, seed):
    configs, _, session = bank
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.choice(levels, size=(batch, 3, height, width)).astype(np.float32))
    assert_indices_match(configs, session, x)


def test_nan_is_the_maximum_and_the_last_nan_wins(bank):
    """PyTorch's kernels take a NaN as the new maximum ((val > max) || isnan(val)). The
    indices follow it; the values come from MaxPool, where ONNX Runtime's CPU kernel does not
    always return the NaN, so only the indices are compared."""
    configs, _, session = bank
    x = torch.relu(torch.randn(2, 3, 13, 12, generator=torch.Generator().manual_seed(1)))
    x.view(-1)[::5] = float("nan")
    assert_indices_match(configs, session, x, values_too=False)


def test_all_minus_infinity_windows_pick_their_first_element_not_the_padding(bank):
    """Indices only: ONNX Runtime's CPU MaxPool returns float32's lowest (-3.4e38), not -inf,
    for a window of -inf."""
    configs, _, session = bank
    x = torch.full((1, 3, 11, 10), float("-inf"))
    x[0, 1, 4:7, 3:6] = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert_indices_match(configs, session, x, values_too=False)


def test_graph_has_no_maxpool_indices_and_passes_the_tensorrt_lint(bank):
    _, proto, _ = bank
    pools = [node for node in proto.graph.node if node.op_type == "MaxPool"]
    assert all(len(node.output) == 1 for node in pools)
    assert all(a.ints == [1, 1] for node in pools for a in node.attribute if a.name == "dilations")
    assert not {"ArgMax", "TopK", "MaxUnpool"} & {node.op_type for node in proto.graph.node}
    assert lint(proto, "trt") == []


class PoolUnpool(nn.Module):
    """A user's SegNet step written with the functional API (and overlapping windows)."""

    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.pool = dict(kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x):
        values, indices = F.max_pool2d(x, return_indices=True, **self.pool)
        return F.max_unpool2d(values, indices, output_size=x.shape[-2:], **self.pool)


@pytest.mark.parametrize("kernel_size, stride, padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (4, 1, 2)])
def test_unpool_through_scatternd_matches_with_overlapping_windows(kernel_size, stride, padding):
    """With stride < kernel several windows select the same element; every write to it
    carries that element's own value, so ScatterND's unspecified order cannot matter."""
    module = PoolUnpool(kernel_size, stride, padding)
    proto, session = export(module)
    ops = {node.op_type for node in proto.graph.node}
    assert "ScatterND" in ops and "MaxUnpool" not in ops
    assert lint(proto, "trt") == []
    generator = torch.Generator().manual_seed(kernel_size)
    for shape in [(1, 3, 9, 9), (2, 3, 13, 11), (3, 3, 8, 15)]:
        x = torch.relu(torch.randint(-1, 3, shape, generator=generator).float())
        np.testing.assert_array_equal(run(session, x)[0], module(x).numpy())


def test_worked_example_3x3_stride_1_index_5_unpools_to_row_1_column_2():
    from deploykit.spec import load_model

    model = load_model("max_unpool", {"channels": "1", "kernel_size": "3", "stride": "1", "padding": "0"})
    _, session = export(model.module, trace_shape=(2, 1, 5, 7))
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 9.0], [7.0, 8.0, 6.0]]]])
    expected = np.zeros((1, 1, 3, 3), np.float32)
    expected[0, 0, 1, 2] = 9.0
    np.testing.assert_array_equal(run(session, x)[0], expected)
    _, indices_session = export(PoolBank([dict(kernel_size=3, stride=1)]), trace_shape=(2, 1, 5, 7))
    values, indices = run(indices_session, x)
    assert values.tolist() == [[[[9.0]]]] and indices.tolist() == [[[[5]]]]


class PoolingVariants(nn.Module):
    """nn.MaxPool2d with and without indices, unbatched input, indices discarded."""

    def __init__(self):
        super().__init__()
        self.with_indices = nn.MaxPool2d(3, 2, 1, return_indices=True)
        self.values_only = nn.MaxPool2d(2, 2)

    def forward(self, x):
        values, indices = self.with_indices(x)
        unbatched_values, unbatched_indices = self.with_indices(x[0])
        return values, indices, unbatched_values, unbatched_indices, self.values_only(x)


def test_module_api_and_unbatched_input():
    module = PoolingVariants()
    _, session = export(module)
    for shape in [(1, 3, 9, 9), (3, 3, 14, 11)]:
        x = torch.relu(torch.randint(-1, 2, shape).float())
        for got, expected in zip(run(session, x), module(x)):
            np.testing.assert_array_equal(got, expected.numpy())


class IndicesUnused(nn.Module):
    def forward(self, x):
        values, _ = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        return values, F.max_pool2d(x, 2)


def test_pools_whose_indices_are_unused_stay_one_plain_maxpool():
    proto, _ = export(IndicesUnused())
    assert [node.op_type for node in proto.graph.node] == ["MaxPool", "MaxPool"]


class DilatedPool(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x, 3, 2, 1, dilation=2)


def test_dilated_pool_without_indices_is_computed_without_maxpool_for_tensorrt():
    """TensorRT's parser ignores MaxPool's dilations, so the window taps compute the values."""
    proto, session = export(DilatedPool())
    assert "MaxPool" not in {node.op_type for node in proto.graph.node}
    x = torch.randn(2, 3, 12, 17)
    np.testing.assert_array_equal(run(session, x)[0], DilatedPool()(x).numpy())


def test_native_keeps_maxpool_indices_which_the_tensorrt_lint_flags():
    assert translation_table("native") == {}
    proto, session = export(PoolUnpool(2, 2, 0), impl="native")
    findings = lint(proto, "trt")
    assert findings and all(f.op_type == "MaxPool" and "Indices" in f.why for f in findings)
    assert all("--maxpool-impl window" in f.fix for f in findings)
    x = torch.relu(torch.randn(2, 3, 10, 12))
    np.testing.assert_array_equal(run(session, x)[0], PoolUnpool(2, 2, 0)(x).numpy())


def test_impls_and_defaults():
    assert MAXPOOL_IMPLS[0] == "native" and set(DEFAULT_MAXPOOL_IMPL.values()) <= set(MAXPOOL_IMPLS)
    assert DEFAULT_MAXPOOL_IMPL["trt"] != "native"
    with pytest.raises(ValueError, match="native"):
        translation_table("argmax")


def test_fp16_graph_indices_match():
    module = PoolBank([dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)]).half()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (torch.randn(2, 3, 13, 11).half(),), dynamo=True, optimize=True,
                                    dynamic_shapes=DYNAMIC, custom_translation_table=translation_table(TRT_SAFE))
    onnx.checker.check_model(program.model_proto, full_check=True)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.relu(torch.randint(-1, 3, (3, 3, 10, 9)).half())
    indices = F.max_pool2d(x.float(), 3, 2, 1, ceil_mode=True, return_indices=True)[1]
    np.testing.assert_array_equal(run(session, x)[1], indices.numpy())
