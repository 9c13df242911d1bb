"""deploykit's ONNX Runtime custom-op library: ``deploykit::DySample`` for ONNX Runtime's CPU
provider and, where onnxruntime-gpu and nvcc are present, its CUDA provider
(plugins/dysample/ort_custom_op.cpp, the fused kernel's own sources).

pip's onnxruntime wheels carry no C headers, so the library is built on first use against the C
API headers found at ``$DEPLOYKIT_ORT_INCLUDE_DIR`` (or a system ONNX Runtime install), into
the deploykit cache, keyed by the sources, build flags, compiler and headers, one build at a
time; later uses load the cached build. ``$DEPLOYKIT_ORT_LIBRARY`` names a library built
elsewhere (CMake's ``deploykit_ort_ops``) to use as it is.

    import onnxruntime as ort
    from deploykit.ops import ort_library_path

    options = ort.SessionOptions()
    options.register_custom_ops_library(str(ort_library_path()))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from deploykit.errors import EnvironmentProblem
from deploykit.ops.native_build import build_lock, cache_dir, compilers_end_with_us, disk_full, usable_cache_dir

logger = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "dysample"
BUILD_FLAGS = PLUGIN_DIR / "build_flags.json"
INCLUDE_ENV = "DEPLOYKIT_ORT_INCLUDE_DIR"
LIBRARY_ENV = "DEPLOYKIT_ORT_LIBRARY"
HEADER = "onnxruntime_c_api.h"
# The C API version the library asks for (ort_custom_op.cpp's kApiVersion): ONNX Runtime 1.17.
MIN_API_VERSION = 17
LIBRARY_NAME = "libdeploykit_ort.so"
_CPU_SOURCES = ("ort_custom_op.cpp", "dysample_cpu.cpp")
_CUDA_SOURCE = "dysample_cuda.cu"
_SYSTEM_INCLUDES = ("/usr/local/include/onnxruntime", "/usr/include/onnxruntime")
_HEADERS_FIX = (f"set {INCLUDE_ENV} to the include/ folder of an ONNX Runtime release (1.17 or newer; "
                f"pip's onnxruntime ships no headers), or {LIBRARY_ENV} to a built libdeploykit_ort.so")
_built: dict[bool, Path] = {}


class OrtLibraryMisconfigured(EnvironmentProblem):
    """DEPLOYKIT_ORT_LIBRARY or DEPLOYKIT_ORT_INCLUDE_DIR names something unusable: the user asked
    for this library, so every command stops (exit 2) rather than running without it."""


def ort_include_dir() -> Path:
    """The folder holding ONNX Runtime's C API header; an environment error (exit 2) naming the
    fix when there is none, or when it is older than the C API the library needs
    (OrtLibraryMisconfigured when DEPLOYKIT_ORT_INCLUDE_DIR names it)."""
    value = os.environ.get(INCLUDE_ENV, "").strip()
    candidates = [Path(value).expanduser()] if value else [Path(folder) for folder in _SYSTEM_INCLUDES]
    problem = OrtLibraryMisconfigured if value else EnvironmentProblem
    for folder in candidates:
        header = folder / HEADER
        if header.is_file():
            version = _api_version(header, problem)
            if version is None or version < MIN_API_VERSION:
                raise problem(f"{header} is ONNX Runtime C API version {version or 'unknown'}; deploykit's "
                              f"custom-op library needs {MIN_API_VERSION} (ONNX Runtime 1.17) or newer", _HEADERS_FIX)
            return folder.absolute()
    where = f"{INCLUDE_ENV}={value} holds no {HEADER}" if value else f"{INCLUDE_ENV} is not set"
    raise problem(f"the ONNX Runtime custom-op library needs ONNX Runtime's C API headers: {where}", _HEADERS_FIX)


def _api_version(header: Path, problem=EnvironmentProblem) -> int | None:
    try:
        text = header.read_bytes()
    except OSError as exc:
        raise problem(f"cannot read {header} ({exc.strerror or type(exc).__name__})", _HEADERS_FIX) from None
    match = re.search(rb"#define\s+ORT_API_VERSION\s+(\d+)", text)
    return int(match.group(1)) if match else None


def cuda_wanted() -> bool:
    """Build the CUDA provider's kernel too: onnxruntime-gpu is installed and nvcc is here."""
    try:
        import onnxruntime as ort
    except Exception:  # noqa: BLE001 - no usable ONNX Runtime: its own backend says why
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers() and _nvcc() is not None


