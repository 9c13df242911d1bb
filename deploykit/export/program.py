"""The PyTorch exporter's step: a module and example inputs in, an in-memory ONNX program out.

Why dynamo only: the TorchScript exporter with ``dynamic_axes`` bakes ``torch.arange(H)`` and
similar shape-derived values into constants, so DySample exported that way is wrong by about 5
at every shape but the traced one. ``torch.export`` keeps those values symbolic. Writing and
checking the file is deploykit.export.onnx_export; localize calls this step again to expose
intermediate values.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from deploykit.errors import UserError
from deploykit.export.dysample import Conversion, converted_for_export, find_layers
from deploykit.model_io import flatten_outputs
from deploykit.spec import LoadedModel

logger = logging.getLogger(__name__)

METADATA_MAXPOOL_IMPL = "deploykit.maxpool_impl"

# Past batch (and channels): 1-D ids and 2-D vectors have no spatial dims.
_DIM_NAMES = {1: (), 2: (), 3: ("length",), 4: ("height", "width"), 5: ("depth", "height", "width")}


class ExportError(UserError):
    """The exporter could not turn the module into a valid ONNX graph."""


def dynamic_dims(rank: int) -> dict[int, str]:
    """Names for the dims that stay symbolic: batch and every spatial dim (never channels)."""
    return {0: "batch", **{2 + i: name for i, name in enumerate(_DIM_NAMES[rank])}}


def example_inputs(model: LoadedModel, case) -> tuple:
    """The tensors export traces with, in forward's order: one float input is drawn as deploykit
    always has (N(0, 1) seeded by the model's seed); several from their specs, like check's."""
    import torch

    from deploykit.model_io import InputSpec

    if len(model.inputs) == 1 and next(iter(model.inputs.values())) == InputSpec(model.input_names[0]):
        return (torch.randn(*case, generator=torch.Generator().manual_seed(model.seed)),)
    return tuple(torch.from_numpy(array.copy()) for array in model.feed(case).values())  # forward may write into it


def dynamic_shapes(model: LoadedModel, case) -> tuple:
    """Per input, its symbolic dims (batch and spatial): one input's are named batch, height,
    width; with several, each is prefixed with its input's name (their sizes may differ)."""
    from deploykit.model_io import case_shapes, forward_takes_var_positional

    shapes = case_shapes(case, model.input_names)
    if len(shapes) == 1:
        dims = dynamic_dims(len(next(iter(shapes.values()))))
        # forward(*inputs): torch.export matches dynamic_shapes to the signature, one tuple for *inputs
        return ((dims,),) if forward_takes_var_positional(model.module) else (dims,)
    # a dim traced at 1 stays 1 where another input's is larger: it broadcasts (a per-channel
    # gain of 1xCx1x1), it does not vary; a batch of 1 shared by every input is still a batch
    one_batch = all(shape[0] == 1 for shape in shapes.values())
    return tuple({axis: f"{name}_{label}" for axis, label in dynamic_dims(len(shape)).items()
                  if shape[axis] != 1 or (axis == 0 and one_batch)}
                 for name, shape in shapes.items())


def export_program(model: LoadedModel, example, *, dims, opset: int, output_names: list[str], dysample_impl: str,
                   layers=None, maxpool_impl: str = "native", probes: list[tuple] = ()):
    """(the in-memory ONNXProgram, the DySample Conversion): the program's ``exported_program``
    is the FX graph the ONNX values are named after; the model's verified DySample layers
    (``layers``, found here when None: the method-based ones; the inline ones are found in the
    traced program, verified at ``example`` and each of ``probes``) are exported as
    ``dysample_impl``, max-pool indices as ``maxpool_impl``. No checks, no file."""
    from deploykit.export.dysample import translation_table
    from deploykit.export.dysample_graph import convert_inline, find_inline_layers
    from deploykit.export.maxpool_indices import translation_table as maxpool_table

    if layers is None:
        layers, _ = find_layers(model.module)
    conversion = Conversion(dysample_impl, list(layers))
    table = {**(translation_table(dysample_impl) or {}), **maxpool_table(maxpool_impl)} or None
    with converted_for_export(model.module, conversion.layers, conversion), _flat_outputs(model.module):
        captured = _capture(model, example, dims)
        module_names = {name for name, _ in model.module.named_modules()}
        if captured is not None:
            inline, lookalikes = find_inline_layers(captured, [tuple(example), *probes], module_names)
            convert_inline(captured, inline, conversion)
            conversion.lookalikes.extend(lookalikes)
        program = _run_exporter(model, captured, example, dims, opset, output_names, table)
    _unique_output_names(program.model.graph, model.spec)
    conversion.keep_in_graph(program.exported_program, program.model.graph, module_names)
    return program, conversion


def _capture(model: LoadedModel, example, dims):
    """The module traced by torch.export the way ``torch.onnx.export`` traces it (its own
    strategies, in its order), so the program can be searched for inline DySample layers
    before it becomes ONNX; None when none succeeds (the exporter then tries, and reports)."""
    try:
        from torch.onnx._internal.exporter import _capture_strategies, _dynamic_shapes
    except ImportError:  # another PyTorch layout: export the module as it is
        logger.info("cannot trace before exporting in this PyTorch: inline DySample layers are not searched")
        return None
    export_dims = _dynamic_shapes.convert_str_to_export_dim(dims)[0] if dims else None
    from deploykit.logs import captured_exporter_logs

    captured = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
            captured_exporter_logs(captured):
        warnings.simplefilter("ignore")
        for strategy in _capture_strategies.CAPTURE_STRATEGIES:
            result = strategy(verbose=False)(model.module, tuple(example), None, dynamic_shapes=export_dims)
            if result.success:
                return result.exported_program
    logger.info("torch.export could not trace %s: inline DySample layers are not searched", model.spec)
    return None


@contextlib.contextmanager
def _flat_outputs(module):
    """Within the block the module returns its outputs as one flat tuple, in the order and under
    the names of ``deploykit.model_io.flatten_outputs`` (dicts, dataclasses, nested tuples and
    None entries are not all things the exporter can flatten, nor name)."""
    import functools

    from deploykit.model_io import swapped_method

    original = module.forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        return tuple(flatten_outputs(original(*args, **kwargs)).values())

    with swapped_method(module, "forward", forward):
        yield


def _unique_output_names(graph, spec: str) -> None:
    """An output named after its dict key ('relu', 'add') can share its name with a value the
    exporter named after the FX node that computes it: the graph is then not SSA. The other
    value is renamed; a key that is an input's or a weight's name is the user's to change."""
    outputs = {id(value) for value in graph.outputs}
    wanted = {value.name for value in graph.outputs}
    fixed = {id(value): "an input" for value in graph.inputs}
    fixed |= {id(value): "a weight" for value in graph.initializers.values()}
    values = [*graph.inputs, *graph.initializers.values(), *(v for node in graph for v in node.outputs)]
    taken = {value.name for value in values}
    for value in values:
        if value.name not in wanted or id(value) in outputs:
            continue
        if id(value) in fixed:
            raise UserError(f"{spec} returns an output named {value.name!r}, which is also {fixed[id(value)]}'s name "
                            "in the graph", "rename that key of the model's output")
        n = 1
        while f"{value.name}_{n}" in taken:
            n += 1
        value.name = f"{value.name}_{n}"
        taken.add(value.name)


def pools_with_indices(exported_program) -> bool:
    """Whether the model computes max-pool indices (so the strategy shaped the graph)."""
    import torch

    return any(node.target is torch.ops.aten.max_pool2d_with_indices.default
               for node in exported_program.graph.nodes)


def _run_exporter(model: LoadedModel, traced, example, dims, opset: int, output_names: list[str], table):
    import torch

    from deploykit.logs import captured_exporter_logs

    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), \
                contextlib.redirect_stderr(captured), captured_exporter_logs(captured):
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                model.module if traced is None else traced, tuple(example), dynamo=True, opset_version=opset,
                dynamic_shapes=dims,
                input_names=model.input_names, output_names=output_names, verbose=False, optimize=True,
                custom_translation_table=table,
            )
    except Exception as exc:  # the exporter raises many types; all mean "could not export"
        saved = _save_exporter_report(model.spec, exc, captured.getvalue())
        reason = exporter_reason(exc)
        fix = "try --static, a different --opset, or report the op to deploykit"
        if "static shape" in reason or "specializ" in reason:
            fix = "export with --static, or make the layer that fixes this size keep it symbolic"
        node = _failing_node_line(exc, captured.getvalue())
        where = f"; {node}" if node and node not in reason else ""
        raise ExportError(f"export of {model.spec} failed: {reason}{where} (full report: {saved})", fix) from None


