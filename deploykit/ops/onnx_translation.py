"""How ``torch.ops.deploykit.dysample_sample`` becomes one ``deploykit::DySample`` ONNX node.

The attributes plugin_version and plugin_namespace are how TensorRT's ONNX parser finds a
plugin for a node of an unknown op type (creator "DySample", version "1", namespace
"deploykit"); scale and groups become the plugin's fields.
"""

from __future__ import annotations

# The node's identity: exporting, checking and linting a plugin graph need these, never
# onnx.reference (which only the onnx-ref backend loads, with deploykit.ops.numpy_reference).
DOMAIN = "deploykit"
OP_TYPE = "DySample"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "deploykit"


def plugin_node():
    """The onnxscript function writing one deploykit::DySample node with the plugin's attributes."""
    import onnxscript

    register_schema()
    node = onnxscript.values.Opset(DOMAIN, 1)[OP_TYPE]

    def dysample(x, offset, scale: int, groups: int):
        return node(x, offset, scale=scale, groups=groups, plugin_version=PLUGIN_VERSION,
                    plugin_namespace=PLUGIN_NAMESPACE)

    return dysample


def define_export_op() -> None:
    """``torch.ops.deploykit.dysample_export``: the sample step as one opaque op for the exporter
    to translate, computed with the reference math, so exporting needs no compiler."""
    import torch

    global _export_op_defined
    if _export_op_defined:
        return

    from deploykit.ops.reference import reference_sample

    @torch.library.custom_op("deploykit::dysample_export", mutates_args=(),
                             schema="(Tensor x, Tensor offset, int scale, int groups) -> Tensor")
    def dysample_export(x, offset, scale, groups):
        return reference_sample(x, offset, scale, groups)

    @dysample_export.register_fake
    def _(x, offset, scale, groups):
        return x.new_empty(x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale)

    _export_op_defined = True


_export_op_defined = False


def export_sample(x, offset, scale: int, groups: int):
    define_export_op()
    import torch

    return torch.ops.deploykit.dysample_export(x, offset, scale, groups)


def register_schema() -> None:
    """Declare ``deploykit::DySample`` to ONNX, so the exporter can emit it and checkers accept it."""
    from onnx import defs

    if defs.has(OP_TYPE, DOMAIN):
        return
    OpSchema = defs.OpSchema
    defs.register_schema(OpSchema(
        OP_TYPE, DOMAIN, 1,
        doc="DySample sample step: bilinear, border-clamped sampling of x at pixel centre + offset, "
            "pixel-shuffled by scale. x (B, C, H, W), offset (B, 2*groups*scale^2, H, W) -> (B, C, sH, sW).",
        inputs=[OpSchema.FormalParameter("x", "T"), OpSchema.FormalParameter("offset", "T")],
        outputs=[OpSchema.FormalParameter("y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float32 or float16")],
        attributes=[
            OpSchema.Attribute("scale", OpSchema.AttrType.INT, "upsampling factor"),
            OpSchema.Attribute("groups", OpSchema.AttrType.INT, "offset groups"),
            OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version"),
            OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
        ],
    ))


def plugin_nodes(proto) -> list:
    """The graph's nodes in deploykit's domain (they need the plugin or the NumPy reference)."""
    return [node for node in proto.graph.node if node.domain == DOMAIN]
