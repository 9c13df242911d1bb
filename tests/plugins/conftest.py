"""TensorRT header sets for the plugin tests, and CMake run the way CI runs it.

TensorRT's libraries cannot be installed on the machines this project is developed on, but its
public headers can be had (github.com/NVIDIA/TensorRT, Apache-2.0; CI finds 10.3, 10.16 and
11.1 in ../shared/tensorrt-headers). They are never copied into the repository: the tests take
their include/ folders from DEPLOYKIT_TRT_INCLUDE_DIRS, os.pathsep-separated, and run once per
folder; without it they skip, saying so.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

TRT_INCLUDE_DIRS_VARIABLE = "DEPLOYKIT_TRT_INCLUDE_DIRS"


def trt_include_dirs() -> list[Path]:
    value = os.environ.get(TRT_INCLUDE_DIRS_VARIABLE, "")
    return [Path(part) for part in value.split(os.pathsep) if part]


def _label(include_dir: Path) -> str:
    """'10.16' for .../tensorrt-headers/10.16/include, else the folder itself."""
    return include_dir.parent.name if include_dir.name == "include" else str(include_dir)


def pytest_generate_tests(metafunc):
    if "trt_include_dir" in metafunc.fixturenames:
        dirs = trt_include_dirs()
        metafunc.parametrize("trt_include_dir", dirs or [None], ids=[_label(d) for d in dirs] or ["no-headers"])


@pytest.fixture
def trt_headers(trt_include_dir) -> Path:
    """One TensorRT include/ folder, or a skip that says how to give one."""
    if trt_include_dir is None:
        pytest.skip(f"set {TRT_INCLUDE_DIRS_VARIABLE} to TensorRT include/ folders ({os.pathsep}-separated, e.g. "
                    "../shared/tensorrt-headers/10.16/include, or `git archive v10.16 include` from "
                    "github.com/NVIDIA/TensorRT) to test the plugin against them")
    if not (trt_include_dir / "NvInferRuntime.h").is_file():
        pytest.fail(f"{TRT_INCLUDE_DIRS_VARIABLE} names {trt_include_dir}, which has no NvInferRuntime.h")
    return trt_include_dir


@pytest.fixture
def trt_version(trt_headers) -> str:
    """"10.16.0": NV_TENSORRT_MAJOR.MINOR.PATCH of NvInferVersion.h, following one level of
    #define to another name (10.16 and 11.x write the numbers into TRT_MAJOR_ENTERPRISE...)."""
    defines = dict(re.findall(r"^#define\s+(\w+)\s+(\w+)", (trt_headers / "NvInferVersion.h").read_text(), re.M))
    parts = [defines[f"NV_TENSORRT_{part}"] for part in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(defines.get(part, part) for part in parts)


# ---- CMake ----------------------------------------------------------------------------------
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
# What CI configures plugins/ with: warnings are errors in CI, never in a user's build (the
# option defaults to OFF).
CI_CMAKE_OPTIONS = ("-DDEPLOYKIT_WERROR=ON",)
# FindTensorRT.cmake reads these from the environment too; a developer's own must not leak in.
TRT_ROOT_VARIABLES = ("TensorRT_ROOT", "TENSORRT_ROOT")


def environment_without_trt_roots() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in TRT_ROOT_VARIABLES}


def run(*command, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    """Run a command (env: the whole environment, else this process's); with check, it must pass."""
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, env=env)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


class CMake:
    """plugins/ (or a copy of it) configured and built the way CI does it."""

    plugins = PLUGINS

    def configure(self, build, *options, source=PLUGINS, ci=True, env=None, check=True):
        """cmake -S source -B build, exporting the compile commands; env: the whole environment
        (default: this process's without TensorRT_ROOT / TENSORRT_ROOT)."""
        return run("cmake", "-S", source, "-B", build, "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
                   *(CI_CMAKE_OPTIONS if ci else ()), *options,
                   env=environment_without_trt_roots() if env is None else env, check=check)

    def environment(self, **variables) -> dict[str, str]:
        """This process's environment without TensorRT_ROOT / TENSORRT_ROOT, plus `variables`."""
        return {**environment_without_trt_roots(), **variables}

    def build(self, build, *targets, check=True):
        target_options = [option for target in targets for option in ("--target", target)]
        return run("cmake", "--build", build, *target_options, "-j", "2", check=check)

    def ctest(self, build):
        return run("ctest", "--output-on-failure", "-V", cwd=build)

    def compile_commands(self, build) -> dict[str, str]:
        """{source file name: its compile command}, from CMake's compile_commands.json, with the
        response files some generators use for nvcc's include folders spelled out."""
        commands = {}
        for entry in json.loads((Path(build) / "compile_commands.json").read_text()):
            words = shlex.split(entry["command"])
            while "--options-file" in words:
                at = words.index("--options-file")
                response = Path(entry["directory"]) / words[at + 1]
                words[at:at + 2] = shlex.split(response.read_text())
            commands[Path(entry["file"]).name] = shlex.join(words)
        return commands


@pytest.fixture
def cmake() -> CMake:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    return CMake()
