"""A model's outputs by name, whatever it returns.

Real models return more than a tensor: torchvision's segmentation models an OrderedDict
(``out``, ``aux``), FPN backbones an OrderedDict of feature maps, Hugging Face models a
ModelOutput, detectors nested tuples with None entries. Every output is flattened in a stable
order (the order the model returns them: insertion order for mappings, field order for
dataclasses and named tuples, position for sequences) and named after its keys and positions
joined by dots (``out``, ``aux``, ``logits``, ``1.0``); a model returning one tensor has one
output, ``output``. None entries and non-tensor values (ints, strings) are dropped. The same
names are the ONNX output names, the rows of check and bench, the keys of the JSON and HTML
reports, and what --localize reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SINGLE_OUTPUT = "output"
Shape = tuple[int, ...]
_SHAPE = re.compile(r"^[0-9]{1,9}(x[0-9]{1,9}){0,4}$")
# 2^31 elements is 8 GiB of float32 per tensor: beyond what a parity check or benchmark needs.
MAX_ELEMENTS = 2**31


def shape_text(dims) -> str:
    """(2, 64, 37, 45) -> '2x64x37x45': the one way deploykit writes a shape's dims."""
    return "x".join(str(d) for d in dims)


def parse_shape(text: str) -> Shape:
    """'2x64x37x45' -> (2, 64, 37, 45): batch, channels and 1 to 3 spatial dims; or a batch alone
    ('2', class ids) or a batch of vectors ('2x16', embeddings)."""
    from deploykit.errors import UserError

    cleaned = "".join(text.split()).lower().replace(",", "x")  # "1, 3, 64, 64" too
    if not _SHAPE.match(cleaned):
        raise UserError(f"malformed shape {text!r}",
                        "write N x C and 1-3 spatial sizes, e.g. 1x64x32x32 (3-D to 5-D input), or N (a vector "
                        "of ids) or N x K (a batch of vectors)")
    shape = tuple(int(d) for d in cleaned.split("x"))
    if any(d < 1 for d in shape):
        raise UserError(f"malformed shape {text!r}: every size must be at least 1", "e.g. 1x64x32x32")
    if math.prod(shape) > MAX_ELEMENTS:
        raise UserError(f"shape {text} has {math.prod(shape):,} elements, more than {MAX_ELEMENTS:,}",
                        "use a smaller --shape")
    return shape


def format_shape(shape) -> str:
    """A test case as reports show it: '2x64x37x45', 'image=1x3x8x8,mask=1x1x8x8', and
    ' (data.npz)' after a case whose values come from an --inputs file."""
    text = bare_text(shape)
    source = getattr(shape, "source", "")
    return f"{text} ({source})" if source else text


def describe_feed(feed: dict) -> str:
    """The shapes of a feed of arrays: '2x64x37x45' for one input, 'image=1x3x8x8,mask=1x1x8x8'
    for several."""
    import numpy as np

    return bare_text(case_of({name: np.shape(array) for name, array in feed.items()}))


def case_of(shapes: dict[str, Any]):
    """Input name -> dims as a test case: a plain Shape for one input, a Case for several."""
    if len(shapes) == 1:
        return tuple(next(iter(shapes.values())))
    return Case({name: tuple(dims) for name, dims in shapes.items()})


@contextlib.contextmanager
def swapped_method(instance, name: str, replacement):
    """Within the block, ``instance.name`` is ``replacement`` (set on the instance, never on its
    class, so other instances and the user's code are untouched); afterwards the instance is as
    it was, own attribute or not. How export converts DySample layers and flattens outputs."""
    previous = vars(instance).get(name, _ABSENT)
    object.__setattr__(instance, name, replacement)
    try:
        yield
    finally:
        if previous is _ABSENT:
            vars(instance).pop(name, None)
        else:
            object.__setattr__(instance, name, previous)


_ABSENT = object()