# Lines of the exporter's own wrapping that say nothing about the model.
_BOILERPLATE = re.compile(r"^(Failed to (export|convert|decompose)|This is step|Next steps|- (Modify|Debug|Create|"
                          r"If you|Please|Refer)|## |\(Refer to|For more information|Set TORCH_LOGS|"
                          r"from user code|The error above)", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def exporter_reason(exc: BaseException, limit: int = 300) -> str:
    """The sentence that says why the exporter failed: the innermost cause's message without
    the exporter's advice (e.g. "tracing inferred a static shape of 160 for dimension
    inputs['x'].shape[2]"), prefixed by its exception type."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 16:
        chain.append(chain[-1].__cause__)
    for error in reversed(chain):
        lines = [_ANSI.sub("", line).strip() for line in str(error).splitlines()]
        lines = [line for line in lines if line and not _BOILERPLATE.match(line)]
        if not lines:
            continue
        text = lines[0]
        for line in lines[1:]:  # "Found the following conflicts:" is a heading for the next line
            if not text.endswith(":") or len(text) >= limit:
                break
            text = f"{text} {line.lstrip('- ')}"
        return f"{type(error).__name__}: {text}"[:limit]
    return type(exc).__name__


_NODE_LINE = re.compile(r"[^\n]*\b(failed|error)\b[^\n]*\bnode\b[^\n]*", re.IGNORECASE)


def _failing_node_line(exc: BaseException, output: str) -> str:
    """The line, anywhere in the exception chain or the exporter's output, that names the node the
    exporter failed at ("constant folding failed for node 'node_split' (SplitToSequence)"): the
    innermost cause alone often does not."""
    texts = []
    error: BaseException | None = exc
    while error is not None and len(texts) < 16:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    for text in [*texts, output]:
        match = _NODE_LINE.search(_ANSI.sub("", text))
        if match:
            return match.group(0).strip()[:200]
    return ""


def _save_exporter_report(spec: str, exc: BaseException, output: str) -> Path:
    """Everything the exporter said and raised, for the user to read or attach to a bug report."""
    from deploykit.files import private_folder

    folder = private_folder("deploykit-reports")
    fd, name = tempfile.mkstemp(prefix=f"export-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as report:
        report.write(f"deploykit export of {spec}: the exporter failed\n\n## What the exporter printed\n\n")
        report.write(_ANSI.sub("", output) or "(nothing)\n")
        report.write("\n## The exception, with its causes\n\n")
        report.write(_ANSI.sub("", "".join(traceback.format_exception(exc))))
    return Path(name)
