"""The one interface every backend implements, Polygraphy-style: build lazily, then infer.

A runner is constructed cheaply (no heavy import) and builds its session in ``activate()``,
so listing backends or printing ``--help`` never imports ONNX Runtime, CUDA or TensorRT.
Inference is split in three so ``bench`` can time the compute alone:
``prepare`` (host -> device), ``execute`` (the work, returns device outputs), ``fetch``
(device -> host numpy). ``infer`` chains them for ``check``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.clocks import Stopwatch
from deploykit.errors import UserError
from deploykit.model_io import shape_text


@dataclass
class RunnerOptions:
    """What every runner may be given; each uses the fields it needs."""

    model: Any = None  # deploykit.spec.LoadedModel, for runners that execute PyTorch
    onnx_path: Path | None = None  # for runners that execute an ONNX graph
    threads: int | None = None  # intra-op threads; None = the backend's own default
    precision: str = "fp32"
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # the shapes it will see (engine profiles)
    engine_path: Path | None = None  # a prebuilt TensorRT engine
    plugins: list[Path] = field(default_factory=list)  # TensorRT plugin libraries to load first
    cuda_graph: bool = False  # replay execution as a CUDA graph where the backend can
    ort_custom_ops: Path | None = None  # an ONNX Runtime custom-op library to register (deploykit's, plugin graphs)


class Runner(ABC):
    """A backend that turns a list of input arrays into output arrays by name."""

    name: str = "runner"
    needs_onnx: bool = False
    # The one rule for a backend that cannot run here: the GPU backends (trt, ort-cuda, ort-trt,
    # torch-cuda), whose absence is routine on a CPU machine, are marked "skipped" with the reason
    # by check and bench; a CPU backend that is missing (torch, ort, onnx-ref) stops the command.
    skip_when_unavailable: bool = False

    def __init__(self, options: RunnerOptions):
        self.options = options
        self.active = False
        self.substituted_for: str | None = None  # the backend asked for, when this one runs instead
        self.substituted_why: str | None = None

    @classmethod
    def needs_onnx_file(cls, options: RunnerOptions) -> bool:
        """Whether this backend, so configured, reads an ONNX file (an engine given is enough for trt)."""
        return cls.needs_onnx

    @classmethod
    def check_available(cls) -> None:
        """Raise BackendUnavailable (naming what to install) if this backend cannot run here.

        Cheap: looks for packages and devices without building anything.
        """

    def activate(self) -> None:
        if not self.active:
            self._activate()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by name in, outputs by name out (Polygraphy's ``infer(feed_dict)``); call
        ``validate`` once first: ``prepare`` does no checking, so ``bench`` times copies only."""
        if not self.active:
            raise RuntimeError(f"runner {self.name} used before activate()")
        return self.fetch(self.execute(self.prepare(feed)))

    def validate(self, feed: dict[str, np.ndarray]) -> None:
        """Refuse a feed this backend cannot take (names, dtypes, fixed dims) with a UserError."""

    def stopwatch(self) -> Stopwatch:
        """The clock ``bench`` uses around ``execute``; GPU runners return a CUDA-event one."""
        return Stopwatch()

    @abstractmethod
    def _activate(self) -> None: ...

    def _deactivate(self) -> None:
        """Drop the session; override when there is more to free."""

    @abstractmethod
    def prepare(self, feed: dict[str, np.ndarray]) -> Any: ...

    @abstractmethod
    def execute(self, prepared: Any) -> Any: ...

    @abstractmethod
    def fetch(self, outputs: Any) -> dict[str, np.ndarray]:
        """Device -> host, by output name (deploykit.model_io's names for PyTorch, the graph's
        output names for ONNX backends, which export made the same)."""

    def copies(self, prepared: Any, outputs: Any):
        """(host->device, device->host) callables that copy this run's inputs and outputs between
        the device and pinned, preallocated host buffers, as trtexec measures transfers; None for
        a runner whose data never leaves host memory (its prepare and fetch are timed instead)."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Device, provider, threads: printed with results so numbers can be reproduced."""


def _kind(dtype: np.dtype) -> str:
    """float, integer (signed or not: the runtime casts) or bool."""
    return "i" if dtype.kind in "iu" else dtype.kind


def check_feed(source, names: list[str], dims: list[list], feed: dict[str, np.ndarray],
               dtypes: list | None = None) -> None:
    """Refuse a feed whose names, dtype kinds (float, integer, bool) or shapes a graph's inputs
    and fixed (static) dims cannot take, naming the graph's side."""
    if set(feed) != set(names):
        raise UserError(f"{source} takes inputs {', '.join(names)}; given {', '.join(feed) or 'none'}",
                        "check that --onnx was exported from the same SPEC")
    for name, wanted in zip(names, dtypes or []):
        wanted = np.dtype(wanted)
        if _kind(wanted) != _kind(feed[name].dtype):
            raise UserError(f"{source} input {name!r} is {wanted.name}, given {feed[name].dtype.name}",
                            f"pass --input-dtype {name}={wanted.name}")
    for name, wanted in zip(names, dims):
        array = feed[name]
        fixed = [d if isinstance(d, int) and d > 0 else None for d in wanted]
        if len(fixed) != array.ndim or any(f is not None and f != s for f, s in zip(fixed, array.shape)):
            text = shape_text(f if f is not None else "?" for f in fixed)
            raise UserError(f"{source} input {name!r} takes {text}, not {shape_text(array.shape)}",
                            "pass a --shape that fits the graph's fixed dims, or re-export with dynamic shapes "
                            "(drop --static, or static = false in the recipe)")