def flatten_outputs(outputs: Any) -> dict[str, Any]:
    """name -> tensor, in the model's own order (see the module docstring)."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return {SINGLE_OUTPUT: outputs}
    flat: dict[str, Any] = {}
    _flatten(outputs, "", flat, torch.Tensor)
    return flat


def _flatten(value: Any, prefix: str, flat: dict[str, Any], tensor_type: type) -> None:
    if value is None:
        return
    if isinstance(value, tensor_type):
        flat[_unique(prefix or SINGLE_OUTPUT, flat)] = value
        return
    for key, item in _children(value):
        _flatten(item, f"{prefix}.{key}" if prefix else str(key), flat, tensor_type)


def _children(value: Any) -> list[tuple[str, Any]]:
    """(key, child) pairs of a container; [] for a leaf that is not a tensor (dropped)."""
    if isinstance(value, Mapping):  # dict, OrderedDict, Hugging Face ModelOutput
        return [(str(k), v) for k, v in value.items()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return list(zip(value._fields, value))
    if isinstance(value, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(value)]
    return []


def _unique(name: str, taken: dict) -> str:
    """A key that flattens like a position (a dict key "0.1") cannot collide with it."""
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def tensors_to_numpy(outputs, spec: str) -> dict[str, Any]:
    """A module's outputs (a tensor, tuples, lists, dicts, dataclasses, nested) as NumPy arrays
    by name: floating point as float32, integers and booleans as they are (so a dtype change is
    caught)."""
    import torch

    from deploykit.errors import UserError

    flat = flatten_outputs(outputs)
    if not flat:
        raise UserError(f"{spec} returns {type(outputs).__name__} with no tensor in it",
                        "deploykit compares models whose outputs hold tensors")
    arrays = {}
    for name, output in flat.items():
        output = output.detach().cpu()
        if output.is_quantized or output.layout != torch.strided:
            raise UserError(f"{spec} returns a {'quantized' if output.is_quantized else str(output.layout)} tensor "
                            f"as output {name}, which ONNX Runtime and TensorRT do not return alike",
                            "return a dense float or integer tensor (dequantize() or to_dense() it)")
        if output.is_floating_point():
            output = output.float()
        elif output.is_complex():
            raise UserError(f"{spec} returns a complex tensor as output {name}", "return real tensors")
        arrays[name] = output.numpy()
    return arrays


# ---- inputs ------------------------------------------------------------------------------------
# A model with one input is fed one tensor, called "input" in the ONNX file (as deploykit always
# has); a model with several is fed one tensor per required positional parameter of forward, each
# named after its parameter. One test case gives every input its shape: a Shape for one input, a
# Case (name -> shape, in forward's order) for several.

SINGLE_INPUT = "input"
DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class InputSpec:
    """How an input is drawn: its dtype, and the range of its values (None: N(0, 1) for
    floats, {0, 1} for integers and booleans)."""

    name: str
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None


class _Sourced(tuple):
    """A tuple that also carries where its values come from ("" for seeded inputs, else the
    --inputs file): a case of real data never equals the seeded case of the same shapes."""

    source = ""

    def __hash__(self):
        return hash((tuple(self), self.source))

    def __eq__(self, other):
        return tuple(self) == tuple(other) and getattr(other, "source", "") == self.source


class Case(_Sourced):
    """One test case of a model with several inputs: (name, shape) pairs in forward's order.
    Hashable and ordered like a Shape, so it keys results, pictures and latencies alike."""

    def __new__(cls, shapes: dict[str, tuple[int, ...]], source: str = ""):
        case = super().__new__(cls, tuple((name, tuple(shape)) for name, shape in shapes.items()))
        case.source = source
        return case

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self)

    def __str__(self) -> str:
        return format_shape(self)


def _forward_parameters(module) -> list:
    """forward's parameters ([] when its signature cannot be read)."""
    import inspect

    try:
        return list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def forward_takes_var_positional(module) -> bool:
    """forward(*inputs): export then gives its dynamic shapes as one tuple for ``*inputs``."""
    parameters = _forward_parameters(module)
    return bool(parameters) and parameters[0].kind == parameters[0].VAR_POSITIONAL


