from deploykit.ops.strategy_benchmark import STRATEGIES, main, markdown, run


def test_every_strategy_is_timed_beside_eager_with_its_op_breakdown():
    rows = run([6], [2], ["lp", "pl"], channels=8, groups=2, warmup=0, iters=2, threads=1, profile_runs=1)
    assert [(r["style"], r["shape"]) for r in rows] == [("lp", (1, 8, 6, 6)), ("pl", (1, 8, 6, 6))]
    for row in rows:
        assert set(row["p50_ms"]) == {"torch", *STRATEGIES} and all(v > 0 for v in row["p50_ms"].values())
        assert "GridSample" in row["ops"]["standard"] and "GridSample" not in row["ops"]["gather"]
        assert "RoiAlign" in row["ops"]["roialign"]
        for shares in row["ops"].values():
            assert abs(sum(shares.values()) - 1.0) < 1e-6
    table = markdown(rows).splitlines()
    assert table[0].startswith("| input | scale | style | PyTorch eager p50 |") and "(vs eager)" in table[0]


def test_main_prints_machine_command_and_tables(capsys):
    main(["--sizes", "5", "--scales", "2", "--styles", "lp", "--channels", "4", "--groups", "1",
          "--iters", "1", "--warmup", "0", "--profile-runs", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "command: python -m deploykit.ops.strategy_benchmark --sizes 5" in out
    assert "| 1x4x5x5 | 2 | lp | gather |" in out
