"""Which backends run: substitutes for plugin graphs, routine skips, and plans that prove nothing."""

import importlib.util

import pytest

from deploykit.backends import RunnerOptions
from deploykit.backends.runners import PLUGIN_SUBSTITUTES, plan_backends
from deploykit.errors import UserError

needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")


@needs_ort
def test_a_plugin_graph_runs_on_the_numpy_reference_instead_of_onnx_runtime():
    plan = plan_backends(["torch", "ort"], RunnerOptions(), plugin_graph=True)
    assert list(plan.classes) == ["torch", "onnx-ref"]
    assert plan.asked == {"torch": "torch", "ort": "onnx-ref"} and plan.needs_onnx
    assert PLUGIN_SUBSTITUTES["ort"] == "onnx-ref"


@needs_ort
def test_a_standard_graph_runs_where_asked():
    plan = plan_backends(["torch", "ort"], RunnerOptions(), plugin_graph=False)
    assert list(plan.classes) == ["torch", "ort"] and not plan.skipped and not plan.runs_tensorrt


def test_bench_refuses_to_time_the_substitute():
    with pytest.raises(UserError, match="not worth timing"):
        plan_backends(["ort"], RunnerOptions(), plugin_graph=True, allow_substitutes=False)


def test_torch_alone_needs_no_onnx_file():
    assert not plan_backends(["torch"], RunnerOptions(), plugin_graph=False).needs_onnx


def test_tensorrt_missing_is_skipped_with_why_unless_nothing_exported_would_run():
    from deploykit.backends.trt import TrtRunner
    from deploykit.errors import BackendUnavailable

    try:
        TrtRunner.check_available()
        pytest.skip("TensorRT runs here: nothing is skipped")
    except BackendUnavailable as exc:
        why = str(exc)
    if importlib.util.find_spec("onnxruntime") is not None:
        plan = plan_backends(["torch", "ort", "trt"], RunnerOptions(), plugin_graph=False)
        assert plan.skipped == {"trt": why} and "trt" not in plan.classes
    with pytest.raises(UserError, match="every backend that runs the exported graph or engine was skipped"):
        plan_backends(["torch", "trt"], RunnerOptions(), plugin_graph=False)
