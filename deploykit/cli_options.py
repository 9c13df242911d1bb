"""The command line's shared options, each defined once (as pip-tools keeps its options), and
the bounds that make a typo an error rather than hours of work."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from deploykit.export.dysample import DEFAULT_DYSAMPLE_IMPL, DYSAMPLE_IMPLS
from deploykit.export.maxpool_indices import DEFAULT_MAXPOOL_IMPL, MAXPOOL_IMPLS
from deploykit.export.options import TARGETS
from deploykit.model_io import check_case_syntax, parse_input_dtype, parse_val_range
from deploykit.spec import MAX_SEED

DEFAULT_BACKENDS = "torch,ort"
MAX_THREADS = 256  # beyond this a typo, not a setting: ONNX Runtime would start that many threads
MAX_ITERS = 1_000_000  # bench: timed runs; a bound, so a typo cannot grow the timing list without limit
MAX_WARMUP = 100_000
DEFAULT_BENCH_SECONDS = 120.0  # per backend and shape; bench stops timing there
MAX_BENCH_SECONDS = 86_400.0


def _apply(command, decorators):
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def force_option(what: str):
    return click.option("--force", is_flag=True, help=f"Overwrite an existing {what}.")


def report_option(what: str):
    return click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
                        help=f"Also write {what} as JSON.")


def plugin_option(help_text: str):
    return click.option("--plugin", "plugins", multiple=True, type=click.Path(path_type=Path), help=help_text)


def onnx_file_argument(command):
    """The ONNX file a command reads, as MODEL or as --onnx (check and bench's name for it): one
    name per concept across commands, the positional kept for trtexec's and Polygraphy's habit."""
    return _apply(command, [
        click.argument("model", type=click.Path(path_type=Path), required=False),
        click.option("--onnx", "onnx_option", type=click.Path(path_type=Path), default=None, metavar="MODEL.onnx",
                     help="The ONNX file (the same as the MODEL argument)."),
    ])


class CheckedText(click.ParamType):
    """Option text whose syntax ``parse`` (a deploykit parser raising UserError) checks as Click
    parses the command line, before any model or torch loads: a malformed value is exit 2 naming
    the fix. The text is kept as given and bound to the model's inputs later, once they are known
    (model_io.parse_case, model_io.input_specs)."""

    def __init__(self, name: str, parse):
        self.name = name
        self.parse = parse

    def convert(self, value, param, ctx):
        from deploykit.errors import UserError

        try:
            self.parse(value)
        except UserError as exc:
            self.fail(str(exc), param, ctx)
        return value


class Assignment(click.ParamType):
    """-p KEY=VALUE as a (key, value) pair, refused by Click when it has no key or no '='."""

    name = "assignment"

    def convert(self, value, param, ctx):
        from deploykit.errors import UserError
        from deploykit.spec import parse_assignment

        try:
            return parse_assignment(value)
        except UserError as exc:
            self.fail(str(exc), param, ctx)


def _distinct_keys(ctx, param, pairs):
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise click.BadParameter(f"parameter {repeated!r} given twice; pass each -p key once", ctx=ctx, param=param)
    return pairs


SHAPE = CheckedText("shape", check_case_syntax)  # every form parse_case reads: NxCxHxW, NAME=, NAME:, NAME:[...]


def shape_option(help_text: str):
    return click.option("--shape", "shapes", multiple=True, type=SHAPE, metavar="NxCxHxW", help=help_text)


def target_option(help_text: str, default: str | None = None):
    """--target, its default (if any) listed first."""
    choices = sorted(TARGETS, key=lambda target: target != default)
    return click.option("--target", type=click.Choice(choices), default=default, show_default=default is not None,
                        help=help_text)


def precision_option(help_text: str):
    return click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                        help=help_text)


def finite_tolerance(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not a finite number >= 0", ctx=ctx, param=param)
    return value


def model_options(command=None, *, spec_required: bool = True):
    """SPEC plus what fixes the model's weights and inputs: export, check and bench."""
    if command is None:
        return lambda c: model_options(c, spec_required=spec_required)
    return _apply(command, [
        click.argument("spec", required=spec_required),
        click.option("-p", "--param", "params", multiple=True, type=Assignment(), callback=_distinct_keys,
                     metavar="KEY=VALUE",
                     help="Zoo/constructor parameter (repeatable); see 'deploykit list NAME'."),
        click.option("--weights", type=click.Path(path_type=Path), default=None,
                     help="State dict to load (torch.load with weights_only=True)."),
        click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
                     help="Seeds the initial weights and the test inputs."),
        click.option("--input-dtype", "input_dtypes", multiple=True, type=CheckedText("dtype", parse_input_dtype),
                     metavar="[NAME=]DTYPE",
                     help="An input's dtype (repeatable): float32 (default), float16, int64, int32, int8, uint8, bool."),
        click.option("--val-range", "val_ranges", multiple=True, type=CheckedText("range", parse_val_range),
                     metavar="[NAME=]LOW,HIGH",
                     help="Draw an input uniformly in [LOW, HIGH] (repeatable; default N(0, 1) for floats, "
                          "0..1 for integers); without NAME, every input."),
        click.option("--inputs", "inputs_file", type=click.Path(path_type=Path), default=None,
                     help="An .npz of arrays keyed by input name: one more test case, of real data."),
    ])


