"""What check and bench share: seeded inputs, the ONNX file (given or exported), open runners."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np

from deploykit.backends import Runner, RunnerOptions, runner_class
from deploykit.errors import (BackendRunError, BackendUnavailable, UserError, first_line, is_out_of_memory,
                              out_of_memory)
from deploykit.spec import LoadedModel, Shape

# Backends that cannot run deploykit::DySample nodes, and what runs such a graph instead.
_PLUGIN_SUBSTITUTES = {"ort": "onnx-ref", "ort-cuda": "onnx-ref"}
_SUBSTITUTE_WHY = "the graph has deploykit::DySample plugin nodes, which ONNX Runtime cannot run"


def make_inputs(shape: Shape, seed: int) -> dict[str, np.ndarray]:
    """A one-input model's feed: standard-normal float32 ``input``, a pure function of (seed,
    shape). Models with several inputs, dtypes or ranges draw theirs with ``LoadedModel.feed``."""
    from deploykit.model_io import SINGLE_INPUT, InputSpec, draw_inputs

    return draw_inputs(shape, seed, {SINGLE_INPUT: InputSpec(SINGLE_INPUT)})


def reference_outputs(model: LoadedModel, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch fp32 eager on the CPU, DySample on its published math: what every backend is
    compared with (so a fused-kernel model is checked against the reference, not itself)."""
    import torch

    from deploykit.zoo.dysample import dysample_impl

    with dysample_impl(model.module, "reference"):
        outputs = model.forward(*[torch.from_numpy(np.array(feed[name])) for name in model.input_names])
    return tensors_to_numpy(outputs, model.spec)


def tensors_to_numpy(outputs, spec: str) -> dict[str, np.ndarray]:
    """A module's outputs (a tensor, tuples, lists, dicts, dataclasses, nested) as NumPy arrays
    by name (deploykit.model_io): floating point as float32, integers and booleans as they are
    (so a dtype change is caught)."""
    from deploykit.model_io import flatten_outputs

    flat = flatten_outputs(outputs)
    if not flat:
        raise UserError(f"{spec} returns {type(outputs).__name__} with no tensor in it",
                        "deploykit compares models whose outputs hold tensors")
    arrays = {}
    for name, output in flat.items():
        output = output.detach().cpu()
        if output.is_floating_point():
            output = output.float()
        elif output.is_complex():
            raise UserError(f"{spec} returns a complex tensor as output {name}", "return real tensors")
        arrays[name] = output.numpy()
    return arrays


def validate_onnx_file(path: Path, option: str = "--onnx"):
    """Missing, empty, truncated or corrupt ONNX files fail here with a fix, not deep inside a
    backend or lint: the one loader every command that reads an ONNX file goes through. Returns
    the graph (without external weights)."""
    import onnx

    from deploykit.files import note_input, require_utf8_path

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory", "give the path of an .onnx file")
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"
        raise UserError(f"ONNX file {path} {what}", f"check the {option} path or create it with 'deploykit export'")
    note_input(path)
    require_utf8_path(path)
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes), not an ONNX model", "re-export it with 'deploykit export'")
    try:
        onnx.checker.check_model(str(path))  # by path: external data must stay inside the model's folder
        proto = onnx.load(str(path), load_external_data=False)
    except MemoryError:
        raise out_of_memory(f"reading {path}") from None
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError...
        raise UserError(f"{path} is not a valid ONNX model ({first_line(exc)})",
                        "re-export it with 'deploykit export'") from None
    if not proto.graph.input:
        raise UserError(f"{path} has no graph inputs", "re-export it with 'deploykit export'")
    _check_text(path, proto)
    return proto


def _check_text(path: Path, proto) -> None:
    """Every string in the graph (attributes, names, metadata) must be UTF-8: protobuf keeps
    string attributes as bytes, and readers decode them."""
    def graphs(graph):
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    yield from graphs(attribute.g)
                for sub in attribute.graphs:
                    yield from graphs(sub)

    for graph in graphs(proto.graph):
        for node in graph.node:
            for attribute in node.attribute:
                for value in [attribute.s, *attribute.strings]:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise UserError(f"{path}: attribute {attribute.name!r} of node {node.name!r} "
                                        f"({node.op_type}) is not UTF-8 text",
                                        "re-export the model, or fix the attribute") from None


def has_plugin_nodes(onnx_path: Path) -> bool:
    import onnx

    from deploykit.ops.onnx_translation import plugin_nodes

    return bool(plugin_nodes(onnx.load(str(onnx_path), load_external_data=False)))


def _contains_dysample(model: LoadedModel) -> bool:
    """Whether the model has a layer that export converts (verified to compute DySample's step)."""
    from deploykit.export.dysample import find_layers

    return bool(find_layers(model.module)[0])