def forward_input_names(module) -> list[str]:
    """The inputs deploykit feeds: forward's required positional parameters, or ["input"] for
    one (or for a forward taking ``*args``, whose names cannot be known)."""
    parameters = _forward_parameters(module)
    if not parameters or any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return [SINGLE_INPUT]
    names = [p.name for p in parameters
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return names if len(names) > 1 else [SINGLE_INPUT]


def case_shapes(case, names: list[str]) -> dict[str, tuple[int, ...]]:
    """name -> shape of a test case (a plain Shape is the one input's)."""
    return case.shapes if isinstance(case, Case) else {names[0]: tuple(case)}


def case_json(case, names: list[str]) -> dict[str, list[int]]:
    """A case in JSON reports: {input name: dims}, for one input as for several (one type per
    field; reports before schema_version 2 wrote a bare list for one input)."""
    return {name: list(shape) for name, shape in case_shapes(case, names).items()}


def bare_text(case) -> str:
    """A case as deploykit parses it back (no '(data.npz)' suffix): what the metadata records."""
    if isinstance(case, Case):
        return ",".join(f"{name}={shape_text(shape)}" for name, shape in case)
    return shape_text(case)


def batch_of(case) -> int:
    return next(iter(case.shapes.values()))[0] if isinstance(case, Case) else case[0]


def make_inputs(shape: Shape, seed: int) -> dict[str, Any]:
    """A one-input model's feed: standard-normal float32 ``input``, a pure function of (seed,
    shape). Models with several inputs, dtypes or ranges draw theirs with ``LoadedModel.feed``."""
    return draw_inputs(shape, seed, {SINGLE_INPUT: InputSpec(SINGLE_INPUT)})


def draw_inputs(case, seed: int, specs: dict[str, InputSpec]) -> dict[str, Any]:
    """Seeded inputs for a case, a pure function of (seed, input, shape, spec): floats from
    N(0, 1) (one input keeps deploykit's historic draw) or uniform in their range; integers and
    booleans uniform over their inclusive range."""
    import numpy as np

    shapes = case_shapes(case, list(specs))
    feed = {}
    for index, (name, shape) in enumerate(shapes.items()):
        spec = specs.get(name) or InputSpec(name)
        rng = np.random.default_rng([seed, *shape] if len(shapes) == 1 else [seed, index, *shape])
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            if spec.low is None:
                values = rng.standard_normal(shape, dtype=np.float32)
            else:
                values = rng.uniform(spec.low, spec.high, shape).astype(np.float32)
        elif dtype.kind == "b":
            values = rng.random(shape) < 0.5
        else:
            low = 0 if spec.low is None else int(spec.low)
            high = 1 if spec.high is None else int(spec.high)
            values = rng.integers(low, high, shape, endpoint=True)
        feed[name] = values.astype(dtype)
    return feed


def parse_case(text: str, names: list[str]):
    """'1x3x64x64' for a one-input model, 'image=1x3x64x64,mask=1x1x64x64' (every input named)
    for several: a Shape, or a Case. The habits of the neighbouring tools are read too:
    trtexec's 'image:1x3x64x64,mask:1x1x64x64' and Polygraphy's 'image:[1,3,64,64]
    mask:[1,1,64,64]' (a name may itself hold ':', as TensorFlow's 'input:0' does)."""
    from deploykit.errors import UserError

    if "=" not in text and ":" not in text:
        if len(names) > 1:
            raise UserError(f"--shape {text!r} gives one shape; the model takes {', '.join(names)}",
                            f"write --shape {','.join(f'{n}=NxCxHxW' for n in names)}")
        return parse_shape(text.strip().strip("[]"))
    shapes = _named_shapes(text)
    unknown = [n for n in shapes if n not in names and not (len(names) == 1 and n in (SINGLE_INPUT,))]
    if unknown:
        raise UserError(f"--shape names unknown input {unknown[0]!r}", f"the model's inputs are {', '.join(names)}")
    missing = [n for n in names if n not in shapes]
    if missing and len(names) > 1:
        raise UserError(f"--shape {text!r} gives no shape for input {missing[0]!r}",
                        f"name every input: {', '.join(names)}")
    return next(iter(shapes.values())) if len(names) == 1 else Case({n: shapes[n] for n in names})


def check_case_syntax(text: str) -> str:
    """``text`` unchanged if it is a shape in one of the forms parse_case reads, else the
    UserError parse_case would raise: what the command line checks before any model loads."""
    if "=" not in text and ":" not in text:
        parse_shape(text.strip().strip("[]"))
    else:
        _named_shapes(text)
    return text


def _named_shapes(text: str) -> dict[str, Shape]:
    """'a=1x2x3x4,b:[1,1,3,4]' -> {'a': (1, 2, 3, 4), 'b': (1, 1, 3, 4)}: each entry named, and
    each name once, which needs no model to check."""
    from deploykit.errors import UserError

    shapes = {}
    for part in _named_entries(text):
        name, _, value = part.partition("=") if "=" in part else part.rpartition(":")
        name, value = name.strip(), value.strip()
        if not name:
            raise UserError(f"--shape {text!r} has a shape without an input name", "write NAME=NxCxHxW")
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        if name in shapes:
            raise UserError(f"--shape {text!r} names input {name!r} twice", "give each input once")
        shapes[name] = parse_shape(value)
    return shapes


def _named_entries(text: str) -> list[str]:
    """'a=1x2x3x4,b:[1,1,3,4] c:1x1x3x4' -> its entries: split at commas and spaces outside
    brackets."""
    entries, current, depth = [], "", 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char in ", \t" and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    entries.append(current)
    return [entry for entry in entries if entry.strip()]


def _split_named(text: str, option: str, form: str) -> tuple[str | None, str]:
    """'mask=int64' -> ('mask', 'int64'); 'int64' alone -> (None, 'int64'): every input."""
    from deploykit.errors import UserError

    name, sep, value = text.partition("=")
    if not sep:
        return None, text.strip()
    if not name.strip():
        raise UserError(f"{option} {text!r} has '=' but no input name", f"write {option} NAME={form}, or {form} alone")
    return name.strip(), value.strip()


def parse_input_dtype(text: str) -> tuple[str | None, str]:
    """--input-dtype [NAME=]DTYPE -> (NAME or None for every input, DTYPE)."""
    from deploykit.errors import UserError

    name, dtype = _split_named(text, "--input-dtype", "DTYPE")
    if dtype not in DTYPES:
        raise UserError(f"--input-dtype {text!r}: unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    return name, dtype


def parse_val_range(text: str) -> tuple[str | None, float, float]:
    """--val-range [NAME=]LOW,HIGH -> (NAME or None for every input, LOW, HIGH); whether the
    input's dtype holds the range is checked once the inputs are known (input_specs)."""
    from deploykit.errors import UserError

    name, value = _split_named(text, "--val-range", "LOW,HIGH")
    try:
        low, high = (float(v) for v in value.strip("[]").split(","))
    except ValueError:
        raise UserError(f"--val-range {text!r} is not LOW,HIGH", "e.g. --val-range image=0,1") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise UserError(f"--val-range {text!r}: need finite LOW <= HIGH", "e.g. --val-range image=0,1")
    return name, low, high


def onnx_dtype_name(value, path) -> str:
    """The NumPy dtype name ('float32', 'int64') of an ONNX graph input (a ValueInfo) of the
    file at ``path``; a UserError for an input deploykit cannot draw (a sequence or map, strings,
    complex numbers, bfloat16), which another exporter's file may take."""
    import numpy as np
    from onnx import TensorProto, helper

    from deploykit.errors import UserError

    kind = value.type.WhichOneof("value") or "untyped"
    elem_type = value.type.tensor_type.elem_type if kind == "tensor_type" else TensorProto.UNDEFINED
    known = elem_type != TensorProto.UNDEFINED and elem_type in TensorProto.DataType.values()
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)) if known else None
    if dtype is None or dtype.kind not in "fiub":
        what = (TensorProto.DataType.Name(elem_type).lower() if known
                else f"{kind.removesuffix('_type')} of element type {elem_type}" if kind == "tensor_type"
                else kind.removesuffix("_type"))
        raise UserError(f"{path} input {value.name!r} is {what}, which deploykit cannot draw inputs for",
                        "deploykit feeds float, integer and bool tensors: check this file with the tool that made it")
    return dtype.name


