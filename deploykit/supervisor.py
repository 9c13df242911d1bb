"""Run a deploykit command in a watched child process, so a crash is one line, never silence.

PyTorch's exporter, ONNX Runtime, TensorRT or a user's model can kill the interpreter with a
signal (a segmentation fault in native code): no Python ``except`` runs, the shell sees 139
and nothing is printed. The ``deploykit`` console script therefore runs the command as
``python -m deploykit ...`` in a child with stdin, stdout and stderr inherited, forwards
SIGINT, SIGTERM and SIGHUP to it, and has the child's ``faulthandler`` write the Python stack
of a fatal signal to a file. When the child dies by a signal, the parent prints one line
(the signal, what was running, where the stack is) and exits 2 (an environment error).

``--help``, ``--version`` and ``list`` run in the calling process (they start nothing that
can crash, and stay fast). ``DEPLOYKIT_NO_SUPERVISOR=1`` runs every command in process.
"""

from __future__ import annotations

import os
import re
import signal
import sys

# Set in the child: the file its faulthandler writes to (and the sign that it is the child).
CHILD_ENV = "DEPLOYKIT_SUPERVISED_STACK"
# Set in the child: the file it lists its scratch paths in (staging folders, temporary
# exports), which the supervisor removes if the child dies without removing them itself.
SCRATCH_ENV = "DEPLOYKIT_SUPERVISED_SCRATCH"
_IN_PROCESS = {"list"}
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_DESCRIPTIONS = {"SIGSEGV": "segmentation fault", "SIGBUS": "bus error", "SIGABRT": "abort",
                 "SIGILL": "illegal instruction", "SIGFPE": "floating-point exception",
                 "SIGKILL": "killed: the kernel's out-of-memory killer, or kill -9"}
# (what a frame's file path contains, what to call it): the first that any frame matches names
# the stage that was running, outermost concern first (a model's forward crashing inside the
# exporter is "the PyTorch exporter").
_STAGES = [
    (("/torch/onnx/", "/torch/export/", "/torch/_dynamo/", "/torch/_export/", "/onnxscript/"),
     "the PyTorch exporter (torch.onnx.export)"),
    (("/tensorrt",), "TensorRT"),
    (("/onnxruntime/",), "ONNX Runtime"),
    (("/torch/utils/cpp_extension.py",), "the fused DySample kernel's build"),
    (("/onnx/reference/",), "onnx.reference"),
    (("/onnx/checker.py", "/onnx/shape_inference.py"), "onnx's checker"),
    (("/deploykit/ops/fused.py",), "the fused DySample kernel"),
    (("/torch/nn/modules/",), "the model in PyTorch (its forward)"),
]


def should_supervise(argv: list[str]) -> bool:
    if os.environ.get(CHILD_ENV) is not None or os.environ.get("DEPLOYKIT_NO_SUPERVISOR"):
        return False
    if not argv or any(a in ("-h", "--help", "--version") for a in argv):
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    return command not in _IN_PROCESS


def supervise(argv: list[str]) -> int:
    """Run ``deploykit argv`` in a child process; its exit code, or 2 with one line if it crashed."""
    import subprocess
    import tempfile

    try:
        fd, stack_path = tempfile.mkstemp(prefix="deploykit-crash-", suffix=".txt")
        os.close(fd)
    except OSError:
        stack_path = ""
    scratch_path = stack_path and stack_path[: -len(".txt")] + ".scratch"
    env = {**os.environ, CHILD_ENV: stack_path, SCRATCH_ENV: scratch_path}
    forwarded: list[int] = []
    child = None

    def forward(signum, frame):
        forwarded.append(signum)
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except OSError:
                pass

    previous = {}
    for signum in _FORWARDED:
        try:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, forward)
        except (ValueError, OSError):
            pass
    try:
        # Its own process group: a terminal's Ctrl-C, or timeout's signal to our group,
        # reaches the child once, through us, never twice.
        child = subprocess.Popen([sys.executable, "-m", "deploykit", *argv], env=env, process_group=0,
                                 preexec_fn=_die_with_parent)
        for signum in forwarded:  # arrived before the child existed
            child.send_signal(signum)
        code = child.wait()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    _remove_scratch(scratch_path)
    if code >= 0:
        _remove(stack_path)
        return code
    return _report_crash(-code, stack_path, forwarded)


