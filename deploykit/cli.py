"""The deploykit command line: Click options in, one library call, a table and an exit code out.

Exit codes are deploykit.errors' contract (``exit_code_for`` is the one mapping): 0 success,
1 a parity failure (and only that), 2 a usage, input or environment error (one line, no
traceback), 3 a bug in deploykit (one line naming the saved traceback; ``--debug`` prints it),
128 + N when signal N (SIGINT, SIGTERM, SIGHUP) ended it. Run as the ``deploykit`` console
script, commands execute in a supervised child process (deploykit.supervisor), so a library
that crashes the interpreter becomes one line and exit 2. Shared options live in
deploykit.cli_options.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from pathlib import Path

import click

from deploykit.cli_options import (DEFAULT_BACKENDS, DEFAULT_BENCH_SECONDS, MAX_BENCH_SECONDS, MAX_ITERS,
                                   MAX_WARMUP, SHAPE, dysample_impl_option, finite_tolerance, force_option,
                                   maxpool_impl_option, model_options, onnx_file_argument, plugin_option,
                                   precision_option, report_option, run_options, shape_option, target_option)
from deploykit.errors import (EXIT_OK, EXIT_PARITY, EXIT_SIGNAL_BASE, EXIT_USAGE, TERMINATION_REQUESTED, ForeignExit,
                              Terminated, UserError, exit_code_for)
from deploykit.package import DEFAULT_SERVER_ROOT, TRITON_MAX_BATCH

HTML_LATENCY_ITERS = 10  # check --html times each backend too, for the report's latency chart
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_DEBUG = {"on": False}  # this invocation's --debug (or DEPLOYKIT_DEBUG), set afresh by each run


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
    _DEBUG["on"] = bool(os.environ.get("DEPLOYKIT_DEBUG"))  # one in-process command's --debug is not the next's
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \xNN, never crash
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    with _signals_raise():
        try:
            result = call()
        except SystemExit as exc:  # commands return their code: this one came from the user's code
            return _report(ForeignExit(exc.code))
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            return EXIT_OK
        except click.ClickException as exc:
            command = exc.ctx.command_path if getattr(exc, "ctx", None) else "deploykit"
            _stderr_line(f"error: {exc.format_message()}; see '{command} --help'")
            return EXIT_USAGE
        except _PipeClosed:
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # nothing more reaches the closed pipe
            return EXIT_SIGNAL_BASE + signal.SIGPIPE
        except click.exceptions.Abort:  # Click's form of KeyboardInterrupt
            return _report(KeyboardInterrupt())
        except BaseException as exc:  # noqa: BLE001 - every other failure, through the contract's mapping
            return _report(exc)
    return result if isinstance(result, int) else EXIT_OK


def _report(exc: BaseException) -> int:
    decision = exit_code_for(exc, debug=_DEBUG["on"])
    if decision.traceback:
        sys.stderr.write(decision.traceback)
    # A parity finding (exit 1: export's verification) reads as the lines it was written in; every
    # other error is one line, whatever it quotes.
    for line in decision.line.split("\n") if decision.code == EXIT_PARITY else [decision.line]:
        _stderr_line(line)
    return decision.code


def _stderr_line(text: str) -> None:
    """One line, whatever it quotes: a newline from a file's metadata or names shows as \\n."""
    from deploykit.text import printable

    with contextlib.suppress(OSError, ValueError):
        click.echo(printable(text).replace("\n", "\\n"), err=True)


def _stdout_line(text: str) -> None:
    from deploykit.text import printable

    click.echo(printable(text))


def _note_line(text: str) -> None:
    """An informational line on stdout, which -q leaves out."""
    if not _quiet():
        _stdout_line(text)


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


def _set_debug(ctx, param, value):
    if value:
        _DEBUG["on"] = True
    return value


def _set_verbosity(ctx, param, value):
    """-v before the subcommand (the group's) and after it (the subcommand's) add up, so
    ``deploykit -v check ...`` and ``deploykit check ... -v`` say the same."""
    root = ctx.find_root()
    root.meta["deploykit.verbosity"] = root.meta.get("deploykit.verbosity", 0) + (value or 0)
    if value or ctx is root:
        _configure_logs(root)
    return value


def _set_quiet(ctx, param, value):
    """-q before or after the subcommand, as -v."""
    root = ctx.find_root()
    root.meta["deploykit.quiet"] = root.meta.get("deploykit.quiet", False) or value
    if value or ctx is root:
        _configure_logs(root)
    return value


