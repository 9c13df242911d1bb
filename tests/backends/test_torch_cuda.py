"""The torch-cuda runner on a GPU: parity with the CPU reference, CUDA-event timing, and copies
measured from pinned, preallocated host buffers (pytest -m gpu)."""

import json

import pytest

from tests.cli_helpers import run

pytestmark = pytest.mark.gpu


def test_check_and_bench_on_torch_cuda(tmp_path):
    checked = run("check", "dysample", "--backends", "torch,torch-cuda", "--shape", "1x64x32x32")
    assert checked.exit_code == 0, checked.output
    report = tmp_path / "bench.json"
    bench = run("bench", "dysample", "--backends", "torch-cuda", "--shape", "2x64x64x64", "--iters", "20",
                "--report", report)
    assert bench.exit_code == 0, bench.output
    [result] = json.loads(report.read_text())["results"]
    assert result["p50_ms"] > 0 and result["h2d_ms"] > 0 and result["d2h_ms"] > 0
    # pinned copies run near PCIe/NVLink speed: the 8 MiB output comes back in well under 10 ms
    assert result["d2h_ms"] < 10, result

