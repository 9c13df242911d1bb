"""The DySample TensorRT plugin's enqueue on a real GPU (issue 22, point 2).

tests/plugins/trt_gpu_harness is the GPU variant of the CPU harness (test_trt_harness.py): the
plugin's own sources with the real CUDA kernel (plugins/dysample/dysample_cuda.cu, by nvcc)
instead of the launch double, and still no TensorRT library (the registry and its one libnvinfer
symbol come from trt_harness/doubles.cpp). It takes the creator from the registry, runs the build
phase with dynamic shapes, re-creates the plugin from its serialized fields as a deserialized
engine does, then per case onShapeChange and enqueue with cudaMalloc'ed buffers on a
non-blocking stream (held behind a gate, so a launch on any other stream shows), fp32 and fp16,
odd and non-square planes, scales 2..4, groups 1..4, NaN/Inf inputs. This module writes the
cases and compares the outputs with deploykit's PyTorch reference: fp32 within 2e-5, fp16 within
2e-3 of the reference on the fp16-rounded inputs, NaN and Inf where the reference has them (the
rule of tests/ops/test_fused_cuda.py).

The binary is built by plugins/CMakeLists.txt (-DDEPLOYKIT_BUILD_GPU_CHECKS=ON, target
deploykit_trt_enqueue_check, -DDEPLOYKIT_WERROR=ON as CI configures it), once per TensorRT
header set, for one architecture (the GPU's, else the first of build_flags.json;
test_cmake_build.py compiles all four): wherever nvcc and the headers are, every run compiles and
links it. Running it needs a GPU (pytest -m gpu); elsewhere those tests skip, saying why.

On a GPU machine (DEPLOYKIT_TRT_INCLUDE_DIRS set as for the other plugin tests; the memcheck test
runs when compute-sanitizer is on PATH or beside nvcc):

    .venv/bin/python -m pytest -n 0 -m gpu tests/plugins/test_trt_enqueue_gpu.py -rs

The binary alone, under compute-sanitizer, from the repository root (90: H100/H200; use the
GPU's sm):

    cmake -S plugins -B /tmp/enqueue-check -DDEPLOYKIT_BUILD_GPU_CHECKS=ON -DDEPLOYKIT_CUDA_ARCHITECTURES=90 \\
        -DTensorRT_INCLUDE_DIR=$PWD/../shared/tensorrt-headers/10.16/include
    cmake --build /tmp/enqueue-check --target deploykit_trt_enqueue_check -j
    .venv/bin/python -m tests.plugins.test_trt_enqueue_gpu write /tmp/enqueue-cases
    compute-sanitizer --tool memcheck --leak-check full --error-exitcode 86 \\
        /tmp/enqueue-check/deploykit_trt_enqueue_check /tmp/enqueue-cases
    .venv/bin/python -m tests.plugins.test_trt_enqueue_gpu compare /tmp/enqueue-cases
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "trt_gpu_harness"
DOUBLES = Path(__file__).resolve().parent / "trt_harness" / "doubles.cpp"
BUILD_FLAGS = ROOT / "plugins" / "dysample" / "build_flags.json"
TARGET = "deploykit_trt_enqueue_check"
NO_DEVICE = 77  # the binary's exit status without a usable CUDA device

# (B, C, H, W), scale, groups, offset spread in input pixels (sub-pixel to far past the border).
# Cases of one type with the same scale and groups share one plugin, as one engine's context sees
# several shapes.
SHAPES = [
    ((1, 4, 5, 7), 2, 1, 0.3),
    ((2, 8, 7, 9), 2, 2, 3.0),
    ((1, 6, 11, 4), 2, 2, 40.0),
    ((1, 6, 5, 3), 3, 2, 3.0),
    ((2, 3, 1, 1), 3, 3, 3.0),  # a 1x1 plane, one channel a group
    ((2, 8, 4, 6), 4, 4, 3.0),
    ((1, 4, 6, 6), 4, 1, 40.0),
    ((2, 64, 30, 41), 2, 4, 3.0),  # 154 blocks of 256 threads
]
NAN_INF_SHAPE = ((2, 8, 7, 9), 2, 2, 3.0)
NAN_INF_AT = {(0, 0, 3, 4): float("nan"), (1, 5, 0, 8): float("inf"), (0, 3, 6, 0): float("-inf")}
TOLERANCE = {"float32": {"atol": 2e-5, "rtol": 0.0}, "float16": {"atol": 2e-3, "rtol": 2e-3}}
NUMPY_TYPES = {"float32": np.float32, "float16": np.float16}


# ---- cases and the comparison -----------------------------------------------------------------
@dataclasses.dataclass
class Case:
    name: str
    dtype: str
    shape: tuple[int, int, int, int]
    scale: int
    groups: int
    x: object  # torch.Tensor, float32, holding exactly the values in the file (fp16-rounded for fp16)
    offset: object


def write_cases(folder: Path) -> list[Case]:
    """cases.txt and every case's name.x.bin / name.offset.bin; returns the cases as read back."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for dtype in ("float32", "float16"):
        problems = [(f"{dtype}_{index}", *spec) for index, spec in enumerate(SHAPES)]
        problems.append((f"{dtype}_nan_inf", *NAN_INF_SHAPE))
        for seed, (name, shape, scale, groups, spread) in enumerate(problems):
            gen = torch.Generator().manual_seed(seed)
            batch, _, height, width = shape
            x = torch.randn(shape, generator=gen)
            offset = torch.randn(batch, 2 * groups * scale * scale, height, width, generator=gen) * spread
            if name.endswith("nan_inf"):
                for at, value in NAN_INF_AT.items():
                    x[at] = value
            x.numpy().astype(NUMPY_TYPES[dtype]).tofile(folder / f"{name}.x.bin")
            offset.numpy().astype(NUMPY_TYPES[dtype]).tofile(folder / f"{name}.offset.bin")
            lines.append(f"{name} {dtype} {' '.join(map(str, shape))} {scale} {groups}")
    (folder / "cases.txt").write_text("\n".join(lines) + "\n")
    return read_cases(folder)


