"""The failures a user sees, and the exit codes they become: the one place the contract lives.

| code | meaning |
|---|---|
| 0 | success: every comparison that ran passed (or the command has no verdict) |
| 1 | a parity failure (check), lint errors (lint, export --target trt): a finding, and only that |
| 2 | a usage, input or environment error: bad option, unreadable file, missing backend, no memory,
|   | an output that cannot be written, a crash (signal) of a library deploykit called |
| 3 | a bug in deploykit itself: one line naming where the traceback was saved (--debug prints it) |
| 130, 143, 129 | interrupted by SIGINT, SIGTERM or SIGHUP (128 + the signal), after cleaning up |

A UserError (or subclass) becomes one line on stderr and ``exit_code``; a parity failure is a
result, not an exception. ``exit_code_for`` maps every failure; ``deploykit.cli`` prints its line.
"""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass

EXIT_OK = 0
EXIT_PARITY = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_SIGNAL_BASE = 128  # 128 + signal number, as shells report a process a signal ended


class UserError(Exception):
    """Bad input the user can fix (name, shape, file, backend): exit code 2.

    The message names the problem; ``fix`` says what to do about it.
    """

    exit_code = EXIT_USAGE

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class ForeignExit(UserError):
    """Code deploykit ran (a model's forward or builder, a library) called sys.exit: deploykit's
    commands return their exit code and never raise SystemExit, so this is never a result."""

    def __init__(self, code):
        super().__init__(f"the model's code (or a library it calls) called sys.exit({code!r}) while deploykit ran it, "
                         "so nothing was checked", "remove the exit from the model's code path")


class BackendUnavailable(UserError):
    """A backend the user asked for is not installed or cannot run on this machine."""


class EnvironmentProblem(UserError):
    """The machine, not the input: out of memory, an unwritable folder or cache, a crashed library."""


class BackendRunError(Exception):
    """A backend accepted the inputs but failed while computing: a finding, not a user error."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt so that every
    ``finally`` (staging folders, temporary exports) runs before the process exits."""

    def __init__(self, signum: int):
        self.signum = signum
        TERMINATION_REQUESTED.append(signum)
        super().__init__(signal_name(signum))

    @property
    def exit_code(self) -> int:
        return EXIT_SIGNAL_BASE + self.signum


# Signals received, for code that must not go on after one even if a library swallowed the
# Terminated raised for it (PyTorch's exporter retries a failed capture, whatever the error).
TERMINATION_REQUESTED: list[int] = []