def dysample_impl_option(help_text: str):
    return click.option("--dysample-impl", type=click.Choice(list(DYSAMPLE_IMPLS)), default=None,
                        help=f"{help_text} Default: {DEFAULT_DYSAMPLE_IMPL['ort']}, or "
                             f"{DEFAULT_DYSAMPLE_IMPL['trt']} for TensorRT. standard: GridSample; gather / "
                             "roialign: standard ops without GridSample; auto: the faster of those two per layer "
                             "on ONNX Runtime's CPU; plugin: one deploykit::DySample node for the TensorRT plugin.")


def maxpool_impl_option(command):
    return click.option(
        "--maxpool-impl", type=click.Choice(list(MAXPOOL_IMPLS)), default=None,
        help=f"How max-pool indices (SegNet's max-unpool) are exported. Default: {DEFAULT_MAXPOOL_IMPL['ort']}, or "
             f"{DEFAULT_MAXPOOL_IMPL['trt']} for TensorRT. native: MaxPool's Indices output (faster on ONNX "
             "Runtime); window: PyTorch's exact indices from standard ops TensorRT's parser accepts.")(command)


def run_options(command):
    """Backends, ONNX file, threads, precision and report: check and bench."""
    return _apply(command, [
        click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), default=None,
                     help="ONNX file for ONNX backends (default: export SPEC to a temporary file)."),
        click.option("--backends", default=None,
                     help="Comma-separated: torch, torch-cuda, ort, ort-cuda, ort-trt, onnx-ref, trt. "
                          f"Default: {DEFAULT_BACKENDS}."),
        shape_option("Input shape (repeatable). Default: three shapes incl. batch>1 and odd, non-square H, W."),
        click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), default=os.cpu_count() or 1,
                     show_default=True, help="Intra-op threads for torch and ONNX Runtime."),
        precision_option("fp16 runs the torch backends in half precision (and, in check, uses the fp16 "
                         "tolerance preset); ONNX graphs run as exported."),
        report_option("the results"),
        force_option("report file"),
        dysample_impl_option("How DySample is exported when SPEC is exported for an ONNX backend."),
        maxpool_impl_option,
        click.option("--engine", "engine_path", type=click.Path(path_type=Path), default=None,
                     help="TensorRT engine for the trt backend (default: built from the ONNX file for the shapes)."),
        plugin_option("TensorRT plugin library to load before the engine (repeatable)."),
    ])
