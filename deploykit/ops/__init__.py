"""DySample's sample step three ways: PyTorch reference, fused kernel (custom op), NumPy node;
and ``ort_library_path``, the ONNX Runtime custom-op library for deploykit::DySample graphs."""

from deploykit.ops.ort_library import ort_library_path

__all__ = ["ort_library_path"]
