"""Which backends run: substitutes for plugin graphs, routine skips, and plans that prove nothing."""

import importlib.util

import numpy as np
import pytest

from deploykit.backends import RunnerOptions
from deploykit.backends.runners import PLUGIN_SUBSTITUTES, plan_backends
from deploykit.errors import UserError

needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")


@needs_ort
def test_a_plugin_graph_runs_on_onnx_runtime_with_deploykits_library(ort_custom_ops):
    plan = plan_backends(["torch", "ort"], RunnerOptions(), plugin_graph=True)
    assert list(plan.classes) == ["torch", "ort"] and plan.asked == {"torch": "torch", "ort": "ort"}
    assert plan.ort_custom_ops == ort_custom_ops and plan.substitute_why is None


@needs_ort
def test_without_the_library_a_plugin_graph_runs_on_the_numpy_reference_saying_why(without_ort_library):
    plan = plan_backends(["torch", "ort"], RunnerOptions(), plugin_graph=True)
    assert list(plan.classes) == ["torch", "onnx-ref"]
    assert plan.asked == {"torch": "torch", "ort": "onnx-ref"} and plan.needs_onnx
    assert PLUGIN_SUBSTITUTES["ort"] == "onnx-ref" and plan.ort_custom_ops is None
    assert "DEPLOYKIT_ORT_INCLUDE_DIR" in plan.substitute_why


def test_a_plugin_graph_needs_no_library_when_no_onnx_runtime_backend_runs(without_ort_library):
    plan = plan_backends(["torch", "onnx-ref"], RunnerOptions(), plugin_graph=True)
    assert plan.substitute_why is None and plan.ort_custom_ops is None


@needs_ort
def test_a_standard_graph_runs_where_asked():
    plan = plan_backends(["torch", "ort"], RunnerOptions(), plugin_graph=False)
    assert list(plan.classes) == ["torch", "ort"] and not plan.skipped and not plan.runs_tensorrt


def test_bench_refuses_to_time_the_substitute(without_ort_library):
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


class _FakeValue:
    """onnxruntime.OrtValue's double: where a value lives, and what was copied into it."""

    def __init__(self, array, device):
        self.array, self.device, self.updates = array, device, 0

    @classmethod
    def ortvalue_from_numpy(cls, array, device, index):
        return cls(array, device)

    def update_inplace(self, array):
        self.updates += 1


class _FakeBinding:
    def __init__(self):
        self.inputs, self.outputs, self.events = {}, {}, []

    def bind_ortvalue_input(self, name, value):
        self.inputs[name] = value

    def bind_output(self, name, device):
        self.outputs[name] = device

    def synchronize_inputs(self):
        self.events.append("sync inputs")

    def synchronize_outputs(self):
        self.events.append("sync outputs")

    def copy_outputs_to_cpu(self):
        self.events.append("to cpu")
        return [np.ones((1, 2), np.float32)]


class _FakeSession:
    def __init__(self):
        self.runs = []

    def io_binding(self):
        return _FakeBinding()

    def run_with_iobinding(self, binding, run_options=None):
        self.runs.append(binding)

    def run(self, *args, **kwargs):
        raise AssertionError("ort-cuda must not run on host arrays: copies would be inside its time")


def test_ort_cuda_executes_on_bound_device_buffers_and_copies_apart(monkeypatch):
    import onnxruntime

    from deploykit.backends.ort import OrtCudaRunner

    monkeypatch.setattr(onnxruntime, "OrtValue", _FakeValue)
    runner = OrtCudaRunner(RunnerOptions())
    runner.session, runner.run_options = _FakeSession(), None
    runner.input_names, runner.input_dtypes, runner.output_names = ["input"], [np.float32], ["output"]
    binding = runner.prepare({"input": np.zeros((1, 2), np.float32)})
    assert binding.inputs["input"].device == "cuda" and binding.outputs == {"output": "cuda"}
    assert runner.execute(binding) is binding and runner.session.runs == [binding]
    assert binding.events == ["sync inputs", "sync outputs"]  # the clock stops after the GPU is done
    assert list(runner.fetch(binding)) == ["output"]
    to_device, to_host = runner.copies(binding, binding)
    to_device()
    to_host()
    assert binding.inputs["input"].updates == 1 and binding.events[-1] == "to cpu"


def test_tensorrt_profiles_cover_every_input_of_every_case():
    from deploykit.backends.trt_engine import Profile, profiles_from_cases
    from deploykit.model_io import Case

    cases = [Case({"image": (1, 3, 8, 8), "mask": (1, 1, 8, 8)}), Case({"image": (2, 3, 10, 12), "mask": (2, 1, 10, 12)})]
    assert profiles_from_cases(cases, ["image", "mask"]) == {
        "image": Profile((1, 3, 8, 8), (1, 3, 8, 8), (2, 3, 10, 12)),
        "mask": Profile((1, 1, 8, 8), (1, 1, 8, 8), (2, 1, 10, 12))}
    assert profiles_from_cases([(1, 3, 4, 4), (2, 3, 6, 6)], ["input"]) == {
        "input": Profile((1, 3, 4, 4), (1, 3, 4, 4), (2, 3, 6, 6))}


@pytest.mark.parametrize("gpu_backend", ["torch-cuda", "ort-cuda", "ort-trt", "trt"])
def test_one_rule_for_a_gpu_backend_that_cannot_run_here_it_is_skipped_with_why(gpu_backend):
    from deploykit.backends import runner_class
    from deploykit.errors import BackendUnavailable

    try:
        runner_class(gpu_backend).check_available()
        pytest.skip(f"{gpu_backend} runs here: nothing is skipped")
    except BackendUnavailable as exc:
        why = str(exc)
    plan = plan_backends(["torch", "onnx-ref", gpu_backend], RunnerOptions(), plugin_graph=False)
    assert plan.skipped == {gpu_backend: why} and list(plan.classes) == ["torch", "onnx-ref"]
