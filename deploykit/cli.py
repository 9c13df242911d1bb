"""The deploykit command line: parse, call the library, map errors to exit codes.

Exit codes: 0 success, 1 parity failure, 2 a usage or input error (one line, no traceback).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path

import click

from deploykit.errors import UserError
from deploykit.export.onnx_export import DEFAULT_DYSAMPLE_IMPL, DYSAMPLE_IMPLS

DEFAULT_BACKENDS = "torch,ort"
HTML_LATENCY_ITERS = 10  # check --html times each backend too, for the report's latency chart
MAX_THREADS = 256  # beyond this a typo, not a setting: ONNX Runtime would start that many threads
MAX_SEED = 2**32 - 1
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class OneLineErrors(click.Group):
    """Click's own usage errors (bad option value, unknown option) as one line and exit 2,
    like deploykit's, instead of a usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name or "deploykit", complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.ClickException as exc:
            command = exc.ctx.command_path if getattr(exc, "ctx", None) else "deploykit"
            click.echo(f"error: {exc.format_message()}; see '{command} --help'", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


def _console():
    from rich.console import Console

    return Console(width=max(120, Console().width))


def fail_cleanly(command):
    """Turn library errors into one line on stderr and the right exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except MemoryError:
            click.echo("error: out of memory; use a smaller --shape or fewer backends", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def _finite_tolerance(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not a finite number >= 0", ctx=ctx, param=param)
    return value


def model_options(command, spec_required: bool = True):
    """SPEC plus what fixes the model's weights: shared by export, check and bench."""
    decorators = [
        click.argument("spec", required=spec_required),
        click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="Zoo/constructor parameter (repeatable); see 'deploykit list NAME'."),
        click.option("--weights", type=click.Path(path_type=Path), default=None,
                     help="State dict to load (torch.load with weights_only=True)."),
        click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
                     help="Seeds the initial weights and the test inputs."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def shape_option(help_text: str):
    return click.option("--shape", "shapes", multiple=True, metavar="NxCxHxW", help=help_text)


def dysample_impl_option(help_text: str):
    return click.option("--dysample-impl", type=click.Choice(list(DYSAMPLE_IMPLS)), default=None,
                        help=f"{help_text} Default: {DEFAULT_DYSAMPLE_IMPL['ort']}, or "
                             f"{DEFAULT_DYSAMPLE_IMPL['trt']} for TensorRT. standard: GridSample; gather / "
                             "roialign: standard ops without GridSample; auto: the faster of those two per layer "
                             "on ONNX Runtime's CPU; plugin: one deploykit::DySample node for the TensorRT plugin.")


def run_options(command):
    """Backends, ONNX file, threads, precision and report: shared by check and bench."""
    decorators = [
        click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), default=None,
                     help="ONNX file for ONNX backends (default: export SPEC to a temporary file)."),
        click.option("--backends", default=None,
                     help="Comma-separated: torch, torch-cuda, ort, ort-cuda, ort-trt, onnx-ref, trt. "
                          f"Default: {DEFAULT_BACKENDS}."),
        shape_option("Input shape (repeatable). Default: three shapes incl. batch>1 and odd, non-square H, W."),
        click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), default=os.cpu_count() or 1,
                     show_default=True, help="Intra-op threads for torch and ONNX Runtime."),
        click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                     help="fp16 runs the torch backends in half precision (and, in check, uses the fp16 "
                          "tolerance preset); ONNX graphs run as exported."),
        click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
                     help="Also write the results as JSON."),
        click.option("--force", is_flag=True, help="Overwrite an existing report file."),
        dysample_impl_option("How DySample is exported when SPEC is exported for an ONNX backend."),
        click.option("--engine", "engine_path", type=click.Path(path_type=Path), default=None,
                     help="TensorRT engine for the trt backend (default: built from the ONNX file for the shapes)."),
        plugin_option("TensorRT plugin library to load before the engine (repeatable)."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar (there is none without a terminal)."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def plugin_option(help_text: str):
    return click.option("--plugin", "plugins", multiple=True, type=click.Path(path_type=Path), help=help_text)


def _load(spec, params, weights, seed):
    from deploykit.spec import parse_assignments, resolve_model

    return resolve_model(spec, parse_assignments(params), weights, seed)


def _shapes(texts):
    from deploykit.spec import parse_shape

    return [parse_shape(t) for t in texts] or None


def _export_options(recipe, dysample_impl=None, opset=None, static=False, target=None, trace=None) -> dict:
    """Export settings: the command line's, else the recipe's, else the defaults."""
    return {
        "opset": opset if opset is not None else (recipe.opset if recipe else None),
        "dynamic": not (static or (recipe.static if recipe else False)),
        "trace_shape": trace or (recipe.trace_shape if recipe else None),
        "target": target or (recipe.target if recipe and recipe.target else "ort"),
        "dysample_impl": dysample_impl or (recipe.dysample_impl if recipe else None),
    }


def _refuse_to_overwrite(path: Path | None, force: bool) -> None:
    """Fail on an existing output before minutes of work, not after."""
    if path is not None:
        from deploykit.files import ensure_writable

        ensure_writable(path, force)


@click.group(cls=OneLineErrors, context_settings=_CONTEXT)
@click.version_option(package_name="deploykit")
def main():
    """Export PyTorch upsamplers to ONNX, check every backend against PyTorch, and time them."""


@main.command("list")
@click.argument("name", required=False)
@fail_cleanly
def list_command(name):
    """List zoo entries, or one entry's parameters, defaults and valid ranges."""
    from deploykit import zoo
    from deploykit.report import print_entries

    entries = {name: zoo.get(name)} if name else zoo.entries()
    print_entries(entries, _console(), detail=bool(name))


@main.command("export")
@model_options
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="ONNX file to write.")
@click.option("--opset", type=int, default=None,
              help="ONNX opset (16..23). Default: 17, or the lowest an op needs (antialias Resize: 18).")
