"""The HTML report: valid, self-contained, its figures real PNGs, and visible in a browser."""

import base64
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from deploykit.files import MANIFEST

pytest.importorskip("matplotlib", reason="the HTML report needs matplotlib: pip install -e '.[test]'")

from matplotlib import colormaps  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from deploykit.latency import summarize  # noqa: E402
from deploykit.check import CheckReport, CheckResult, run_check  # noqa: E402
from deploykit.compare import compare, error_picture, failed, tolerance_for  # noqa: E402
from deploykit.errors import UserError  # noqa: E402
from deploykit.export.onnx_export import export_onnx  # noqa: E402
from deploykit.html_report import HEATMAP_CMAP, figures_folder, write_html_report  # noqa: E402
from deploykit.model_io import format_shape  # noqa: E402
from deploykit.spec import load_model  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHAPES = [(2, 16, 9, 11), (1, 16, 12, 7)]
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    """DySample checked on torch and ONNX Runtime, with the real outputs' pictures and timings."""
    work = tmp_path_factory.mktemp("html")
    model = load_model("dysample", {"in_channels": "16"})
    onnx_path = export_onnx(model, work / "model.onnx", trace_shape=SHAPES[0]).path
    report = run_check(model, ["torch", "ort"], SHAPES, tolerance=tolerance_for("fp32"), onnx_path=onnx_path,
                       threads=1, pictures=True, latency_iters=5)
    pictures, latency = report.pictures, report.latency
    path = work / "report.html"
    written = write_html_report(path, report, pictures, latency)
    return path, written, pictures, latency, report


@pytest.fixture
def small_report():
    """A hand-made report with every kind of row: a pass, a FAIL with its reason (a seam every
    2 columns), a skipped backend; a spec with characters HTML must escape."""
    shape = (1, 4, 16, 24)
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(shape).astype(np.float32)
    seam = ref.copy()
    seam[0, 1, :, ::2] += 1e-2
    tolerance = tolerance_for("fp32")
    report = CheckReport(spec="my<model>&co", seed=3, tolerance=tolerance, onnx=None,
                         backends={"torch": {"device": "cpu"}, "ort": {"device": "<cpu>"}})
    report.results = [CheckResult("torch", shape, "output", compare(ref, ref.copy(), tolerance)),
                      CheckResult("ort", shape, "output", compare(ref, seam, tolerance)),
                      CheckResult("ort", (2, 4, 8, 8), "output", failed("backend ort failed: <Resize> rejected")),
                      CheckResult("trt", shape, None, None, skipped="no GPU & no TensorRT")]
    pictures = {("torch", shape, "output"): error_picture(ref, ref.copy()),
                ("ort", shape, "output"): error_picture(ref, seam)}
    latency = {("torch", shape): summarize([2.0, 2.2, 2.1], batch=1), ("ort", shape): summarize([1.0, 1.5], batch=1),
               ("ort", (2, 4, 8, 8)): summarize([3.0], batch=2)}  # no torch baseline at that shape
    return report, pictures, latency


