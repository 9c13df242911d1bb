"""check --zoo / deploykit.matrix: every zoo entry exported once and checked against every backend."""

import json
import subprocess
import sys

import pytest

from click.testing import CliRunner

from deploykit import zoo
from deploykit.cli import main
from deploykit.matrix import MIN_RATIO_MS, BackendCell, MatrixReport, MatrixRow, markdown


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


def test_check_zoo_runs_every_entry_against_every_installed_backend(tmp_path):
    """The README's support matrix, on this CPU: torch and ort run, the GPU backends are named as absent."""
    path = tmp_path / "zoo.json"
    result = CliRunner().invoke(main, ["check", "--zoo", "--threads", "2", "--report", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert data["passed"] and data["backends"][0] == "torch" and "ort" in data["backends"]
    assert "onnx-ref" not in data["backends"], "the reference evaluator is a checker, not a runtime"
    assert [row["entry"] for row in data["rows"]] == list(zoo.entries())
    for row in data["rows"]:
        assert row["exported"] and row["opset"] >= 17
        ort = row["backends"]["ort"]
        assert ort["status"] == "pass" and ort["max_abs"] < 1e-4 and ort["p50_ms"] > 0 and ort["torch_p50_ms"] > 0
        small = min(ort["p50_ms"], ort["torch_p50_ms"]) < MIN_RATIO_MS
        assert (ort["latency_ratio"] is None) == small
        assert small or ort["latency_ratio"] == pytest.approx(ort["p50_ms"] / ort["torch_p50_ms"])
    assert set(data["unavailable"]) >= {"trt"} and "installed" in data["unavailable"]["trt"]
    assert "all 13 entries exported and passed" in result.output
    assert "not installed here: " in result.output


def test_matrix_module_help_prints_help_and_runs_nothing():
    result = subprocess.run([sys.executable, "-m", "deploykit.matrix", "-h"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "usage: python -m deploykit.matrix" in result.stdout
    assert "--all-examples" in result.stdout and "| entry |" not in result.stdout
