"""The fused kernel's build lock: a killed build never makes later runs wait forever."""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from deploykit.ops import fused, native_build

ROOT = Path(__file__).resolve().parents[2]
LOAD = "from deploykit.ops.fused import load; load(); print('loaded')"


def _built_copy(tmp_path: Path) -> Path:
    """This machine's build (made by the first use, reused after), copied to a cache of our own."""
    import torch
    from torch.utils import cpp_extension

    fused.load()
    with_cuda = torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None
    source = native_build.cache_dir() / fused.build_dir_name(with_cuda)
    assert (source / f"{fused._NAME}.so").exists(), "the plugin sources changed while the test ran"
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copytree(source, cache / source.name, symlinks=True)  # keeps mtimes: ninja has nothing to do
    return cache / source.name


def _load_in(cache: Path, timeout: float):
    return subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DEPLOYKIT_CACHE": str(cache), "PYTHONPATH": str(ROOT)})


def test_a_lock_left_by_a_killed_build_is_removed_not_waited_on(tmp_path):
    build = _built_copy(tmp_path)
    (build / "lock").write_text("")  # what torch's FileBaton leaves when its build is killed
    result = _load_in(build.parent, timeout=240)  # before: waited forever
    assert result.returncode == 0 and "loaded" in result.stdout, result.stderr
    assert not (build / "lock").exists()


def test_a_live_build_is_waited_for(tmp_path):
    build = _built_copy(tmp_path)
    lock = build.with_name(build.name + ".lock")
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another deploykit process building right now
        process = subprocess.Popen([sys.executable, "-c", LOAD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env={**os.environ, "DEPLOYKIT_CACHE": str(build.parent),
                                                   "PYTHONPATH": str(ROOT)})
        try:
            process.wait(timeout=8)
            raise AssertionError("loaded while another build held the lock")
        except subprocess.TimeoutExpired:
            pass
    out, err = process.communicate(timeout=240)  # the holder is gone: the OS released its lock
    assert process.returncode == 0 and "loaded" in out and "waiting up to" in err


def test_a_stopped_holder_of_the_lock_is_named_and_not_waited_on_forever(tmp_path):
    import signal

    import pytest

    from deploykit.errors import EnvironmentProblem

    build = tmp_path / "build"
    build.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[2]); from pathlib import Path; "
        "from deploykit.ops.native_build import build_lock\n"
        "with build_lock(Path(sys.argv[1]), 'the test'):\n    print('held', flush=True); time.sleep(60)"),
        str(build), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGSTOP)  # a holder that will never let go
        with pytest.raises(EnvironmentProblem, match=f"PID {holder.pid}.*more than 1 s"):
            with native_build.build_lock(build, "the fused DySample kernel", wait_seconds=1.0):
                pass
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
