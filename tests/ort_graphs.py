"""One deploykit::DySample node as an ONNX model, and ONNX Runtime sessions with a custom-op
library: what the library's tests (tests/ops/test_ort_library.py) and its sanitizer harness
(tests/plugins/ort_harness_driver.py, which imports only numpy, onnx and onnxruntime) drive."""

import numpy as np
import onnx
from onnx import TensorProto, helper

FLOAT, FLOAT16, DOUBLE = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE
_NUMPY = {FLOAT: np.float32, FLOAT16: np.float16, DOUBLE: np.float64}


def dysample_model(scale=2, groups=2, channels=8, dtype=FLOAT, offset_dtype=None, x_dims=None, offset_dims=None,
                   attributes=None, name="up") -> bytes:
    """x (batch, channels, height, width) and offset -> y through one DySample node named
    ``name``; ``attributes`` overrides the node's (a value None drops that attribute)."""
    attrs = {"scale": scale, "groups": groups, "plugin_version": "1", "plugin_namespace": "deploykit"}
    attrs.update(attributes or {})
    node = helper.make_node("DySample", ["x", "offset"], ["y"], domain="deploykit", name=name,
                            **{k: v for k, v in attrs.items() if v is not None})
    x_dims = ["batch", channels, "height", "width"] if x_dims is None else x_dims
    offset_dims = ["batch", None, "height", "width"] if offset_dims is None else offset_dims
    graph = helper.make_graph([node], "dysample", [helper.make_tensor_value_info("x", dtype, x_dims),
                                                   helper.make_tensor_value_info("offset", offset_dtype or dtype,
                                                                                 offset_dims)],
                              [helper.make_tensor_value_info("y", dtype, None)])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("deploykit", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def session(model: bytes, library, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = threads
    options.register_custom_ops_library(str(library))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def sample_inputs(batch, channels, height, width, scale, groups, dtype=FLOAT, seed=0, special=False):
    """x and offsets in input pixels: mostly sub-pixel, one in eight far outside the image (the
    border clamp); ``special`` puts NaN, Inf and -Inf into x (where F.grid_sample's rule places
    them in the output)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, height, width))
    offset = rng.standard_normal((batch, 2 * groups * scale * scale, height, width)) * 0.75
    far = rng.random(offset.shape) < 0.125
    offset[far] = rng.choice([-40.0, 40.0], size=int(far.sum()))
    if special and x.size:
        x.flat[rng.choice(x.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
    return {"x": x.astype(_NUMPY[dtype]), "offset": offset.astype(_NUMPY[dtype])}


def serialized(model: bytes) -> onnx.ModelProto:
    return onnx.load_from_string(model)