@click.option("--static", is_flag=True, help="Fix every dim to the traced shape (default: dynamic batch, H, W).")
@shape_option("Shape to trace with (default: batch 2, odd non-square H, W).")
@click.option("--target", type=click.Choice(["ort", "trt"]), default=None,
              help="Where the graph will run; trt refuses graphs TensorRT would misread. Default: ort.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@dysample_impl_option("How DySample's sample step is exported.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Graph precision; fp16 is how TensorRT 11 (strongly typed) builds fp16 engines.")
@fail_cleanly
def export_command(spec, params, weights, seed, output, opset, static, shapes, target, force, dysample_impl,
                   precision):
    """Export SPEC (zoo name, package.module:callable, or recipe .toml) to ONNX."""
    from deploykit.export import describe, export_onnx

    _refuse_to_overwrite(output, force)
    model, recipe = _load(spec, params, weights, seed)
    trace = _shapes(shapes)
    if trace and len(trace) > 1:
        raise UserError("export traces one shape, got several --shape", "pass --shape once")
    options = _export_options(recipe, dysample_impl, opset, static, target, trace[0] if trace else None)
    click.echo(describe(export_onnx(model, output, force=force, precision=precision, **options)))
    if options["target"] == "trt":  # the file is written either way; the exit code says if TensorRT will take it
        sys.exit(_print_lint(output, "trt", plugins=None, plugin_pending=options["dysample_impl"] == "plugin"))


def _print_lint(path: Path, target: str, plugins, report_path: Path | None = None, force: bool = False,
                plugin_pending: bool = False) -> int:
    """Lint, print the findings, optionally write them as JSON; returns the exit code."""
    from deploykit.export.lint import lint_file
    from deploykit.report import print_findings, write_json

    findings = lint_file(path, target, plugins, plugin_pending)
    print_findings(findings, path, target, _console())
    errors = any(f.severity == "error" for f in findings)
    if report_path:
        write_json(report_path, {"passed": not errors, "target": target, "onnx": str(path),
                                 "findings": [f.as_json() for f in findings]}, force=force)
    return 1 if errors else 0


@main.command("lint")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", type=click.Choice(["trt", "ort"]), default="trt", show_default=True,
              help="The runtime the graph is for.")
