import pytest

from deploykit.latency import summarize
from deploykit.ops import benchmark
from deploykit.ops.benchmark import main, markdown, run


def test_cpu_benchmark_compares_both_implementations_side_by_side():
    rows = run((1, 8, 6, 5), 2, 4, "cpu", warmup=1, iters=2, threads=1, peak_gbs=100.0)
    assert [(r["impl"], r["dtype"]) for r in rows] == [("reference", "fp32"), ("fused", "fp32")]
    reference, fused = rows
    # each row against the eager reference of its dtype: p50 / eager p50, below 1 faster
    assert fused["vs_eager"] == fused["p50_ms"] / reference["p50_ms"] and reference["vs_eager"] == 1.0
    assert all(r["gbs"] > 0 and 0 < r["peak_fraction"] for r in rows)
    table = markdown(rows).splitlines()
    assert table[0].startswith("| sample step |") and len(table) == 4
    assert table[3].endswith(f"| {fused['vs_eager']:.2f}x |")


def test_the_ratio_is_time_over_the_eager_reference_time(monkeypatch):
    """Stopwatch-free: the reference takes 4 ms, the fused op 1 ms, so the fused row reads 0.25x
    (a quarter of the reference's time) and moves 4x the reference's bytes per second."""
    p50 = {"reference": [4.0, 4.0, 4.0], "fused": [1.0, 1.0, 1.0]}

    def measure(runner, inputs, warmup, iters, max_seconds=None):
        module = runner.options.model.module
        impl = "fused" if module.sample is benchmark.fused_sample else "reference"
        return summarize(p50[impl], batch=1)

    monkeypatch.setattr(benchmark, "measure", measure)
    reference, fused = run((1, 8, 6, 5), 2, 4, "cpu", warmup=0, iters=3, threads=1, peak_gbs=None)
    assert (reference["impl"], fused["impl"]) == ("reference", "fused")
    assert (reference["vs_eager"], fused["vs_eager"]) == (1.0, 0.25)
    assert fused["gbs"] == pytest.approx(4 * reference["gbs"]) and fused["peak_fraction"] is None
    assert markdown([reference, fused]).splitlines()[3] == "| fused | fp32 | 1.00 | 1.00 | " \
        f"{fused['gbs']:.1f} | - | 0.25x |"


def test_main_prints_machine_command_and_table(capsys):
    main(["--shape", "1x4x5x5", "--groups", "2", "--iters", "2", "--warmup", "0"])
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "command: python -m deploykit.ops.benchmark --shape 1x4x5x5" in out
    assert "| fused | fp32 |" in out
