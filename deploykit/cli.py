"""The deploykit command line: parse, call the library, map errors to exit codes.

Exit codes (deploykit.errors is the contract; ``_exit_code`` here is the one mapping every
command goes through): 0 success, 1 a parity failure (and only that), 2 a usage, input or
environment error (one line, no traceback), 3 a bug in deploykit (one line naming the saved
traceback; ``--debug`` prints it), 128 + N when signal N (SIGINT, SIGTERM, SIGHUP) ended it.
Run as the ``deploykit`` console script, commands execute in a supervised child process
(deploykit.supervisor), so a library that crashes the interpreter becomes one line and exit 2.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import threading
from pathlib import Path

import click

from deploykit.errors import (EXIT_INTERNAL, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_USAGE, TERMINATION_REQUESTED,
                              Terminated, UserError, environment_error, is_out_of_memory, out_of_memory)
from deploykit.export.dysample import DEFAULT_DYSAMPLE_IMPL, DYSAMPLE_IMPLS
from deploykit.export.maxpool_indices import DEFAULT_MAXPOOL_IMPL, MAXPOOL_IMPLS

DEFAULT_BACKENDS = "torch,ort"
HTML_LATENCY_ITERS = 10  # check --html times each backend too, for the report's latency chart
MAX_THREADS = 256  # beyond this a typo, not a setting: ONNX Runtime would start that many threads
MAX_SEED = 2**32 - 1
MAX_ITERS = 1_000_000  # bench: timed runs; a bound, so a typo cannot grow the timing list without limit
MAX_WARMUP = 100_000
DEFAULT_BENCH_SECONDS = 120.0  # per backend and shape; bench stops timing there
MAX_BENCH_SECONDS = 86_400.0
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_DEBUG = {"on": bool(os.environ.get("DEPLOYKIT_DEBUG"))}


class _PipeClosed(BaseException):
    """The reader of stdout went away (deploykit ... | head): stop quietly."""


class OneLineErrors(click.Group):
    """Every command runs through ``run_with_exit_codes``: Click's usage errors, deploykit's
    errors, crashes of deploykit itself and signals all leave as one line and a contract code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if args is None:
            from deploykit import supervisor

            if supervisor.should_supervise(sys.argv[1:]):  # the console script: run in a watched child
                sys.exit(supervisor.supervise(sys.argv[1:]))
        call = functools.partial(super().main, args, prog_name or "deploykit", complete_var,
                                 standalone_mode=False, **extra)
        sys.exit(run_with_exit_codes(call))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed() from None


def run_with_exit_codes(call) -> int:
    """Run ``call`` (a whole command) and return its exit code under the contract."""
    from deploykit.files import forget_inputs

    forget_inputs()
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \xNN, never crash
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    with _signals_raise():
        try:
            result = call()
        except SystemExit as exc:
            return _system_exit_code(exc.code)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            return EXIT_OK
        except click.ClickException as exc:
            command = exc.ctx.command_path if getattr(exc, "ctx", None) else "deploykit"
            _error_line(f"{exc.format_message()}; see '{command} --help'")
            return EXIT_USAGE
        except click.exceptions.Abort:  # Click's form of KeyboardInterrupt
            _stderr_line("interrupted (SIGINT); partial outputs were removed")
            return EXIT_SIGNAL_BASE + signal.SIGINT
        except KeyboardInterrupt:
            _stderr_line("interrupted (SIGINT); partial outputs were removed")
            return EXIT_SIGNAL_BASE + signal.SIGINT
        except Terminated as exc:
            _stderr_line(f"interrupted ({exc}); partial outputs were removed")
            return exc.exit_code
        except _PipeClosed:
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # nothing more reaches the closed pipe
            return EXIT_SIGNAL_BASE + signal.SIGPIPE
        except BaseException as exc:  # noqa: BLE001 - the one place every other failure is mapped
            return _exit_code(exc)
    return result if isinstance(result, int) else EXIT_OK


def _system_exit_code(code) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    _error_line(str(code))
    return EXIT_USAGE


