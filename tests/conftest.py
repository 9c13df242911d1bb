"""Fixtures shared by the whole suite.

Exporting a model is the slowest step of most tests (about a second each on 2 cores), so a
zoo export that several tests need is made once per session by ``zoo_export`` and shared.
"""

import logging

import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip, saying why, where there is no CUDA GPU: CI shows them, a GPU runs them."""
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if not marked:
        return
    reason = _no_gpu_reason()
    if reason:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))


def _no_gpu_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU here (torch {torch.__version__}, CUDA {torch.version.cuda or 'none'})"
    return None


@pytest.fixture
def deploykit_logging():
    """A benchmark's main() configures the deploykit logger as the command line does: put it back."""
    logger = logging.getLogger("deploykit")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers, logger.level, logger.propagate = saved


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory):
    """``zoo_export(name, example)`` -> ``(LoadedModel, ExportResult)``: the zoo entry at one of
    its worked examples (``{}``: its defaults), seed 0, exported by ``export_onnx`` with its
    defaults (dynamic shapes, verified). Made on first request, then the same objects for the
    rest of the session: read them, do not change them. An export that raises is not kept, so
    every test that asks for it sees the error."""
    from deploykit import zoo
    from deploykit.export import export_onnx
    from deploykit.spec import load_model

    folder = tmp_path_factory.mktemp("zoo-exports")
    made = {}

    def export(name: str, example: dict):
        key = (name, tuple(sorted(example.items())))
        if key not in made:
            params = zoo.get(name).resolve_params(typed=example)
            model = load_model(name, {k: str(v) for k, v in params.items()}, seed=0)
            made[key] = model, export_onnx(model, folder / f"{name}-{len(made)}.onnx")
        return made[key]

    return export


@pytest.fixture
def ort_custom_ops():
    """deploykit's ONNX Runtime custom-op library, built on first use (cached) against the headers
    at $DEPLOYKIT_ORT_INCLUDE_DIR (.ci/run points it at ../shared); the test skips, saying why,
    where there are none."""
    from deploykit.errors import EnvironmentProblem
    from deploykit.ops.ort_library import ort_library_path

    try:
        return ort_library_path()
    except EnvironmentProblem as exc:
        pytest.skip(f"needs deploykit's ONNX Runtime custom-op library: {exc}")


@pytest.fixture
def without_ort_library(monkeypatch, tmp_path):
    """As on a machine without ONNX Runtime's C API headers or a build of the library: none can
    be had (a build this process already made is forgotten). In this process only."""
    from deploykit.ops import ort_library

    monkeypatch.delenv(ort_library.INCLUDE_ENV, raising=False)
    monkeypatch.delenv(ort_library.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(ort_library, "_SYSTEM_INCLUDES", ())
    empty_cache = tmp_path / "no-ort-builds"  # builds made where there were headers are reused: none here
    empty_cache.mkdir()
    monkeypatch.setattr(ort_library, "cache_dir", lambda: empty_cache)
    monkeypatch.setattr(ort_library, "_built", {})


@pytest.fixture
def torch_unimportable(tmp_path):
    """An environment for a subprocess in which ``import torch`` fails (a stand-in package
    first on PYTHONPATH, raising ``error``): ``torch_unimportable()`` proves a path never
    imports torch; ``torch_unimportable(missing=True)`` is a Python without PyTorch."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def environment(missing: bool = False) -> dict[str, str]:
        fake = tmp_path / ("torch_missing" if missing else "torch_forbidden")
        (fake / "torch").mkdir(parents=True, exist_ok=True)
        error = ("ModuleNotFoundError(\"No module named 'torch'\", name='torch')" if missing
                 else "RuntimeError('torch was imported')")
        (fake / "torch" / "__init__.py").write_text(f"raise {error}\n")
        return {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{root}"}

    return environment
