"""How a model is exported, as one typed value: export, recipes, and the temporary graph that
check and bench export for their ONNX backends all read the same fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

TARGETS = ("ort", "trt")  # where the graph will run; trt adds TensorRT's export checks
DEFAULT_TARGET = "ort"


@dataclass(frozen=True)
class ExportOptions:
    """``export_onnx``'s model-independent settings; None takes export's default (for
    ``dysample_impl`` and ``maxpool_impl``: the target's)."""

    opset: int | None = None
    dynamic: bool = True
    trace_shape: Any = None  # a Shape or Case (deploykit.model_io); None: batch 2, odd sizes
    target: str = DEFAULT_TARGET
    dysample_impl: str | None = None
    maxpool_impl: str | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """``export_onnx(model, path, **options.as_kwargs())``; shallow, so a Case stays a Case."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
