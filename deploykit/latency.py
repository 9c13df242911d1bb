"""Latency: the one place deploykit times anything.

trtexec's discipline: warm up first, time only the execution (inputs already on the device),
use the runner's own clock (deploykit.clocks: CUDA events on a GPU, never a host clock around
an unsynchronised call), report the distribution rather than one number, and warn when it is
spread wide. ``bench`` and ``check --html`` both time through ``measure``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from deploykit.backends import Runner
from deploykit.backends.runners import run_backend
from deploykit.errors import BackendRunError, UserError

# trtexec warns when the coefficient of variation passes 10%; CPU timings on a shared
# 2-core machine are noisier, so we flag at p99 > 1.5 x p50 instead.
UNSTABLE_P99_OVER_P50 = 1.5


@dataclass
class LatencyStats:
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    iters: int
    throughput: float  # samples (batch items) per second, from the mean
    h2d_ms: float = 0.0  # median time to put the inputs in the backend's memory (not in the above)
    d2h_ms: float = 0.0  # median time to bring the outputs back (not in the above)
    stopped_by_time: bool = False  # the time budget ended the runs before the iterations asked for

    @property
    def unstable(self) -> bool:
        return self.p99_ms > UNSTABLE_P99_OVER_P50 * self.p50_ms


def measure(runner: Runner, inputs: dict[str, np.ndarray], warmup: int, iters: int,
            max_seconds: float | None = None) -> LatencyStats:
    """Time ``runner.execute`` alone, ``iters`` times after ``warmup`` untimed runs; with
    ``max_seconds``, warm-up and timing together stop at that budget (at least one timed run),
    and ``stopped_by_time`` says so."""
    try:
        run_backend(runner, inputs)  # validates the feed once, and fails clearly before any timing
    except BackendRunError as exc:
        raise UserError(str(exc), "check it first with 'deploykit check'; bench times what runs") from None
    deadline = time.monotonic() + max_seconds if max_seconds is not None else float("inf")
    prepared = runner.prepare(inputs)
    watch = runner.stopwatch()
    for _ in range(warmup):
        if time.monotonic() > deadline:
            break
        watch.start()
        runner.execute(prepared)
        watch.stop()
    times = []
    for _ in range(iters):
        if times and time.monotonic() > deadline:
            break
        watch.start()
        runner.execute(prepared)
        times.append(watch.stop())
    stats = summarize(times, batch=int(np.shape(next(iter(inputs.values())))[0]))
    stats.stopped_by_time = len(times) < iters
    stats.h2d_ms, stats.d2h_ms = _transfers(runner, inputs, watch, repeats=min(iters, 10))
    return stats


def _transfers(runner: Runner, inputs: dict[str, np.ndarray], watch, repeats: int) -> tuple[float, float]:
    """Host->device and device->host copy times, measured apart from execution, like trtexec: a
    GPU runner's copies between pinned, preallocated host buffers and the device (the first
    round trip, which touches fresh pages, untimed); a host runner's prepare and fetch."""
    prepared = runner.prepare(inputs)
    copies = runner.copies(prepared, runner.execute(prepared))
    if copies is not None:
        to_device_copy, to_host_copy = copies
        to_device_copy(), to_host_copy()  # first touch of the buffers: never counted as a copy
        to_device, to_host = [], []
        for _ in range(repeats):
            watch.start()
            to_device_copy()
            to_device.append(watch.stop())
            watch.start()
            to_host_copy()
            to_host.append(watch.stop())
        return float(np.median(to_device)), float(np.median(to_host))
    to_device, to_host = [], []
    for _ in range(repeats):
        watch.start()
        prepared = runner.prepare(inputs)
        to_device.append(watch.stop())
        outputs = runner.execute(prepared)
        watch.start()
        runner.fetch(outputs)
        to_host.append(watch.stop())
    return float(np.median(to_device)), float(np.median(to_host))


def machine_description(threads: int) -> str:
    """The line every committed benchmark table carries: absolute times hold only for this machine."""
    import os
    import platform

    import onnxruntime
    import torch

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                         platform.processor())
    except OSError:
        model = platform.processor()
    return (f"{model}, {os.cpu_count()} cores, {threads} threads; torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__}")


def summarize(times_ms: list[float], batch: int) -> LatencyStats:
    ordered = np.asarray(sorted(times_ms), dtype=np.float64)
    mean = float(ordered.mean())
    return LatencyStats(
        min_ms=float(ordered[0]),
        p50_ms=float(np.percentile(ordered, 50)),
        p90_ms=float(np.percentile(ordered, 90)),
        p99_ms=float(np.percentile(ordered, 99)),
        mean_ms=mean,
        std_ms=statistics.pstdev(ordered.tolist()) if len(ordered) > 1 else 0.0,
        iters=len(ordered),
        throughput=batch * 1e3 / mean if mean > 0 else float("inf"),
    )