def read_cases(folder: Path) -> list[Case]:
    import torch

    cases = []
    for line in (folder / "cases.txt").read_text().split("\n"):
        if not line.strip():
            continue
        name, dtype, *numbers = line.split()
        batch, channels, height, width, scale, groups = map(int, numbers)

        def load(suffix, shape):
            data = np.fromfile(folder / f"{name}.{suffix}.bin", dtype=NUMPY_TYPES[dtype])
            return torch.from_numpy(data.astype(np.float32).reshape(shape))

        cases.append(Case(name, dtype, (batch, channels, height, width), scale, groups,
                          load("x", (batch, channels, height, width)),
                          load("offset", (batch, 2 * groups * scale * scale, height, width))))
    return cases


def read_output(folder: Path, case: Case):
    import torch

    batch, channels, height, width = case.shape
    data = np.fromfile(folder / f"{case.name}.out.bin", dtype=NUMPY_TYPES[case.dtype])
    return torch.from_numpy(data.astype(np.float32).reshape(batch, channels, height * case.scale, width * case.scale))


def compare(case: Case, out) -> None:
    """The output against reference_sample on the same (fp16: fp16-rounded) inputs: NaN and ±Inf in
    the same places, the finite values within the type's tolerance. Raises AssertionError."""
    import torch

    from deploykit.ops.reference import reference_sample

    reference = reference_sample(case.x, case.offset, case.scale, case.groups)
    assert out.shape == reference.shape, f"{case.name}: shape {tuple(out.shape)}, reference {tuple(reference.shape)}"
    nan, expected_nan = torch.isnan(out), torch.isnan(reference)
    assert torch.equal(nan, expected_nan), (f"{case.name}: {int((nan & ~expected_nan).sum())} NaN where the reference "
                                            f"has none, {int((expected_nan & ~nan).sum())} missing")
    inf = torch.isinf(reference)
    assert torch.equal(torch.isinf(out), inf) and torch.equal(out[inf], reference[inf]), \
        f"{case.name}: Inf not where (or not of the sign) the reference has it"
    finite = torch.isfinite(reference)
    torch.testing.assert_close(out[finite], reference[finite], **TOLERANCE[case.dtype],
                               msg=lambda message: f"{case.name} ({case.dtype}): {message}")


