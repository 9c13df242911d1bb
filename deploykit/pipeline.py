"""What check and bench share: seeded inputs, the ONNX file (given or exported), open runners."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from deploykit.backends import Runner, RunnerOptions, create_runner
from deploykit.errors import UserError
from deploykit.spec import LoadedModel, Shape


def make_inputs(shape: Shape, seed: int) -> list[np.ndarray]:
    """Standard-normal float32 input, a pure function of (seed, shape)."""
    rng = np.random.default_rng([seed, *shape])
    return [rng.standard_normal(shape, dtype=np.float32)]


def reference_outputs(model: LoadedModel, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """PyTorch fp32 eager on the CPU, DySample on its published math: what every backend is
    compared with (so a fused-kernel model is checked against the reference, not itself)."""
    import torch

    from deploykit.zoo.dysample import dysample_impl

    with dysample_impl(model.module, "reference"):
        outputs = model.forward(*[torch.from_numpy(a.copy()) for a in inputs])
    if not isinstance(outputs, (tuple, list)):
        outputs = [outputs]
    return [o.detach().float().numpy() for o in outputs]


def validate_onnx_file(path: Path) -> None:
    """Missing or corrupt --onnx files fail here with a fix, not deep inside a backend."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file {path} not found", "check the --onnx path or create it with 'deploykit export'")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError...
        head = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a valid ONNX model ({head})",
                        "re-export it with 'deploykit export'") from None
    if not proto.graph.input:
        raise UserError(f"{path} has no graph inputs", "re-export it with 'deploykit export'")


def has_plugin_nodes(onnx_path: Path) -> bool:
    import onnx

    from deploykit.ops.onnx_translation import plugin_nodes

    return bool(plugin_nodes(onnx.load(str(onnx_path), load_external_data=False)))


@contextlib.contextmanager
def open_runners(model: LoadedModel, backends: list[str], shapes: list[Shape], onnx_path: Path | None,
                 threads: int | None, precision: str = "fp32",
                 dysample_impl: str = "standard") -> Iterator[dict[str, Runner]]:
    """Activate each backend once; export a temporary dynamic ONNX file if one is needed,
    traced at one of ``shapes`` (batch above 1 preferred).

    A graph with ``deploykit::DySample`` nodes cannot run in ONNX Runtime: the ONNX Runtime
    backends are then replaced by ``onnx-ref`` (the NumPy plugin reference), and say so.
    """
    from deploykit.backends import runner_class

    classes = [runner_class(name) for name in backends]
    for cls in classes:  # before any export: a missing backend should fail in a second, not after one
        cls.check_available()
    needs_onnx = any(cls.needs_onnx for cls in classes)
    with contextlib.ExitStack() as stack:
        if needs_onnx and onnx_path is None:
            from deploykit.export.onnx_export import export_onnx, preferred_trace_shape

            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deploykit-")))
            trace = preferred_trace_shape(shapes)
            onnx_path = export_onnx(model, work_dir / "model.onnx", trace_shape=trace,
                                    dysample_impl=dysample_impl).path
        elif onnx_path is not None:
            validate_onnx_file(onnx_path)
        substitutes = {}
        if needs_onnx and has_plugin_nodes(onnx_path):
            substitutes = {name: "onnx-ref" for name in backends if name.startswith("ort")}
        options = RunnerOptions(model=model, onnx_path=onnx_path, threads=threads, precision=precision)
        runners = {}
        for name in backends:
            actual = substitutes.get(name, name)
            if actual not in runners:
                runners[actual] = create_runner(actual, options)
                if actual != name:
                    runners[actual].substituted_for = name
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
            info["why"] = "the graph has deploykit::DySample plugin nodes, which ONNX Runtime cannot run"
        described[name] = info
    return described


def run_backend(runner: Runner, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """``runner.infer``, with a runtime's own failure (a graph that does not fit SPEC, a bad
    node) turned into one line naming the backend and the shape."""
    try:
        return runner.infer(inputs)
    except UserError:
        raise
    except Exception as exc:  # ONNX Runtime and onnx.reference raise untyped errors
        head = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        shape = "x".join(str(d) for d in inputs[0].shape)
        raise UserError(f"backend {runner.name} failed at shape {shape}: {head}",
                        "check that --onnx was exported from this SPEC, or re-export it") from None