@click.option("--plugin", "plugins", multiple=True, type=click.Path(path_type=Path),
              help="TensorRT plugin library the engine build will load (repeatable).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="Also write the findings as JSON.")
@click.option("--force", is_flag=True, help="Overwrite an existing report file.")
@fail_cleanly
def lint_command(model, target, plugins, report_path, force):
    """Flag what the target rejects or silently computes differently. Exit 1 on errors."""
    _refuse_to_overwrite(report_path, force)
    sys.exit(_print_lint(model, target, list(plugins), report_path, force))


@main.command("build")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Engine file to write.")
@click.option("--fp16", is_flag=True, help="FP16 kernels (TensorRT 10 builder flag; on 11 export an fp16 graph).")
@plugin_option("Plugin library loaded before parsing (repeatable), e.g. build/libdeploykit_trt_plugins.so.")
@click.option("--shapes", "profiles", multiple=True, metavar="NAME=MIN/OPT/MAX",
              help="Optimization profile per input (default: from the export's traced shape).")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None,
              help="Timing cache file, read if present and written back.")
@click.option("--workspace", type=click.IntRange(min=1), default=None, help="Workspace limit in MiB.")
@click.option("--tf32", is_flag=True, help="Allow TF32 for fp32 layers (off: fp32 stays fp32, as parity expects).")
@click.option("--force", is_flag=True, help="Overwrite an existing engine file.")
@fail_cleanly
def build_command(model, output, fp16, plugins, profiles, timing_cache, workspace, tf32, force):
    """Build a TensorRT engine from MODEL.onnx (lint first: 'deploykit lint')."""
    from deploykit.backends.trt import build_engine, parse_profile
    from deploykit.pipeline import validate_onnx_file

    _refuse_to_overwrite(output, force)
    validate_onnx_file(model)
    parsed = dict(parse_profile(text) for text in profiles) or None
    result = build_engine(model, output, fp16=fp16, tf32=tf32, plugins=list(plugins), profiles=parsed,
                          timing_cache=timing_cache, workspace_mb=workspace, force=force)
    shapes = ", ".join(f"{name}: {'x'.join(map(str, p.min))} / {'x'.join(map(str, p.opt))} / "
                       f"{'x'.join(map(str, p.max))}" for name, p in result.profiles.items())
    click.echo(f"wrote {result.engine_path} (TensorRT {result.tensorrt}, precision {result.precision}; "
               f"min/opt/max {shapes})")


def _run_and_report(run, printer, spec, params, weights, seed, onnx_path, backends, shapes, threads, precision,
                    report_path, force, dysample_impl, engine_path, plugins, quiet, cuda_graph=False, **specific):
    """check and bench alike: load SPEC, run the library over the backends, print, write JSON."""
    from deploykit.backends import parse_backends
    from deploykit.progress import progress_bar
    from deploykit.report import write_json

    _refuse_to_overwrite(report_path, force)
    chosen = parse_backends(backends or DEFAULT_BACKENDS)
    model, recipe = _load(spec, params, weights, seed)
    runner_options = {"engine_path": engine_path, "plugins": list(plugins), "cuda_graph": cuda_graph}
    with progress_bar(run.__name__.removeprefix("run_"), quiet) as progress:
        report = run(model, chosen, _shapes(shapes), onnx_path=onnx_path, threads=threads, precision=precision,
                     export_options=_export_options(recipe, dysample_impl), runner_options=runner_options,
                     progress=progress, **specific)
    printer(report, _console())
    if report_path:
        write_json(report_path, report.as_json(), force=force)
    return report


