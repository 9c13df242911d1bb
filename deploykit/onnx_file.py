"""The one loader for ONNX files deploykit is given: checked once, with a fix for each problem.

Missing, empty, truncated or corrupt files, and graphs whose strings are not UTF-8, fail here
with a one-line error, not deep inside a backend or lint. Callers keep the returned graph
rather than loading the file again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import UserError, first_line, out_of_memory


def validate_onnx_file(path: Path, option: str = "--onnx"):
    """Missing, empty, truncated or corrupt ONNX files fail here with a fix, not deep inside a
    backend or lint: the one loader every command that reads an ONNX file goes through. Returns
    the graph (without external weights)."""
    import onnx

    from deploykit.files import note_input, require_utf8_path

    path = Path(path)
    require_file(path, option)
    note_input(path)
    require_utf8_path(path)
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes), not an ONNX model", "re-export it with 'deploykit export'")
    try:
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception:
            onnx.checker.check_model(str(path))  # the checker's words for a file that is not a model
            raise
        if has_external_data(proto):  # checked by path: external data must stay inside the model's folder
            onnx.checker.check_model(str(path))
        else:  # the graph already read: the file is read once
            onnx.checker.check_model(proto)
    except MemoryError:
        raise out_of_memory(f"reading {path}") from None
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError...
        raise UserError(f"{path} is not a valid ONNX model ({first_line(exc)})",
                        "re-export it with 'deploykit export'") from None
    if not proto.graph.input:
        raise UserError(f"{path} has no graph inputs", "re-export it with 'deploykit export'")
    _check_text(path, proto)
    return proto


def require_file(path: Path, option: str = "--onnx") -> None:
    """An ONNX file given on the command line exists and is a regular file: checked before any
    other work (loading a model takes seconds; a typo should not)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory", "give the path of an .onnx file")
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"
        raise UserError(f"ONNX file {path} {what}", f"check the {option} path or create it with 'deploykit export'")


def _check_text(path: Path, proto) -> None:
    """Every string in the graph (attributes, names, metadata) must be UTF-8: protobuf keeps
    string attributes as bytes, and readers decode them."""
    for graph in _graphs(proto.graph):
        for node in graph.node:
            for attribute in node.attribute:
                for value in [attribute.s, *attribute.strings]:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise UserError(f"{path}: attribute {attribute.name!r} of node {node.name!r} "
                                        f"({node.op_type}) is not UTF-8 text",
                                        "re-export the model, or fix the attribute") from None


def _graphs(graph):
    """The graph and every subgraph in it (If, Loop, Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def has_external_data(proto) -> bool:
    """Whether any tensor (initializers and node attributes, subgraphs included) lives in a file
    beside the model."""
    from onnx.external_data_helper import uses_external_data

    for graph in _graphs(proto.graph):
        tensors = [*graph.initializer, *(t for node in graph.node for a in node.attribute
                                         for t in ([a.t] if a.HasField("t") else []) + list(a.tensors))]
        if any(uses_external_data(tensor) for tensor in tensors):
            return True
    return False


def graph_inputs(proto) -> list:
    """The graph's inputs that a caller feeds (ValueInfos), without initializers listed as
    inputs (older exporters list every weight there)."""
    initializers = {t.name for t in proto.graph.initializer}
    return [value for value in proto.graph.input if value.name not in initializers]


def has_plugin_nodes(proto) -> bool:
    """Whether the graph holds deploykit::DySample nodes, which only TensorRT (with deploykit's
    plugin) and onnx-ref run."""
    from deploykit.ops.onnx_translation import plugin_nodes

    return bool(plugin_nodes(proto))


METADATA_DIM_RANGES = "deploykit.dim_ranges"
# torch.export's own lower bound for a dynamic dim (0/1 are specialised, 2 is where it starts).
FREE_LOW = 2


@dataclass(frozen=True)
class DimRange:
    """A dynamic dim the trace holds within [low, high] (high None: unbounded)."""

    input: str
    axis: int
    dim: str  # the ONNX dim's name (batch, height, width, or the exporter's)
    low: int
    high: int | None
    where: str  # the user's line that imposed the bound, when torch recorded it

    def text(self) -> str:
        bound = (f"{self.low} <= {self.dim} <= {self.high}" if self.high is not None and self.low > FREE_LOW
                 else f"{self.dim} <= {self.high}" if self.high is not None else f"{self.dim} >= {self.low}")
        return f"{bound} (input {self.input}, axis {self.axis}{'; ' + self.where if self.where else ''})"

    def outside(self) -> list[int]:
        """Sizes just past each bound."""
        sizes = [self.high + 1] if self.high is not None else []
        return sizes + ([self.low - 1] if self.low > FREE_LOW else [])


def recorded_ranges(meta: dict[str, str]) -> list[DimRange]:
    """The bounds a file's metadata records ([] for none or unreadable metadata)."""
    try:
        return [DimRange(**entry) for entry in json.loads(meta.get(METADATA_DIM_RANGES, "[]"))]
    except (ValueError, TypeError):
        return []
