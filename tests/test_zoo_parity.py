"""Every zoo entry, in every example configuration: exported with dynamic shapes and checked
against ONNX Runtime at the three default shapes (none of which is the one traced... except
by design one of them, so at least two are not)."""

import pytest

from deploykit import zoo
from deploykit.check import run_check
from deploykit.compare import PRESETS
from deploykit.export import export_onnx
from deploykit.model_io import format_shape
from deploykit.spec import load_model

CASES = [
    pytest.param(name, example, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in example.items()) or 'defaults'}")
    for name, entry in zoo.entries().items() for example in entry.examples
]


@pytest.mark.parametrize("name,example", CASES)
def test_export_then_ort_matches_torch_at_three_shapes(name, example, tmp_path):
    entry = zoo.get(name)
    params = entry.resolve_params(typed=example)
    model = load_model(name, {k: str(v) for k, v in params.items()}, seed=0)
    result = export_onnx(model, tmp_path / "model.onnx")
    report = run_check(model, ["ort"], None, tolerance=PRESETS["fp32"], onnx_path=result.path, threads=2)
    traced = result.traced_shape
    untraced = [r for r in report.results if r.shape != traced]
    assert len(report.results) == 3 and len(untraced) >= 2
    failures = [f"{format_shape(r.shape)}: {r.metrics.reason} (max abs {r.metrics.max_abs:.3g})"
                for r in report.results if not r.metrics.passed]
    assert not failures, failures