def _check_zoo(backends, threads, report_path, force, quiet, **rest) -> int:
    """check --zoo: the support matrix over every zoo entry; exit 1 if any entry failed."""
    from deploykit.backends import parse_backends
    from deploykit.matrix import zoo_matrix
    from deploykit.progress import progress_bar
    from deploykit.report import print_matrix, write_json

    defaults = {"seed": 0, "precision": "fp32"}
    given = ["SPEC" if name == "spec" else f"--{name.removesuffix('_path').replace('_', '-')}"
             for name, value in rest.items() if value not in (None, (), False, defaults.get(name))]
    if given:
        raise UserError(f"check --zoo runs every entry at its defaults and takes no {', '.join(given)}",
                        "drop those options, or check one SPEC without --zoo")
    _refuse_to_overwrite(report_path, force)
    with progress_bar("zoo", quiet) as progress:
        report = zoo_matrix(parse_backends(backends) if backends else None, threads, progress=progress)
    print_matrix(report, _console())
    if report_path:
        write_json(report_path, report.as_json(), force=force)
    return 0 if report.passed else 1


@main.command("check")
@functools.partial(model_options, spec_required=False)
@run_options
@click.option("--atol", type=float, default=None, callback=_finite_tolerance,
              help="Absolute tolerance (overrides the preset).")
@click.option("--rtol", type=float, default=None, callback=_finite_tolerance,
              help="Relative tolerance (overrides the preset).")
@click.option("--localize", is_flag=True,
              help="On a failure, find the first ONNX node that diverges from PyTorch, and its module.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Also write an HTML report (error heatmaps, histograms, latency) and its PNGs beside it.")
@click.option("--zoo", is_flag=True,
              help="Check every zoo entry at its defaults with every installed backend: the support matrix.")
@fail_cleanly
def check_command(atol, rtol, localize, html_path, zoo, **common):
    """Compare every backend with PyTorch fp32 at several shapes. Exit 1 on a parity failure."""
    from deploykit.check import run_check
    from deploykit.compare import tolerance_for
    from deploykit.report import print_check, print_localizations

    if zoo:
        sys.exit(_check_zoo(atol=atol, rtol=rtol, localize=localize, html=html_path, **common))
    if common["spec"] is None:
        raise click.UsageError("missing argument 'SPEC' (or pass --zoo)")
    _refuse_to_overwrite(html_path, common["force"])
    if html_path:
        from deploykit.html_report import require_matplotlib

        require_matplotlib()  # before minutes of work, not after
    tolerance = tolerance_for(common["precision"], atol, rtol)
    report = _run_and_report(run_check, print_check, tolerance=tolerance, localize=localize,
                             pictures=bool(html_path), latency_iters=HTML_LATENCY_ITERS if html_path else 0,
                             **common)
    if localize:
        print_localizations(report, _console())
    if html_path:
        from deploykit.html_report import figures_folder, write_html_report

        written = write_html_report(html_path, report, report.pictures, report.latency, force=common["force"])
        click.echo(f"wrote {written[0]} and {len(written) - 1} figures in {figures_folder(written[0])}")
    sys.exit(0 if report.passed else 1)


@main.command("bench")
@model_options
@run_options
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed runs first.")
@click.option("--iters", type=click.IntRange(min=1), default=50, show_default=True, help="Timed runs.")
@click.option("--cuda-graph", is_flag=True, help="Replay TensorRT execution as a CUDA graph.")
@fail_cleanly
def bench_command(warmup, iters, **common):
    """Time every backend at every shape: min/p50/p90/p99/mean, throughput, ratio to torch."""
    from deploykit.bench import run_bench
    from deploykit.report import print_bench

    _run_and_report(run_bench, print_bench, warmup=warmup, iters=iters, **common)


if __name__ == "__main__":
    main()
