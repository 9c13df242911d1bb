from deploykit.ops.benchmark import main, markdown, run


def test_cpu_benchmark_compares_both_implementations_side_by_side():
    rows = run((1, 8, 6, 5), 2, 4, "cpu", warmup=1, iters=2, threads=1, peak_gbs=100.0)
    assert [(r["impl"], r["dtype"]) for r in rows] == [("reference", "fp32"), ("fused", "fp32")]
    assert rows[0]["speedup"] == 1.0 and all(r["gbs"] > 0 and 0 < r["peak_fraction"] for r in rows)
    table = markdown(rows).splitlines()
    assert table[0].startswith("| sample step |") and len(table) == 4


def test_main_prints_machine_command_and_table(capsys):
    main(["--shape", "1x4x5x5", "--groups", "2", "--iters", "2", "--warmup", "0"])
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "command: python -m deploykit.ops.benchmark --shape 1x4x5x5" in out
    assert "| fused | fp32 |" in out
