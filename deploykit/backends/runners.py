"""Opening backends: which can run here, which stand in for one that cannot run a plugin
graph, and running one with its failures named.

A plugin graph (deploykit::DySample nodes) runs on ONNX Runtime with deploykit's custom-op
library (deploykit.ops.ort_library); where that library cannot be had, on onnx-ref instead,
saying why.

``plan_backends`` decides before any work (a missing backend fails in a second);
``open_runners`` activates the planned runners; ``run_backend`` is the one place a runtime's
own failure becomes a BackendRunError naming the backend and the shape, and
``run_and_compare`` the one place a run becomes each output's Metrics (check, export
verification).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from deploykit.backends import Runner, RunnerOptions, runner_class
from deploykit.compare import Metrics, Tolerance, compare_outputs, failed
from deploykit.errors import (BackendRunError, BackendUnavailable, EnvironmentProblem, UserError, first_line,
                              is_out_of_memory, out_of_memory)

# Backends that run deploykit::DySample nodes only with deploykit's custom-op library, and what
# runs such a graph where the library cannot be had.
PLUGIN_SUBSTITUTES = {"ort": "onnx-ref", "ort-cuda": "onnx-ref"}


@dataclass
class BackendPlan:
    """The backends that will run (by the name that runs: a substitute's), and why others cannot."""

    classes: dict[str, type[Runner]]
    asked: dict[str, str]  # backend asked for -> backend that runs
    skipped: dict[str, str]  # backend -> why it cannot run here
    needs_onnx: bool  # some planned runner reads an ONNX file
    ort_custom_ops: Path | None = None  # deploykit's ONNX Runtime library, for a plugin graph on ort
    substitute_why: str | None = None  # why onnx-ref runs instead of ONNX Runtime

    @property
    def runs_tensorrt(self) -> bool:
        """A graph exported for these runners must pass the trt export checks."""
        return "trt" in self.classes


def plan_backends(backends: list[str], options: RunnerOptions, plugin_graph: bool,
                  allow_substitutes: bool = True) -> BackendPlan:
    """Give ONNX Runtime deploykit's custom-op library for a plugin graph (or, where it cannot be
    had, substitute onnx-ref, saying why), and skip (with the reason) the backends whose absence
    is routine. Refuses a plan where nothing, or nothing that runs the exported graph, would run:
    torch against itself proves nothing about the export."""
    custom_ops, why = _custom_ops_for(backends) if plugin_graph else (None, None)
    asked = {name: PLUGIN_SUBSTITUTES.get(name, name) if why else name for name in backends}
    if not allow_substitutes and any(a != n for n, a in asked.items()):
        raise UserError(f"{why}; the NumPy reference that checks such graphs is not worth timing",
                        "make the library available as that says, bench a standard-op export "
                        "(--dysample-impl gather or auto) on ort, or the plugin graph on trt")
    classes = {name: runner_class(name) for name in dict.fromkeys(asked.values())}
    skipped = {}
    for name, cls in list(classes.items()):
        try:
            cls.check_available()
        except BackendUnavailable as exc:
            if not cls.skip_when_unavailable:
                raise
            skipped[name] = str(exc)
            del classes[name]
    if not classes:
        raise UserError(f"no backend can run here ({'; '.join(skipped.values())})",
                        "add a backend that runs on this machine, e.g. --backends torch,ort")
    exported = [name for name in dict.fromkeys(asked.values()) if runner_class(name).needs_onnx]
    if exported and all(name in skipped for name in exported):
        raise UserError(f"every backend that runs the exported graph or engine was skipped "
                        f"({'; '.join(f'{name}: {skipped[name]}' for name in exported)}), so nothing exported ran",
                        "install one of them, add one that runs here (e.g. --backends torch,ort), "
                        "or ask for --backends torch alone")
    needs_onnx = any(cls.needs_onnx_file(options) for cls in classes.values())
    return BackendPlan(classes, asked, skipped, needs_onnx, custom_ops, why)


def _custom_ops_for(backends: list[str]) -> tuple[Path | None, str | None]:
    """(deploykit's ONNX Runtime library, None), or (None, why onnx-ref must stand in) for a
    plugin graph; (None, None) when no ONNX Runtime backend was asked for."""
    if not any(name in PLUGIN_SUBSTITUTES for name in backends):
        return None, None
    from deploykit.ops.ort_library import OrtLibraryMisconfigured, ort_library_path

    try:
        return ort_library_path(), None
    except OrtLibraryMisconfigured:
        raise  # DEPLOYKIT_ORT_LIBRARY / _INCLUDE_DIR name something unusable: exit 2, never a quiet stand-in
    except EnvironmentProblem as exc:
        return None, (f"the graph has deploykit::DySample nodes and deploykit's ONNX Runtime custom-op library "
                      f"cannot be had here: {exc}")


@contextlib.contextmanager
def open_runners(plan: BackendPlan, options: RunnerOptions) -> Iterator[dict[str, Runner]]:
    """Each planned runner, activated once with ``options``, and deactivated on the way out."""
    options = dataclasses.replace(options, ort_custom_ops=plan.ort_custom_ops)
    runners = {name: cls(options) for name, cls in plan.classes.items()}
    for asked, name in plan.asked.items():
        if asked != name and name in runners:
            runners[name].substituted_for = asked
            runners[name].substituted_why = plan.substitute_why
    with contextlib.ExitStack() as stack:
        for runner in runners.values():
            stack.enter_context(runner)
        yield runners


def describe_runners(runners: dict[str, Runner]) -> dict[str, dict]:
    """Each runner's own description, plus why it runs if it replaced the backend asked for."""
    described = {}
    for name, runner in runners.items():
        info = runner.describe()
        if runner.substituted_for:
            info["instead_of"] = runner.substituted_for
            info["why"] = runner.substituted_why
        described[name] = info
    return described


def run_backend(runner: Runner, feed: dict) -> dict:
    """``runner.validate`` then ``runner.infer`` on the runner's own copy of ``feed`` (a model that
    writes into its input, ``x -= mean``, must not change what the next backend gets); a
    runtime's own failure (a node it rejects, a
    graph that does not fit) becomes a BackendRunError naming the backend and the shape."""
    from deploykit.model_io import describe_feed

    import numpy as np

    runner.validate(feed)
    feed = {name: np.array(array, copy=True) for name, array in feed.items()}  # a model may write into its input
    try:
        return runner.infer(feed)
    except UserError:
        raise
    except Exception as exc:  # ONNX Runtime and onnx.reference raise untyped errors
        if is_out_of_memory(exc):  # the machine, not the backend's arithmetic: never a parity failure
            raise out_of_memory(f"running backend {runner.name} at shape {describe_feed(feed)}") from None
        raise BackendRunError(f"backend {runner.name} failed at shape {describe_feed(feed)}: "
                              f"{first_line(exc)}") from None


def run_and_compare(runner: Runner, feed: dict, references: dict, tolerance: Tolerance
                    ) -> tuple[dict[str, Metrics], dict | None]:
    """(each output's Metrics by name, the backend's outputs): a backend that fails to compute
    fails every output with its error as the reason, and gives no outputs (None)."""
    try:
        outputs = run_backend(runner, feed)
    except BackendRunError as exc:
        return {output: failed(str(exc)) for output in references}, None
    return compare_outputs(runner.name, references, outputs, tolerance), outputs
