"""plugins/dysample/build_flags.json is the one place the fused kernel's build flags live: CMake
and deploykit/ops/fused.py (PyTorch's JIT build) both read it. A copy of plugins/ with marker
flags added to the file shows each of them taking what the file says.
"""

import json
import shutil

from deploykit.ops import fused


def _with_markers(cmake, tmp_path):
    """A copy of plugins/ whose build_flags.json carries a marker flag in every shared list."""
    plugins = tmp_path / "plugins"
    shutil.copytree(cmake.plugins, plugins)
    flags_file = plugins / "dysample" / "build_flags.json"
    flags = json.loads(flags_file.read_text())
    flags["cxx"].append("-DDEPLOYKIT_MARKER_CXX")
    flags["cuda"].append("-DDEPLOYKIT_MARKER_CUDA")
    flags["include_dirs"].append("marker_include")
    (plugins / "dysample" / "marker_include").mkdir()
    flags_file.write_text(json.dumps(flags))
    return plugins, flags


def test_cmake_and_the_jit_build_read_the_same_file(cmake, tmp_path, monkeypatch):
    plugins, flags = _with_markers(cmake, tmp_path)
    marker_include = str(plugins / "dysample" / "marker_include")
    cmake.configure(tmp_path / "build", "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF", source=plugins)
    commands = cmake.compile_commands(tmp_path / "build")
    cpu = commands["dysample_cpu.cpp"].split()
    assert set(flags["cxx"]) <= set(cpu) and f"-I{marker_include}" in cpu, cpu
    if "dysample_cuda.cu" in commands:
        cuda = commands["dysample_cuda.cu"].split()
        assert set(flags["cuda"]) <= set(cuda) and f"-I{marker_include}" in cuda, cuda
    # What only the JIT build takes stays out of CMake's commands.
    assert "-DDYSAMPLE_WITH_TORCH" not in cpu

    monkeypatch.setattr(fused, "BUILD_FLAGS", plugins / "dysample" / "build_flags.json")
    jit = fused.extension_flags()
    assert jit["extra_cflags"][:len(flags["cxx"])] == flags["cxx"]
    assert jit["extra_cuda_cflags"][:len(flags["cuda"])] == flags["cuda"]
    assert marker_include in jit["extra_include_paths"]
    assert "-DDYSAMPLE_WITH_TORCH" in jit["extra_cflags"]


def test_no_fp_contraction_in_either_build(cmake, tmp_path):
    """The flags the kernels' float rounding depends on, as both builds get them today."""
    cmake.configure(tmp_path / "build", "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF")
    commands = cmake.compile_commands(tmp_path / "build")
    assert "-ffp-contract=off" in commands["dysample_cpu.cpp"].split()
    assert "-ffp-contract=off" in fused.extension_flags()["extra_cflags"]
    assert "--fmad=false" in fused.extension_flags()["extra_cuda_cflags"]
    if "dysample_cuda.cu" in commands:  # nvcc found
        assert "--fmad=false" in commands["dysample_cuda.cu"].split()
