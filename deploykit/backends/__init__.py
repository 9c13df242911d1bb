"""Backend registry: a name on the command line -> a Runner class, imported only when used.

Adding a backend is one module with a Runner subclass and one line in ``_BACKENDS``. Opening
them for a run is deploykit.backends.runners; the TensorRT engine build, deploykit.backends.trt_engine.
"""

from __future__ import annotations

import importlib

from deploykit.backends.base import Runner, RunnerOptions
from deploykit.errors import BackendUnavailable, UserError

_BACKENDS = {
    "torch": ("deploykit.backends.torch", "TorchRunner"),
    "torch-cuda": ("deploykit.backends.torch", "TorchCudaRunner"),
    "ort": ("deploykit.backends.ort", "OrtCpuRunner"),
    "ort-cuda": ("deploykit.backends.ort", "OrtCudaRunner"),
    "ort-trt": ("deploykit.backends.ort", "OrtTensorrtRunner"),
    "onnx-ref": ("deploykit.backends.onnxref", "OnnxReferenceRunner"),
    "trt": ("deploykit.backends.trt", "TrtRunner"),
}


def _require_known(name: str) -> None:
    if name not in _BACKENDS:
        raise UserError(f"unknown backend {name!r}", f"choose from {', '.join(_BACKENDS)}")


def names() -> list[str]:
    return list(_BACKENDS)


def parse_backends(text: str) -> list[str]:
    """'torch,ort' -> ['torch', 'ort'], rejecting unknown names with the valid list."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    if not chosen:
        raise UserError("no backend given", f"pass --backends with some of {', '.join(_BACKENDS)}")
    for name in chosen:
        _require_known(name)
    return list(dict.fromkeys(chosen))


def runner_class(name: str) -> type[Runner]:
    _require_known(name)
    module_name, class_name = _BACKENDS[name]
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["BackendUnavailable", "Runner", "RunnerOptions", "names",
           "parse_backends", "runner_class"]