def _exit_code(exc: BaseException) -> int:
    """The contract's mapping: the user's or the machine's problem -> one line and 2; anything
    else is deploykit's own bug -> one line naming the saved traceback, and 3."""
    if isinstance(exc, UserError):
        _error_line(str(exc))
        return exc.exit_code
    if is_out_of_memory(exc):
        _error_line(str(out_of_memory("running the command")))
        return EXIT_USAGE
    environment = environment_error(exc)
    if environment is not None:
        _error_line(str(environment))
        return environment.exit_code
    import traceback

    text = "".join(traceback.format_exception(exc))
    if _DEBUG["on"]:
        sys.stderr.write(text)
        _error_line(f"internal error in deploykit ({type(exc).__name__}); please report it with the traceback above")
        return EXIT_INTERNAL
    saved = _save_traceback(text)
    where = f"traceback saved to {saved}" if saved else "the traceback could not be saved (run with --debug)"
    _error_line(f"internal error in deploykit ({type(exc).__name__}); {where}; please report it")
    return EXIT_INTERNAL


def _save_traceback(text: str) -> str | None:
    import tempfile

    try:
        fd, path = tempfile.mkstemp(prefix="deploykit-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(f"deploykit {' '.join(sys.argv[1:])}\n\n{text}")
    except OSError:
        return None
    return path


def _stderr_line(text: str) -> None:
    from deploykit.text import printable

    with contextlib.suppress(OSError, ValueError):
        click.echo(printable(text), err=True)


def _stdout_line(text: str) -> None:
    from deploykit.text import printable

    click.echo(printable(text))


def _error_line(text: str) -> None:
    _stderr_line(f"error: {text}")


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGHUP (what timeout, CI runners and a closed terminal send) raise Terminated
    in the main thread, as SIGINT raises KeyboardInterrupt, so staging folders and temporary
    exports are removed on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    TERMINATION_REQUESTED.clear()  # one command's signal is not the next in-process command's
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _console():
    from rich.console import Console

    return Console(width=max(120, Console().width), emoji=False)


def fail_cleanly(command):
    """Kept for the commands' decorator lists: errors are mapped once, in ``run_with_exit_codes``."""
    return command


def _set_debug(ctx, param, value):
    if value:
        _DEBUG["on"] = True
    return value


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
        click.option("--input-dtype", "input_dtypes", multiple=True, metavar="[NAME=]DTYPE",
                     help="An input's dtype (repeatable): float32 (default), float16, int64, int32, int8, uint8, bool."),
        click.option("--val-range", "val_ranges", multiple=True, metavar="[NAME=]LOW,HIGH",
                     help="Draw an input uniformly in [LOW, HIGH] (repeatable; default N(0, 1) for floats, "
                          "0..1 for integers); without NAME, every input."),
        click.option("--inputs", "inputs_file", type=click.Path(path_type=Path), default=None,
                     help="An .npz of arrays keyed by input name: one more test case, of real data."),
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


def maxpool_impl_option(command):
    return click.option(
        "--maxpool-impl", type=click.Choice(list(MAXPOOL_IMPLS)), default=None,
        help=f"How max-pool indices (SegNet's max-unpool) are exported. Default: {DEFAULT_MAXPOOL_IMPL['ort']}, or "
             f"{DEFAULT_MAXPOOL_IMPL['trt']} for TensorRT. native: MaxPool's Indices output (faster on ONNX "
             "Runtime); window: PyTorch's exact indices from standard ops TensorRT's parser accepts.")(command)


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
        maxpool_impl_option,
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


def _load(spec, params, weights, seed, input_dtypes=(), val_ranges=(), inputs_file=None):
    """The model, with its inputs' dtypes and ranges, and an --inputs file's case, applied."""
    from deploykit.model_io import input_specs, load_npz
    from deploykit.spec import parse_assignments, resolve_model

    model, recipe = resolve_model(spec, parse_assignments(params), weights, seed)
    model.inputs = input_specs(model.input_names, [*(recipe.input_dtypes if recipe else []), *input_dtypes],
                               [*(recipe.val_ranges if recipe else []), *val_ranges])
    if inputs_file is not None:
        case, arrays = load_npz(inputs_file, model.inputs)
        model.data_cases[case] = arrays
    return model, recipe


def _shapes(texts, model):
    """--shape values: a plain shape for a one-input model, NAME=SHAPE,... for several."""
    from deploykit.model_io import parse_case

    return [parse_case(t, model.input_names) for t in texts] or None


def _export_options(recipe, dysample_impl=None, opset=None, static=False, target=None, trace=None,
                    maxpool_impl=None) -> dict:
    """Export settings: the command line's, else the recipe's, else the defaults."""
    return {
        "opset": opset if opset is not None else (recipe.opset if recipe else None),
        "dynamic": not (static or (recipe.static if recipe else False)),
        "trace_shape": trace or (recipe.trace_shape if recipe else None),
        "target": target or (recipe.target if recipe and recipe.target else "ort"),
        "dysample_impl": dysample_impl or (recipe.dysample_impl if recipe else None),
        "maxpool_impl": maxpool_impl or (recipe.maxpool_impl if recipe else None),
    }


def _refuse_to_overwrite(path: Path | None, force: bool) -> None:
    """Fail on an existing output before minutes of work, not after (see _check_outputs)."""
    if path is not None:
        from deploykit.files import ensure_writable

        ensure_writable(path, force)


def _inputs(spec=None, weights=None, onnx_path=None, engine_path=None, plugins=(), **more) -> dict:
    """The files a command reads, by option: none of them may be an output."""
    from deploykit.export.recipe import is_recipe

    inputs = {"--weights": weights, "--onnx": onnx_path, "--engine": engine_path, **more}
    if spec and is_recipe(spec):
        inputs["recipe"] = Path(spec)
    inputs.update({f"--plugin {plugin}": plugin for plugin in plugins})
    return inputs


def _check_outputs(outputs: dict, inputs: dict, force: bool) -> None:
    """Before any work, every output: not an input, not another output, writable, and not
    existing unless --force (and then a regular file). ``--html`` brings its figures folder."""
    from deploykit.files import ensure_writable, refuse_outputs_that_are_inputs

    html = outputs.get("--html")
    if html is not None:
        from deploykit.html_report import check_outputs, figures_folder

        outputs = {**outputs, "--html's figures folder": figures_folder(html)}
    refuse_outputs_that_are_inputs(outputs, inputs)
    for name, path in outputs.items():
        if path is None or name == "--html's figures folder":
            continue
        if name == "--html":
            check_outputs(path, force)
        else:
            ensure_writable(path, force)


@click.group(cls=OneLineErrors, context_settings=_CONTEXT)
@click.version_option(package_name="deploykit")
@click.option("--debug", is_flag=True, is_eager=True, expose_value=False, callback=_set_debug,
              help="On an internal error, print the traceback instead of saving it to a file.")
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
@maxpool_impl_option
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Graph precision; fp16 is how TensorRT 11 (strongly typed) builds fp16 engines.")
@click.option("--verify-shape", "verify_shapes", multiple=True, metavar="NxCxHxW",
              help="Shape (repeatable) at which the dynamic export is run on ONNX Runtime and compared with "
                   "PyTorch. Default: batch+1 and each spatial size + its power-of-two divisor (at most 32).")
@click.option("--no-verify", is_flag=True,
              help="Write the graph without running it: a dynamic graph is then trusted at shapes it never ran.")
@fail_cleanly
def export_command(spec, params, weights, seed, input_dtypes, val_ranges, inputs_file, output, opset, static,
                   shapes, target, force, dysample_impl, maxpool_impl, precision, verify_shapes, no_verify):
    """Export SPEC (zoo name, package.module:callable, or recipe .toml) to ONNX."""
    from deploykit.export import describe, export_onnx

    _refuse_to_overwrite(output, force)
    if no_verify and verify_shapes:
        raise UserError("--verify-shape and --no-verify contradict each other", "pass one of them")
    model, recipe = _load(spec, params, weights, seed, input_dtypes, val_ranges, inputs_file)
    trace = _shapes(shapes, model) or (list(model.data_cases)[:1] or None)
    if trace and len(trace) > 1:
        raise UserError("export traces one shape, got several --shape", "pass --shape once")
    options = _export_options(recipe, dysample_impl, opset, static, target, trace[0] if trace else None,
                              maxpool_impl)
    result = export_onnx(model, output, force=force, precision=precision, verify=not no_verify,
                         verify_shapes=_shapes(verify_shapes, model), **options)
    click.echo(describe(result))
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
    from deploykit.pipeline import validate_onnx_file

    _check_outputs({"--report": report_path}, _inputs(plugins=plugins, MODEL=model), force)
    validate_onnx_file(model, option="MODEL")  # empty, truncated or invalid: exit 2 here, as in check
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

    _check_outputs({"-o": output}, _inputs(plugins=plugins, MODEL=model), force)
    if timing_cache is not None:  # read and written back: it may be neither the model nor the engine
        from deploykit.files import refuse_outputs_that_are_inputs

        refuse_outputs_that_are_inputs({"--timing-cache": timing_cache}, {"MODEL": model, "-o": output})
    validate_onnx_file(model, option="MODEL")
    parsed = dict(parse_profile(text) for text in profiles) or None
    result = build_engine(model, output, fp16=fp16, tf32=tf32, plugins=list(plugins), profiles=parsed,
                          timing_cache=timing_cache, workspace_mb=workspace, force=force)
    shapes = ", ".join(f"{name}: {'x'.join(map(str, p.min))} / {'x'.join(map(str, p.opt))} / "
                       f"{'x'.join(map(str, p.max))}" for name, p in result.profiles.items())
    click.echo(f"wrote {result.engine_path} (TensorRT {result.tensorrt}, precision {result.precision}; "
               f"min/opt/max {shapes})")


def _run_and_report(run, printer, spec, params, weights, seed, input_dtypes, val_ranges, inputs_file, onnx_path,
                    backends, shapes, threads, precision, report_path, force, dysample_impl, maxpool_impl,
                    engine_path, plugins, quiet, cuda_graph=False, html_path=None, **specific):
    """check and bench alike: load SPEC, run the library over the backends, print, write JSON."""
    from deploykit.backends import parse_backends
    from deploykit.progress import progress_bar
    from deploykit.report import write_json

    _check_outputs({"--report": report_path, "--html": html_path},
                   _inputs(spec, weights, onnx_path, engine_path, plugins, **{"--inputs": inputs_file}), force)
    chosen = parse_backends(backends or DEFAULT_BACKENDS)
    model, recipe = _load(spec, params, weights, seed, input_dtypes, val_ranges, inputs_file)
    runner_options = {"engine_path": engine_path, "plugins": list(plugins), "cuda_graph": cuda_graph}
    with progress_bar(run.__name__.removeprefix("run_"), quiet) as progress:
        report = run(model, chosen, _shapes(shapes, model), onnx_path=onnx_path, threads=threads, precision=precision,
                     export_options=_export_options(recipe, dysample_impl, maxpool_impl=maxpool_impl),
                     runner_options=runner_options,
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
    _check_outputs({"--report": report_path}, {}, force)
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
    if html_path:
        from deploykit.html_report import require_matplotlib

        require_matplotlib()  # before minutes of work, not after
    tolerance = tolerance_for(common["precision"], atol, rtol)
    report = _run_and_report(run_check, print_check, tolerance=tolerance, localize=localize,
                             pictures=bool(html_path), latency_iters=HTML_LATENCY_ITERS if html_path else 0,
                             html_path=html_path, **common)
    if localize:
        print_localizations(report, _console())
    if html_path:
        from deploykit.html_report import figures_folder, write_html_report

        written = write_html_report(html_path, report, report.pictures, report.latency, force=common["force"])
        _stdout_line(f"wrote {written[0]} and {len(written) - 1} figures in {figures_folder(written[0])}")
    sys.exit(0 if report.passed else 1)


@main.command("bench")
@model_options
@run_options
@click.option("--warmup", type=click.IntRange(min=0, max=MAX_WARMUP), default=10, show_default=True,
              help="Untimed runs first.")
@click.option("--iters", type=click.IntRange(min=1, max=MAX_ITERS), default=50, show_default=True,
              help="Timed runs.")
@click.option("--max-seconds", type=click.FloatRange(min=0.001, max=MAX_BENCH_SECONDS), default=DEFAULT_BENCH_SECONDS,
              show_default=True,
              help="Time budget per backend and shape (warm-up and timed runs): timing stops there with the "
                   "runs made so far, and says so.")
@click.option("--cuda-graph", is_flag=True, help="Replay TensorRT execution as a CUDA graph.")
@fail_cleanly
def bench_command(warmup, iters, max_seconds, **common):
    """Time every backend at every shape: min/p50/p90/p99/mean, throughput, ratio to torch."""
    from deploykit.bench import run_bench
    from deploykit.report import print_bench

    _run_and_report(run_bench, print_bench, warmup=warmup, iters=iters, max_seconds=max_seconds, **common)


if __name__ == "__main__":
    main()
