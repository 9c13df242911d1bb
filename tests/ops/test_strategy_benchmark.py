import json

import onnx
import pytest

from deploykit.ops import strategy_benchmark
from deploykit.ops.strategy_benchmark import STRATEGIES, main, markdown, op_type_shares, run

# Nodes ONNX Runtime's CPU provider adds to a graph itself (NCHWc layout around Conv).
ORT_LAYOUT_OPS = {"ReorderInput", "ReorderOutput"}
# The ops each strategy's sample step is made of, one of which takes the largest share of its
# time at 64 channels per group (gather: one Gather, one batched MatMul, one Transpose to NCHW).
DOMINANT = {"standard": {"GridSample"}, "gather": {"Gather", "MatMul", "Transpose"}, "roialign": {"RoiAlign"},
            "plugin": {"DySample"}}


def test_every_strategy_is_timed_beside_eager_with_its_op_breakdown(monkeypatch, ort_custom_ops):
    profiled = []  # (op types of the graph profiled, the shares measured on it), while the file exists

    def recording(path, *args):
        shares = op_type_shares(path, *args)
        profiled.append(({n.op_type for n in onnx.load(str(path)).graph.node}, shares))
        return shares

    monkeypatch.setattr(strategy_benchmark, "op_type_shares", recording)
    # large enough that each profile holds tens of ms of kernel time: a kernel descheduled for a
    # few ms on a shared machine (the profiler's times are wall-clock) cannot make it dominant
    rows = run([64], [2], ["lp", "pl"], channels=64, groups=1, warmup=0, iters=2, threads=1, profile_runs=5)
    assert [(r["style"], r["shape"]) for r in rows] == [("lp", (1, 64, 64, 64)), ("pl", (1, 64, 64, 64))]
    assert [shares for _, shares in profiled] == [r["ops"][s] for r in rows for s in STRATEGIES]
    for graph_ops, shares in profiled:  # every op type profiled is one the graph has (or ORT's layout)
        assert shares and set(shares) <= graph_ops | ORT_LAYOUT_OPS, (set(shares), graph_ops)
    for row in rows:
        assert set(row["p50_ms"]) == {"torch", "fused", *STRATEGIES} and all(v > 0 for v in row["p50_ms"].values())
        assert "GridSample" in row["ops"]["standard"] and "GridSample" not in row["ops"]["gather"]
        assert "RoiAlign" in row["ops"]["roialign"] and "DySample" in row["ops"]["plugin"]
        for strategy, shares in row["ops"].items():
            assert next(iter(shares)) in DOMINANT[strategy], (strategy, shares)
            assert list(shares.values()) == sorted(shares.values(), reverse=True)
    table = markdown(rows).splitlines()
    assert table[0].startswith("| input | scale | style | PyTorch eager p50 |") and "(vs eager)" in table[0]
    first = rows[0]["p50_ms"]  # each strategy's p50, then its p50 / eager p50
    cells = [f"{first[s]:.1f} ms ({first[s] / first['torch']:.2f}x)" for s in ("fused", *STRATEGIES)]
    assert table[2] == f"| 1x64x64x64 | 2 | lp | {first['torch']:.1f} ms | " + " | ".join(cells) + " |"


def test_shares_are_each_op_types_summed_kernel_time_from_the_profile(tmp_path, monkeypatch):
    """Only the profiler's per-node kernel-time events count, summed per op type, as fractions
    of their total, largest first; the trace file is removed."""
    import onnxruntime

    events = [
        {"cat": "Session", "name": "model_run", "dur": 1000, "args": {}},
        {"cat": "Node", "name": "conv_fence_before", "dur": 500, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv_kernel_time", "dur": 30, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "grid_kernel_time", "dur": 60, "args": {"op_name": "GridSample"}},
        {"cat": "Node", "name": "grid_1_kernel_time", "dur": 10, "args": {"op_name": "GridSample"}},
        {"cat": "Node", "name": "conv_fence_after", "dur": 700, "args": {"op_name": "Conv"}},
    ]
    trace = tmp_path / "profile.json"

    class ProfiledSession:
        def __init__(self, path, options, providers):
            assert options.enable_profiling and providers == ["CPUExecutionProvider"]
            self.runs = 0

        def run(self, outputs, feed):
            self.runs += 1

        def end_profiling(self):
            assert self.runs == 1 + 3  # the allocating first run, then the profiled ones
            trace.write_text(json.dumps(events))
            return str(trace)

    monkeypatch.setattr(onnxruntime, "InferenceSession", ProfiledSession)
    shares = op_type_shares(tmp_path / "m.onnx", {"input": None}, threads=1, runs=3)
    assert list(shares) == ["GridSample", "Conv"]
    assert shares == pytest.approx({"GridSample": 0.7, "Conv": 0.3})
    assert not trace.exists()


def test_main_prints_machine_command_and_tables(capsys, deploykit_logging, ort_custom_ops):
    main(["--sizes", "5", "--scales", "2", "--styles", "lp", "--channels", "4", "--groups", "1",
          "--iters", "1", "--warmup", "0", "--profile-runs", "1", "--threads", "1"])
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith("machine: ") and "command: python -m deploykit.ops.strategy_benchmark --sizes 5" in out
    assert "| 1x4x5x5 | 2 | lp | gather |" in out and "| 1x4x5x5 | 2 | lp | plugin |" in out
    assert "deploykit: measured 1x4x5x5 s=2 lp" in captured.err  # progress, logged to stderr


def test_without_the_ort_library_the_plugin_column_is_left_out_saying_why(capsys, deploykit_logging,
                                                                           without_ort_library):
    main(["--sizes", "5", "--scales", "2", "--styles", "lp", "--channels", "4", "--groups", "1",
          "--iters", "1", "--warmup", "0", "--profile-runs", "1", "--threads", "1"])
    captured = capsys.readouterr()
    assert "ORT gather p50" in captured.out and "plugin" not in captured.out
    assert "the plugin graph is left out: the ONNX Runtime custom-op library needs ONNX Runtime's C API headers" \
        in captured.err
