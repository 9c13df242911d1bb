"""ONNX Runtime runners: CPU provider, and CUDA / TensorRT providers with onnxruntime-gpu."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from deploykit.backends.base import Runner, check_feed
from deploykit.errors import BackendUnavailable, UserError, first_line


# ONNX Runtime's input type names -> what deploykit feeds
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def host_outputs(outputs: list) -> list:
    """Floating-point arrays as float32, anything else (integers, sequences, maps) as it is."""
    return [o.astype(np.float32) if isinstance(o, np.ndarray) and o.dtype.kind == "f" else o for o in outputs]


def ort_session_options(threads: int | None):
    """ONNX Runtime's session settings wherever deploykit opens a session: ``threads`` intra-op
    threads and one inter-op (None: ONNX Runtime's default), and ONNX Runtime's own log quiet,
    because deploykit reports failures itself, in one line."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


class OrtCpuRunner(Runner):
    """ONNX Runtime on CPUExecutionProvider with an explicit intra-op thread count."""

    name = "ort"
    needs_onnx = True
    provider = "CPUExecutionProvider"

    @classmethod
    def check_available(cls) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise BackendUnavailable(f"backend {cls.name} needs ONNX Runtime, which is not installed",
                                     "pip install onnxruntime (or onnxruntime-gpu, not both)")
        try:
            import onnxruntime as ort
        except Exception as exc:  # onnxruntime-gpu without its CUDA libraries, a wheel built for numpy 1
            raise BackendUnavailable(f"backend {cls.name}: onnxruntime is installed but cannot be imported "
                                     f"({type(exc).__name__}: {first_line(exc, 160)})",
                                     "reinstall one ONNX Runtime package that fits this environment: pip install "
                                     "--force-reinstall onnxruntime (CPU), or give onnxruntime-gpu its CUDA "
                                     "libraries; never both") from None

        if cls.provider not in ort.get_available_providers():
            raise BackendUnavailable(
                f"backend {cls.name} needs {cls.provider}, which this onnxruntime build lacks "
                f"(has {', '.join(ort.get_available_providers())})",
                "install onnxruntime-gpu on a machine with an NVIDIA GPU, or use --backends ort")

    def _activate(self) -> None:
        import onnxruntime as ort

        path = self.options.onnx_path
        if path is None:
            raise UserError(f"backend {self.name} needs an ONNX file", "pass --onnx model.onnx")
        session_options = ort_session_options(self.options.threads)
        if self.options.ort_custom_ops is not None:
            try:
                session_options.register_custom_ops_library(str(self.options.ort_custom_ops))
            except Exception as exc:  # a library built for another platform or a newer ONNX Runtime
                raise BackendUnavailable(f"backend {self.name}: ONNX Runtime cannot load the custom-op library "
                                         f"{self.options.ort_custom_ops}: {first_line(exc, 200)}",
                                         "rebuild it against this ONNX Runtime's headers (remove it from the "
                                         "deploykit cache, or unset DEPLOYKIT_ORT_LIBRARY)") from None
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4
        try:
            self.session = ort.InferenceSession(str(path), session_options, providers=[self.provider])
        except Exception as exc:  # ORT raises its own untyped errors for bad graphs
            raise UserError(f"ONNX Runtime cannot load {path}: {first_line(exc, 240)}",
                            "re-export the model with 'deploykit export'") from None
        if self.session.get_providers()[0] != self.provider:
            raise BackendUnavailable(
                f"backend {self.name}: ONNX Runtime fell back to {self.session.get_providers()[0]} "
                f"({self.provider} could not start)", "check the CUDA/TensorRT libraries, or use --backends ort")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_dims = [i.shape for i in self.session.get_inputs()]
        self.input_dtypes = [_ORT_TYPES.get(i.type, np.float32) for i in self.session.get_inputs()]
        self.output_types = [o.type for o in self.session.get_outputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _deactivate(self) -> None:
        del self.session

    def validate(self, feed: dict[str, np.ndarray]) -> None:
        check_feed(self.options.onnx_path, self.input_names, self.input_dims, feed, self.input_dtypes)

    def prepare(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(feed[name], dtype=dtype)
                for name, dtype in zip(self.input_names, self.input_dtypes)}

    def execute(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, prepared, self.run_options)

    def fetch(self, outputs: list) -> dict[str, Any]:
        """By the graph's output names: tensors as float32 (fp16 graphs too) or their own integer
        dtype; a sequence or map output stays what it is, for compare to refuse (never stacked)."""
        return dict(zip(self.output_names, host_outputs(outputs)))

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        options = self.session.get_session_options()
        described = {"device": self.session.get_providers()[0], "threads": options.intra_op_num_threads or "default",
                     "onnxruntime": ort.__version__, "precision": graph_precision(self.input_dtypes)}
        if self.options.ort_custom_ops is not None:
            described["custom_ops"] = str(self.options.ort_custom_ops)
        return described


def graph_precision(input_dtypes) -> str:
    """What an ONNX graph computes in, from its float inputs: what ran, whatever --precision asked."""
    return "fp16" if any(np.dtype(d) == np.float16 for d in input_dtypes) else "fp32"


class OrtCudaRunner(OrtCpuRunner):
    """ONNX Runtime's CUDA provider with its inputs and outputs bound to device buffers
    (IOBinding): ``execute`` runs the graph alone, synchronised, as the README's GPU timing
    promises; host<->device copies are prepare's and fetch's, measured apart."""

    name = "ort-cuda"
    provider = "CUDAExecutionProvider"
    device = "cuda"
    skip_when_unavailable = True

    def prepare(self, feed: dict[str, np.ndarray]):
        import onnxruntime as ort

        binding = self.session.io_binding()
        self._device_inputs = {}
        for name, array in super().prepare(feed).items():
            value = ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)
            self._device_inputs[name] = (value, array)
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device)
        return binding

    def execute(self, binding):
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding, self.run_options)
        binding.synchronize_outputs()  # the GPU work is done when the clock stops
        return binding

    def fetch(self, binding) -> dict[str, Any]:
        return dict(zip(self.output_names, host_outputs(binding.copy_outputs_to_cpu())))

    def copies(self, binding, outputs):
        """Inputs re-sent from the same host arrays into the bound device buffers; outputs copied
        back to host (ONNX Runtime's own copy: its host buffers are not pinned, said in the table)."""
        def to_device():
            for value, array in self._device_inputs.values():
                value.update_inplace(array)

        def to_host():
            binding.copy_outputs_to_cpu()

        return to_device, to_host


class OrtTensorrtRunner(OrtCudaRunner):
    name = "ort-trt"
    provider = "TensorrtExecutionProvider"
