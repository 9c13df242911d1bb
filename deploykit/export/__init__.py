"""Export: PyTorch module -> checked ONNX file, and export recipes from exports/."""

from deploykit.export.onnx_export import (
    DEFAULT_OPSET,
    TARGETS,
    ExportError,
    ExportResult,
    describe,
    dynamic_dims,
    export_onnx,
)

__all__ = ["DEFAULT_OPSET", "TARGETS", "ExportError", "ExportResult", "describe", "dynamic_dims", "export_onnx"]
