"""plugins/ builds with CMake: the CPU library and its check always, the CUDA kernels wherever
nvcc is; with DEPLOYKIT_WERROR=ON (CI) a warning fails the build, by default it does not.

Nothing built here runs on a machine without a GPU, but compiling for sm_80..sm_90 with
-Werror catches what a GPU machine would only find later.
"""

import shutil
import subprocess

import pytest


def _configure_and_build(cmake, build_dir, *options):
    log = cmake.configure(build_dir, *options).stdout
    cmake.build(build_dir)
    return log


def _assert_cpu_check_passes(cmake, build_dir):
    """dysample_cpu_check (tests/plugins/cpu_check) links dysample_cpu; CTest runs it."""
    assert (build_dir / "dysample_cpu_check").is_file()
    result = cmake.ctest(build_dir)
    assert "dysample_cpu: " in result.stdout and " 0 failed" in result.stdout, result.stdout
    assert "100% tests passed, 0 tests failed out of 1" in result.stdout, result.stdout


def test_cuda_kernels_compile_for_every_target_architecture(cmake, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the CUDA kernels cannot be compiled here")
    log = _configure_and_build(cmake, tmp_path / "build")
    assert "building dysample_cuda for sm_80;86;89;90" in log
    assert (tmp_path / "build" / "libdysample_cuda.a").is_file()
    assert (tmp_path / "build" / "libdysample_cpu.a").is_file()
    commands = cmake.compile_commands(tmp_path / "build")
    assert "-Werror=all-warnings" in commands["dysample_cuda.cu"].split()
    _assert_cpu_check_passes(cmake, tmp_path / "build")


def test_without_cuda_the_cpu_library_still_builds_and_says_so(cmake, tmp_path):
    log = _configure_and_build(cmake, tmp_path / "build", "-DDEPLOYKIT_WITH_CUDA=OFF")
    assert "skipping dysample_cuda" in log
    assert (tmp_path / "build" / "libdysample_cpu.a").is_file()
    assert not (tmp_path / "build" / "libdysample_cuda.a").exists()
    _assert_cpu_check_passes(cmake, tmp_path / "build")


def test_werror_is_off_by_default_and_on_in_ci(cmake, tmp_path):
    ours = {"dysample_cpu.cpp": "-Werror", "main.cpp": "-Werror"}  # main.cpp: dysample_cpu_check
    if shutil.which("nvcc") is not None:
        ours["dysample_cuda.cu"] = "-Werror=all-warnings"
    options = ("-DDEPLOYKIT_TRT_FROM_PYTHON=OFF",)
    cmake.configure(tmp_path / "default", *options, ci=False)
    cmake.configure(tmp_path / "ci", *options)
    default, ci = cmake.compile_commands(tmp_path / "default"), cmake.compile_commands(tmp_path / "ci")
    assert set(ours) <= set(ci)
    for source, flag in ours.items():
        assert "-Wall" in default[source] and flag not in default[source].split(), default[source]
        assert flag in ci[source].split(), ci[source]


def test_with_werror_a_warning_fails_the_build_and_without_it_does_not(cmake, tmp_path):
    plugins = tmp_path / "plugins"
    shutil.copytree(cmake.plugins, plugins)
    source = plugins / "dysample" / "dysample_cpu.cpp"
    source.write_text(source.read_text() + "\nnamespace { int unused_on_purpose() { int x; return 0; } }\n")
    options = ("-DDEPLOYKIT_WITH_CUDA=OFF", "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF")
    cmake.configure(tmp_path / "user", *options, source=plugins, ci=False)
    built = cmake.build(tmp_path / "user", "dysample_cpu")
    assert "warning:" in built.stdout + built.stderr
    cmake.configure(tmp_path / "ci", *options, source=plugins)
    failed = cmake.build(tmp_path / "ci", "dysample_cpu", check=False)
    assert failed.returncode != 0 and "error:" in failed.stdout + failed.stderr, failed.stdout + failed.stderr


def _ort_headers():
    from deploykit.errors import EnvironmentProblem
    from deploykit.ops.ort_library import ort_include_dir

    try:
        return ort_include_dir()
    except EnvironmentProblem as exc:
        pytest.skip(f"no ONNX Runtime C API headers: {exc}")


def test_the_onnx_runtime_library_builds_exports_one_symbol_and_runs(cmake, tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.ort_graphs import dysample_model, sample_inputs, session

    build = tmp_path / "build"
    log = cmake.configure(build, f"-DONNXRUNTIME_INCLUDE_DIR={_ort_headers()}", "-DDEPLOYKIT_WITH_CUDA=OFF",
                          "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF").stdout
    assert "building deploykit_ort_ops (libdeploykit_ort, ONNX Runtime custom ops, CPU)" in log, log
    cmake.build(build, "deploykit_ort_ops")
    library = build / "libdeploykit_ort.so"
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if line.split()[1:2] == ["T"]}
    assert exported == {"RegisterCustomOps"}, exported
    (out,) = session(dysample_model(2, 2, 8), library).run(None, sample_inputs(1, 8, 4, 5, 2, 2))
    assert out.shape == (1, 8, 8, 10)


def test_without_onnx_runtime_headers_configure_says_how_to_give_them(cmake, tmp_path):
    env = cmake.environment()
    env.pop("DEPLOYKIT_ORT_INCLUDE_DIR", None)
    env.pop("ONNXRUNTIME_ROOT", None)
    log = cmake.configure(tmp_path / "none", "-DDEPLOYKIT_WITH_CUDA=OFF", "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF",
                          env=env).stdout
    if "building deploykit_ort_ops" in log:
        pytest.skip("ONNX Runtime's headers are installed system-wide here")
    assert "set ONNXRUNTIME_INCLUDE_DIR): skipping the ONNX Runtime custom-op library" in log, log
    wrong = cmake.configure(tmp_path / "wrong", f"-DONNXRUNTIME_INCLUDE_DIR={tmp_path}", "-DDEPLOYKIT_WITH_CUDA=OFF",
                            "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF", env=env, check=False)
    assert wrong.returncode != 0 and "no onnxruntime_c_api.h in ONNXRUNTIME_INCLUDE_DIR" in " ".join(wrong.stderr.split())
