"""Export: a PyTorch module -> a checked ONNX file.

``export_onnx`` (onnx_export) writes and checks the file; ``program`` is the exporter's step;
``options`` the settings as one value; ``recipe`` reads exports/*.toml; ``verify`` runs the
written graph against PyTorch. The names below load their module on first use, so reading
``deploykit.export.options`` or a recipe does not load the exporter's modules.
"""

from __future__ import annotations

import importlib

_HOMES = {"DEFAULT_OPSET": "onnx_export", "ExportResult": "onnx_export", "describe": "onnx_export",
          "export_json": "onnx_export",
          "export_onnx": "onnx_export", "ExportError": "program", "dynamic_dims": "program",
          "ExportOptions": "options", "TARGETS": "options"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
