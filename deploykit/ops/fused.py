"""``torch.ops.deploykit.dysample_sample``: the fused C++/CUDA kernel from plugins/dysample.

Built on first use with PyTorch's JIT extension builder (ninja), into a cache keyed by the
sources and their build flags (plugins/dysample/build_flags.json, which CMake reads too), the
torch version and whether CUDA is compiled in; later uses load the cached build.
No build isolation is involved, so no CUDA torch is ever pulled onto a CPU machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from deploykit.errors import EnvironmentProblem, UserError, first_line

logger = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "dysample"
# The kernel's compiler flags and include folders; plugins/CMakeLists.txt reads the same file.
BUILD_FLAGS = PLUGIN_DIR / "build_flags.json"
_CPU_SOURCES = ("torch_op.cpp", "dysample_cpu.cpp")
_CUDA_SOURCES = ("torch_op_cuda.cu", "dysample_cuda.cu")
_NAME = "deploykit_dysample"
_loaded = False


def cache_dir() -> Path:
    """``$DEPLOYKIT_CACHE``, else ``~/.cache/deploykit``; an empty setting is an error, never
    the current folder."""
    value = os.environ.get("DEPLOYKIT_CACHE")
    if value is None:
        if not os.environ.get("HOME", "x").strip():  # Path.home() would give /, and the cache /.cache
            raise EnvironmentProblem("HOME is set but empty, so the deploykit cache has no home",
                                     "set HOME, or DEPLOYKIT_CACHE to a folder")
        return Path.home() / ".cache" / "deploykit"
    if not value.strip():
        raise EnvironmentProblem("DEPLOYKIT_CACHE is set but empty",
                                 "unset it (the cache is then ~/.cache/deploykit), or set it to a folder")
    return Path(value).expanduser().absolute()


def usable_cache_dir() -> Path:
    """The cache folder, created if needed; one that is not a folder or cannot be written is an
    environment error (exit 2), found before any build."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise EnvironmentProblem(f"the deploykit cache {folder} is not a folder",
                                 "set DEPLOYKIT_CACHE to a folder, or remove what is there") from None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create the deploykit cache {folder} ({exc.strerror})",
                                 "set DEPLOYKIT_CACHE to a folder you can write") from None
    if not folder.is_dir():
        raise EnvironmentProblem(f"the deploykit cache {folder} is not a folder",
                                 "set DEPLOYKIT_CACHE to a folder, or remove what is there")
    try:
        import tempfile

        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write in the deploykit cache {folder} ({exc.strerror})",
                                 "set DEPLOYKIT_CACHE to a folder you can write") from None
    return folder


# How long a run waits for another process's kernel build before giving up (a real build takes
# a minute or two on 2 cores; a holder that is stopped or stuck holds the lock forever).
LOCK_WAIT_SECONDS = float(os.environ.get("DEPLOYKIT_LOCK_WAIT", "600"))


@contextlib.contextmanager
def build_lock(build_dir: Path, wait_seconds: float | None = None):
    """One build at a time per build folder, with a lock the OS releases when its holder dies
    (flock), unlike PyTorch's own ``lock`` file, which a killed build leaves behind and every
    later build then waits on forever. The holder writes its PID in the lock file, so a waiting
    run names it, and gives up after ``wait_seconds`` (LOCK_WAIT_SECONDS). Holding ours, any
    PyTorch ``lock`` in the folder is stale (no deploykit process is building there), so it is
    removed."""
    import fcntl
    import time

    wait_seconds = LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds
    lock_path = build_dir.with_name(build_dir.name + ".lock")
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(lock_path)
            logger.warning("another deploykit process (%s) is building the fused DySample kernel; waiting up to "
                           "%.0f s for it (lock %s)", holder, wait_seconds, lock_path)
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EnvironmentProblem(
                            f"another deploykit process ({holder}) has held the kernel build lock {lock_path} for "
                            f"more than {wait_seconds:.0f} s (stopped or stuck?)",
                            "let it finish, or end it (kill PID), then run again") from None
                    time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        stale = build_dir / "lock"
        if stale.exists():
            logger.warning("removing %s, left by a build that was killed", stale)
            stale.unlink(missing_ok=True)
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_holder(lock_path: Path) -> str:
    try:
        pid = Path(lock_path).read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "PID unknown"


@contextlib.contextmanager
def _compilers_end_with_us():
    """An interrupted build (Ctrl-C, SIGTERM) ends the ninja and compiler processes it started,
    which would otherwise go on writing into the cache after deploykit has exited."""
    try:
        yield
    except BaseException:
        _end_descendants()
        raise


def _end_descendants() -> None:
    """SIGTERM every process below this one (read from /proc; elsewhere nothing to do)."""
    import signal

    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    stack, found = list(children.get(os.getpid(), [])), []
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


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
    _put_venv_on_path()  # pip's ninja lives beside the interpreter
    try:
        with build_lock(build_dir), _compilers_end_with_us():
            if not (build_dir / f"{_NAME}.so").exists():
                where = "CPU and CUDA" if with_cuda else "CPU"
                logger.warning("building the fused DySample kernel (%s) into %s; first use only (tens of seconds; longer with CUDA)...",
                               where, build_dir)
            cpp_extension.load(
                name=_NAME, sources=[str(PLUGIN_DIR / s) for s in sources], build_directory=str(build_dir),
                **flags, with_cuda=with_cuda, is_python_module=False, verbose=False,
            )
    except (RuntimeError, OSError, ImportError) as exc:
        if _disk_full(exc, build_dir):
            raise EnvironmentProblem(f"no space left on the device of the deploykit cache {build_dir} while building "
                                     "the fused DySample kernel", "free some space there, or set DEPLOYKIT_CACHE to "
                                     "a folder on another disk") from None
        raise UserError(f"building the fused DySample kernel failed: {first_line(exc)}",
                        f"check that g++ and ninja are installed; the build log is in {build_dir}") from None
    _register_fake()
    _loaded = True


def _disk_full(exc: BaseException, build_dir: Path) -> bool:
    """A build that failed for want of space (the compiler says so in its output, not an errno)."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "no space left on device" in str(exc).lower():
        return True
    try:
        return os.statvfs(build_dir).f_bavail * os.statvfs(build_dir).f_frsize < 64 * 2**20
    except OSError:
        return False


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


def _put_venv_on_path() -> None:
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


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