def _inputs_named(name: str | None, option: str, names: list[str]) -> list[str]:
    """The inputs an option's NAME= selects: every input for no name."""
    from deploykit.errors import UserError

    if name is None:
        return list(names)
    if name not in names and not (len(names) == 1 and name == SINGLE_INPUT):
        raise UserError(f"{option} names unknown input {name!r}", f"the model's inputs are {', '.join(names)}")
    return [names[0] if name == SINGLE_INPUT else name]


def input_specs(names: list[str], dtypes: list[str], ranges: list[str]) -> dict[str, InputSpec]:
    """--input-dtype NAME=DTYPE and --val-range [NAME=]LOW,HIGH (repeatable) -> name -> InputSpec."""
    specs = {name: InputSpec(name) for name in names}
    for text in dtypes:
        name, dtype = parse_input_dtype(text)
        for target in _inputs_named(name, "--input-dtype", names):
            specs[target] = dataclasses.replace(specs[target], dtype=dtype)
    for text in ranges:
        name, low, high = parse_val_range(text)
        for target in _inputs_named(name, "--val-range", names):
            _check_range(text, specs[target].dtype, low, high)
            specs[target] = dataclasses.replace(specs[target], low=low, high=high)
    return specs


def _check_range(text: str, dtype: str, low: float, high: float) -> None:
    """A range the dtype can hold: whole numbers within an integer dtype's limits, floats within
    the float dtype's largest value, none for bool."""
    import numpy as np

    from deploykit.errors import UserError

    kind = np.dtype(dtype)
    if kind.kind == "b":
        raise UserError(f"--val-range {text!r} is given for a bool input", "drop it: booleans are drawn 50/50")
    if kind.kind == "f" and max(abs(low), abs(high)) > float(np.finfo(kind).max):
        raise UserError(f"--val-range {text!r} does not fit {dtype} (at most {float(np.finfo(kind).max):g} in size)",
                        "give a range the dtype holds, or another --input-dtype")
    if kind.kind in "iu":
        limits = np.iinfo(kind)
        if low != int(low) or high != int(high) or low < limits.min or high > limits.max:
            raise UserError(f"--val-range {text!r} does not fit {dtype} (whole numbers in {limits.min}..{limits.max})",
                            "give whole numbers the dtype holds, or another --input-dtype")