class _HtmlChecker(HTMLParser):
    """Records the doctype, images, every URL-bearing attribute, and unbalanced tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.doctype, self.open, self.problems, self.images, self.urls, self.text = None, [], [], [], [], []

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [value for key, value in attrs.items() if key in ("src", "href", "srcset", "action", "data")]
        if tag == "img":
            self.images.append(attrs)
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag not in VOID_TAGS:
            self.problems.append(f"<{tag}/> is not a void element")
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.open.pop()

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1] if self.open else 'nothing'}")
        else:
            self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _HtmlChecker:
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    assert text.startswith("<!DOCTYPE html>") and checker.doctype == "DOCTYPE html"
    assert not checker.problems and not checker.open, (checker.problems, checker.open)
    return checker


def _embedded_pngs(checker: _HtmlChecker) -> list[bytes]:
    pngs = []
    for image in checker.images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix) and image.get("alt")
        data = base64.b64decode(image["src"][len(prefix):], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        pixels = imread(BytesIO(data))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400
        pngs.append(data)
    return pngs


def test_report_is_valid_self_contained_html_with_the_figures_beside_it(real_report):
    path, written, pictures, latency, report = real_report
    text = path.read_text(encoding="ascii")
    checker = _parse(text)
    pngs = _embedded_pngs(checker)
    assert len(pngs) == 2 * len(pictures) + len({shape for _, shape in latency})
    assert all(url.startswith("data:image/png;base64,") for url in checker.urls)
    assert not re.search(r"https?:|<script|<link|<iframe|url\(|@import", text, re.IGNORECASE)

    folder = figures_folder(path)
    assert folder == path.parent / "report_files" and written[0] == path
    assert sorted(written[1:]) == sorted(p for p in folder.iterdir() if p.name != MANIFEST)
    assert sorted(p.read_bytes() for p in written[1:]) == sorted(pngs)  # the same figures, as files
    for shape in SHAPES:
        for backend in ("torch", "ort"):
            for kind in ("heatmap", "histogram"):
                assert (folder / f"{backend}_{format_shape(shape)}_output_{kind}.png").is_file()
        assert (folder / f"latency_{format_shape(shape)}.png").is_file()

    page_text = " ".join(checker.text)
    assert page_text.count("pass") >= len(report.results) and "FAIL" not in page_text
    for result in report.results:
        assert f"{result.metrics.max_abs:.3g}" in page_text
    assert "onnxruntime=" in page_text and "No latency data" not in page_text


def test_failures_skips_and_missing_latency_are_shown_and_text_is_escaped(tmp_path, small_report):
    report, pictures, _ = small_report
    path = tmp_path / "r.html"
    write_html_report(path, report, pictures, latency={})
    text = path.read_text(encoding="ascii")
    checker = _parse(text)
    page_text = " ".join(checker.text)
    assert "my<model>&co" in page_text and "<model>" not in text and "&lt;model&gt;&amp;co" in text
    assert "FAIL" in page_text and "values outside atol=0.0001" in page_text
    assert "backend ort failed: <Resize> rejected" in page_text and "<Resize>" not in text
    assert "skipped" in page_text and "no GPU & no TensorRT" in page_text
    assert "parity FAILED" in page_text and "No latency data" in page_text
    assert len(_embedded_pngs(checker)) == 4  # heatmap and histogram for each picture, no latency chart


def test_hostile_backend_output_and_reason_text_is_escaped_everywhere(tmp_path):
    """Names from plugins, models and runtimes reach the page as text, in cells, captions and alt
    attributes alike: never as markup, and control characters shown as \\xNN."""
    shape = (1, 2, 8, 8)
    ref = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    hostile, quotes = "<script>alert(1)</script>", "\"&'"
    tolerance = tolerance_for("fp32")
    report = CheckReport(spec="spec\x1b[31m", seed=0, tolerance=tolerance, onnx=None,
                         backends={hostile: {"device": quotes}})
    report.results = [CheckResult(hostile, shape, quotes, compare(ref, ref + 1.0, tolerance)),
                      CheckResult("ort", shape, None, None, skipped=f"{hostile} {quotes}")]
    path = tmp_path / "r.html"
    write_html_report(path, report, {(hostile, shape, quotes): error_picture(ref, ref + 1.0)},
                      {(hostile, shape): summarize([1.0], batch=1)})
    text = path.read_text(encoding="ascii")
    checker = _parse(text)
    assert "<script" not in text.lower() and "\x1b" not in text
    page_text = " ".join(checker.text)
    assert page_text.count(hostile) >= 3 and f"device={quotes}" in page_text and f"{hostile} {quotes}" in page_text
    assert "spec\\x1b[31m" in page_text
    alts = [image["alt"] for image in checker.images]  # the latency chart, the heatmap, the histogram
    assert len(alts) == 3 and all(alt.startswith(f"{hostile} 1x2x8x8 output {quotes}:") for alt in alts[1:])


def test_without_jinja2_says_how_to_install_it_and_writes_nothing(tmp_path, small_report, monkeypatch):
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(UserError, match="needs jinja2") as caught:
        write_html_report(tmp_path / "r.html", *small_report)
    assert "deploykit-vision[html]" in caught.value.fix and list(tmp_path.iterdir()) == []


def test_latency_charts_with_and_without_a_torch_baseline(tmp_path, small_report):
    report, pictures, latency = small_report
    written = write_html_report(tmp_path / "r.html", report, pictures, latency)
    names = {p.name for p in written}
    assert {"latency_1x4x16x24.png", "latency_2x4x8x8.png"} <= names
    assert len(_embedded_pngs(_parse(written[0].read_text()))) == 6


def test_existing_report_or_figures_refused_without_force(tmp_path, small_report):
    report, pictures, latency = small_report
    path = tmp_path / "r.html"
    write_html_report(path, report, pictures, latency)
    before = path.read_bytes()
    with pytest.raises(UserError, match="already exists.*--force"):
        write_html_report(path, report, pictures, latency)
    assert path.read_bytes() == before

    path.unlink()  # the figures folder alone is enough to refuse
    with pytest.raises(UserError, match="r_files already exists"):
        write_html_report(path, report, pictures, latency)
    assert not path.exists()

    mine = figures_folder(path) / "mine.png"  # the user's file, which deploykit did not write
    mine.write_bytes(b"the user's")
    previous = {p.name for p in figures_folder(path).iterdir()}
    written = write_html_report(path, report, pictures, {}, force=True)  # no latency charts this time
    assert mine.read_bytes() == b"the user's" and all(p.exists() for p in written)
    assert any(name.startswith("latency_") for name in previous), "the first report drew latency charts"
    # what deploykit wrote before and not now is removed; the user's file is kept
    assert sorted(p for p in figures_folder(path).iterdir() if p.name != MANIFEST) == sorted([*written[1:], mine])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_without_matplotlib_says_how_to_install_it_and_writes_nothing(tmp_path, small_report, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(UserError, match="needs matplotlib") as caught:
        write_html_report(tmp_path / "r.html", *small_report)
    assert "deploykit-vision[html]" in caught.value.fix and list(tmp_path.iterdir()) == []


def test_a_4096_square_output_makes_a_small_figure(tmp_path):
    shape = (1, 1, 4096, 4096)
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(shape, dtype=np.float32)
    out = ref + rng.uniform(-1e-5, 1e-5, shape).astype(np.float32)  # noise: the worst case for PNG size
    report = CheckReport(spec="big", seed=0, tolerance=tolerance_for("fp32"), onnx=None)
    written = write_html_report(tmp_path / "r.html", report, {("ort", shape, "output"): error_picture(ref, out)}, {})
    heatmap = figures_folder(tmp_path / "r.html") / "ort_1x1x4096x4096_output_heatmap.png"
    assert heatmap in written and heatmap.stat().st_size < 1_000_000
    assert written[0].stat().st_size < 2_000_000


def _chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        pytest.skip("no chromium to screenshot the HTML report: apt-get install chromium "
                    "(.ci/run installs it when it can)")
    return found


def _screenshot(chromium: str, page: Path, work: Path) -> Path:
    shot = work / f"{page.stem}.png"
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={work / (page.stem + '-profile')}", "--hide-scrollbars",
               "--window-size=1200,3000", f"--screenshot={shot}", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and shot.is_file(), f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return shot


def _heatmap_pixels(screenshot: Path) -> int:
    """Pixels strongly coloured and close to a colour of the heatmap colormap: the page's text
    and tables are black and grey on white, and the other charts use other colours."""
    rgb = np.rint(imread(screenshot)[..., :3] * 255).astype(np.int32).reshape(-1, 3)
    packed, counts = np.unique((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2], return_counts=True)
    colours = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1)
    strong = colours.max(axis=1) - colours.min(axis=1) >= 50
    colours, counts = colours[strong], counts[strong]
    palette = np.rint(colormaps[HEATMAP_CMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.int32)
    distance = np.abs(colours[:, None, :] - palette[None, :, :]).max(axis=2).min(axis=1)
    return int(counts[distance <= 6].sum())


def test_browser_screenshot_shows_the_figures(real_report, tmp_path):
    chromium = _chromium()
    path = real_report[0]
    without_images = tmp_path / "without_images.html"
    without_images.write_text(re.sub(r"<img [^>]*>", "", path.read_text()))
    with_images = _heatmap_pixels(_screenshot(chromium, path, tmp_path))
    baseline = _heatmap_pixels(_screenshot(chromium, without_images, tmp_path))
    # at least three heatmaps with their colour bars lie in the first 3000 pixels of the page
    # (about 380,000 such pixels when this was written); broken images give none
    assert with_images > 150_000 and baseline < 1_000, (with_images, baseline)


def test_outputs_whose_figure_names_collide_each_keep_their_figures(tmp_path):
    from tests.cli_helpers import run

    report = tmp_path / "keys.html"
    result = run("check", "tests.user_models:colliding_keys", "--shape", "1x3x8x8", "--html", report)
    assert result.exit_code == 0, result.output
    figures = sorted(p.name for p in (tmp_path / "keys_files").glob("*1x3x8x8*.png"))  # not the proof shapes
    heatmaps = [name for name in figures if "heatmap" in name]
    assert len(heatmaps) == 4 and len(set(heatmaps)) == 4, figures  # torch and ort, two outputs each
