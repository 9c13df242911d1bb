"""The max-pool strategy benchmark: every --maxpool-impl beside PyTorch eager, ratios as
time / eager time (below 1 is faster), progress logged to stderr."""

from deploykit.export.maxpool_benchmark import MAXPOOL_IMPLS, POOLS, main, markdown


def test_each_strategy_reads_its_time_over_eager_time():
    rows = [{"pool": (2, 2, 0), "shape": (1, 256, 64, 64), "p50_ms": {"torch": 4.0, "native": 2.0, "window": 10.0}}]
    assert tuple(MAXPOOL_IMPLS) == ("native", "window")
    table = markdown(rows).splitlines()
    assert table[0] == "| pool | input | PyTorch eager p50 | ORT native p50 (vs eager) | ORT window p50 (vs eager) |"
    assert table[2] == "| k=2 s=2 p=0 | 1x256x64x64 | 4.00 ms | 2.00 ms (0.50x) | 10.00 ms (2.50x) |"


def test_main_prints_machine_command_and_table(capsys, deploykit_logging):
    main(["--sizes", "6", "--channels", "2", "--iters", "1", "--warmup", "0", "--threads", "1"])
    captured = capsys.readouterr()
    assert captured.out.startswith("machine: ")
    assert "command: python -m deploykit.export.maxpool_benchmark --sizes 6" in captured.out
    for kernel, stride, padding in POOLS:
        assert f"| k={kernel} s={stride} p={padding} | 1x2x6x6 |" in captured.out
        assert f"deploykit: measured k={kernel} s={stride} p={padding} 1x2x6x6" in captured.err
