"""ONNX's own reference evaluator, with deploykit's NumPy reference for ``deploykit::DySample``.

It runs graphs that no installed runtime can (plugin graphs without TensorRT), so an
exported plugin graph is verified on any CPU machine. Slow, and meant for checks, not bench.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deploykit.backends.base import Runner, check_feed
from deploykit.errors import UserError, first_line


class OnnxReferenceRunner(Runner):
    name = "onnx-ref"
    needs_onnx = True

    def _activate(self) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        from deploykit.ops.numpy_reference import DySample, GridSample

        if self.options.onnx_path is None:
            raise UserError(f"backend {self.name} needs an ONNX file", "pass --onnx model.onnx")
        try:
            self.evaluator = ReferenceEvaluator(str(self.options.onnx_path), new_ops=[DySample, GridSample])
        except Exception as exc:  # an op or a type onnx.reference does not implement
            raise UserError(f"onnx.reference cannot run {self.options.onnx_path}: {type(exc).__name__}: "
                            f"{first_line(exc, 200)}", "check this graph on ort (or trt) instead") from None
        graph_inputs = self.evaluator.proto_.graph.input
        self.input_names = [v.name for v in graph_inputs]
        self.output_names = list(self.evaluator.output_names)
        self.input_dims = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in graph_inputs]
        self.input_dtypes = [onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type) for v in graph_inputs]

    def _deactivate(self) -> None:
        del self.evaluator

    def validate(self, feed: dict[str, np.ndarray]) -> None:
        check_feed(self.options.onnx_path, self.input_names, self.input_dims, feed, self.input_dtypes)

    def prepare(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(feed[name], dtype=dtype)
                for name, dtype in zip(self.input_names, self.input_dtypes)}

    def execute(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.evaluator.run(None, prepared)

    def fetch(self, outputs: list) -> dict[str, Any]:
        """As OrtCpuRunner.fetch: by output name, floats as float32, anything else as it is."""
        from deploykit.backends.ort import host_outputs

        return dict(zip(self.output_names, host_outputs(outputs)))

    def describe(self) -> dict[str, Any]:
        import onnx

        from deploykit.backends.ort import graph_precision

        return {"device": "cpu (onnx.reference + deploykit NumPy plugin reference)", "threads": 1,
                "onnx": onnx.__version__, "precision": graph_precision(self.input_dtypes)}
