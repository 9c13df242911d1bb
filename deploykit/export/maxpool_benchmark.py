"""Max-pool indices on ONNX Runtime's CPU provider: every --maxpool-impl strategy on the
SegNet pool + unpool step against PyTorch eager, side by side in one run.

    python -m deploykit.export.maxpool_benchmark              # the README's table
    python -m deploykit.export.maxpool_benchmark --sizes 64 --iters 5

Each strategy's ratio is its p50 / PyTorch eager's p50 at the same pool and size (below 1
is faster), the convention of every ratio deploykit prints. Timing goes through
deploykit.latency.measure, like every latency deploykit reports; progress goes to the
``deploykit`` logger (on stderr when run as a script). The graphs are exported here with the
strategy's translation table, dynamic batch, height and width, as ``deploykit export`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

from deploykit.export.maxpool_indices import MAXPOOL_IMPLS, translation_table
from deploykit.model_io import SINGLE_INPUT, shape_text

# by the module's own name under "python -m" too (where __name__ is "__main__"), so the
# deploykit logger that main() configures shows its progress
logger = logging.getLogger(__spec__.name if __spec__ is not None else __name__)

# (kernel_size, stride, padding): SegNet's own 2/2/0, and overlapping 3/2/1 windows
POOLS = ((2, 2, 0), (3, 2, 1))


def run(sizes: list[int], channels: int, warmup: int, iters: int, threads: int) -> list[dict]:
    """One row per (pool, size): p50 of PyTorch eager and of each strategy's ONNX Runtime graph."""
    from deploykit.backends import RunnerOptions, runner_class
    from deploykit.latency import measure
    from deploykit.model_io import make_inputs
    from deploykit.spec import load_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="deploykit-maxpool-") as work:
        for kernel, stride, padding in POOLS:
            model = load_model("max_unpool", {"channels": str(channels), "kernel_size": str(kernel),
                                              "stride": str(stride), "padding": str(padding)})
            for size in sizes:
                shape = (1, channels, size, size)
                inputs = make_inputs(shape, model.seed)
                row = {"pool": (kernel, stride, padding), "shape": shape, "p50_ms": {}}
                with runner_class("torch")(RunnerOptions(model=model, threads=threads)) as runner:
                    row["p50_ms"]["torch"] = measure(runner, inputs, warmup, iters).p50_ms
                for impl in MAXPOOL_IMPLS:
                    path = Path(work) / f"{kernel}-{stride}-{padding}-{size}-{impl}.onnx"
                    export(model.module, shape, impl, path)
                    with runner_class("ort")(RunnerOptions(onnx_path=path, threads=threads)) as runner:
                        row["p50_ms"][impl] = measure(runner, inputs, warmup, iters).p50_ms
                rows.append(row)
                logger.info("measured %s", _label(row))
    return rows


def export(module, shape, impl: str, path: Path) -> None:
    """``module`` to ``path`` with dynamic batch, height and width, max-pool indices as ``impl``;
    its input named as deploykit names a one-input model's (what ``make_inputs`` feeds)."""
    import torch

    from deploykit.logs import captured_exporter_logs

    example = torch.randn(*shape)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), captured_exporter_logs(quiet):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, optimize=True, input_names=[SINGLE_INPUT],
                                    dynamic_shapes=({0: "batch", 2: "height", 3: "width"},),
                                    custom_translation_table=translation_table(impl))
    program.save(str(path))


def _label(row: dict) -> str:
    kernel, stride, padding = row["pool"]
    return f"k={kernel} s={stride} p={padding} {shape_text(row['shape'])}"


def markdown(rows: list[dict]) -> str:
    """The latency table: PyTorch eager's p50, and each strategy's p50 with its p50 / eager p50."""
    head = "| pool | input | PyTorch eager p50 | " + " | ".join(f"ORT {i} p50 (vs eager)" for i in MAXPOOL_IMPLS)
    lines = [head + " |", "|---" * (3 + len(MAXPOOL_IMPLS)) + "|"]
    for r in rows:
        kernel, stride, padding = r["pool"]
        torch_ms = r["p50_ms"]["torch"]
        cells = [f"{r['p50_ms'][i]:.2f} ms ({r['p50_ms'][i] / torch_ms:.2f}x)" for i in MAXPOOL_IMPLS]
        lines.append(f"| k={kernel} s={stride} p={padding} | {shape_text(r['shape'])} | {torch_ms:.2f} ms | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from deploykit.latency import machine_description
    from deploykit.logs import configure

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 120], help="square input sizes")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    configure(1)  # progress ("measured ...") on stderr, as deploykit -v shows its steps
    rows = run(args.sizes, args.channels, args.warmup, args.iters, args.threads)
    print(f"machine: {machine_description(args.threads)}")
    print("command:", "python -m deploykit.export.maxpool_benchmark", *(argv if argv is not None else sys.argv[1:]))
    print(markdown(rows))


if __name__ == "__main__":
    main()
