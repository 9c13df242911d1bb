"""Every zoo entry, in every example configuration: exported with dynamic shapes and checked
against ONNX Runtime at the three default shapes (none of which is the one traced... except
by design one of them, so at least two are not).

This is the one place the whole zoo is exported and checked; ``check --zoo`` (tests/test_matrix.py)
is tested on a few entries. So the support matrix's promise for each entry at its defaults
(exported at opset 17 or later, ONNX Runtime within 1e-4 of PyTorch fp32) is asserted here.
"""

import pytest

from deploykit import zoo
from deploykit.check import run_check
from deploykit.compare import PRESETS
from deploykit.model_io import format_shape

CASES = [
    pytest.param(name, example, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in example.items()) or 'defaults'}")
    for name, entry in zoo.entries().items() for example in entry.examples
]


def test_every_entry_is_checked_at_its_defaults():
    """The support matrix is run at each entry's defaults: each has them among its cases."""
    assert {name for name, example in (case.values for case in CASES) if example == {}} == set(zoo.entries())


@pytest.mark.slow  # one export per case, over 40 cases: minutes on 2 cores
@pytest.mark.parametrize("name,example", CASES)
def test_export_then_ort_matches_torch_at_three_shapes(name, example, zoo_export):
    model, result = zoo_export(name, example)
    assert result.opset >= 17
    report = run_check(model, ["ort"], None, tolerance=PRESETS["fp32"], onnx_path=result.path, threads=2)
    traced = result.traced_shape
    untraced = [r for r in report.results if r.shape != traced]
    assert len(report.results) == 3 and len(untraced) >= 2
    failures = [f"{format_shape(r.shape)}: {r.metrics.reason} (max abs {r.metrics.max_abs:.3g})"
                for r in report.results if not r.metrics.passed]
    assert not failures, failures
    if example == {}:  # the support matrix's row: its worst error, not only within tolerance
        worst = max(r.metrics.max_abs for r in report.results)
        assert worst < 1e-4, f"max abs {worst:.3g} at the defaults"
