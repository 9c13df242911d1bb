"""What deploykit's native builds share (the fused PyTorch op, the ONNX Runtime custom-op
library): the cache folder, one build at a time per build folder, compilers that end with us."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from deploykit.errors import EnvironmentProblem

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$DEPLOYKIT_CACHE``, else ``$XDG_CACHE_HOME/deploykit`` (the XDG rule: an absolute path,
    anything else ignored), else ``~/.cache/deploykit``; an empty DEPLOYKIT_CACHE is an error,
    never the current folder."""
    value = os.environ.get("DEPLOYKIT_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if value is None and os.path.isabs(xdg):
        return Path(xdg) / "deploykit"
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
def build_lock(build_dir: Path, what: str, wait_seconds: float | None = None):
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
            logger.warning("another deploykit process (%s) is building %s; waiting up to %.0f s for it (lock %s)",
                           holder, what, wait_seconds, lock_path)
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EnvironmentProblem(
                            f"another deploykit process ({holder}) has held the build lock of {what} {lock_path} for "
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
def compilers_end_with_us():
    """An interrupted build (Ctrl-C, SIGTERM) ends the ninja and compiler processes it started,
    which would otherwise go on writing into the cache after deploykit has exited."""
    try:
        yield
    except BaseException:
        end_descendants()
        raise


def end_descendants() -> None:
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


def disk_full(exc: BaseException, build_dir: Path) -> bool:
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


def put_venv_on_path() -> None:
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