# ---- building and running -------------------------------------------------------------------
@dataclasses.dataclass
class Build:
    folder: Path
    log: str
    architecture: str

    @property
    def binary(self) -> Path:
        return self.folder / TARGET


def _architecture() -> str:
    """The GPU's own where there is one (its SASS is what runs there), else the first one
    build_flags.json lists: one architecture keeps the build short."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"{major}{minor}"
    except ImportError:
        pass
    return json.loads(BUILD_FLAGS.read_text())["cuda_architectures"][0]


@pytest.fixture(scope="module")
def _builds() -> dict:
    return {}


@pytest.fixture
def enqueue_check(cmake, trt_headers, _builds, tmp_path_factory) -> Build:
    """deploykit_trt_enqueue_check, configured and built by CMake as CI does, once per header set."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the enqueue check links the real CUDA kernel, which needs it")
    if trt_headers not in _builds:
        folder = tmp_path_factory.mktemp(f"enqueue-check-{trt_headers.parent.name}")
        architecture = _architecture()
        log = cmake.configure(folder, "-DDEPLOYKIT_BUILD_GPU_CHECKS=ON", f"-DTensorRT_INCLUDE_DIR={trt_headers}",
                              f"-DDEPLOYKIT_CUDA_ARCHITECTURES={architecture}").stdout
        cmake.build(folder, TARGET)
        _builds[trt_headers] = Build(folder, log, architecture)
    return _builds[trt_headers]


def _run(binary: Path, *arguments, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *map(str, arguments)], capture_output=True, text=True, timeout=timeout)


def _skip_without_device(result: subprocess.CompletedProcess) -> None:
    if result.returncode == NO_DEVICE:
        pytest.skip(result.stderr.strip())


def _compute_sanitizer() -> str | None:
    found = shutil.which("compute-sanitizer")
    nvcc = shutil.which("nvcc")
    if found is None and nvcc is not None:
        toolkit = Path(nvcc).resolve().parents[1]
        for candidate in (toolkit / "bin" / "compute-sanitizer", toolkit / "compute-sanitizer" / "compute-sanitizer"):
            if candidate.is_file():
                return str(candidate)
    return found


# ---- everywhere nvcc and TensorRT's headers are -------------------------------------------------
def test_the_check_builds_with_cmake_links_the_real_kernel_and_no_tensorrt_library(cmake, enqueue_check,
                                                                                   trt_version):
    assert (f"building {TARGET} (the DySample TensorRT plugin's enqueue on the real CUDA kernel, "
            f"sm_{enqueue_check.architecture}, TensorRT {trt_version} headers, no TensorRT library linked)"
            ) in enqueue_check.log, enqueue_check.log
    ours = {HARNESS / "main.cpp", DOUBLES, *(ROOT / "plugins" / "dysample" / name
                                              for name in ("trt_plugin.cpp", "trt_log.cpp", "trt_registration.cpp"))}
    entries = json.loads((enqueue_check.folder / "compile_commands.json").read_text())
    commands = {Path(entry["file"]).resolve(): entry["command"] for entry in entries
                if f"{TARGET}.dir" in entry["command"]}
    assert set(commands) == ours, sorted(map(str, commands))
    for source, command in commands.items():
        flags = command.split()
        assert "-Werror" in flags and "-DDEPLOYKIT_HARNESS_REAL_KERNEL" in flags, command
    kernel = cmake.compile_commands(enqueue_check.folder)["dysample_cuda.cu"]
    assert "-Werror=all-warnings" in kernel.split() and f"sm_{enqueue_check.architecture}" in kernel, kernel
    cuda = subprocess.run(["nm", "-C", str(enqueue_check.binary)], capture_output=True, text=True)
    assert cuda.returncode == 0, cuda.stderr
    # The kernel's host stubs and its device code: absent if doubles.cpp's launch double had been
    # linked instead (the linker keeps either explicit instantiation of sample_cuda, silently).
    for kernel in ("::sample_kernel<float>(", "::sample_kernel<__half>("):
        assert kernel in cuda.stdout, f"{kernel} is not in {enqueue_check.binary}"
    sections = subprocess.run(["readelf", "-S", "-d", str(enqueue_check.binary)], capture_output=True, text=True)
    assert ".nv_fatbin" in sections.stdout, sections.stdout
    needed = [line for line in sections.stdout.splitlines() if "(NEEDED)" in line]
    assert any("libcudart" in line for line in needed) and not any("nvinfer" in line for line in needed), needed


