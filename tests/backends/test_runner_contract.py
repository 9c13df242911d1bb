"""One contract, every registered backend: available ones must honour it, missing ones must say so."""

import statistics
import time

import numpy as np
import pytest

from deploykit import backends
from deploykit.errors import BackendUnavailable, UserError
from deploykit.export import export_onnx
from deploykit.model_io import make_inputs
from deploykit.spec import reference_outputs
from deploykit.spec import load_model


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory):
    model = load_model("conv_transpose")
    path = export_onnx(model, tmp_path_factory.mktemp("contract") / "m.onnx").path
    return model, path


SHAPES = [(1, 32, 8, 8), (2, 32, 5, 7)]
SLOWER = 20  # executions in the "deliberately slower" reading


def _sync(runner) -> None:
    """Wait for the device's queued work, where the runner computes on one (CUDA)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _reading(runner, prepared, executions: int) -> float:
    """The runner's own clock around ``executions`` executions, checked against a host clock
    around the same call: more than 0, and no more than the host saw from before ``start`` to
    after ``stop`` and a device synchronise (a CUDA event pair lies within that bracket)."""
    _sync(runner)
    watch = runner.stopwatch()
    before = time.perf_counter()
    watch.start()
    for _ in range(executions):
        runner.execute(prepared)
    reading = watch.stop()
    _sync(runner)
    bracket = (time.perf_counter() - before) * 1e3
    assert 0 < reading <= bracket, f"{runner.name}'s clock read {reading} ms inside a {bracket} ms host bracket"
    return reading


@pytest.mark.parametrize("name", backends.names())
def test_backend_contract(name, model_and_onnx):
    model, path = model_and_onnx
    cls = backends.runner_class(name)
    try:
        cls.check_available()
    except BackendUnavailable as exc:
        assert exc.fix, "an unavailable backend must say how to get it"
        pytest.skip(f"{name} not available here: {exc}")
    # shapes: what an engine built for this runner (trt) must cover, as check passes them
    runner = cls(backends.RunnerOptions(model=model, onnx_path=path, threads=1, shapes=SHAPES))
    assert not runner.active
    with pytest.raises(RuntimeError, match="before activate"):
        runner.infer(make_inputs((1, 32, 8, 8), 0))
    with runner:
        assert runner.active
        info = runner.describe()
        assert {"device", "threads"} <= set(info)
        for shape in SHAPES:
            inputs = make_inputs(shape, 0)
            outputs = runner.infer(inputs)
            assert list(outputs) == ["output"] and all(isinstance(o, np.ndarray) for o in outputs.values())
            np.testing.assert_allclose(outputs["output"], reference_outputs(model, inputs)["output"],
                                       atol=1e-4, rtol=1e-4)
            # the stopwatch times the execution: a reading within a host bracket around it, that
            # grows with a deliberately slower execution (the same call SLOWER times over)
            prepared = runner.prepare(inputs)
            once = statistics.median(_reading(runner, prepared, 1) for _ in range(5))
            slower = statistics.median(_reading(runner, prepared, SLOWER) for _ in range(3))
            assert slower > SLOWER / 4 * once, f"{name} at {shape}: {once} ms once, {slower} ms {SLOWER} times"
    assert not runner.active


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(UserError, match="choose from torch, torch-cuda, ort"):
        backends.parse_backends("torch,tensorrtt")


def test_backends_are_deduplicated_in_order():
    assert backends.parse_backends("ort, torch,ort") == ["ort", "torch"]


def test_listing_backends_imports_no_runtime():
    import subprocess
    import sys

    code = ("import sys, deploykit.backends as b; b.names(); b.parse_backends('torch,ort');"
            "print(sorted(m for m in ('onnxruntime', 'torch', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
