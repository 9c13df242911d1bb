"""The clocks bench reads: a host clock for CPU backends, CUDA events for GPU ones.

A runner says which clock times its ``execute`` (``Runner.stopwatch``); deploykit.latency is
the one place that reads them.
"""

from __future__ import annotations

import time


class Stopwatch:
    """Host clock around a synchronous call: right for CPU backends."""

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> float:
        """Milliseconds since ``start``."""
        return (time.perf_counter() - self._start) * 1e3


class CudaEventStopwatch(Stopwatch):
    """CUDA events on the work's stream (default: the current one): times GPU work, not the
    host's launch calls."""

    def __init__(self, stream=None) -> None:
        import torch

        self._stream = stream
        self._begin = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self._begin.record(self._stream)

    def stop(self) -> float:
        self._end.record(self._stream)
        self._end.synchronize()
        return self._begin.elapsed_time(self._end)