def raise_if_terminated() -> None:
    """Before anything lasting (committing a file): stop if a termination was asked for."""
    if TERMINATION_REQUESTED:
        raise Terminated(TERMINATION_REQUESTED[0])


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (third-party messages run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


# What allocators say when they run out (PyTorch's CPU allocator, ONNX Runtime's arena, CUDA).
_OOM_MESSAGES = ("can't allocate memory", "cannot allocate memory", "out of memory", "failed to allocate memory",
                 "bad_alloc", "std::bad_alloc", "memoryerror", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception from numpy, PyTorch or ONNX Runtime means the machine ran out of memory."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    if type(exc).__name__ in ("OutOfMemoryError", "OutOfMemory"):
        return True
    text = str(exc).lower()
    return any(message in text for message in _OOM_MESSAGES)


def out_of_memory(what: str) -> EnvironmentProblem:
    return EnvironmentProblem(f"out of memory while {what}",
                              "use a smaller --shape, fewer shapes or backends, or a machine with more memory")


_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOMEM,
                       errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                       errno.ELOOP, errno.ENOENT, errno.EEXIST, errno.EXDEV, errno.EBUSY, errno.ETXTBSY,
                       errno.EFBIG, errno.ENODEV, errno.ENXIO}


def environment_error(exc: BaseException) -> EnvironmentProblem | None:
    """An OSError the machine caused (permissions, read-only or full disk, a path that vanished)
    as one line; None for anything else."""
    if not isinstance(exc, OSError) or exc.errno not in _ENVIRONMENT_ERRNOS:
        return None
    where = f": {exc.filename}" if exc.filename is not None else ""
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename is None:
        where = ": the disk of the output or of TMPDIR"
    return EnvironmentProblem(f"{exc.strerror or type(exc).__name__}{where}",
                              "check the path, its permissions and the free space")


@dataclass
class ExitDecision:
    """What a failure becomes under the contract: the exit code, the one line for stderr, and
    (deploykit's own bugs, with --debug) the traceback to print before it."""

    code: int
    line: str
    traceback: str | None = None


# deploykit's dependencies and the line that installs each: a missing one is the environment's
# problem (exit 2), never an internal error. torch is not a declared dependency (README: the CPU
# and GPU builds are installed first, on purpose).
INSTALL_LINES = {
    "torch": "install PyTorch first: pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu "
             "(CPU), or pip install torch==2.13.0 (the CUDA build, on a GPU machine)",
    "onnxruntime": "pip install onnxruntime (CPU), or onnxruntime-gpu (never both)",
    "onnx": "pip install onnx", "onnxscript": "pip install onnxscript", "onnx_ir": "pip install onnx-ir",
    "numpy": "pip install numpy", "click": "pip install click", "rich": "pip install rich",
    "matplotlib": "pip install matplotlib", "ninja": "pip install ninja",
}


def missing_dependency(exc: BaseException) -> EnvironmentProblem | None:
    """A dependency that is not installed (ModuleNotFoundError naming it) as one line with the
    line that installs it; None for anything else (a user's own module is the SPEC's error)."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in INSTALL_LINES:
        package = exc.name.split(".")[0]
        return EnvironmentProblem(f"{package} is not installed in this Python ({exc.name} cannot be imported), and "
                                  "this command needs it", INSTALL_LINES[package])
    if isinstance(exc, (ImportError, OSError)) and (package := _importing(exc)) is not None:
        return EnvironmentProblem(f"{package} is installed but cannot be imported ({type(exc).__name__}: "
                                  f"{first_line(exc, 160)})", f"reinstall it for this machine: {INSTALL_LINES[package]}")
    return None


def _importing(exc: BaseException) -> str | None:
    """The dependency whose own __init__ raised ``exc`` while being imported (a torch built for
    another CUDA, an onnxruntime wheel for another numpy), else None."""
    import traceback

    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        parts = frame.filename.replace("\\", "/").split("/")
        if len(parts) >= 2 and parts[-1] == "__init__.py" and parts[-2] in INSTALL_LINES and frame.name == "<module>":
            return parts[-2]
    return None


def exit_code_for(exc: BaseException, debug: bool = False) -> ExitDecision:
    """The contract's one mapping from a failure to an exit code and its line."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitDecision(EXIT_SIGNAL_BASE + signal.SIGINT, "interrupted (SIGINT); partial outputs were removed")
    if isinstance(exc, Terminated):
        return ExitDecision(exc.exit_code, f"interrupted ({exc}); partial outputs were removed")
    if isinstance(exc, UserError):
        return ExitDecision(exc.exit_code, f"error: {exc}")
    if is_out_of_memory(exc):
        return ExitDecision(EXIT_USAGE, f"error: {out_of_memory('running the command')}")
    environment = environment_error(exc) or missing_dependency(exc)
    if environment is not None:
        return ExitDecision(environment.exit_code, f"error: {environment}")
    import traceback

    text = "".join(traceback.format_exception(exc))
    if debug:
        return ExitDecision(EXIT_INTERNAL, f"error: internal error in deploykit ({type(exc).__name__}); "
                                           "please report it with the traceback above", text)
    saved = _save_traceback(text)
    where = f"traceback saved to {saved}" if saved else "the traceback could not be saved (run with --debug)"
    return ExitDecision(EXIT_INTERNAL, f"error: internal error in deploykit ({type(exc).__name__}); {where}; "
                                       "please report it")


def _save_traceback(text: str) -> str | None:
    import os
    import sys
    import tempfile

    try:
        fd, path = tempfile.mkstemp(prefix="deploykit-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(f"deploykit {' '.join(sys.argv[1:])}\n\n{text}")
    except OSError:
        return None
    return path
