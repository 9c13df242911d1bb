"""TensorRT's runner: an engine, given (--engine) or built for the shapes to run, executed by
check and bench.

Buffers are PyTorch CUDA tensors on a stream of the runner's own, execution is timed with
CUDA events (copies apart), and a CUDA graph can replay it. On machines without TensorRT or
a GPU this module is never imported by the CPU path, and check/bench mark the backend skipped
with the reason. The build itself is deploykit.backends.trt_engine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.backends.base import Runner, RunnerOptions
from deploykit.backends.trt_engine import (TrtLogger, build_engine, load_plugins, profiles_from_cases, require_gpu,
                                           tensorrt_module)
from deploykit.clocks import CudaEventStopwatch
from deploykit.errors import UserError
from deploykit.files import note_scratch
from deploykit.model_io import shape_text


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
                 "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8"}


class TrtRunner(Runner):
    """A TensorRT engine, given (--engine) or built from the ONNX file for the shapes to run."""

    name = "trt"
    needs_onnx = True
    skip_when_unavailable = True

    @classmethod
    def needs_onnx_file(cls, options: RunnerOptions) -> bool:
        return not options.engine_path

    @classmethod
    def check_available(cls) -> None:
        tensorrt_module()
        require_gpu()

    def _activate(self) -> None:
        import torch

        trt = tensorrt_module()
        self._trt, self._torch = trt, torch
        log = self._log = TrtLogger(trt)
        load_plugins(trt, self.options.plugins)
        engine_path = self.options.engine_path
        if self.options.precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16") and engine_path is None:
            raise UserError(f"TensorRT {trt.__version__} builds only what the graph says (no FP16 flag)",
                            "export an fp16 graph (deploykit export --precision fp16) and pass it with --onnx")
        if engine_path is None:
            self._work = tempfile.TemporaryDirectory(prefix="deploykit-trt-")
            note_scratch(self._work.name)  # removed by the supervisor if the run is killed
            engine_path = Path(self._work.name) / "model.engine"
            profiles = None
            if self.options.shapes and self.options.onnx_path is not None:
                profiles = profiles_from_cases(self.options.shapes, self._input_names())
            build_engine(self.options.onnx_path, engine_path, fp16=self.options.precision == "fp16",
                         plugins=self.options.plugins, profiles=profiles)
        elif not Path(engine_path).is_file():
            raise UserError(f"engine {engine_path} not found", "build one with 'deploykit build'")
        runtime = trt.Runtime(log.logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            hint = ("pass the plugin library with --plugin (e.g. build/libdeploykit_trt_plugins.so)"
                    if "plugin" in log.last_error().lower() else "rebuild the engine with this TensorRT version")
            raise UserError(f"TensorRT could not load engine {engine_path}: {log.last_error()}", hint)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        # A stream of our own: on the legacy default stream TensorRT adds device-wide syncs.
        self.stream = torch.cuda.Stream()
        self._graphs: dict[tuple, Any] = {}

    def _input_names(self) -> list[str]:
        import onnx

        graph = onnx.load(str(self.options.onnx_path), load_external_data=False).graph
        return [value.name for value in graph.input]

    def _deactivate(self) -> None:
        self._graphs.clear()
        del self.context, self.engine
        if getattr(self, "_work", None):
            self._work.cleanup()

    def _dtype(self, name: str):
        kind = self.engine.get_tensor_dtype(name).name
        if kind not in _TORCH_DTYPES:
            raise UserError(f"engine tensor {name!r} has type {kind}, which deploykit cannot feed or read",
                            "keep the engine's inputs and outputs float32 or float16")
        return getattr(self._torch, _TORCH_DTYPES[kind])

    def validate(self, feed: dict[str, np.ndarray]) -> None:
        if set(feed) != set(self.inputs):
            raise UserError(f"the engine takes inputs {', '.join(self.inputs)}, given {', '.join(feed)}",
                            "check that the engine was built from this SPEC")

    def prepare(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        with self._torch.cuda.stream(self.stream):
            return self._prepare(feed)

    def _prepare(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        torch = self._torch
        buffers = {}
        for name in self.inputs:
            array = feed[name]
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to("cuda", self._dtype(name))
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise UserError(f"shape {shape_text(tensor.shape)} is outside the engine's profile "
                                f"for {name!r}", "rebuild the engine with a --profile covering it")
            buffers[name] = tensor
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise UserError(f"TensorRT could not infer the shape of output {name!r} ({shape})",
                                "check the plugin library and the engine's profile")
            buffers[name] = torch.empty(shape, dtype=self._dtype(name), device="cuda")
        self._bind(buffers)
        return buffers

    def _bind(self, buffers: dict[str, Any]) -> None:
        """Give TensorRT each buffer's address; it refuses names it does not know and misaligned addresses."""
        for name, tensor in buffers.items():
            if not self.context.set_tensor_address(name, tensor.data_ptr()):
                raise UserError(f"TensorRT refused the buffer of tensor {name!r}: {self._log.last_error()}",
                                "check that the engine was built from this model")

    def execute(self, prepared: dict[str, Any]) -> list[Any]:
        if self.options.cuda_graph:
            self._replay(prepared)
        elif not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"TensorRT enqueue failed: {self._log.last_error()}")
        return [prepared[name] for name in self.outputs]

    def _replay(self, prepared: dict[str, Any]) -> None:
        """Capture one graph per set of buffers (shapes and addresses), then replay it."""
        torch = self._torch
        key = tuple((name, tuple(t.shape), t.data_ptr()) for name, t in prepared.items())
        if key not in self._graphs:
            if not self.context.execute_async_v3(self.stream.cuda_stream):  # one run before capture, as trtexec
                raise RuntimeError(f"TensorRT enqueue failed: {self._log.last_error()}")
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            captured = True
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                captured = self.context.execute_async_v3(self.stream.cuda_stream)
            if not captured:
                raise RuntimeError("TensorRT enqueue failed during CUDA graph capture; run without --cuda-graph")
            self._graphs[key] = graph
        with torch.cuda.stream(self.stream):
            self._graphs[key].replay()

    def fetch(self, outputs: list[Any]) -> dict[str, np.ndarray]:
        """By the engine's output tensor names (the ONNX output names)."""
        with self._torch.cuda.stream(self.stream):
            return {name: o.float().cpu().numpy() for name, o in zip(self.outputs, outputs)}

    def stopwatch(self) -> CudaEventStopwatch:
        return CudaEventStopwatch(self.stream)

    def copies(self, prepared: dict[str, Any], outputs: list[Any]):
        from deploykit.backends.torch import pinned_copies

        return pinned_copies([prepared[name] for name in self.inputs], list(outputs), self.stream)

    def describe(self) -> dict[str, Any]:
        return {"device": self._torch.cuda.get_device_name(0), "threads": "-", "tensorrt": self._trt.__version__,
                "precision": self.options.precision,
                "engine": str(self.options.engine_path or "built from the ONNX file"),
                "cuda_graph": self.options.cuda_graph}