def _configure_logs(root: click.Context) -> None:
    import logging

    from deploykit.logs import configure

    verbosity, quiet = root.meta.get("deploykit.verbosity", 0), root.meta.get("deploykit.quiet", False)
    if quiet and verbosity:
        raise click.UsageError("-q and -v contradict each other: pass one of them")
    configure(verbosity)
    if quiet:  # deploykit's warnings are notes too (first-use builds, waits for a lock); errors still show
        logging.getLogger("deploykit").setLevel(logging.ERROR)


def _quiet() -> bool:
    """This command's -q: no progress bar and no informational line, only the result and errors."""
    return click.get_current_context().find_root().meta.get("deploykit.quiet", False)


_VERBOSE_HELP = "Say more of what deploykit does: -v its steps, -vv also what the PyTorch exporter said."
_QUIET_HELP = "Print only the result (table, verdict, file written) and errors: no progress bar, no notes."
_QUIET_COMMANDS = ("export", "convert", "lint", "build", "check", "bench", "package")  # the commands that do work


def _verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose"], count=True, is_eager=True, expose_value=False, callback=_set_verbosity,
                        help=_VERBOSE_HELP)


def _quiet_option() -> click.Option:
    return click.Option(["-q", "--quiet"], is_flag=True, is_eager=True, expose_value=False, callback=_set_quiet,
                        help=_QUIET_HELP)


def _shapes(texts, model):
    """--shape values: a plain shape for a one-input model, NAME=SHAPE,... for several."""
    from deploykit.model_io import parse_case

    return [parse_case(t, model.input_names) for t in texts] or None


def _load(spec, params, weights, seed, input_dtypes, val_ranges, inputs_file):
    """-p's (key, value) pairs are distinct (cli_options checks them as it parses)."""
    from deploykit.export.recipe import resolve_model

    return resolve_model(spec, dict(params), weights, seed, input_dtypes, val_ranges, inputs_file)


def _inputs(spec=None, weights=None, onnx_path=None, engine_path=None, plugins=(), **more) -> dict:
    """The files a command reads, by option: none of them may be an output."""
    from deploykit.export.recipe import is_recipe
    from deploykit.spec import source_file

    inputs = {"--weights": weights, "--onnx": onnx_path, "--engine": engine_path, **more}
    if spec and is_recipe(spec):
        inputs["recipe"] = Path(spec)
    elif spec:
        inputs["SPEC's module"] = source_file(spec)
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
@click.option("-v", "--verbose", count=True, is_eager=True, expose_value=False, callback=_set_verbosity,
              help=_VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, is_eager=True, expose_value=False, callback=_set_quiet, help=_QUIET_HELP)
def main():
    """Export PyTorch upsamplers to ONNX, check every backend against PyTorch, and time them."""


@main.command("list")
@click.argument("name", required=False)
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
@target_option("Where the graph will run; trt refuses graphs TensorRT would misread. Default: ort.")
@force_option("output file")
@dysample_impl_option("How DySample's sample step is exported.")
@maxpool_impl_option
@precision_option("Graph precision; fp16 is how TensorRT 11 (strongly typed) builds fp16 engines.")
@click.option("--verify-shape", "verify_shapes", multiple=True, type=SHAPE, metavar="NxCxHxW",
              help="Shape (repeatable) at which the dynamic export is run on ONNX Runtime and compared with "
                   "PyTorch. Default: batch+1 and each spatial size + its power-of-two divisor (at most 32).")
@click.option("--no-verify", is_flag=True,
              help="Write the graph without running it: a dynamic graph is then trusted at shapes it never ran.")
