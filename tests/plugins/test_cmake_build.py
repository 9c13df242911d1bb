"""plugins/ builds with CMake: the CPU library always, the CUDA kernels wherever nvcc is.

Nothing built here runs on a machine without a GPU, but compiling for sm_80..sm_90 with
-Werror catches what a GPU machine would only find later.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def _configure_and_build(build_dir, *options):
    configure = subprocess.run(["cmake", "-S", str(PLUGINS), "-B", str(build_dir), *options],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    build = subprocess.run(["cmake", "--build", str(build_dir), "-j", "2"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    return configure.stdout


def test_cuda_kernels_compile_for_every_target_architecture(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the CUDA kernels cannot be compiled here")
    log = _configure_and_build(tmp_path / "build")
    assert "building dysample_cuda for sm_80;86;89;90" in log
    assert (tmp_path / "build" / "libdysample_cuda.a").is_file()
    assert (tmp_path / "build" / "libdysample_cpu.a").is_file()


def test_without_cuda_the_cpu_library_still_builds_and_says_so(tmp_path):
    log = _configure_and_build(tmp_path / "build", "-DDEPLOYKIT_WITH_CUDA=OFF")
    assert "skipping dysample_cuda" in log
    assert (tmp_path / "build" / "libdysample_cpu.a").is_file()
    assert not (tmp_path / "build" / "libdysample_cuda.a").exists()
