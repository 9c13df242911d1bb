import numpy as np
import pytest

from deploykit.backends import Runner, RunnerOptions
from deploykit.clocks import Stopwatch
from deploykit.latency import measure, summarize


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
    # then the copies, timed apart from execution: a host runner has no device copies (copies() is
    # None after one prepare/execute), so prepare (h2d) and fetch (d2h), min(iters, 10) times
    assert runner.calls[25:27] == ["prepare", "execute"]
    assert runner.calls[27:] == ["start", "prepare", "stop", "execute", "start", "fetch", "stop"] * 5
    assert stats.h2d_ms == 1.0 and stats.d2h_ms == 1.0
    assert stats.iters == 5 and stats.throughput == pytest.approx(3000.0)


class _DeviceRunner(_CountingRunner):
    """A GPU runner's shape: its copies are its own (pinned buffers), not prepare and fetch."""

    def copies(self, prepared, outputs):
        return (lambda: self.calls.append("h2d"), lambda: self.calls.append("d2h"))


def test_device_copies_are_timed_from_pinned_buffers_after_an_untimed_first_touch():
    runner = _DeviceRunner(RunnerOptions())
    runner.activate()
    stats = measure(runner, {"input": np.zeros((3, 1), np.float32)}, warmup=0, iters=3)
    copies = runner.calls[runner.calls.index("h2d"):]
    assert copies[:2] == ["h2d", "d2h"]  # the first round trip touches fresh pages: not timed
    assert copies[2:] == ["start", "h2d", "stop", "start", "d2h", "stop"] * 3
    assert "fetch" not in runner.calls[runner.calls.index("h2d"):] and stats.h2d_ms == 1.0