def ort_library_path(cuda: bool | None = None) -> Path:
    """The library to pass to ``SessionOptions.register_custom_ops_library``, built if needed.

    ``cuda``: include the CUDA provider's kernel (None: where ``cuda_wanted()``; a CUDA build
    that fails then falls back to the CPU library, saying why). Raises EnvironmentProblem (one
    line and the fix) when it cannot be had here, OrtLibraryMisconfigured when the environment
    names an unusable library or header folder."""
    given = os.environ.get(LIBRARY_ENV, "").strip()
    if given:
        path = Path(given).expanduser().absolute()
        if not path.is_file():
            raise OrtLibraryMisconfigured(f"{LIBRARY_ENV}={given} is not a file",
                                          "point it at a built libdeploykit_ort.so, or unset it to build one here")
        return path
    automatic = cuda is None
    cuda = cuda_wanted() if automatic else cuda
    if cuda not in _built:
        try:
            _built[cuda] = _build(cuda)
        except OrtLibraryMisconfigured:
            raise
        except EnvironmentProblem as exc:
            if not (automatic and cuda):
                raise
            logger.warning("the CUDA build of the ONNX Runtime custom-op library failed (%s); using the CPU "
                           "library", exc)
            _built[cuda] = ort_library_path(cuda=False)
    return _built[cuda]


def library_problem() -> str | None:
    """Why the library cannot be had here (one line, with the fix), or None once it is built;
    raises OrtLibraryMisconfigured when the environment names an unusable one."""
    try:
        ort_library_path()
    except OrtLibraryMisconfigured:
        raise  # asked for by name: never quietly done without
    except EnvironmentProblem as exc:
        return str(exc)
    return None


def _flags() -> dict:
    flags = json.loads(BUILD_FLAGS.read_text())
    return {"cxx": [*flags["cxx"], *flags["ort_library"]["cxx"]],
            "cuda": [*flags["cuda"], *flags["ort_library"]["cuda"]],
            "ld": list(flags["ort_library"]["ld"]),
            "include_dirs": [str((BUILD_FLAGS.parent / folder).resolve()) for folder in flags["include_dirs"]],
            "cuda_architectures": list(flags["cuda_architectures"])}


def _compiler() -> str:
    compiler = shutil.which(os.environ.get("CXX") or "c++")
    if compiler is None:
        raise EnvironmentProblem("building the ONNX Runtime custom-op library needs a C++ compiler, and none was "
                                 "found (c++ or $CXX)", "install g++ (GCC 12 or newer), or set CXX")
    return compiler


def _nvcc() -> str | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return shutil.which("nvcc")


def _cuda_root(nvcc: str) -> Path:
    """The toolkit nvcc belongs to: CUDA_HOME / CUDA_PATH, nvcc's own folder's parent, or
    /usr/local/cuda (where a wrapper script on PATH hides it), whichever has cuda_runtime.h."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), str(Path(nvcc).resolve().parents[1]),
                  "/usr/local/cuda"]
    for root in filter(None, candidates):
        if (Path(root) / "include" / "cuda_runtime.h").is_file():
            return Path(root)
    raise EnvironmentProblem(f"no CUDA toolkit with include/cuda_runtime.h was found beside {nvcc}",
                             "set CUDA_HOME to the CUDA toolkit's folder")


def _cuda_lib_dir(root: Path) -> Path:
    for lib in [root / "lib64", root / "lib", *sorted((root / "targets").glob("*/lib"))]:
        if (lib / "libcudart.so").exists():
            return lib
    raise EnvironmentProblem(f"the CUDA toolkit at {root} has no libcudart.so",
                             "install the CUDA toolkit's runtime, or set CUDA_HOME to a complete toolkit")


def library_description(path: Path) -> str:
    """Which kernels a library holds, for the people who ship it: deploykit's own builds say so
    in their cache folder's name; a library named by DEPLOYKIT_ORT_LIBRARY is taken as given."""
    if os.environ.get(LIBRARY_ENV, "").strip():
        return f"{path}, from {LIBRARY_ENV}: its kernels are as it was built"
    kernels = "CPU and CUDA kernels" if path.parent.name.startswith("deploykit_ort-cuda-") else "CPU kernel only"
    return f"{kernels}, built by deploykit"


def _version_line(program: str) -> str:
    try:
        result = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return program
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else program


def sources_key(compiler: str, nvcc: str | None) -> str:
    """What a build is made of besides the headers: the sources and flags, the compilers."""
    digest = hashlib.sha256(f"{_version_line(compiler)}|{nvcc and _version_line(nvcc)}".encode())
    for path in sorted(PLUGIN_DIR.iterdir()):
        if path.suffix in {".h", ".cpp", ".cu", ".json"}:
            digest.update(path.name.encode() + path.read_bytes())
    return f"deploykit_ort-{'cuda' if nvcc else 'cpu'}-{digest.hexdigest()[:16]}"


