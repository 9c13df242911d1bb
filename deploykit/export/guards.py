"""The shape guards a model's Python branches impose on a dynamic export.

``if x.shape[-1] > 64:`` makes torch.export trace one branch and record the bound it took
(``range_constraints``: width in [0, 64]); the ONNX file cannot say so, its dims are free. So
export reads the bounds, records them in the file's metadata (``deploykit.dim_ranges``, which
``build``'s default profiles respect), and verifies the graph on the far side of every bound:
where PyTorch runs there and the graph does not match, the graph is one branch of several and
the export is refused, naming the guard and the user's line.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import asdict

from deploykit.onnx_file import FREE_LOW, METADATA_DIM_RANGES, DimRange


def dim_ranges(exported_program, input_names: list[str], onnx_inputs: dict[str, list]) -> list[DimRange]:
    """The bounded dynamic dims of the program's user inputs; ``onnx_inputs`` gives each
    input's ONNX dims (names for the symbolic ones)."""
    import sympy

    user = [spec.arg.name for spec in exported_program.graph_signature.input_specs
            if spec.kind.name == "USER_INPUT"]
    placeholders = {node.name: node for node in exported_program.graph.find_nodes(op="placeholder")}
    ranges = []
    for input_name, placeholder_name in zip(input_names, user):
        value = placeholders[placeholder_name].meta.get("val")
        if value is None or not hasattr(value, "shape"):
            continue
        for axis, size in enumerate(value.shape):
            symbol = getattr(getattr(size, "node", None), "expr", None)
            if not isinstance(symbol, sympy.Symbol) or symbol not in exported_program.range_constraints:
                continue
            bounds = exported_program.range_constraints[symbol]
            low, high = _whole(bounds.lower), _whole(bounds.upper)
            if high is None and (low is None or low <= FREE_LOW):
                continue
            dims = onnx_inputs.get(input_name, [])
            dim = str(dims[axis]) if axis < len(dims) else f"{input_name}[{axis}]"
            ranges.append(DimRange(input_name, axis, dim, low or 0, high, _where(value, symbol, high is not None)))
    return ranges


def _whole(value) -> int | None:
    """A finite bound as an int; None for torch's infinities (int() of one fails inside sympy)."""
    if getattr(value, "is_finite", True) is False:
        return None
    try:
        number = int(value)
    except Exception:  # sympy raises several types for symbolic or infinite values
        return None
    return number if abs(number) < 2**62 else None


def _where(value, symbol, upper: bool) -> str:
    """'file:line: code' of the user's line that set the bound, when torch kept it."""
    shape_env = getattr(getattr(value, "fake_mode", None), "shape_env", None)
    located = getattr(shape_env, "var_to_range_sloc", {}).get(symbol)
    if located is None:
        return ""
    for loc in (located.upper if upper else located.lower,):
        for frame in (getattr(loc, "maybe_user_loc", None), getattr(loc, "framework_loc", None)):
            if isinstance(frame, traceback.FrameSummary) and "/torch/" not in frame.filename:
                return f"{frame.filename}:{frame.lineno}: {(frame.line or '').strip()}"
    return ""


def metadata(ranges: list[DimRange]) -> dict[str, str]:
    return {METADATA_DIM_RANGES: json.dumps([asdict(r) for r in ranges])} if ranges else {}


def outside_shapes(traced, ranges: list[DimRange], names: list[str]) -> list[tuple]:
    """(shape, the range it leaves) for each size just past a bound, the rest as traced."""
    from deploykit.model_io import Case, case_shapes

    shapes = case_shapes(traced, names)
    found = []
    for bound in ranges:
        for size in bound.outside():
            if size < 1:
                continue
            moved = {name: tuple(size if (name == bound.input and axis == bound.axis) else d
                                 for axis, d in enumerate(dims)) for name, dims in shapes.items()}
            shape = moved[names[0]] if len(names) == 1 else Case(moved)
            found.append((shape, bound))
    return found


def violated(shape, ranges: list[DimRange], names: list[str]) -> DimRange | None:
    """The first bound ``shape`` lies past, or None."""
    from deploykit.model_io import case_shapes

    shapes = case_shapes(shape, names)
    for bound in ranges:
        size = shapes.get(bound.input, ())[bound.axis] if bound.axis < len(shapes.get(bound.input, ())) else None
        if size is not None and (size < bound.low or (bound.high is not None and size > bound.high)):
            return bound
    return None
