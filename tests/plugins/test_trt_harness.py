"""The DySample TensorRT plugin, run on the CPU: tests/plugins/trt_harness against each
TensorRT header set (see conftest.py).

The harness compiles the plugin's own sources unchanged (-Wall -Wextra -Werror, under
AddressSanitizer and UndefinedBehaviorSanitizer where the compiler has them), links them
against the CUDA runtime and the harness's test doubles, never against libnvinfer, and runs
every check: creator fields, serialization round trip, clone / attachToContext lifetimes,
output types and shapes, the whole supportsFormatCombination protocol, enqueue's refusals
before any launch, and every library loading route against a plugin registry double.
"""

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.plugins.native_harness import WARNINGS, find_compiler, sanitizer_flags

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugins" / "dysample"
HARNESS_DIR = Path(__file__).resolve().parent / "trt_harness"
PLUGIN_SOURCES = [PLUGIN_DIR / name for name in ("trt_plugin.cpp", "trt_log.cpp", "trt_registration.cpp")]
def _cuda_runtime() -> tuple[Path, Path] | None:
    """(include dir, lib dir) of a CUDA toolkit with cuda_runtime.h and libcudart.so."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(str(Path(nvcc).resolve().parents[1]))
    roots.append("/usr/local/cuda")
    for root in filter(None, roots):
        include = Path(root) / "include"
        if not (include / "cuda_runtime.h").is_file():
            continue
        for lib in [Path(root) / "lib64", *sorted((Path(root) / "targets").glob("*/lib"))]:
            if (lib / "libcudart.so").exists():
                return include, lib
    return None


def _build_harness(compiler: str, include_dir: Path, cuda: tuple[Path, Path], out: Path, sanitizers) -> Path:
    """Compile each source (two at a time, the machine's cores are shared) and link."""
    cuda_include, cuda_lib = cuda
    flags = ["-std=c++17", "-g", "-O0", *WARNINGS, *sanitizers, "-isystem", str(include_dir),
             "-isystem", str(cuda_include), f"-I{PLUGIN_DIR}"]
    sources = PLUGIN_SOURCES + sorted(HARNESS_DIR.glob("*.cpp"))
    objects = [out / f"{source.parent.name}_{source.stem}.o" for source in sources]

    def compile_one(pair):
        source, obj = pair
        return subprocess.run([compiler, *flags, "-c", str(source), "-o", str(obj)], capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for result in pool.map(compile_one, zip(sources, objects)):
            assert result.returncode == 0, result.stdout + result.stderr
    binary = out / "trt_plugin_harness"
    link = subprocess.run([compiler, *sanitizers, *map(str, objects), f"-L{cuda_lib}", "-lcudart",
                           f"-Wl,-rpath,{cuda_lib}", "-o", str(binary)], capture_output=True, text=True)
    assert link.returncode == 0, link.stdout + link.stderr
    return binary


def test_plugin_harness_passes_against_tensorrt_headers(trt_headers, tmp_path, tmp_path_factory):
    compiler = find_compiler()
    if compiler is None:
        pytest.skip("no C++ compiler (c++ or $CXX) to build the plugin harness")
    cuda = _cuda_runtime()
    if cuda is None:
        pytest.skip("no CUDA runtime (cuda_runtime.h and libcudart.so) found: set CUDA_HOME to the CUDA toolkit")
    sanitizers = sanitizer_flags(compiler, str(tmp_path_factory.getbasetemp()))
    binary = _build_harness(compiler, trt_headers, cuda, tmp_path, sanitizers)
    result = subprocess.run([str(binary)], capture_output=True, text=True,
                            env={**os.environ, "UBSAN_OPTIONS": "print_stacktrace=1"})
    output = result.stdout + result.stderr
    print(output.strip().splitlines()[-1] if output.strip() else "no output",
          "(ASan/UBSan)" if sanitizers else "(no sanitizers)")
    summary = re.search(r"(\d+) checks passed, (\d+) failed", result.stdout)
    assert result.returncode == 0 and summary and summary.group(2) == "0", output
    assert int(summary.group(1)) > 0, output