def build_dir_name(include_dir: Path, compiler: str, nvcc: str | None) -> str:
    """The build's folder in the cache: keyed by the sources and flags, the compilers, then the
    headers it was built against."""
    header = hashlib.sha256(_read_header(include_dir)).hexdigest()[:12]
    return f"{sources_key(compiler, nvcc)}-{header}"


def _read_header(include_dir: Path) -> bytes:
    try:
        return (include_dir / HEADER).read_bytes()
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read {include_dir / HEADER} ({exc.strerror or type(exc).__name__})",
                                 _HEADERS_FIX) from None


def _build(cuda: bool) -> Path:
    compiler = _compiler()
    nvcc = _nvcc() if cuda else None
    if cuda and nvcc is None:
        raise EnvironmentProblem("building the CUDA kernel of the ONNX Runtime custom-op library needs nvcc, "
                                 "which was not found", "put the CUDA toolkit's bin/ on PATH, or set CUDA_HOME")
    try:
        include_dir = ort_include_dir()
    except OrtLibraryMisconfigured:
        raise
    except EnvironmentProblem:
        # No headers here, but a build of these very sources made where they were is as good
        # (the library asks for C API 17, whichever headers it was compiled against).
        made = sorted(cache_dir().glob(f"{sources_key(compiler, nvcc)}-*/{LIBRARY_NAME}"),
                      key=lambda path: path.stat().st_mtime)
        if made:
            return made[-1]
        raise
    library = cache_dir() / build_dir_name(include_dir, compiler, nvcc) / LIBRARY_NAME
    if library.is_file():  # renamed into place whole: no lock, and no write, needed to use it
        return library
    build_dir = usable_cache_dir() / library.parent.name
    try:
        build_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create {build_dir} ({exc.strerror})",
                                 "set DEPLOYKIT_CACHE to a folder you can write") from None
    what = "the ONNX Runtime custom-op library"
    with build_lock(build_dir, what), compilers_end_with_us():
        if library.is_file():
            return library
        logger.warning("building %s (%s) into %s; first use only (seconds; a minute with CUDA)...",
                       what, "CPU and CUDA" if nvcc else "CPU", build_dir)
        try:
            _compile_and_link(build_dir, library, include_dir, compiler, nvcc)
        except subprocess.CalledProcessError as exc:
            log = build_dir / "build.log"
            log.write_text(f"$ {' '.join(exc.cmd)}\n{exc.stdout or ''}{exc.stderr or ''}")
            if "no space left on device" in (exc.stderr or "").lower() or disk_full(exc, build_dir):
                raise EnvironmentProblem(f"no space left on the device of the deploykit cache {build_dir} while "
                                         f"building {what}", "free some space there, or set DEPLOYKIT_CACHE to "
                                         "a folder on another disk") from None
            raise EnvironmentProblem(f"building {what} failed; the compiler's output is in {log}",
                                     "check the compiler (GCC 12+ or Clang 15+) and the ONNX Runtime headers "
                                     f"at {include_dir}") from None
    return library


def _compile_and_link(build_dir: Path, library: Path, include_dir: Path, compiler: str, nvcc: str | None) -> None:
    """Objects into the build folder, the library linked under a temporary name then renamed, so a
    half-written library is never loaded."""
    flags = _flags()
    includes = [f"-I{folder}" for folder in flags["include_dirs"]] + ["-isystem", str(include_dir)]
    defines, link = [], []
    if nvcc:
        root = _cuda_root(nvcc)
        lib_dir = _cuda_lib_dir(root)
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in flags["cuda_architectures"]]
        cuda_object = build_dir / "dysample_cuda.o"
        _run([nvcc, "-std=c++17", *flags["cuda"], *gencode, *(f"-I{d}" for d in flags["include_dirs"]),
              "-c", str(PLUGIN_DIR / _CUDA_SOURCE), "-o", str(cuda_object)])
        defines = ["-DDEPLOYKIT_ORT_WITH_CUDA", "-isystem", str(root / "include")]
        link = [str(cuda_object), f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}", "-lcudart"]
    staged = build_dir / f".{LIBRARY_NAME}.{os.getpid()}"
    _run([compiler, "-std=c++17", *flags["cxx"], *includes, *defines, *(str(PLUGIN_DIR / s) for s in _CPU_SOURCES),
          *link, *flags["ld"], "-o", str(staged)])
    os.replace(staged, library)


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)
