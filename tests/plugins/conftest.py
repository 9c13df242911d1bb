"""TensorRT header sets for the plugin tests.

TensorRT's libraries cannot be installed on the machines this project is developed on, but its
public headers can be had (github.com/NVIDIA/TensorRT, Apache-2.0; CI finds 10.3, 10.16 and
11.1 in ../shared/tensorrt-headers). They are never copied into the repository: the tests take
their include/ folders from DEPLOYKIT_TRT_INCLUDE_DIRS, os.pathsep-separated, and run once per
folder; without it they skip, saying so.
"""

import os
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