def read_npz(path, what: str, fix: str) -> dict[str, Any]:
    """Every array of an .npz by key, loaded without pickle; a missing or unreadable file is a
    UserError naming ``what`` it is (``--inputs``, saved outputs) and the ``fix``."""
    import zipfile
    from pathlib import Path

    import numpy as np

    from deploykit.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found", fix)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{what} {path} is not a readable .npz file ({type(exc).__name__})", fix) from None


def load_npz(path, specs: dict[str, InputSpec]) -> tuple[Any, dict[str, Any]]:
    """(its case, its arrays by input name) from --inputs FILE.npz: one array per input, keyed by
    the input's name ('input' or the parameter's name for a one-input model), of its dtype."""
    from pathlib import Path

    import numpy as np

    from deploykit.errors import UserError

    path = Path(path)
    names = list(specs)
    arrays = read_npz(path, "--inputs", "save it with numpy.savez(path, name=array, ...)")
    if len(names) == 1 and len(arrays) == 1:  # one input: 'input', its parameter's name, or any key
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        raise UserError(f"--inputs {path} has arrays {', '.join(arrays) or 'none'}; the model's inputs are "
                        f"{', '.join(names)}", "key one array by each input's name")
    for name, array in arrays.items():
        want = np.dtype(specs[name].dtype)
        if array.dtype != want and not (want.kind == "f" and array.dtype.kind == "f"):
            raise UserError(f"--inputs {path}: array {name!r} is {array.dtype}, the input is {want}",
                            f"save it as {want}, or pass --input-dtype {name}={array.dtype}")
        if not 1 <= array.ndim <= 5 or array.size > MAX_ELEMENTS or 0 in array.shape:
            raise UserError(f"--inputs {path}: array {name!r} has shape {array.shape}",
                            "give N, N x K, or N x C and 1-3 spatial sizes (1-D to 5-D), at most 2^31 elements")
        arrays[name] = np.ascontiguousarray(array, dtype=want)
    shapes = {name: tuple(arrays[name].shape) for name in names}
    case = Case(shapes, source=path.name) if len(names) > 1 else _SourcedShape(shapes[names[0]], path.name)
    return case, {name: arrays[name] for name in names}


class _SourcedShape(_Sourced):
    """A one-input case whose values come from a file: prints as '1x3x8x8 (data.npz)'."""

    def __new__(cls, shape, source: str):
        case = super().__new__(cls, shape)
        case.source = source
        return case