@report_option("what was written and where it was verified")
def export_command(spec, params, weights, seed, input_dtypes, val_ranges, inputs_file, output, opset, static,
                   shapes, target, force, dysample_impl, maxpool_impl, precision, verify_shapes, no_verify,
                   report_path):
    """Export SPEC (zoo name, package.module:callable, or recipe .toml) to ONNX."""
    from deploykit.export import describe, export_json, export_onnx
    from deploykit.export.recipe import export_options
    from deploykit.report import write_json

    _check_outputs({"-o": output, "--report": report_path}, _inputs(spec, weights, **{"--inputs": inputs_file}), force)
    if no_verify and verify_shapes:
        raise UserError("--verify-shape and --no-verify contradict each other", "pass one of them")
    model, recipe = _load(spec, params, weights, seed, input_dtypes, val_ranges, inputs_file)
    trace = _shapes(shapes, model) or (list(model.data_cases)[:1] or None)
    if trace and len(trace) > 1:
        raise UserError("export traces one shape, got several --shape", "pass --shape once")
    options = export_options(recipe, opset=opset, static=static, target=target,
                             trace_shape=trace[0] if trace else None, dysample_impl=dysample_impl,
                             maxpool_impl=maxpool_impl)
    result = export_onnx(model, output, force=force, precision=precision, verify=not no_verify,
                         verify_shapes=_shapes(verify_shapes, model), **options.as_kwargs())
    _echo_result(describe(result))
    if report_path:
        write_json(report_path, export_json(result), force=force)
    if options.target == "trt":  # the file is written either way; the exit code says if TensorRT will take it
        code = _print_lint(output, "trt", plugins=None, plugin_pending=options.dysample_impl == "plugin")
        if code:  # exit 1 is parity's code too: say which of the two it is
            parity = "matches PyTorch at every verified shape" if result.verified_shapes else "was not verified"
            click.echo(f"exit 1 from lint, not parity: the graph {parity} and was written to {output}, but TensorRT "
                       "would reject or misread the nodes above")
        return code


def _echo_result(description: str) -> None:
    """export's and convert's account of the file written; with -q its first line alone, which names it."""
    click.echo(description.splitlines()[0] if _quiet() else description)


def _the_onnx_file(model: Path | None, onnx_option: Path | None) -> Path:
    """MODEL or --onnx, whichever was given (both, when they name the same file)."""
    if model is None and onnx_option is None:
        raise click.UsageError("missing the ONNX file: pass MODEL.onnx or --onnx MODEL.onnx")
    if model is not None and onnx_option is not None and model != onnx_option:
        raise click.UsageError(f"MODEL {model} and --onnx {onnx_option} name two files: pass one")
    return model if model is not None else onnx_option


def _print_lint(path: Path, target: str, plugins, report_path: Path | None = None, force: bool = False,
                plugin_pending: bool = False) -> int:
    """Lint, print the findings, optionally write them as JSON; returns the exit code."""
    from deploykit.export.lint import has_errors, lint_file, lint_json
    from deploykit.report import print_findings, write_json

    findings = lint_file(path, target, plugins, plugin_pending)
    print_findings(findings, path, target, _console())
    if report_path:
        write_json(report_path, lint_json(findings, path, target), force=force)
    return EXIT_PARITY if has_errors(findings) else EXIT_OK


@main.command("convert")
@onnx_file_argument
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="ONNX file to write.")
@click.option("--dysample-impl", type=click.Choice(["plugin", "gather", "roialign", "standard", "auto"]),
              required=True, help="What each DySample layer becomes: plugin (one deploykit::DySample node for "
                                  "TensorRT), gather / roialign (standard ops without GridSample), auto (the faster "
                                  "of those on ONNX Runtime's CPU), standard (one GridSample, grid from the shape).")
@shape_option("Input shape (repeatable) at which each layer is verified; NAME=SHAPE,... for several inputs. "
              "Default: the file's static dims, symbolic ones at batch 1 and 2, sizes 64x96 and 96x64.")
@target_option("Lint the result for this runtime (trt: exit 1 if TensorRT would reject or misread it).")
@force_option("output file")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime intra-op threads.")
@report_option("the converted layers and where the file was proven")
def convert_command(model, onnx_option, output, dysample_impl, shapes, target, force, threads, report_path):
    """Replace the DySample layers of MODEL.onnx (exported elsewhere) by another form, each verified first."""
    from deploykit.export.convert import convert_json, convert_onnx, describe
    from deploykit.model_io import parse_case
    from deploykit.onnx_file import graph_inputs, validate_onnx_file
    from deploykit.report import write_json

    model = _the_onnx_file(model, onnx_option)
    _check_outputs({"-o": output, "--report": report_path}, _inputs(MODEL=model), force)
    names = [value.name for value in graph_inputs(validate_onnx_file(model, "MODEL"))]
    result = convert_onnx(model, output, dysample_impl, [parse_case(text, names) for text in shapes] or None,
                          force=force, threads=threads)
    _echo_result(describe(result))
    if report_path:
        write_json(report_path, convert_json(result, names), force=force)
    if target:
        return _print_lint(output, target, plugins=None, plugin_pending=dysample_impl == "plugin")