def note_scratch(path) -> None:
    """In the child: list ``path`` (a staging folder or file) for removal if the child crashes."""
    if _scratch_log:
        try:
            with open(_scratch_log[0], "a", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(os.fspath(path) + "\n")
        except OSError:
            pass


def _remove_scratch(log: str) -> None:
    """Remove what a child listed and left behind (it died before its ``finally`` blocks ran)."""
    import shutil

    if not log:
        return
    try:
        with open(log, encoding="utf-8", errors="surrogateescape") as handle:
            paths = [line for line in handle.read().splitlines() if line]
    except OSError:
        paths = []
    for path in paths:
        base = os.path.basename(path)
        if not (base.startswith(".") or base.startswith("deploykit-")):
            continue  # only deploykit's own hidden staging names and temporary folders
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            _remove(path)
    _remove(log)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies (kill -9), never run orphaned."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the child just may outlive a killed parent
        pass


def _report_crash(signum: int, stack_path: str, forwarded: list[int]) -> int:
    from deploykit.errors import EXIT_SIGNAL_BASE, EXIT_USAGE, signal_name
    from deploykit.text import printable

    name = signal_name(signum)
    if signum in forwarded:  # we passed an interrupt on and it ended the child before Python could
        _remove(stack_path)
        print(f"interrupted ({name})", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signum
    stack = _read(stack_path)
    stage, frame = culprit(stack)
    what = f" in {stage}" if stage else ""
    where = f" (innermost frame {frame})" if frame else ""
    description = _DESCRIPTIONS.get(name, "killed by a signal")
    if stack.strip():
        saved = f"its Python stack is saved in {stack_path}"
    else:
        _remove(stack_path)
        saved = "no Python stack could be saved"
    print(printable(f"error: the deploykit process died with {name} ({description}){what}{where}; {saved}; "
                    "this is a crash, not a parity result: try other settings (--opset, --static, "
                    "--dysample-impl, a smaller --shape) or report it"), file=sys.stderr)
    return EXIT_USAGE


def culprit(stack: str) -> tuple[str | None, str | None]:
    """(the stage that was running, the innermost frame 'file:line in function') from a
    faulthandler dump; the crashing thread's stack is read (it comes first)."""
    frames = []
    for line in stack.splitlines():
        if frames and not line.startswith("  File"):
            break
        match = re.match(r'\s+File "(.*)", line (\d+) in (.*)$', line)
        if match:
            frames.append(match.groups())
    if not frames:
        return None, None
    paths = [path.replace(os.sep, "/") for path, _, _ in frames]
    stage = next((label for needles, label in _STAGES if any(n in p for p in paths for n in needles)), None)
    path, line, function = frames[0]
    return stage, f"{path}:{line} in {function}"


def child_setup() -> None:
    """In the child: faulthandler writes a fatal signal's stack to the supervisor's file; if the
    supervisor itself is killed (kill -9), the child, told by SIGTERM, removes that file and its
    scratch list on the way out, since nobody else will."""
    import atexit

    path = os.environ.pop(CHILD_ENV, None)
    scratch = os.environ.pop(SCRATCH_ENV, None)
    if scratch:
        _scratch_log.append(scratch)
    supervisor = os.getppid()

    def orphaned_cleanup():
        if os.getppid() != supervisor:
            _remove_scratch(scratch or "")
            _remove(path or "")

    atexit.register(orphaned_cleanup)
    if not path:
        return
    import faulthandler

    try:
        handle = open(path, "w")  # kept open for the process's life: faulthandler writes to its fd
    except OSError:
        return
    faulthandler.enable(handle, all_threads=True)
    _keep.append(handle)


_keep: list = []
_scratch_log: list[str] = []


def _read(path: str) -> str:
    if not path:
        return ""
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _remove(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
