"""The DySample TensorRT plugin's CMake section: skipped cleanly without TensorRT, and a
-Werror compile check of trt_plugin.cpp against TensorRT headers alone.

No TensorRT library or GPU is needed for either: with only headers (TensorRT_INCLUDE_DIR) the
plugin is compiled as an object library and nothing is linked, which still catches a plugin
that no longer matches the IPluginV3 API of that TensorRT release. It runs once per header set
in DEPLOYKIT_TRT_INCLUDE_DIRS (conftest.py).
"""

import shutil
import subprocess
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
SKIP_MESSAGE = ("deploykit: TensorRT not found (set TensorRT_ROOT or TensorRT_INCLUDE_DIR): "
                "skipping the DySample TensorRT plugin")

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def _run(*command):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_without_tensorrt_configure_succeeds_and_says_the_plugin_is_skipped(tmp_path):
    # Python probing off: a tensorrt wheel with headers on this machine would otherwise count
    # as TensorRT, and this test is about its absence.
    build = tmp_path / "build"
    log = _run("cmake", "-S", PLUGINS, "-B", build, "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF")
    assert SKIP_MESSAGE in log
    # The rest of plugins/ is unaffected (the CPU library is the quick one to build).
    _run("cmake", "--build", build, "--target", "dysample_cpu")
    assert (build / "libdysample_cpu.a").is_file()


def test_plugin_compiles_with_werror_against_tensorrt_headers(trt_headers, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the plugin is only built alongside the CUDA kernels")
    build = tmp_path / "build"
    log = _run("cmake", "-S", PLUGINS, "-B", build, f"-DTensorRT_INCLUDE_DIR={trt_headers}")
    assert "compile check of the DySample TensorRT plugin" in log
    _run("cmake", "--build", build, "--target", "deploykit_trt_plugin_check", "-j", "2")
    objects = {path.name for path in build.glob("CMakeFiles/deploykit_trt_plugin_check.dir/**/*.o")}
    assert objects == {"trt_plugin.cpp.o", "trt_log.cpp.o", "trt_registration.cpp.o"}
