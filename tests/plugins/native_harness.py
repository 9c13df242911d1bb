"""What the native harnesses share (the TensorRT plugin's, the ONNX Runtime library's): the
compiler, warnings as errors, and AddressSanitizer + UBSan where the compiler has them."""

import functools
import os
import shutil
import subprocess
import warnings
from pathlib import Path

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def find_compiler() -> str | None:
    return shutil.which(os.environ.get("CXX") or "c++")


@functools.lru_cache(maxsize=None)
def sanitizer_flags(compiler: str, work: str) -> tuple[str, ...]:
    """SANITIZERS if this compiler builds and runs a program with them, else () with a warning."""
    probe = Path(work) / "sanitizer_probe"
    probe.mkdir(exist_ok=True)
    source = probe / "probe.cpp"
    source.write_text("int main() { return 0; }\n")
    build = subprocess.run([compiler, *SANITIZERS, str(source), "-o", str(probe / "probe")],
                           capture_output=True, text=True)
    reason = build.stderr.strip().splitlines()[-1:] if build.returncode else None
    if reason is None:
        run = subprocess.run([str(probe / "probe")], capture_output=True, text=True)
        reason = run.stderr.strip().splitlines()[-1:] if run.returncode else None
    if reason is not None:
        warnings.warn(f"{compiler} cannot build and run with {' '.join(SANITIZERS)} "
                      f"({' '.join(reason) or 'no message'}): the harness runs without them")
        return ()
    return tuple(SANITIZERS)
