"""check --zoo / deploykit.matrix: every zoo entry exported once and checked against every backend.

The CLI runs here on a few entries (``deploykit.zoo.entries`` patched): the whole zoo is
exported and checked against ONNX Runtime once, in tests/test_zoo_parity.py.
"""

import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from rich.console import Console

from deploykit import zoo
from deploykit.check import CheckReport, CheckResult
from deploykit.cli import main
from deploykit.compare import PRESETS, Metrics, failed
from deploykit.latency import LatencyStats
from deploykit.matrix import (LATENCY_ITERS, MIN_RATIO_MS, BackendCell, MatrixReport, MatrixRow, backend_cells,
                              markdown)
from deploykit.report import print_matrix

# A few entries, in the registry's order: DySample (slow enough on both sides for a latency
# ratio), max-pool indices into max-unpool (two steps), and a resize.
FEW = ["dysample", "max_unpool", "upsample"]


@pytest.fixture
def few_entries(monkeypatch):
    """The zoo as check --zoo (and deploykit.zoo.get) sees it, cut down to FEW."""
    everything = zoo.entries()
    few = {name: everything[name] for name in FEW}
    monkeypatch.setattr(zoo, "entries", lambda: dict(few))
    return few


def test_markdown_rows_say_what_failed():
    report = MatrixReport(backends=["torch", "ort"], unavailable={}, rows=[
        MatrixRow("pool", "defaults", True, 17, cells={"torch": BackendCell("pass", 0.0, 1.0),
                                                        "ort": BackendCell("pass", 0.0, 0.5, "", 2.5, 5.0)}),
        MatrixRow("interpolate", "antialias=True", True, 18,
                  cells={"ort": BackendCell("FAIL", 0.96, None, "bad", 0.0123, 0.00456)}),
        MatrixRow("x", "defaults", False, note="export of x failed"),
    ])
    text = markdown(report).splitlines()
    assert text[0] == "| entry | parameters | export (dynamic) | ort: parity, max abs, p50 ms ort / torch (ratio) |"
    assert text[2] == "| pool | defaults | yes, opset 17 | pass, 0.0e+00, 2.5 / 5 ms (0.5x) |"
    # sub-millisecond: the times it would be computed from, with their digits, and no ratio
    assert text[3] == "| interpolate | antialias=True | yes, opset 18 | FAIL, 9.6e-01, 0.0123 / 0.00456 ms (too fast to compare) |"
    assert text[4] == "| x | defaults | no: export of x failed | - |"
    assert not report.passed


def test_check_zoo_runs_every_entry_against_every_installed_backend(tmp_path, few_entries):
    """The README's support matrix, on this CPU: torch and ort run, the GPU backends are named as absent."""
    path = tmp_path / "zoo.json"
    result = CliRunner().invoke(main, ["check", "--zoo", "--threads", "2", "--report", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert data["passed"] and data["backends"][0] == "torch" and "ort" in data["backends"]
    assert "onnx-ref" not in data["backends"], "the reference evaluator is a checker, not a runtime"
    assert [row["entry"] for row in data["rows"]] == list(zoo.entries()) == FEW
    for row in data["rows"]:
        assert row["exported"] and row["opset"] >= 17
        ort = row["backends"]["ort"]
        assert ort["status"] == "pass" and ort["max_abs"] < 1e-4 and ort["p50_ms"] > 0 and ort["torch_p50_ms"] > 0
        small = min(ort["p50_ms"], ort["torch_p50_ms"]) < MIN_RATIO_MS
        assert (ort["latency_ratio"] is None) == small
        assert small or ort["latency_ratio"] == pytest.approx(ort["p50_ms"] / ort["torch_p50_ms"])
    assert set(data["unavailable"]) >= {"trt"} and "installed" in data["unavailable"]["trt"]
    assert f"all {len(FEW)} entries exported and passed" in result.output
    assert "not installed here: " in result.output


def test_matrix_module_help_prints_help_and_runs_nothing():
    result = subprocess.run([sys.executable, "-m", "deploykit.matrix", "-h"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "usage: python -m deploykit.matrix" in result.stdout
    assert "--all-examples" in result.stdout and "| entry |" not in result.stdout


def _timed(p50_ms):
    return LatencyStats(p50_ms, p50_ms, p50_ms, p50_ms, p50_ms, 0.0, LATENCY_ITERS, 1000 / p50_ms)


def test_each_cell_takes_its_verdict_from_the_check_report():
    """Per backend, in the order they ran: skipped when it made no comparison, FAIL with the first
    failure's reason when any failed (a crash has no error to show), else pass; the ratio only
    when both summed p50s reach MIN_RATIO_MS."""
    ok, first, second = (Metrics(1e-6, 1e-7, 1e-6, 1.0, 120.0, True),
                         Metrics(0.5, 0.1, 0.2, 0.9, 20.0, False, "max abs 0.5 > atol"), failed("ort crashed"))
    small, large = (1, 3, 8, 8), (2, 3, 9, 9)
    check = CheckReport("m", 0, PRESETS["fp32"], None, results=[
        CheckResult("torch", small, "y", ok), CheckResult("ort", small, "y", ok),
        CheckResult("onnx-ref", small, "y", ok), CheckResult("torch-cuda", small, "y", failed("CUDA error")),
        CheckResult("trt", small, None, None, skipped="TensorRT is not installed"),
        CheckResult("torch", large, "y", ok), CheckResult("ort", large, "y", first), CheckResult("ort", large, "y", second),
        CheckResult("onnx-ref", large, "y", ok), CheckResult("torch-cuda", large, "y", failed("CUDA error")),
        CheckResult("trt", large, None, None, skipped="TensorRT is not installed"),
    ], latency={("torch", small): _timed(2.0), ("torch", large): _timed(3.0), ("ort", small): _timed(1.0),
                ("ort", large): _timed(2.0), ("onnx-ref", small): _timed(0.25), ("onnx-ref", large): _timed(0.25)})
    cells = backend_cells(check)
    assert list(cells) == ["torch", "ort", "onnx-ref", "torch-cuda", "trt"]
    assert cells["torch"] == BackendCell("pass", 1e-6, 1.0, "", 5.0, 5.0)
    assert cells["ort"] == BackendCell("FAIL", 0.5, 0.6, "max abs 0.5 > atol", 3.0, 5.0)
    assert cells["onnx-ref"] == BackendCell("pass", 1e-6, None, "", 0.5, 5.0)  # 0.5 ms: too fast to compare
    assert cells["torch-cuda"] == BackendCell("FAIL", None, None, "CUDA error")
    assert cells["trt"] == BackendCell("skipped", reason="TensorRT is not installed")
    assert backend_cells(check, min_ratio_ms=0.1)["onnx-ref"].latency_ratio == 0.1
    row = MatrixRow("m", "defaults", True, 17, cells={k: v for k, v in cells.items() if k in ("torch", "onnx-ref", "trt")})
    assert row.passed and not MatrixRow("m", "defaults", True, 17, cells=cells).passed


def test_the_footnote_says_how_the_report_was_timed():
    """The printed matrix takes its timing facts from the report, not from constants of its own."""
    assert (MatrixReport([], {}).latency_iters, MatrixReport([], {}).min_ratio_ms) == (LATENCY_ITERS, MIN_RATIO_MS)
    console = Console(file=io.StringIO(), record=True, width=400)
    print_matrix(MatrixReport(["torch", "ort"], {}, latency_iters=7, min_ratio_ms=2.5), console)
    text = console.export_text()
    assert "7 timed runs each" in text and "left out below 2.5 ms" in text
