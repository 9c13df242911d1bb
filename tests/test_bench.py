import numpy as np
import pytest

from deploykit.bench import run_bench
from deploykit.latency import measure, summarize
from deploykit.backends.base import Runner, RunnerOptions
from deploykit.clocks import Stopwatch
from deploykit.spec import load_model


def test_summarize_percentiles_and_throughput():
    stats = summarize([float(t) for t in range(1, 101)], batch=4)
    assert stats.min_ms == 1 and stats.p50_ms == pytest.approx(50.5) and stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01) and stats.mean_ms == pytest.approx(50.5)
    assert stats.throughput == pytest.approx(4 * 1000 / 50.5) and stats.iters == 100


def test_spread_is_flagged():
    assert summarize([1.0] * 98 + [5.0, 5.0], batch=1).unstable
    assert not summarize([1.0] * 100, batch=1).unstable


class _CountingRunner(Runner):
    """Records what bench calls, to prove it times execute only, after warm-up."""

    name = "counting"

    def _activate(self):
        self.calls = []

    def prepare(self, inputs):
        self.calls.append("prepare")
        return inputs

    def execute(self, prepared):
        self.calls.append("execute")
        return prepared

    def fetch(self, outputs):
        self.calls.append("fetch")
        return outputs

    def describe(self):
        return {}

    def stopwatch(self):
        runner = self

        class Watch(Stopwatch):
            def start(self):
                runner.calls.append("start")

            def stop(self):
                runner.calls.append("stop")
                return 1.0

        return Watch()


def test_measure_times_execute_only_after_warmup():
    runner = _CountingRunner(RunnerOptions())
    runner.activate()
    stats = measure(runner, {"input": np.zeros((3, 1), np.float32)}, warmup=2, iters=5)
    # one untimed end-to-end run first (fails clearly if the backend cannot run), then only execute is timed
    assert runner.calls[:4] == ["prepare", "execute", "fetch", "prepare"]
    assert runner.calls[4:25] == ["start", "execute", "stop"] * 7
    # then the copies, timed apart from execution: prepare (h2d) and fetch (d2h), min(iters, 10) times
    assert runner.calls[25:] == ["start", "prepare", "stop", "execute", "start", "fetch", "stop"] * 5
    assert stats.h2d_ms == 1.0 and stats.d2h_ms == 1.0
    assert stats.iters == 5 and stats.throughput == pytest.approx(3000.0)


def test_run_bench_reports_every_backend_and_shape_with_ratio_to_torch():
    model = load_model("pixel_shuffle")
    report = run_bench(model, ["torch", "ort"], [(1, 64, 8, 8), (2, 64, 9, 11)], warmup=1, iters=3, threads=1)
    assert [(r.backend, r.shape) for r in report.results] == [
        ("torch", (1, 64, 8, 8)), ("ort", (1, 64, 8, 8)), ("torch", (2, 64, 9, 11)), ("ort", (2, 64, 9, 11))]
    assert all(r.stats.iters == 3 and r.stats.min_ms > 0 for r in report.results)
    assert report.results[0].ratio_to_torch == 1.0
    row = report.as_json()["results"][1]
    assert {"backend", "shape", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "iters"} <= set(row)
    assert report.backends["ort"]["threads"] == 1 and report.backends["torch"]["threads"] == 1
