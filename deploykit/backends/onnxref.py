"""ONNX's own reference evaluator, with deploykit's NumPy reference for ``deploykit::DySample``.

It runs graphs that no installed runtime can (plugin graphs without TensorRT), so an
exported plugin graph is verified on any CPU machine. Slow, and meant for checks, not bench.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deploykit.backends.base import Runner
from deploykit.errors import UserError


class OnnxReferenceRunner(Runner):
    name = "onnx-ref"
    needs_onnx = True

    def _activate(self) -> None:
        from onnx.reference import ReferenceEvaluator

        from deploykit.ops.numpy_reference import DySample

        if self.options.onnx_path is None:
            raise UserError(f"backend {self.name} needs an ONNX file", "pass --onnx model.onnx")
        self.evaluator = ReferenceEvaluator(str(self.options.onnx_path), new_ops=[DySample])
        self.input_names = list(self.evaluator.input_names)

    def _deactivate(self) -> None:
        del self.evaluator

    def prepare(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise UserError(f"{self.options.onnx_path} takes {len(self.input_names)} inputs, given {len(inputs)}",
                            "check that --onnx was exported from the same SPEC")
        return dict(zip(self.input_names, (np.ascontiguousarray(a, dtype=np.float32) for a in inputs)))

    def execute(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.evaluator.run(None, prepared)

    def fetch(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def describe(self) -> dict[str, Any]:
        import onnx

        return {"device": "cpu (onnx.reference + deploykit NumPy plugin reference)", "threads": 1,
                "onnx": onnx.__version__}
