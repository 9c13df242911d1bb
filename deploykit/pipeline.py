"""What check and bench share: a model's runners, over the ONNX file given or a temporary export."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Iterator

from deploykit.backends import Runner, RunnerOptions
from deploykit.backends.runners import open_runners, plan_backends
from deploykit.export.options import ExportOptions
from deploykit.model_io import Shape
from deploykit.spec import LoadedModel

logger = logging.getLogger(__name__)


def _exports_plugin_nodes(model: LoadedModel, export_options: ExportOptions, backends: list[str],
                          options: RunnerOptions) -> bool:
    """Whether a temporary export would hold deploykit::DySample nodes: the model has a layer
    that export converts (verified to compute DySample's step) and the strategy, as export
    resolves it (``auto`` on ONNX Runtime can be the plugin), is the plugin."""
    from deploykit.export.dysample import DEFAULT_DYSAMPLE_IMPL, find_layers, strategy_for

    target = "trt" if any(name == "trt" and _reads_onnx(name, options) for name in backends) else \
        export_options.target
    impl = export_options.dysample_impl or DEFAULT_DYSAMPLE_IMPL[target]
    if impl not in ("plugin", "auto") or not find_layers(model.module)[0]:
        return False
    return strategy_for(impl, target) == "plugin"


@contextlib.contextmanager
def opened_runners(model: LoadedModel, backends: list[str], shapes: list[Shape], onnx_path: Path | None,
                   options: RunnerOptions, export_options: ExportOptions | None = None,
                   allow_substitutes: bool = True) -> Iterator[tuple[dict[str, Runner], dict[str, str]]]:
    """Activate each backend once; yield (runners, skipped), skipped mapping a backend that cannot
    run here, and may be absent (TensorRT on a CPU machine), to the reason.

    ``onnx_path`` is read once; without it, a temporary ONNX file is exported if a backend needs
    one (with ``export_options``, traced at one of ``shapes``, batch above 1 preferred, and for
    TensorRT when trt runs). A plugin graph runs on ONNX Runtime with deploykit's library, or
    onnx-ref (deploykit.backends.runners).
    """
    from deploykit.onnx_file import has_plugin_nodes, validate_onnx_file
    from deploykit.spec import check_same_model

    export_options = export_options or ExportOptions()
    options = dataclasses.replace(options, model=model, onnx_path=onnx_path, shapes=list(shapes))
    reads_onnx = any(_reads_onnx(name, options) for name in backends)
    if onnx_path is not None and reads_onnx:
        proto = validate_onnx_file(onnx_path)
        check_same_model(model, {p.key: p.value for p in proto.metadata_props}, onnx_path)
        plugin_graph = has_plugin_nodes(proto)
    else:
        plugin_graph = reads_onnx and _exports_plugin_nodes(model, export_options, backends, options)
    plan = plan_backends(backends, options, plugin_graph, allow_substitutes)
    with contextlib.ExitStack() as stack:
        if plan.needs_onnx and onnx_path is None:
            from deploykit.export.onnx_export import export_onnx, preferred_trace_shape
            from deploykit.files import temporary_directory

            work_dir = stack.enter_context(temporary_directory())
            logger.info("exporting %s to a temporary ONNX file for %s", model.spec,
                        ", ".join(name for name, cls in plan.classes.items() if cls.needs_onnx_file(options)))
            export_options = dataclasses.replace(export_options,
                target="trt" if plan.runs_tensorrt else export_options.target,
                trace_shape=export_options.trace_shape or preferred_trace_shape(shapes))
            # not verified here: check runs it at every shape anyway (and adds shapes that prove a
            # dynamic graph, deploykit.check), and bench times it
            exported = export_onnx(model, work_dir / "model.onnx", verify=False, precision=options.precision,
                                   **export_options.as_kwargs())
            options = dataclasses.replace(options, onnx_path=exported.path)
            if bool(exported.dysample and exported.dysample.counts().get("plugin")) != plugin_graph:  # a guess missed
                plan = plan_backends(backends, options, not plugin_graph, allow_substitutes)
        logger.info("opening %s%s", ", ".join(plan.classes),
                    "".join(f"; {name} skipped: {why}" for name, why in plan.skipped.items()))
        runners = stack.enter_context(open_runners(plan, options))
        yield runners, plan.skipped


def _reads_onnx(name: str, options: RunnerOptions) -> bool:
    from deploykit.backends import runner_class

    return runner_class(name).needs_onnx_file(options)


def untested_dims(model: LoadedModel, shapes: list[Shape], dynamic: dict[str, list[int]] | None = None) -> list[str]:
    """The batch and spatial dims that keep one size in every shape checked ("input height
    40"), among ``dynamic`` (input -> the axes the graph declares dynamic; None: batch and every
    spatial axis): a graph specialised to that size would pass there and nowhere else."""
    from deploykit.model_io import case_shapes

    names = ["batch", "channels", "height", "width"]
    per_input = [case_shapes(shape, model.input_names) for shape in shapes]
    untested = []
    for name, first in per_input[0].items():
        axes = dynamic.get(name, []) if dynamic is not None else [0, *range(2, len(first))]
        for axis in axes:
            sizes = {dims[name][axis] for dims in per_input if name in dims and axis < len(dims[name])}
            if len(sizes) == 1:
                label = names[axis] if len(first) == 4 else f"axis {axis}"
                untested.append(f"{name} {label} {sizes.pop()}")
    return untested
