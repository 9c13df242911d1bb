"""PyTorch eager runners: the reference itself (CPU, fp32) and the same module on CUDA."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from deploykit.backends.base import Runner
from deploykit.clocks import CudaEventStopwatch, Stopwatch
from deploykit.errors import BackendUnavailable


class TorchRunner(Runner):
    """Eager PyTorch on the CPU."""

    name = "torch"
    device = "cpu"

    def _activate(self) -> None:
        import torch

        if self.options.model is None:
            raise BackendUnavailable(f"backend {self.name} needs a PyTorch model",
                                     "give a zoo name or package.module:callable as SPEC")
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        dtype = torch.float16 if self.options.precision == "fp16" else torch.float32
        # A copy, so moving/casting never changes the model the reference is computed with.
        self.module = copy.deepcopy(self.options.model.module).to(self.device, dtype).eval()
        self.dtype = dtype

    def _deactivate(self) -> None:
        del self.module

    def validate(self, feed: dict[str, np.ndarray]) -> None:
        from deploykit.errors import UserError

        names = self.options.model.input_names
        if set(feed) != set(names):
            raise UserError(f"{self.options.model.spec} takes inputs {', '.join(names)}; given {', '.join(feed)}",
                            "name each input as forward does")

    def prepare(self, feed: dict[str, np.ndarray]) -> list[Any]:
        """Tensors in forward's order; floats in the runner's precision, integers as they are."""
        import torch

        tensors = [torch.from_numpy(np.array(feed[name], copy=True)).to(self.device)  # forward may write into it
                   for name in self.options.model.input_names]
        return [t.to(self.dtype) if t.is_floating_point() else t for t in tensors]

    def execute(self, prepared: list[Any]) -> Any:
        import torch

        with torch.inference_mode():
            return self.module(*prepared)

    def fetch(self, outputs: Any) -> dict[str, np.ndarray]:
        from deploykit.model_io import tensors_to_numpy

        return tensors_to_numpy(outputs, self.options.model.spec)

    def describe(self) -> dict[str, Any]:
        import torch

        return {"device": self.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
                "precision": self.options.precision}


def pinned_copies(device_inputs: list[Any], device_outputs: list[Any], stream=None):
    """(h2d, d2h): copy every input from, and every output to, a pinned host buffer allocated
    once here, on ``stream`` (the current one by default), without waiting: the caller's CUDA
    events time the copies themselves, as trtexec does."""
    import torch

    host_inputs = [torch.empty_like(t, device="cpu").pin_memory() for t in device_inputs]
    host_outputs = [torch.empty_like(t, device="cpu").pin_memory() for t in device_outputs]
    for host, device in zip(host_inputs, device_inputs):
        host.copy_(device)  # the inputs' values, so the copies move real data

    def to_device():
        with torch.cuda.stream(stream or torch.cuda.current_stream()):
            for host, device in zip(host_inputs, device_inputs):
                device.copy_(host, non_blocking=True)

    def to_host():
        with torch.cuda.stream(stream or torch.cuda.current_stream()):
            for host, device in zip(host_outputs, device_outputs):
                host.copy_(device, non_blocking=True)

    return to_device, to_host


class TorchCudaRunner(TorchRunner):
    """Eager PyTorch on the first CUDA device."""

    name = "torch-cuda"
    device = "cuda"
    skip_when_unavailable = True

    @classmethod
    def check_available(cls) -> None:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("backend torch-cuda needs a CUDA GPU and a CUDA build of PyTorch; "
                                     "none is available here", "use --backends torch on this machine")

    def stopwatch(self) -> Stopwatch:
        return CudaEventStopwatch()

    def copies(self, prepared: list[Any], outputs: Any):
        from deploykit.model_io import flatten_outputs

        return pinned_copies(list(prepared), list(flatten_outputs(outputs).values()))

    def describe(self) -> dict[str, Any]:
        import torch

        return {**super().describe(), "device": torch.cuda.get_device_name(0)}
