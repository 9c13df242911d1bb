"""deploykit's ONNX Runtime library under AddressSanitizer and UndefinedBehaviorSanitizer: its
sources compiled unchanged with -Wall -Wextra -Werror and the sanitizers (where the compiler has
them), against the ONNX Runtime C API headers at $DEPLOYKIT_ORT_INCLUDE_DIR (CI: ../shared),
then driven through the real ONNX Runtime by ort_harness/driver.py with the sanitizer runtimes
preloaded: a memory error or undefined behaviour anywhere in the op's code paths fails it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploykit.errors import EnvironmentProblem
from tests.plugins.native_harness import WARNINGS, find_compiler, sanitizer_flags

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugins" / "dysample"
DRIVER = Path(__file__).resolve().parent / "ort_harness" / "driver.py"


def _runtime(compiler: str, name: str) -> str | None:
    """The sanitizer runtime a process must preload to host a sanitized library (GCC's names)."""
    found = subprocess.run([compiler, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


def test_the_ort_library_runs_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from deploykit.ops.ort_library import ort_include_dir

    try:
        include_dir = ort_include_dir()
    except EnvironmentProblem as exc:
        pytest.skip(f"no ONNX Runtime C API headers to build the library against: {exc}")
    compiler = find_compiler()
    if compiler is None:
        pytest.skip("no C++ compiler (c++ or $CXX) to build the library")
    sanitizers = sanitizer_flags(compiler, str(tmp_path_factory.getbasetemp()))
    preload = [_runtime(compiler, "libasan.so"), _runtime(compiler, "libubsan.so")] if sanitizers else []
    if sanitizers and None in preload:
        sanitizers, preload = (), []
        import warnings

        warnings.warn(f"{compiler} has no libasan.so / libubsan.so to preload into Python: the ONNX Runtime "
                      "library harness runs without sanitizers")
    flags = json.loads((PLUGIN_DIR / "build_flags.json").read_text())
    library = tmp_path / "libdeploykit_ort_sanitized.so"
    build = subprocess.run([compiler, "-std=c++17", "-g", "-O1", "-fPIC", "-shared", "-fopenmp", *WARNINGS,
                            *sanitizers, *flags["cxx"], f"-I{PLUGIN_DIR}", "-isystem", str(include_dir),
                            str(PLUGIN_DIR / "ort_custom_op.cpp"), str(PLUGIN_DIR / "dysample_cpu.cpp"),
                            "-o", str(library)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    env = {**os.environ, "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
           # Python and ONNX Runtime keep allocations until exit on purpose: leaks are not ours to judge
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    result = subprocess.run([sys.executable, str(DRIVER), str(library)], capture_output=True, text=True, env=env,
                            timeout=300)
    output = result.stdout + result.stderr
    print(output.strip().splitlines()[-1] if output.strip() else "no output",
          "(ASan/UBSan)" if sanitizers else "(no sanitizers)")
    assert "AddressSanitizer" not in output and "runtime error:" not in output, output
    summary = re.search(r"(\d+) checks passed, (\d+) failed", result.stdout)
    assert result.returncode == 0 and summary and summary.group(2) == "0", output
    assert int(summary.group(1)) >= 26, output
