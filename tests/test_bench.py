from deploykit.bench import run_bench
from deploykit.spec import load_model


def test_run_bench_reports_every_backend_and_shape_with_ratio_to_torch():
    model = load_model("pixel_shuffle")
    report = run_bench(model, ["torch", "ort"], [(1, 64, 8, 8), (2, 64, 9, 11)], warmup=1, iters=3, threads=1)
    assert [(r.backend, r.shape) for r in report.results] == [
        ("torch", (1, 64, 8, 8)), ("ort", (1, 64, 8, 8)), ("torch", (2, 64, 9, 11)), ("ort", (2, 64, 9, 11))]
    assert all(r.stats.iters == 3 and r.stats.min_ms > 0 for r in report.results)
    assert report.results[0].ratio_to_torch == 1.0
    row = report.as_json()["results"][1]
    assert {"backend", "shape", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "iters"} <= set(row)
    assert report.backends["ort"]["threads"] == 1 and report.backends["torch"]["threads"] == 1
