"""TensorRT: what runs everywhere (profiles, skips, errors) and what needs TensorRT and a GPU."""

import ctypes
import gc
import importlib.util
import json
import weakref
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from deploykit.backends.trt import TrtRunner
from deploykit.backends.trt_engine import PluginLibraries, Profile, default_profile, parse_profile, profile_from_shapes
from deploykit.cli import main
from deploykit.errors import UserError


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="deploykit")


def _trt_and_gpu() -> str | None:
    """Why the TensorRT tests cannot run here, or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (its builder library is not on this machine's package index)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


_skip_without_trt = pytest.mark.skipif(_trt_and_gpu() is not None, reason=f"TensorRT tests need TensorRT and a GPU: "
                                                                             f"{_trt_and_gpu()}")


def needs_trt(test):
    """A GPU test (pytest -m gpu) that also needs TensorRT (the CUDA graphs timing path among them)."""
    return pytest.mark.gpu(_skip_without_trt(test))


def test_profiles():
    assert parse_profile("input=1x64x16x16/2x64x64x64/4x64x128x128") == (
        "input", Profile((1, 64, 16, 16), (2, 64, 64, 64), (4, 64, 128, 128)))
    assert profile_from_shapes([(1, 64, 32, 32), (2, 64, 37, 45), (3, 64, 27, 20)]) == Profile(
        (1, 64, 27, 20), (1, 64, 32, 32), (3, 64, 37, 45))
    assert default_profile((2, 64, 37, 45)) == Profile((1, 64, 9, 11), (2, 64, 37, 45), (4, 64, 148, 180))
    for bad in ["input=1x64x16x16/2x64x64x64", "1x64x16x16/2x64x64x64/4x64x128x128",
                "input=4x64x16x16/2x64x64x64/4x64x128x128"]:
        with pytest.raises(UserError):
            parse_profile(bad)


class FakeTensorRT:
    """The few parts of the tensorrt module PluginLibraries uses, recording what it is asked."""

    class Logger:
        ERROR = "error"

        def __init__(self, severity):
            self.severity = severity

    def __init__(self, registers_on_load=0, load_library_result="handle"):
        self.plugin_loggers = []
        self.loaded_libraries = []
        self.creators = []
        self.registers_on_load = registers_on_load
        self.load_library_result = load_library_result
        fake = self

        class Registry:
            @property
            def all_creators(self):
                return list(fake.creators)

            def load_library(self, path):
                fake.loaded_libraries.append(path)
                return fake.load_library_result

        self.registry = Registry()

    def init_libnvinfer_plugins(self, logger, namespace):
        self.plugin_loggers.append(weakref.ref(logger))  # the binding keeps only the raw pointer
        return True

    def get_plugin_registry(self):
        return self.registry


def _fake_dlopen(monkeypatch, fake, *exports):
    """ctypes.CDLL stand-in: a library exporting `exports` that registers fake.registers_on_load creators."""

    def cdll(path, mode=0):
        fake.creators.extend(object() for _ in range(fake.registers_on_load))
        return SimpleNamespace(**{name: object() for name in exports})

    monkeypatch.setattr(ctypes, "CDLL", cdll)


def test_tensorrts_plugin_library_gets_one_logger_that_lives_as_long_as_the_process():
    fake = FakeTensorRT()
    libraries = PluginLibraries()
    libraries.load(fake, [])
    libraries.load(fake, [])
    gc.collect()
    assert len(fake.plugin_loggers) == 1, "init_libnvinfer_plugins is called once per process"
    logger = fake.plugin_loggers[0]()
    assert logger is not None and logger.severity == FakeTensorRT.Logger.ERROR


def test_a_library_exporting_getcreators_goes_through_load_library_even_after_registering_on_load(
        monkeypatch, tmp_path):
    # deploykit's library registers its creator when dlopen'ed and exports getCreators:
    # load_library is still called, since only it hands the library TensorRT's logger finder.
    library = tmp_path / "libdeploykit_trt_plugins.so"
    library.write_bytes(b"")
    fake = FakeTensorRT(registers_on_load=1)
    _fake_dlopen(monkeypatch, fake, "getCreators", "setLoggerFinder")
    PluginLibraries().load(fake, [library, library])
    assert fake.loaded_libraries == [str(library.resolve())]


def test_a_library_that_load_library_refuses_is_an_error_unless_it_registered_on_load(
        monkeypatch, tmp_path):
    library = tmp_path / "libother.so"
    library.write_bytes(b"")
    fake = FakeTensorRT(registers_on_load=0, load_library_result=None)
    _fake_dlopen(monkeypatch, fake, "getPluginCreators")
    with pytest.raises(UserError, match="TensorRT could not register the plugins of .*libother.so"):
        PluginLibraries().load(fake, [library])

    refused_but_registered = FakeTensorRT(registers_on_load=2, load_library_result=None)
    _fake_dlopen(monkeypatch, refused_but_registered, "getCreators")
    PluginLibraries().load(refused_but_registered, [library])  # its creators are registered: usable
    assert refused_but_registered.loaded_libraries == [str(library.resolve())]


def test_a_library_without_getcreators_is_only_dlopened(monkeypatch, tmp_path):
    library = tmp_path / "libstatic.so"
    library.write_bytes(b"")
    fake = FakeTensorRT(registers_on_load=1)
    _fake_dlopen(monkeypatch, fake)
    PluginLibraries().load(fake, [library])
    assert fake.loaded_libraries == [] and len(fake.creators) == 1


def test_a_refused_tensor_address_is_an_error_with_tensorrts_message():
    class Context:
        def __init__(self):
            self.bound = []

        def set_tensor_address(self, name, address):
            self.bound.append(name)
            return name != "output"

    runner = SimpleNamespace(context=Context(), _log=SimpleNamespace(last_error=lambda: "misaligned address"))
    tensor = SimpleNamespace(data_ptr=lambda: 256)
    with pytest.raises(UserError, match="TensorRT refused the buffer of tensor 'output': misaligned address"):
        TrtRunner._bind(runner, {"input": tensor, "output": tensor})
    assert runner.context.bound == ["input", "output"]


@pytest.mark.skipif(_trt_and_gpu() is None, reason="TensorRT and a GPU are present: nothing is skipped")
def test_without_tensorrt_trt_is_skipped_with_the_reason_and_the_others_decide(tmp_path):
    report = tmp_path / "r.json"
    result = run("check", "pixel_shuffle", "--backends", "torch,ort,trt", "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    skipped = [r for r in data["results"] if r["backend"] == "trt"]
    assert len(skipped) == 3 and all(r["status"] == "skipped" and r["reason"] for r in skipped)
    assert data["passed"] is True and "skipped" in result.output


@pytest.mark.skipif(_trt_and_gpu() is None, reason="TensorRT and a GPU are present: nothing is skipped")
def test_a_skip_never_passes_alone():
    result = run("check", "pixel_shuffle", "--backends", "trt")
    assert result.exit_code == 2 and "no backend can run here" in result.stderr
    # torch alone is not what was asked to be measured: the exported graph ran nowhere
    bench = run("bench", "pixel_shuffle", "--backends", "torch,trt", "--iters", 1, "--warmup", 0)
    assert bench.exit_code == 2 and "trt: TensorRT is not installed" in bench.stderr


@pytest.mark.skipif(_trt_and_gpu() is None, reason="TensorRT and a GPU are present: nothing is skipped")
def test_build_without_tensorrt_is_one_line(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", "pixel_shuffle", "-o", onnx_path).exit_code == 0
    result = run("build", onnx_path, "-o", tmp_path / "m.engine")
    assert result.exit_code == 2 and result.stderr.startswith("error: TensorRT")


@needs_trt
def test_engine_build_and_parity(tmp_path):
    onnx_path, engine = tmp_path / "m.onnx", tmp_path / "m.engine"
    assert run("export", "dysample", "--target", "trt", "-o", onnx_path).exit_code == 0
    built = run("build", onnx_path, "-o", engine, "--timing-cache", tmp_path / "cache")
    assert built.exit_code == 0, built.output
    checked = run("check", "dysample", "--onnx", onnx_path, "--engine", engine, "--backends", "trt")
    assert checked.exit_code == 0, checked.output


@needs_trt
def test_engine_built_on_the_fly_and_cuda_graph_bench(tmp_path):
    assert run("check", "conv_transpose", "--backends", "torch,trt").exit_code == 0
    bench = run("bench", "conv_transpose", "--backends", "trt", "--cuda-graph", "--iters", 5)
    assert bench.exit_code == 0 and "h2d ms" in bench.output


@needs_trt
def test_parser_errors_name_the_node(tmp_path):
    onnx_path = tmp_path / "p.onnx"
    assert run("export", "dysample", "--dysample-impl", "plugin", "-o", onnx_path).exit_code == 0
    result = run("build", onnx_path, "-o", tmp_path / "p.engine")  # no --plugin: the parser cannot map the node
    assert result.exit_code == 2 and "DySample" in result.stderr


def test_default_profiles_come_from_the_recorded_traced_case_of_every_input():
    from deploykit.backends.trt_engine import traced_case_by_input

    assert traced_case_by_input("2x64x37x45", ["input"]) == {"input": (2, 64, 37, 45)}
    assert traced_case_by_input("image=2x3x10x14,mask=2x1x10x14", ["image", "mask"]) == {
        "image": (2, 3, 10, 14), "mask": (2, 1, 10, 14)}
    assert traced_case_by_input("garbage", ["image", "mask"]) == {} and traced_case_by_input("", ["input"]) == {}
