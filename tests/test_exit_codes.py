"""The exit-code contract (deploykit.errors): 0 pass, 1 parity failure only, 2 usage/input/
environment, 3 deploykit's own bug, 128+N a signal; crashes and signals run the real console
entry point in a subprocess."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploykit import supervisor
from deploykit.cli import main
from deploykit.errors import EXIT_INTERNAL, EXIT_PARITY, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]


def run(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="deploykit", **kwargs)


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


def deploykit(*args, env=None, timeout=240, **kwargs):
    """The console script's path: ``python -m deploykit`` supervises the command as ``deploykit`` does."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=environment, timeout=timeout, **kwargs)


def _ours(path: Path) -> bool:
    """What deploykit puts in TMPDIR or beside an output (torch keeps its own caches in TMPDIR)."""
    return path.name.startswith(("deploykit-", ".m.onnx."))


# --- the one mapping ---------------------------------------------------------------------------

def test_an_internal_error_is_one_line_exit_3_with_the_traceback_saved(monkeypatch, tmp_path):
    import deploykit.report

    def broken(report, console):
        raise ZeroDivisionError("deploykit bug")

    monkeypatch.setattr(deploykit.report, "print_check", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    result = run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8")
    assert result.exit_code == EXIT_INTERNAL
    line = one_error_line(result.stderr)
    assert "internal error in deploykit (ZeroDivisionError)" in line and "please report it" in line
    saved = Path(line.split("traceback saved to ")[1].split(";")[0])
    assert saved.parent == tmp_path and "ZeroDivisionError: deploykit bug" in saved.read_text()


def test_debug_prints_the_traceback_instead(monkeypatch):
    import deploykit.report

    monkeypatch.setattr(deploykit.report, "print_check", lambda report, console: 1 / 0)
    result = run("--debug", "check", "pool", "--backends", "torch", "--shape", "1x16x8x8")
    assert result.exit_code == EXIT_INTERNAL
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    result = run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8")  # the next command: no --debug
    assert "Traceback" not in result.stderr and "traceback saved to" in result.stderr


def test_out_of_memory_in_the_model_is_an_environment_error_not_a_shape_problem():
    result = run("check", "tests.custom_models:out_of_memory", "--shape", "1x4x8x8", "--backends", "torch")
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result.stderr)
    assert "out of memory" in line and "pass a --shape the module accepts" not in line


def test_out_of_memory_in_onnx_runtime_is_not_a_parity_failure(monkeypatch, tmp_path):
    from deploykit.backends.ort import OrtCpuRunner

    def no_memory(self, prepared):
        raise Exception("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested "
                        "buffer of size 7700000000")

    monkeypatch.setattr(OrtCpuRunner, "execute", no_memory)
    result = run("check", "pool", "--shape", "1x16x8x8")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "out of memory" in one_error_line(result.stderr)


def test_keyboard_interrupt_is_130(monkeypatch):
    import deploykit.check

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(deploykit.check, "run_check", interrupted)
    result = run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8")
    assert result.exit_code == 130 and "interrupted" in result.stderr and "Traceback" not in result.output


def test_a_parity_failure_is_the_only_exit_1():
    assert run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8").exit_code == 0
    failed = run("check", "upsample_conv", "--backends", "ort", "--atol", "0", "--rtol", "0", "--shape", "1x32x8x8")
    assert failed.exit_code == EXIT_PARITY and "parity FAILED" in failed.output


def test_markup_in_user_text_and_third_party_messages_prints_as_text(tmp_path):
    result = run("check", "tests.custom_models:marked_up", "-p", "channels=3", "--shape", "1x4x8x8",
                 "--backends", "torch")
    line = one_error_line(result.stderr)
    assert result.exit_code == EXIT_USAGE and "[/] expects [bold]channels[/bold] :smile: [link=x]" in line
    report = tmp_path / "[bold]r[red] :smile:.json"
    ok = run("check", "tests.custom_models:marked_up", "--shape", "1x4x8x8", "--backends", "torch",
             "--report", report, "-p", "channels=4")
    assert ok.exit_code == 0 and "tests.custom_models:marked_up" in ok.output and report.is_file()