def test_off_by_default_and_when_on_without_the_plugin_configure_says_why(cmake, tmp_path):
    """Users' builds never get the test program; a CI that asks for it where it cannot be built is told."""
    without = cmake.configure(tmp_path / "without", "-DDEPLOYKIT_BUILD_GPU_CHECKS=ON", "-DDEPLOYKIT_WITH_CUDA=OFF",
                              "-DDEPLOYKIT_TRT_FROM_PYTHON=OFF").stdout
    assert ("DEPLOYKIT_BUILD_GPU_CHECKS is ON but the DySample TensorRT plugin is skipped (see above): "
            f"skipping {TARGET}") in without, without
    headers = [part for part in os.environ.get("DEPLOYKIT_TRT_INCLUDE_DIRS", "").split(os.pathsep) if part]
    if not headers or shutil.which("nvcc") is None:
        pytest.skip("the default needs nvcc and DEPLOYKIT_TRT_INCLUDE_DIRS, where the check could be built")
    default = tmp_path / "default"
    log = cmake.configure(default, f"-DTensorRT_INCLUDE_DIR={headers[0]}", "-DDEPLOYKIT_CUDA_ARCHITECTURES=80").stdout
    targets = subprocess.run(["cmake", "--build", str(default), "--target", "help"], capture_output=True,
                             text=True).stdout
    assert "deploykit_trt_plugin_check" in targets and TARGET not in targets + log, log + targets


def test_bad_case_files_are_refused_before_any_cuda_call(enqueue_check, tmp_path):
    usage = _run(enqueue_check.binary)
    assert usage.returncode == 2 and "usage:" in usage.stderr, usage.stderr
    write_cases(tmp_path)
    x = tmp_path / "float32_1.x.bin"
    x.write_bytes(x.read_bytes()[:-4])
    short = _run(enqueue_check.binary, tmp_path)
    assert short.returncode == 2, short.stdout + short.stderr
    assert f"{x}: expected {2 * 8 * 7 * 9 * 4} bytes, found {2 * 8 * 7 * 9 * 4 - 4}" in short.stderr, short.stderr
    (tmp_path / "cases.txt").write_text("float32_0 float64 1 4 5 7 2 1\n")
    wrong_type = _run(enqueue_check.binary, tmp_path)
    assert wrong_type.returncode == 2 and "cases.txt:1: expected" in wrong_type.stderr, wrong_type.stderr
    assert not list(tmp_path.glob("*.out.bin"))


def test_without_a_cuda_device_the_check_exits_77_saying_why(enqueue_check, tmp_path):
    write_cases(tmp_path / "cases")
    result = _run(enqueue_check.binary, tmp_path / "cases")
    if result.returncode == 0:
        pytest.skip(f"a CUDA device is here ({result.stdout.strip().splitlines()[-1]}): the gpu tests check the run")
    assert result.returncode == NO_DEVICE, result.stdout + result.stderr
    assert "deploykit_trt_enqueue_check: no usable CUDA device (CUDA runtime " in result.stderr, result.stderr
    assert not list((tmp_path / "cases").glob("*.out.bin"))