@main.command("lint")
@onnx_file_argument
@target_option("The runtime the graph is for.", default="trt")
@plugin_option("TensorRT plugin library the engine build will load (repeatable).")
@report_option("the findings")
@force_option("report file")
def lint_command(model, onnx_option, target, plugins, report_path, force):
    """Flag what the target rejects or silently computes differently. Exit 1 on errors."""
    model = _the_onnx_file(model, onnx_option)
    _check_outputs({"--report": report_path}, _inputs(plugins=plugins, MODEL=model), force)
    return _print_lint(model, target, list(plugins), report_path, force)


@main.command("build")
@onnx_file_argument
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Engine file to write.")
@click.option("--fp16", is_flag=True, help="The same as --precision fp16.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="fp16: FP16 kernels (TensorRT 10 builder flag; on 11 export an fp16 graph). Default fp32.")
@plugin_option("Plugin library loaded before parsing (repeatable), e.g. build/libdeploykit_trt_plugins.so.")
@click.option("--profile", "--shapes", "profiles", multiple=True, metavar="NAME=MIN/OPT/MAX",
              help="The optimization profile of one input (repeatable), trtexec's --minShapes/--optShapes/"
                   "--maxShapes in one (default: from the export's traced shape and recorded bounds). "
                   "--shapes is its old name.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None,
              help="Timing cache file, read if present and written back.")
@click.option("--workspace", type=click.IntRange(min=1), default=None, help="Workspace limit in MiB.")
@click.option("--tf32", is_flag=True, help="Allow TF32 for fp32 layers (off: fp32 stays fp32, as parity expects).")
@force_option("engine file and report")
@report_option("what was built (engine, precision, profiles, TensorRT version, plugins, timing cache)")
def build_command(model, onnx_option, output, fp16, precision, plugins, profiles, timing_cache, workspace, tf32,
                  force, report_path):
    """Build a TensorRT engine from MODEL.onnx (lint first: 'deploykit lint')."""
    from deploykit.backends.trt_engine import build_engine, parse_profile
    from deploykit.model_io import shape_text
    from deploykit.onnx_file import validate_onnx_file
    from deploykit.report import write_json

    model = _the_onnx_file(model, onnx_option)
    if fp16 and precision == "fp32":
        raise UserError("--fp16 and --precision fp32 contradict each other", "pass one of them")
    fp16 = fp16 or precision == "fp16"

    _check_outputs({"-o": output, "--report": report_path}, _inputs(plugins=plugins, MODEL=model), force)
    if timing_cache is not None:  # read and written back: it may be neither the model nor an output
        from deploykit.files import refuse_outputs_that_are_inputs

        refuse_outputs_that_are_inputs({"--timing-cache": timing_cache},
                                       {"MODEL": model, "-o": output, "--report": report_path})
    validate_onnx_file(model, option="MODEL")
    parsed = dict(parse_profile(text) for text in profiles) or None
    cache_reused = timing_cache is not None and timing_cache.is_file()
    result = build_engine(model, output, fp16=fp16, tf32=tf32, plugins=list(plugins), profiles=parsed,
                          timing_cache=timing_cache, workspace_mb=workspace, force=force)
    shapes = ", ".join(f"{name}: {shape_text(p.min)} / {shape_text(p.opt)} / {shape_text(p.max)}"
                       for name, p in result.profiles.items())
    click.echo(f"wrote {result.engine_path} (TensorRT {result.tensorrt}, precision {result.precision}; "
               f"min/opt/max {shapes})")
    if report_path:
        write_json(report_path, _build_json(result, model, plugins, timing_cache, cache_reused, tf32, workspace),
                   force=force)


def _build_json(result, onnx_path: Path, plugins, timing_cache: Path | None, cache_reused: bool, tf32: bool,
                workspace_mb: int | None) -> dict:
    """build --report: what was built from what, with the settings that shape the engine."""
    return {"onnx": str(onnx_path), "engine": str(result.engine_path), "tensorrt": result.tensorrt,
            "precision": result.precision, "tf32": tf32, "workspace_mb": workspace_mb,
            "profiles": {name: {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
                         for name, p in result.profiles.items()},
            "plugins": [str(plugin) for plugin in plugins],
            "timing_cache": None if timing_cache is None else {"path": str(timing_cache), "reused": cache_reused}}


def _run_and_report(run, printer, spec, params, weights, seed, input_dtypes, val_ranges, inputs_file, onnx_path,
                    backends, shapes, threads, precision, report_path, force, dysample_impl, maxpool_impl,
                    engine_path, plugins, cuda_graph=False, html_path=None, **specific):
    """check and bench alike: load SPEC (for check --onnx F alone, the model F's metadata
    records), run the library over the backends, print, write JSON."""
    from deploykit.backends import RunnerOptions, parse_backends
    from deploykit.export.recipe import export_options
    from deploykit.progress import progress_bar
    from deploykit.report import write_json

    _check_outputs({"--report": report_path, "--html": html_path},
                   _inputs(spec, weights, onnx_path, engine_path, plugins, **{"--inputs": inputs_file}), force)
    chosen = parse_backends(DEFAULT_BACKENDS if backends is None else backends)
    if onnx_path is not None:
        from deploykit.onnx_file import require_file

        require_file(onnx_path)  # before the model loads: a typo costs no seconds
    if spec is None:  # check --onnx F alone
        model, recipe = _recorded_model(onnx_path, weights, input_dtypes, val_ranges, inputs_file), None
        specific["reference"] = f"PyTorch fp32, rebuilt from {onnx_path}'s metadata"
    else:
        model, recipe = _load(spec, params, weights, seed, input_dtypes, val_ranges, inputs_file)
    runner_options = RunnerOptions(engine_path=engine_path, plugins=list(plugins), cuda_graph=cuda_graph)
    with progress_bar(run.__name__.removeprefix("run_"), _quiet()) as progress:
        report = run(model, chosen, _shapes(shapes, model), onnx_path=onnx_path, threads=threads, precision=precision,
                     export_options=export_options(recipe, dysample_impl=dysample_impl, maxpool_impl=maxpool_impl),
                     runner_options=runner_options, progress=progress, **specific)
    printer(report, _console())
    if report_path:
        write_json(report_path, report.as_json(), force=force)
    return report


def _refuse_model_choices_of_a_recorded_model(params) -> None:
    """check --onnx F without SPEC rebuilds the model F records: its parameters and seed are the file's."""
    from click.core import ParameterSource

    seed_given = click.get_current_context().get_parameter_source("seed") != ParameterSource.DEFAULT
    given = [name for name, chosen in (("-p", bool(params)), ("--seed", seed_given)) if chosen]
    if given:
        raise UserError(f"check --onnx F without SPEC rebuilds the model F's metadata records, with its parameters "
                        f"and seed, so it takes no {' or '.join(given)}", "drop them, or give SPEC to choose them")


def _recorded_model(onnx_path, weights, input_dtypes, val_ranges, inputs_file):
    """check --onnx F without SPEC: the PyTorch reference is the model F's metadata records."""
    from deploykit.spec import load_recorded_model

    model, origin = load_recorded_model(onnx_path, weights, input_dtypes, val_ranges, inputs_file)
    _note_line(f"reference: {origin}{f', --weights {weights}' if weights else ''}, rebuilt from {onnx_path}'s "
               "metadata (give SPEC to choose the model)")
    return model


def _check_zoo(backends, threads, report_path, force) -> int:
    """check --zoo: the support matrix over every zoo entry; exit 1 if any entry failed."""
    from deploykit.backends import parse_backends
    from deploykit.matrix import zoo_matrix
    from deploykit.progress import progress_bar
    from deploykit.report import print_matrix, write_json

    given = _given_options(click.get_current_context(), allowed={"backends", "threads", "report_path", "force", "zoo"})
    if given:
        raise UserError(f"check --zoo runs every entry at its defaults and takes no {', '.join(given)}",
                        "drop those options, or check one SPEC without --zoo")
    _check_outputs({"--report": report_path}, {}, force)
    with progress_bar("zoo", _quiet()) as progress:
        report = zoo_matrix(parse_backends(backends) if backends is not None else None, threads, progress=progress)
    print_matrix(report, _console())
    if report_path:
        write_json(report_path, report.as_json(), force=force)
    return _verdict_code(report.passed)


def _given_options(ctx: click.Context, allowed: set[str]) -> list[str]:
    """The options and arguments set to something other than their default, named as Click
    names them, other than ``allowed``."""
    given = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in allowed or value in (None, (), False) or value == param.get_default(ctx):
            continue
        long_names = [opt for opt in param.opts if opt.startswith("--")]
        given.append(param.human_readable_name if isinstance(param, click.Argument) else (long_names or param.opts)[0])
    return given


def _verdict_code(passed: bool) -> int:

    return EXIT_OK if passed else EXIT_PARITY


@main.command("check")
@model_options(spec_required=False)
@run_options
@click.option("--atol", type=float, default=None, callback=finite_tolerance,
              help="Absolute tolerance (overrides the preset).")
@click.option("--rtol", type=float, default=None, callback=finite_tolerance,
              help="Relative tolerance (overrides the preset).")
@click.option("--localize", is_flag=True,
              help="On a failure, find the first ONNX node that diverges from PyTorch, and its module.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Also write an HTML report (error heatmaps, histograms, latency) and its PNGs beside it.")
@click.option("--zoo", is_flag=True,
              help="Check every zoo entry at its defaults with every installed backend: the support matrix.")
@click.option("--save-outputs", "save_path", type=click.Path(path_type=Path), default=None, metavar="FILE.npz",
              help="Also save every case's inputs and PyTorch's outputs, to check ONNX files later without SPEC.")
@click.option("--load-outputs", "load_path", type=click.Path(path_type=Path), default=None, metavar="FILE.npz",
              help="No SPEC: check --onnx against outputs saved by --save-outputs (no model, no PyTorch).")
@click.option("--against", "against_path", type=click.Path(path_type=Path), default=None, metavar="REF.onnx",
              help="No SPEC: check --onnx against another ONNX file run on ONNX Runtime's CPU (no PyTorch).")
def check_command(atol, rtol, localize, html_path, zoo, save_path, load_path, against_path, **common):
    """Compare every backend with PyTorch fp32 at several shapes (without SPEC: the model --onnx F records).
    Exit 1 on a parity failure."""
    from deploykit.check import run_check
    from deploykit.compare import tolerance_for
    from deploykit.report import print_check, print_localizations

    if zoo:
        return _check_zoo(common["backends"], common["threads"], common["report_path"], common["force"])
    if load_path is not None or against_path is not None:
        return _check_onnx_only(load_path, against_path, atol, rtol, save_path, localize, html_path, **common)
    if common["spec"] is None and common["onnx_path"] is None:
        raise click.UsageError("missing argument 'SPEC' (or pass --zoo, or --onnx F alone when 'deploykit export' "
                               "wrote F, or with --load-outputs or --against)")
    if common["spec"] is None:
        _refuse_model_choices_of_a_recorded_model(common["params"])
    if save_path is not None:
        _check_outputs({"--save-outputs": save_path, "--report": common["report_path"]},
                       _inputs(common["spec"], common["weights"], common["onnx_path"], **{"--inputs": common["inputs_file"]}),
                       common["force"])
    if html_path:
        from deploykit.html_report import require_matplotlib

        require_matplotlib()  # before minutes of work, not after
    tolerance = tolerance_for(common["precision"], atol, rtol)
    report = _run_and_report(run_check, print_check, tolerance=tolerance, localize=localize,
                             pictures=bool(html_path), latency_iters=HTML_LATENCY_ITERS if html_path else 0,
                             html_path=html_path, keep_cases=save_path is not None, **common)
    if save_path is not None:
        from deploykit.saved_outputs import SavedCase, save_outputs

        save_outputs(save_path, [SavedCase(inputs, outputs) for inputs, outputs in report.cases],
                     {"spec": report.spec, "seed": report.seed, "onnx": report.onnx,
                      "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol}}, force=common["force"])
        _note_line(f"saved {len(report.cases)} cases' inputs and PyTorch's outputs to {save_path}")
    if localize:
        print_localizations(report, _console())
    if html_path:
        from deploykit.html_report import figures_folder, write_html_report

        written = write_html_report(html_path, report, report.pictures, report.latency, force=common["force"])
        _note_line(f"wrote {written[0]} and {len(written) - 1} figures in {figures_folder(written[0])}")
    return _verdict_code(report.passed)


def _check_onnx_only(load_path, against_path, atol, rtol, save_path, localize, html_path, spec, onnx_path, backends,
                     shapes, threads, precision, seed, report_path, force, engine_path, plugins, params, weights,
                     input_dtypes, val_ranges, inputs_file, **ignored) -> int:
    """check --onnx F with --load-outputs ref.npz or --against REF.onnx: the file's backends
    without SPEC, the model's code or PyTorch (Polygraphy's --load-outputs, and its comparison
    of two runners). What would choose a model or its inputs is refused, never ignored."""
    from deploykit.backends import RunnerOptions, parse_backends
    from deploykit.compare import tolerance_for
    from deploykit.onnx_check import check_against, check_saved
    from deploykit.report import print_check, write_json

    used = [name for name, value in (("SPEC", spec), ("--save-outputs", save_path), ("--localize", localize),
                                     ("--html", html_path), ("-p", params), ("--weights", weights),
                                     ("--input-dtype", input_dtypes), ("--val-range", val_ranges),
                                     ("--inputs", inputs_file)) if value]
    if load_path is not None and against_path is not None:
        used.append("--against with --load-outputs")
    elif load_path is not None and shapes:
        used.append("--shape (the saved cases are the shapes)")
    if used:
        raise UserError(f"an ONNX-only check (--load-outputs or --against) takes no {', '.join(used)}",
                        "drop them, or check SPEC without --load-outputs / --against")
    if onnx_path is None:
        raise UserError("an ONNX-only check needs the file to check", "pass --onnx model.onnx")
    _check_outputs({"--report": report_path}, _inputs(None, None, onnx_path, engine_path, plugins,
                                                      **{"--load-outputs": load_path, "--against": against_path}), force)
    explicit = atol is not None or rtol is not None or precision != "fp32"
    tolerance = tolerance_for(precision, atol, rtol) if explicit else None
    chosen = parse_backends(backends or "ort")
    options = RunnerOptions(engine_path=engine_path, plugins=list(plugins))
    if load_path is not None:
        report = check_saved(onnx_path, load_path, chosen, tolerance, threads, options)
    else:
        report = check_against(onnx_path, against_path, chosen, list(shapes), tolerance, threads, seed, options)
    print_check(report, _console())
    if report_path:
        write_json(report_path, report.as_json(), force=force)
    return _verdict_code(report.passed)


@main.command("bench")
@model_options(spec_required=False)
@run_options
@click.option("--warmup", type=click.IntRange(min=0, max=MAX_WARMUP), default=10, show_default=True,
              help="Untimed runs first.")
@click.option("--iters", type=click.IntRange(min=1, max=MAX_ITERS), default=50, show_default=True,
              help="Timed runs.")
@click.option("--max-seconds", type=click.FloatRange(min=0.001, max=MAX_BENCH_SECONDS), default=DEFAULT_BENCH_SECONDS,
              show_default=True, callback=finite_tolerance,
              help="Time budget per backend and shape (warm-up and timed runs): timing stops there with the "
                   "runs made so far, and says so.")
@click.option("--cuda-graph", is_flag=True, help="Replay TensorRT execution as a CUDA graph.")
def bench_command(warmup, iters, max_seconds, **common):
    """Time every backend at every shape: min/p50/p90/p99/mean, throughput, ratio to torch."""
    from deploykit.bench import run_bench
    from deploykit.report import print_bench

    if common["spec"] is None:
        return _bench_file(warmup, iters, max_seconds, **common)
    _run_and_report(run_bench, functools.partial(print_bench, notes=not _quiet()), warmup=warmup, iters=iters, max_seconds=max_seconds, **common)


def _bench_file(warmup, iters, max_seconds, onnx_path, backends, shapes, threads, seed, report_path, force,
                engine_path, plugins, cuda_graph, params, weights, inputs_file, input_dtypes, val_ranges,
                **ignored) -> int:
    """bench --onnx F without SPEC: the file's ONNX backends timed on inputs drawn from its
    signature (its dtypes, deploykit's ranges), no model and no PyTorch (trtexec --onnx's habit)."""
    from deploykit.backends import RunnerOptions, parse_backends
    from deploykit.onnx_check import bench_file
    from deploykit.progress import progress_bar
    from deploykit.report import print_bench, write_json

    if onnx_path is None:
        raise click.UsageError("missing argument 'SPEC' (or pass --onnx model.onnx to time the file alone)")
    used = [name for name, value in (("-p", params), ("--weights", weights), ("--inputs", inputs_file),
                                     ("--input-dtype", input_dtypes), ("--val-range", val_ranges)) if value]
    if used:
        raise UserError(f"bench of a file without SPEC takes no {', '.join(used)}", "drop them, or pass SPEC")
    _check_outputs({"--report": report_path}, _inputs(None, None, onnx_path, engine_path, plugins), force)
    options = RunnerOptions(engine_path=engine_path, plugins=list(plugins), cuda_graph=cuda_graph)
    with progress_bar("bench", _quiet()) as progress:
        report = bench_file(onnx_path, parse_backends(backends or "ort"), list(shapes), warmup, iters, threads, seed,
                            max_seconds, options, progress)
    print_bench(report, _console(), notes=not _quiet())
    if report_path:
        write_json(report_path, report.as_json(), force=force)
    return EXIT_OK


@main.command("package")
@onnx_file_argument
@click.option("-o", "--output", "repository", type=click.Path(path_type=Path), required=True,
              help="The Triton model repository (created if missing; its other models are left alone).")
@click.option("--name", default=None, help="Model name (default: the ONNX file's name); the engine's model is NAME_trt.")
@click.option("--engine", type=click.Path(path_type=Path), default=None,
              help="Also serve this TensorRT engine (built from the same ONNX file) on Triton's TensorRT backend.")
@plugin_option("TensorRT plugin library the engine needs (repeatable), copied beside it.")
@click.option("--max-batch", type=click.IntRange(min=0, max=TRITON_MAX_BATCH), default=None,
              help="Triton's max_batch_size (0: no batching). Default: the export's batch bound, else Triton's 4.")
@click.option("--server-root", default=DEFAULT_SERVER_ROOT, show_default=True,
              help="Where the server mounts the repository: config.pbtxt names the custom-op library by that path.")
@force_option("model folder (one deploykit package wrote)")
@report_option("the models written")
def package_command(model, onnx_option, repository, name, engine, plugins, max_batch, server_root, force,
                    report_path):
    """Write a Triton Inference Server model repository for an exported file (and its engine)."""
    from deploykit.package import package_repository
    from deploykit.report import write_json

    onnx_path = _the_onnx_file(model, onnx_option)
    _check_outputs({"--report": report_path}, _inputs(onnx_path=onnx_path, engine_path=engine, plugins=plugins), force)
    result = package_repository(onnx_path, repository, name=name, engine=engine, plugins=tuple(plugins),
                                max_batch=max_batch, server_root=server_root, force=force)
    for packaged, folder in zip(result.models, result.folders):
        _stdout_line(f"wrote {folder} ({packaged.platform}, max_batch_size {packaged.max_batch_size})")
    for note in [] if _quiet() else result.notes:
        _stdout_line(note)
    if report_path:
        write_json(report_path, result.to_json(), force=force)
    return EXIT_OK


# One worked example per command, under its -h (the README's quick start has the whole flow).
_EXAMPLES = {
    "list": ["deploykit list", "deploykit list dysample"],
    "export": ["deploykit export mypkg.net:build --shape 1x3x256x256 -o net.onnx",
               "deploykit export dysample --dysample-impl plugin --target trt -o dys.onnx"],
    "convert": ["deploykit convert theirs.onnx -o mine.onnx --dysample-impl plugin --target trt"],
    "lint": ["deploykit lint net.onnx --target trt --plugin build/libdeploykit_trt_plugins.so"],
    "build": ["deploykit build net.onnx -o net.engine --profile input=1x3x64x64/1x3x256x256/4x3x512x512 "
              "--report build.json"],
    "check": ["deploykit check mypkg.net:build --onnx net.onnx --shape 1x3x256x256 --shape 2x3x320x480",
              "deploykit check dysample --backends torch,ort,trt --report check.json",
              "deploykit check --onnx rewritten.onnx --against net.onnx --shape 1x3x256x256",
              "deploykit check --onnx net.onnx --shape 1x3x256x256   # the model net.onnx's metadata records"],
    "bench": ["deploykit bench mypkg.net:build --onnx net.onnx --shape 1x3x512x512 --threads 2",
              "deploykit bench --onnx net.onnx --shape 1x3x512x512 --backends ort,trt"],
    "package": ["deploykit package --onnx net.onnx -o model_repository",
                "deploykit package --onnx net.onnx --engine net.engine --plugin build/libdeploykit_trt_plugins.so "
                "-o model_repository --max-batch 8"],
}

for _name, _command in main.commands.items():
    _command.params.append(_verbose_option())  # -v (and -q) after the subcommand too, as Polygraphy users type it
    if _name in _QUIET_COMMANDS:
        _command.params.append(_quiet_option())
    _command.epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in _EXAMPLES[_name])

if __name__ == "__main__":
    main()
