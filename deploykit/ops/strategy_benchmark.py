"""DySample on ONNX Runtime's CPU provider: every --dysample-impl strategy against PyTorch
eager, side by side in one run, and where ONNX Runtime spends the time (its profiler, per op type).

    python -m deploykit.ops.strategy_benchmark                 # the README's tables
    python -m deploykit.ops.strategy_benchmark --sizes 120 --scales 2 --styles lp+ --threads 2
    python -m deploykit.ops.strategy_benchmark --sizes 64 --scales 2 --styles lp --iters 5

The plugin graph runs on ONNX Runtime with deploykit's custom-op library
(deploykit.ops.ort_library); without it that column is left out, saying why. The fused column
is PyTorch eager with the fused C++ kernel instead of the published sample step.

Each strategy's ratio is its p50 / PyTorch eager's p50 at the same setting (below 1 is
faster), the convention of every ratio deploykit prints. Timing goes through
deploykit.latency.measure, like every latency deploykit reports. The profile is a separate,
untimed pass with ONNX Runtime's profiler on. Progress goes to the ``deploykit`` logger (on
stderr when run as a script).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from deploykit.model_io import shape_text

# by the module's own name under "python -m" too (where __name__ is "__main__"), so the
# deploykit logger that main() configures shows its progress
logger = logging.getLogger(__spec__.name if __spec__ is not None else __name__)

STRATEGIES = ("standard", "gather", "roialign", "plugin")
# lp / pl: static scope; lp+ / pl+: DySample+'s dynamic scope
_ENTRY = {"lp": "dysample", "pl": "dysample_s", "lp+": "dysample_plus", "pl+": "dysample_s_plus"}


def run(sizes: list[int], scales: list[int], styles: list[str], channels: int, groups: int, warmup: int,
        iters: int, threads: int, profile_runs: int, strategies: tuple[str, ...] = STRATEGIES) -> list[dict]:
    """One row per (size, scale, style): p50 of torch (published and fused sample step) and of each
    strategy's graph on ONNX Runtime, and per-op-type shares."""
    from deploykit.backends import RunnerOptions, runner_class
    from deploykit.latency import measure
    from deploykit.export import export_onnx
    from deploykit.model_io import make_inputs
    from deploykit.ops.ort_library import ort_library_path
    from deploykit.spec import load_model

    custom_ops = ort_library_path() if "plugin" in strategies else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="deploykit-strategies-") as work:
        for size in sizes:
            for scale in scales:
                for style in styles:
                    params = {"in_channels": str(channels), "scale": str(scale), "groups": str(groups)}
                    model = load_model(_ENTRY[style], params)
                    shape = (1, channels, size, size)
                    inputs = make_inputs(shape, model.seed)
                    row = {"shape": shape, "scale": scale, "style": style, "p50_ms": {}, "ops": {}}
                    with runner_class("torch")(RunnerOptions(model=model, threads=threads)) as runner:
                        row["p50_ms"]["torch"] = measure(runner, inputs, warmup, iters).p50_ms
                    fused = load_model(_ENTRY[style], {**params, "impl": "fused"})
                    with runner_class("torch")(RunnerOptions(model=fused, threads=threads)) as runner:
                        row["p50_ms"]["fused"] = measure(runner, inputs, warmup, iters).p50_ms
                    for strategy in strategies:
                        path = Path(work) / f"{style}-{scale}-{size}-{strategy}.onnx"
                        export_onnx(model, path, dysample_impl=strategy, force=True, verify=False)
                        options = RunnerOptions(onnx_path=path, threads=threads,
                                                ort_custom_ops=custom_ops if strategy == "plugin" else None)
                        with runner_class("ort")(options) as runner:
                            row["p50_ms"][strategy] = measure(runner, inputs, warmup, iters).p50_ms
                        row["ops"][strategy] = op_type_shares(path, inputs, threads, profile_runs, options.ort_custom_ops)
                    rows.append(row)
                    logger.info("measured %s", _label(row))
    return rows


def op_type_shares(path: Path, inputs, threads: int, runs: int, custom_ops: Path | None = None) -> dict[str, float]:
    """Fraction of ONNX Runtime's summed kernel time per op type, from its profiler."""
    import onnxruntime as ort

    from deploykit.backends.ort import ort_session_options

    options = ort_session_options(threads)
    if custom_ops is not None:
        options.register_custom_ops_library(str(custom_ops))
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = dict(inputs)
    session.run(None, feed)  # the first run allocates; keep it out of the profile's share
    for _ in range(runs):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    per_op = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    trace.unlink()
    total = sum(per_op.values()) or 1
    return {op: us / total for op, us in per_op.most_common()}


def _label(row: dict) -> str:
    return f"{shape_text(row['shape'])} s={row['scale']} {row['style']}"


def markdown(rows: list[dict]) -> str:
    """Latency table (each p50 / eager p50) and the per-op-type breakdown of each strategy."""
    strategies = [s for s in STRATEGIES if rows and s in rows[0]["p50_ms"]]
    columns = ["fused", *strategies]
    head = ("| input | scale | style | PyTorch eager p50 | PyTorch fused p50 (vs eager) | "
            + " | ".join(f"ORT {s} p50 (vs eager)" for s in strategies))
    lines = [head + " |", "|---" * (4 + len(columns)) + "|"]
    for r in rows:
        torch_ms = r["p50_ms"]["torch"]
        cells = [f"{r['p50_ms'][s]:.1f} ms ({r['p50_ms'][s] / torch_ms:.2f}x)" for s in columns]
        lines.append(f"| {shape_text(r['shape'])} | {r['scale']} | {r['style']} | {torch_ms:.1f} ms | "
                     + " | ".join(cells) + " |")
    lines += ["", "| input | scale | style | strategy | where ONNX Runtime's kernel time goes (top op types) |",
              "|---|---|---|---|---|"]
    for r in rows:
        for strategy in strategies:
            top = ", ".join(f"{op} {share:.0%}" for op, share in list(r["ops"][strategy].items())[:4])
            lines.append(f"| {shape_text(r['shape'])} | {r['scale']} | {r['style']} | {strategy} | {top} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from deploykit.latency import machine_description
    from deploykit.logs import configure
    from deploykit.ops.ort_library import library_problem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 120], help="square input sizes")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--styles", nargs="+", choices=sorted(_ENTRY), default=["lp", "pl"])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile-runs", type=int, default=3, help="untimed runs under ONNX Runtime's profiler")
    args = parser.parse_args(argv)
    configure(1)  # progress ("measured ...") on stderr, as deploykit -v shows its steps
    strategies = STRATEGIES
    why = library_problem()
    if why:
        strategies = tuple(s for s in STRATEGIES if s != "plugin")
        logger.warning("the plugin graph is left out: %s", why)
    rows = run(args.sizes, args.scales, args.styles, args.channels, args.groups, args.warmup, args.iters,
               args.threads, args.profile_runs, strategies)
    print(f"machine: {machine_description(args.threads)}")
    print("command:", "python -m deploykit.ops.strategy_benchmark", *(argv if argv is not None else sys.argv[1:]))
    print(markdown(rows))


if __name__ == "__main__":
    main()
