"""deploykit: export, parity-check and benchmark PyTorch upsamplers on ONNX Runtime and TensorRT."""

__version__ = "0.1.0"
