"""Benchmark of DySample's sample step: fused kernel vs the reference sample(), side by side.

    python -m deploykit.ops.benchmark                      # CPU, 1x256x120x120, s=2, G=4
    python -m deploykit.ops.benchmark --device cuda --peak-gbs 4800

Prints a Markdown table (with the machine and the command) of p50/p90 latency, achieved
memory bandwidth (bytes of x + offset read and output written, each once, over the p50) and
the ratio to the eager reference of the same dtype (p50 / eager reference p50: below 1 is
faster, the convention of every ratio deploykit prints). Timing goes through
deploykit.latency.measure, like every latency deploykit reports: warm-up, execution only,
CUDA events on a GPU.
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch

from deploykit.backends import RunnerOptions, runner_class
from deploykit.latency import measure
from deploykit.ops.fused import fused_sample, load
from deploykit.ops.reference import reference_sample
from deploykit.model_io import InputSpec
from deploykit.model_io import parse_shape
from deploykit.spec import LoadedModel


class SampleStep(torch.nn.Module):
    """The sample step alone, as a module of (x, offset), so runners can time it."""

    def __init__(self, impl: str, scale: int, groups: int):
        super().__init__()
        self.sample = fused_sample if impl == "fused" else reference_sample
        self.scale, self.groups = scale, groups

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return self.sample(x, offset, self.scale, self.groups)


def _variants(device: str) -> list[tuple[str, str, bool]]:
    """(impl, dtype, compiled) rows; the GPU adds fp16 and torch.compile of the reference."""
    if device == "cpu":
        return [("reference", "fp32", False), ("fused", "fp32", False)]
    return [(impl, dtype, compiled) for dtype in ("fp32", "fp16")
            for impl, compiled in (("reference", False), ("reference", True), ("fused", False))]


def run(shape, scale: int, groups: int, device: str, warmup: int, iters: int, threads: int | None,
        peak_gbs: float | None) -> list[dict]:
    load()
    batch, channels, height, width = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen)
    offset = torch.randn(batch, 2 * groups * scale * scale, height, width, generator=gen) * 0.5
    runner_name = "torch-cuda" if device == "cuda" else "torch"
    rows = []
    for impl, dtype, compiled in _variants(device):
        module = SampleStep(impl, scale, groups)
        if compiled:
            module = torch.compile(module)
        inputs = {name: InputSpec(name) for name in ("x", "offset")}  # torch.compile hides forward's names
        options = RunnerOptions(model=LoadedModel(spec="sample", module=module, params={}, default_shapes=None,
                                                  inputs=inputs), threads=threads, precision=dtype)
        cls = runner_class(runner_name)
        cls.check_available()
        with cls(options) as runner:
            stats = measure(runner, {"x": x.numpy(), "offset": offset.numpy()}, warmup, iters)
        element = 2 if dtype == "fp16" else 4
        moved = (x.numel() + offset.numel() + x.numel() * scale * scale) * element
        rows.append({"impl": impl + (" (torch.compile)" if compiled else ""), "dtype": dtype, "p50_ms": stats.p50_ms,
                     "p90_ms": stats.p90_ms, "gbs": moved / stats.p50_ms / 1e6})
    for row in rows:
        eager = next(r for r in rows if r["dtype"] == row["dtype"] and r["impl"] == "reference")
        row["vs_eager"] = row["p50_ms"] / eager["p50_ms"]  # below 1: faster than the eager reference
        row["peak_fraction"] = row["gbs"] / peak_gbs if peak_gbs else None
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| sample step | dtype | p50 ms | p90 ms | GB/s | of peak | vs eager reference |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = f"{r['peak_fraction']:.0%}" if r["peak_fraction"] is not None else "-"
        lines.append(f"| {r['impl']} | {r['dtype']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['gbs']:.1f} | "
                     f"{peak} | {r['vs_eager']:.2f}x |")
    return "\n".join(lines)


def _machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return f"{model}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1x256x120x120", help="x as BxCxHxW (default: the DySample paper's)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--peak-gbs", type=float, default=None, help="the device's peak memory bandwidth, GB/s")
    args = parser.parse_args(argv)
    rows = run(parse_shape(args.shape), args.scale, args.groups, args.device, args.warmup, args.iters, args.threads,
               args.peak_gbs)
    print(f"machine: {_machine(args.device)}; torch {torch.__version__}")
    print("command:", "python -m deploykit.ops.benchmark", *(argv if argv is not None else sys.argv[1:]))
    print(markdown(rows))


if __name__ == "__main__":
    main()
