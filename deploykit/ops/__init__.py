"""DySample's sample step three ways: PyTorch reference, fused kernel (custom op), NumPy node."""
