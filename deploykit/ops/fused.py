"""``torch.ops.deploykit.dysample_sample``: the fused C++/CUDA kernel from plugins/dysample.

Built on first use with PyTorch's JIT extension builder (ninja), into a cache keyed by the
sources and their build flags (plugins/dysample/build_flags.json, which CMake reads too), the
torch version and whether CUDA is compiled in; later uses load the cached build.
No build isolation is involved, so no CUDA torch is ever pulled onto a CPU machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from deploykit.errors import EnvironmentProblem, UserError, first_line
from deploykit.ops.native_build import (build_lock, compilers_end_with_us, disk_full, put_venv_on_path,
                                        usable_cache_dir)

logger = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "dysample"
# The kernel's compiler flags and include folders; plugins/CMakeLists.txt reads the same file.
BUILD_FLAGS = PLUGIN_DIR / "build_flags.json"
_CPU_SOURCES = ("torch_op.cpp", "dysample_cpu.cpp")
_CUDA_SOURCES = ("torch_op_cuda.cu", "dysample_cuda.cu")
_NAME = "deploykit_dysample"
_loaded = False


def load() -> None:
    """Make ``torch.ops.deploykit.dysample_sample`` available, building it if needed."""
    global _loaded
    if _loaded:
        return
    import torch
    from torch.utils import cpp_extension

    if not (PLUGIN_DIR / "dysample_sample.h").is_file() or not BUILD_FLAGS.is_file():
        raise UserError(f"the fused DySample sources are not at {PLUGIN_DIR}",
                        "install deploykit from its source checkout (pip install -e .)")
    with_cuda = torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None
    sources = _CPU_SOURCES + (_CUDA_SOURCES if with_cuda else ())
    flags = extension_flags()
    build_dir = usable_cache_dir() / build_dir_name(with_cuda)
    try:
        build_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create {build_dir} ({exc.strerror})",
                                 "set DEPLOYKIT_CACHE to a folder you can write") from None
    put_venv_on_path()  # pip's ninja lives beside the interpreter
    try:
        with build_lock(build_dir, "the fused DySample kernel"), compilers_end_with_us():
            if not (build_dir / f"{_NAME}.so").exists():
                where = "CPU and CUDA" if with_cuda else "CPU"
                logger.warning("building the fused DySample kernel (%s) into %s; first use only (tens of seconds; longer with CUDA)...",
                               where, build_dir)
            cpp_extension.load(
                name=_NAME, sources=[str(PLUGIN_DIR / s) for s in sources], build_directory=str(build_dir),
                **flags, with_cuda=with_cuda, is_python_module=False, verbose=False,
            )
    except (RuntimeError, OSError, ImportError) as exc:
        if disk_full(exc, build_dir):
            raise EnvironmentProblem(f"no space left on the device of the deploykit cache {build_dir} while building "
                                     "the fused DySample kernel", "free some space there, or set DEPLOYKIT_CACHE to "
                                     "a folder on another disk") from None
        raise UserError(f"building the fused DySample kernel failed: {first_line(exc)}",
                        f"check that g++ and ninja are installed; the build log is in {build_dir}") from None
    _register_fake()
    _loaded = True


def extension_flags() -> dict:
    """``cpp_extension.load``'s flag arguments, from BUILD_FLAGS: the flags CMake gives the same
    sources, plus its ``torch_extension`` part (what only this build needs)."""
    flags = json.loads(BUILD_FLAGS.read_text())
    torch_only = flags["torch_extension"]
    return {
        "extra_cflags": [*flags["cxx"], *torch_only["cxx"], *(f"-D{name}" for name in torch_only["defines"])],
        "extra_cuda_cflags": [*flags["cuda"], *torch_only["cuda"]],
        "extra_ldflags": list(torch_only["ld"]),
        "extra_include_paths": [str((BUILD_FLAGS.parent / folder).resolve()) for folder in flags["include_dirs"]],
    }


def build_dir_name(with_cuda: bool) -> str:
    """The build's folder in the cache: keyed by the sources and build flags, the torch version
    and CUDA."""
    import torch

    digest = hashlib.sha256(f"{torch.__version__}|{with_cuda}".encode())
    for path in sorted(PLUGIN_DIR.iterdir()):
        if path.suffix in {".h", ".cpp", ".cu", ".json"}:
            digest.update(path.name.encode() + path.read_bytes())
    return f"{_NAME}-{digest.hexdigest()[:16]}"


def is_loaded() -> bool:
    """Whether ``torch.ops.deploykit.dysample_sample`` exists in this process (without building it)."""
    return _loaded


def _register_fake() -> None:
    import torch

    @torch.library.register_fake("deploykit::dysample_sample")
    def _(x, offset, scale, groups):
        torch._check(x.dim() == 4 and offset.dim() == 4, lambda: "dysample_sample: x and offset must be 4-D")
        torch._check(offset.shape[1] == 2 * groups * scale * scale,
                     lambda: "dysample_sample: offset must have 2 * groups * scale^2 channels")
        return x.new_empty(x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale)


def fused_sample(x, offset, scale: int, groups: int):
    load()
    import torch

    return torch.ops.deploykit.dysample_sample(x, offset, scale, groups)
