"""Which module of the user's model computed each ONNX value: what export's summary, the
verification error and localize name beside a node.

Two sources: the FX graph's ``nn_module_stack`` (ONNX values are named after FX nodes), and
the exporter's own node metadata, which files exported at opset 18+ keep.
"""

from __future__ import annotations

import ast


def value_modules(exported_program) -> dict[str, tuple[str, str]]:
    """ONNX value name (= FX node name) -> (path, class) of the module that computed it."""
    return {n.name: module for n in exported_program.graph.nodes if (module := fx_module(n))}


def fx_module(fx_node) -> tuple[str, str] | None:
    """(path, class) of the innermost module that ran this FX node."""
    stack = [entry for entry in (fx_node.meta.get("nn_module_stack") or {}).values()
             if not str(entry[0]).startswith("_empty_nn_module_stack")]
    if not stack:
        return None
    path, cls = stack[-1]
    return path, cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"


def node_module(node) -> tuple[str, str] | None:
    """(path, class) from the exporter's node metadata, kept in files exported at opset 18+."""
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
        classes = ast.literal_eval(meta["pkg.torch.onnx.class_hierarchy"])
    except (KeyError, ValueError, SyntaxError):
        return None
    return (scopes[-2], classes[-2]) if len(scopes) > 1 and len(classes) > 1 else None  # [-1] is the op