def test_the_comparison_fails_on_a_wrong_value_a_moved_nan_a_flipped_inf_and_an_unwritten_output(tmp_path):
    """compare() is what makes the GPU runs able to fail: it is checked here, on the real cases,
    against the reference itself and against outputs broken in each way the GPU could break them."""
    import torch

    from deploykit.ops.reference import reference_sample

    cases = {case.name: case for case in write_cases(tmp_path)}
    assert len(cases) == 2 * (len(SHAPES) + 1)
    for case in cases.values():
        compare(case, reference_sample(case.x, case.offset, case.scale, case.groups))
    for name, step in (("float32_1", 1e-4), ("float16_1", 1e-2)):
        case = cases[name]
        out = reference_sample(case.x, case.offset, case.scale, case.groups)
        out[1, 7, 13, 17] += step
        with pytest.raises(AssertionError, match=name):
            compare(case, out)
    case = cases["float32_nan_inf"]
    reference = reference_sample(case.x, case.offset, case.scale, case.groups)
    assert torch.isnan(reference).any() and (reference == float("inf")).any() and (reference == float("-inf")).any()
    moved = reference.clone()
    moved[torch.isnan(moved)] = 0.0
    moved[0, 0, 0, 0] = float("nan")
    flipped = torch.where(torch.isinf(reference), -reference, reference)
    unwritten = torch.full_like(reference, float("nan"))  # the binary's 0xFF fill
    for broken, words in ((moved, "NaN where"), (flipped, "Inf not where"), (unwritten, "NaN where")):
        with pytest.raises(AssertionError, match=words):
            compare(case, broken)


# ---- on a GPU -------------------------------------------------------------------------------
@pytest.mark.gpu
def test_enqueue_on_the_gpu_matches_the_torch_reference(enqueue_check, tmp_path):
    cases = write_cases(tmp_path)
    result = _run(enqueue_check.binary, tmp_path)
    _skip_without_device(result)
    print(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, result.stdout + result.stderr
    for case in cases:
        assert f"ok {case.name} {case.dtype} " in result.stdout, result.stdout
        compare(case, read_output(tmp_path, case))


@pytest.mark.gpu
def test_enqueue_is_clean_under_compute_sanitizer_memcheck(enqueue_check, tmp_path):
    sanitizer = _compute_sanitizer()
    if sanitizer is None:
        pytest.skip("compute-sanitizer is not on PATH or beside nvcc: the memcheck run needs it")
    cases = write_cases(tmp_path)
    result = subprocess.run([sanitizer, "--tool", "memcheck", "--leak-check", "full", "--error-exitcode", "86",
                             str(enqueue_check.binary), str(tmp_path)], capture_output=True, text=True, timeout=500)
    _skip_without_device(result)
    assert result.returncode == 0 and "ERROR SUMMARY: 0 errors" in result.stdout, result.stdout + result.stderr
    for case in cases:
        compare(case, read_output(tmp_path, case))


# ---- by hand: python -m tests.plugins.test_trt_enqueue_gpu write|compare FOLDER ---------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cases for deploykit_trt_enqueue_check, and its outputs checked.")
    parser.add_argument("action", choices=("write", "compare"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.action == "write":
        cases = write_cases(args.folder)
        print(f"{len(cases)} cases in {args.folder}: run deploykit_trt_enqueue_check {args.folder}")
        return 0
    failed = 0
    for case in read_cases(args.folder):
        try:
            compare(case, read_output(args.folder, case))
            print(f"ok {case.name}")
        except (AssertionError, OSError, ValueError) as exc:
            failed += 1
            print(f"FAILED {case.name}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