def test_file_names_that_are_not_utf8(tmp_path):
    name = os.fsdecode(b"r\xff\xfe.json")
    report = tmp_path / name
    result = run("check", "pool", "--backends", "torch", "--shape", "1x16x8x8", "--report", report)
    assert result.exit_code == 0, result.output
    assert os.path.exists(os.fsencode(tmp_path) + b"/r\xff\xfe.json")
    missing = run("check", "pool", "--onnx", tmp_path / os.fsdecode(b"m\xff.onnx"))
    assert missing.exit_code == EXIT_USAGE and "m\\xff.onnx not found" in one_error_line(missing.stderr)


def test_a_deeply_nested_recipe_is_an_input_error(tmp_path):
    recipe = tmp_path / "deep.toml"
    recipe.write_text('spec = "pool"\nparams = { a = ' + "[" * 5000 + "]" * 5000 + " }\n")
    result = run("export", recipe, "-o", tmp_path / "m.onnx")
    assert result.exit_code == EXIT_USAGE and "nests tables or arrays too deeply" in one_error_line(result.stderr)


def test_an_unwritable_output_folder_is_found_before_any_work(monkeypatch):
    import deploykit.check

    monkeypatch.setattr(deploykit.check, "run_check", lambda *a, **k: pytest.fail("ran before checking outputs"))
    for path in ("/proc/self/r.json", "/sys/r.json"):
        result = run("check", "pool", "--report", path)
        assert result.exit_code == EXIT_USAGE and "cannot write in" in one_error_line(result.stderr)


def test_usage_errors_stay_one_line_and_2():
    assert run("check", "pool", "--nonsense").exit_code == EXIT_USAGE
    assert run("--help").exit_code == 0


# --- the supervised console entry point --------------------------------------------------------

def test_help_and_list_run_in_process_and_commands_are_supervised():
    assert not supervisor.should_supervise([]) and not supervisor.should_supervise(["--help"])
    assert not supervisor.should_supervise(["check", "-h"]) and not supervisor.should_supervise(["list"])
    assert supervisor.should_supervise(["check", "pool"]) and supervisor.should_supervise(["--debug", "export", "x"])


def test_list_imports_no_exporter_reference_evaluator_or_tensorrt():
    code = ("import sys; from click.testing import CliRunner; from deploykit.cli import main;"
            "r = CliRunner().invoke(main, ['list']); assert r.exit_code == 0, r.output;"
            "print(sorted(m for m in ('torch.onnx._internal.exporter', 'onnx.reference', 'tensorrt', 'onnxruntime')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("command,stage", [
    (["export", "tests.custom_crash_models:segfaults_in_export", "--shape", "1x2x4x4"],
     "the PyTorch exporter"),
    (["check", "tests.custom_crash_models:segfaults", "--shape", "1x2x4x4", "--backends", "torch"],
     "the model in PyTorch"),
])
def test_a_crash_by_signal_is_one_line_naming_it_and_exit_2(tmp_path, command, stage):
    if "export" in command:
        command = [*command, "-o", tmp_path / "m.onnx"]
    result = deploykit(*command, env={"TMPDIR": str(tmp_path)})
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_error_line(result.stderr)
    assert "died with SIGSEGV (segmentation fault)" in line and f"in {stage}" in line
    stack = Path(line.split("its Python stack is saved in ")[1].split(";")[0])
    assert "string_at" in stack.read_text() and "forward" in stack.read_text()
    leftovers = [p.name for p in tmp_path.iterdir() if p != stack and _ours(p)]
    assert leftovers == [], f"the crashed run left {leftovers}"  # no staging folder, no temporary export


def test_a_kill_without_a_stack_still_says_so(tmp_path):
    result = deploykit("check", "tests.custom_crash_models:killed", "--shape", "1x2x4x4", "--backends", "torch",
                       env={"TMPDIR": str(tmp_path)})
    assert result.returncode == EXIT_USAGE
    assert "SIGKILL" in one_error_line(result.stderr) and [p for p in tmp_path.iterdir() if _ours(p)] == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_export_removes_every_staging_folder(tmp_path, signum):
    """What timeout and CI send: the export stops, its staging folder beside the output and its
    work in TMPDIR are removed, and the exit code is 128 + the signal."""
    out_dir, tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp.mkdir()
    for _ in range(3):  # on a loaded machine the export may commit between the poll and the signal
        process = subprocess.Popen([sys.executable, "-m", "deploykit", "export", "dysample", "-o",
                                    str(out_dir / "m.onnx")], cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp)},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".m.onnx.") for p in out_dir.iterdir()):
            assert process.poll() is None and time.monotonic() < deadline, "the export never started staging"
            time.sleep(0.05)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
        if not (process.returncode == 0 and (out_dir / "m.onnx").is_file()):
            break
        (out_dir / "m.onnx").unlink()  # it finished before the signal landed: not the case under test
    assert process.returncode == 128 + signum, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == [] and [p.name for p in tmp.iterdir() if _ours(p)] == []


