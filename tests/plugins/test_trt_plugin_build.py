"""The DySample TensorRT plugin's CMake section: skipped cleanly without TensorRT, a -Werror
compile check of trt_plugin.cpp against TensorRT headers alone, and the plugin library linked
against a TensorRT installation (TensorRT::nvinfer, from cmake/FindTensorRT.cmake).

No TensorRT library or GPU is needed for any of them: with only headers (TensorRT_INCLUDE_DIR)
the plugin is compiled as an object library and nothing is linked, which still catches a plugin
that no longer matches the IPluginV3 API of that TensorRT release; the link runs against a stub
libnvinfer. Each runs once per header set in DEPLOYKIT_TRT_INCLUDE_DIRS (conftest.py).
"""

import shutil
import subprocess

import pytest

SKIP_MESSAGE = ("deploykit: TensorRT not found (set TensorRT_ROOT or TensorRT_INCLUDE_DIR): "
                "skipping the DySample TensorRT plugin")
TRT_SOURCES = {"trt_plugin.cpp", "trt_log.cpp", "trt_registration.cpp"}


def test_without_tensorrt_configure_succeeds_and_says_the_plugin_is_skipped(cmake, tmp_path):
    # Python probing off: a tensorrt wheel with headers on this machine would otherwise count
    # as TensorRT, and this test is about its absence.
    build = tmp_path / "build"
    log = cmake.configure(build, "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF").stdout
    assert SKIP_MESSAGE in log
    # The rest of plugins/ is unaffected (the CPU library is the quick one to build).
    cmake.build(build, "dysample_cpu")
    assert (build / "libdysample_cpu.a").is_file()


def test_a_tensorrt_path_without_headers_is_an_error_not_a_skip(cmake, tmp_path):
    result = cmake.configure(tmp_path / "build", f"-DTensorRT_ROOT={tmp_path / 'typo'}", check=False)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())  # CMake wraps long messages
    assert f"deploykit: no NvInferRuntime.h found from TensorRT_ROOT={tmp_path / 'typo'}" in message


def test_plugin_compiles_with_werror_against_tensorrt_headers(cmake, trt_headers, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the plugin is only built alongside the CUDA kernels")
    build = tmp_path / "build"
    log = cmake.configure(build, f"-DTensorRT_INCLUDE_DIR={trt_headers}").stdout
    assert "compile check of the DySample TensorRT plugin" in log
    cmake.build(build, "deploykit_trt_plugin_check")
    objects = {path.name for path in build.glob("CMakeFiles/deploykit_trt_plugin_check.dir/**/*.o")}
    assert objects == {"trt_plugin.cpp.o", "trt_log.cpp.o", "trt_registration.cpp.o"}
    commands = cmake.compile_commands(build)
    for source in TRT_SOURCES:
        flags = commands[source].split()
        assert "-Werror" in flags, commands[source]
        # A system include, so that -Werror applies to our code and not to TensorRT's headers.
        assert flags[flags.index(str(trt_headers)) - 1] == "-isystem", commands[source]


def test_plugin_library_links_against_tensorrt_nvinfer(cmake, trt_headers, trt_version, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the plugin is only built alongside the CUDA kernels")
    root = tmp_path / "TensorRT"
    (root / "lib").mkdir(parents=True)
    (root / "include").symlink_to(trt_headers)
    # A stub with the one symbol the plugin takes from libnvinfer, under a wheel's file name
    # (versioned only, no libnvinfer.so symlink).
    stub = tmp_path / "stub.cpp"
    stub.write_text('extern "C" void* getPluginRegistry() { return nullptr; }\n')
    compiled = subprocess.run(["c++", "-shared", "-fPIC", "-Wl,-soname,libnvinfer.so.10", str(stub),
                               "-o", str(root / "lib" / "libnvinfer.so.10")], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    build = tmp_path / "build"
    # One architecture: this is about linking, test_cmake_build.py compiles all four.
    log = cmake.configure(build, f"-DTensorRT_ROOT={root}", "-DDEPLOYKIT_CUDA_ARCHITECTURES=80").stdout
    assert (f"building deploykit_trt_plugins (DySample TensorRT plugin) against TensorRT {trt_version}"
            f" from TensorRT_ROOT={root}") in log
    cmake.build(build, "deploykit_trt_plugins")  # links with --no-undefined
    dynamic = subprocess.run(["readelf", "-d", str(build / "libdeploykit_trt_plugins.so")],
                             capture_output=True, text=True)
    assert dynamic.returncode == 0 and "Shared library: [libnvinfer.so.10]" in dynamic.stdout, dynamic.stdout
    # lint --plugin accepts the nodes a library names: the built one names DySample
    from deploykit.export.lint import lint

    assert lint(_plugin_graph(), "trt", [build / "libdeploykit_trt_plugins.so"]) == []


def _plugin_graph():
    """One deploykit::DySample node, as export writes it."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("DySample", ["x", "offset"], ["y"], domain="deploykit", scale=2, groups=4,
                            plugin_version="1", plugin_namespace="deploykit")
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("x", "offset", "y")]
    graph = helper.make_graph([node], "g", values[:2], values[2:])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("deploykit", 1)])