@contextlib.contextmanager
def open_runners(model: LoadedModel, backends: list[str], shapes: list[Shape], onnx_path: Path | None,
                 threads: int | None, precision: str = "fp32", export_options: dict | None = None,
                 allow_substitutes: bool = True, runner_options: dict | None = None,
                 ) -> Iterator[tuple[dict[str, Runner], dict[str, str]]]:
    """Activate each backend once; yield (runners, skipped) where skipped maps a backend that
    cannot run here, and may be absent (TensorRT on a CPU machine), to the reason.

    Exports a temporary ONNX file if a backend needs one (with ``export_options``, traced at
    one of ``shapes``, batch above 1 preferred). A graph with ``deploykit::DySample`` nodes
    cannot run in ONNX Runtime: "ort" and "ort-cuda" are then replaced by "onnx-ref" (the
    NumPy plugin reference), which says so.
    """
    export_options = dict(export_options or {})
    runner_options = runner_options or {}
    needs_onnx = any(runner_class(name).needs_onnx_file(runner_options) for name in backends)
    if onnx_path is not None and needs_onnx:
        validate_onnx_file(onnx_path)
        plugin_graph = has_plugin_nodes(onnx_path)
    else:
        plugin_graph = (needs_onnx and export_options.get("dysample_impl") == "plugin"
                        and _contains_dysample(model))
    actual = {name: _PLUGIN_SUBSTITUTES.get(name, name) if plugin_graph else name for name in backends}
    if not allow_substitutes and any(a != n for n, a in actual.items()):
        raise UserError(f"{_SUBSTITUTE_WHY}, and the NumPy reference that checks such graphs is not worth timing",
                        "bench a standard-op export (--dysample-impl auto, the default) on ort, "
                        "or the plugin graph on trt")
    classes = {name: runner_class(name) for name in dict.fromkeys(actual.values())}
    skipped = {}
    for name, cls in list(classes.items()):  # before any export: a missing backend fails in a second
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
    exported = [name for name in dict.fromkeys(actual.values()) if runner_class(name).needs_onnx]
    if exported and all(name in skipped for name in exported):
        # torch against itself proves nothing about the export: that is not a pass
        raise UserError(f"every backend that runs the exported graph or engine was skipped "
                        f"({'; '.join(f'{name}: {skipped[name]}' for name in exported)}), so nothing exported ran",
                        "install one of them, add one that runs here (e.g. --backends torch,ort), "
                        "or ask for --backends torch alone")
    needs_onnx = any(cls.needs_onnx_file(runner_options) for cls in classes.values())
    if "trt" in classes:  # the graph TensorRT gets must pass the trt export checks
        export_options["target"] = "trt"
    with contextlib.ExitStack() as stack:
        if needs_onnx and onnx_path is None:
            from deploykit.export.onnx_export import export_onnx, preferred_trace_shape

            from deploykit.files import temporary_directory

            work_dir = stack.enter_context(temporary_directory())
            export_options["trace_shape"] = export_options.get("trace_shape") or preferred_trace_shape(shapes)
            # not verified here: check runs it at every shape anyway, and bench times it
            onnx_path = export_onnx(model, work_dir / "model.onnx", verify=False, precision=precision,
                                    **export_options).path
        options = RunnerOptions(model=model, onnx_path=onnx_path, threads=threads, precision=precision,
                                shapes=list(shapes), **runner_options)
        runners = {name: cls(options) for name, cls in classes.items()}
        for asked, name in actual.items():
            if asked != name:
                runners[name].substituted_for = asked
        for runner in runners.values():
            stack.enter_context(runner)
        yield runners, skipped


def describe_runners(runners: dict[str, Runner]) -> dict[str, dict]:
    """Each runner's own description, plus why it runs if it replaced the backend asked for."""
    described = {}
    for name, runner in runners.items():
        info = runner.describe()
        if runner.substituted_for:
            info["instead_of"] = runner.substituted_for
            info["why"] = _SUBSTITUTE_WHY
        described[name] = info
    return described


def describe_feed(feed: dict[str, np.ndarray]) -> str:
    """'2x64x37x45' for one input, 'image=1x3x8x8,mask=1x1x8x8' for several."""
    shapes = {name: "x".join(map(str, np.shape(a))) for name, a in feed.items()}
    return next(iter(shapes.values())) if len(shapes) == 1 else ",".join(f"{n}={s}" for n, s in shapes.items())


def run_backend(runner: Runner, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``runner.validate`` then ``runner.infer``; a runtime's own failure (a node it rejects, a
    graph that does not fit) becomes a BackendRunError naming the backend and the shape."""
    runner.validate(feed)
    try:
        return runner.infer(feed)
    except UserError:
        raise
    except Exception as exc:  # ONNX Runtime and onnx.reference raise untyped errors
        if is_out_of_memory(exc):  # the machine, not the backend's arithmetic: never a parity failure
            raise out_of_memory(f"running backend {runner.name} at shape "
                                f"{describe_feed(feed)}") from None
        shape = describe_feed(feed)
        raise BackendRunError(f"backend {runner.name} failed at shape {shape}: {first_line(exc)}") from None