def test_a_killed_supervisor_leaves_no_crash_file_behind(tmp_path):
    """kill -9 of the supervisor: its child gets SIGTERM, stops, and removes the crash file and
    scratch list the supervisor would have removed."""
    process = subprocess.Popen([sys.executable, "-m", "deploykit", "bench", "pixel_shuffle", "--backends", "torch",
                                "--iters", "1000000", "--max-seconds", "120"], cwd=ROOT,
                               env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("deploykit-crash-*")):
        assert process.poll() is None and time.monotonic() < deadline, "the supervisor never started its child"
        time.sleep(0.05)
    time.sleep(3)  # the child is running the command
    process.kill()
    process.wait()
    deadline = time.monotonic() + 120
    while [p for p in tmp_path.iterdir() if _ours(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p.name for p in tmp_path.iterdir() if _ours(p)] == []


@pytest.mark.parametrize("command", [["list"], ["export", "dysample", "-o"]])
def test_without_torch_the_console_script_says_how_to_install_it(tmp_path, command, torch_unimportable):
    """A Python without torch is an environment error with the install line, never an internal error."""
    if command[0] == "export":
        command = [*command, tmp_path / "never.onnx"]
    result = deploykit(*command, env=torch_unimportable(missing=True))
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_error_line(result.stderr)
    assert "torch is not installed" in line and "download.pytorch.org/whl/cpu" in line


@pytest.mark.parametrize("shape", ["1x64xx32", "image:[1,3,x]", ":1x3x8x8", "input=1x64x8x8,input=1x64x8x8"])
def test_a_malformed_shape_is_refused_before_torch_loads(shape, torch_unimportable):
    result = deploykit("check", "dysample", "--shape", shape, env=torch_unimportable())
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_error_line(result.stderr)
    assert "Invalid value for '--shape'" in line and "torch" not in line


@pytest.mark.parametrize("option, value, fragment", [
    ("-p", "scale", "write -p key=value"),
    ("-p", "=2", "write -p key=value"),
    ("--val-range", "image=a,b", "is not LOW,HIGH"),
    ("--val-range", "0,inf", "need finite LOW <= HIGH"),
    ("--input-dtype", "complex64", "use one of float32"),
    ("--input-dtype", "=int64", "no input name"),
])
def test_malformed_model_options_are_refused_before_torch_loads(option, value, fragment, torch_unimportable):
    result = deploykit("check", "dysample", option, value, env=torch_unimportable())
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_error_line(result.stderr)
    assert f"Invalid value for '{option}'" in line and fragment in line and "torch" not in line


def test_an_onnx_runtime_that_cannot_be_imported_is_exit_2_naming_the_reinstall(tmp_path):
    from deploykit.errors import exit_code_for

    broken = tmp_path / "broken" / "onnxruntime"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('numpy.core.multiarray failed to import')\n")
    sys.path.insert(0, str(broken.parent))
    saved = sys.modules.pop("onnxruntime", None)
    try:
        with pytest.raises(ImportError) as caught:
            import onnxruntime  # noqa: F401
    finally:
        sys.path.remove(str(broken.parent))
        sys.modules.pop("onnxruntime", None)
        if saved is not None:
            sys.modules["onnxruntime"] = saved
    decision = exit_code_for(caught.value)
    assert decision.code == EXIT_USAGE and "onnxruntime is installed but cannot be imported" in decision.line
    assert "pip install onnxruntime" in decision.line


def test_a_users_own_missing_module_is_not_mistaken_for_a_dependency():
    from deploykit.errors import exit_code_for

    assert exit_code_for(ModuleNotFoundError("No module named 'mynet'", name="mynet")).code == EXIT_INTERNAL
