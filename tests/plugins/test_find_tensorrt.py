"""plugins/cmake/FindTensorRT.cmake on its own: a one-line project calls find_package(TensorRT)
and reports what it got: the version from NvInferVersion.h, the imported targets, and which hint
won. Header sets from DEPLOYKIT_TRT_INCLUDE_DIRS (conftest.py); a libnvinfer is faked by an
empty file, since finding it never opens it.
"""

import re
import sys

import pytest

PROBE = """cmake_minimum_required(VERSION 3.19)
project(find_tensorrt_probe LANGUAGES NONE)
list(APPEND CMAKE_MODULE_PATH "{module_dir}")
find_package(TensorRT ${{PROBE_ARGS}})
message(STATUS "probe found=${{TensorRT_FOUND}} version=${{TensorRT_VERSION}} nvinfer=${{TensorRT_nvinfer_FOUND}}")
message(STATUS "probe include=${{TensorRT_INCLUDE_DIRS}} libraries=${{TensorRT_LIBRARIES}}")
foreach(target TensorRT::headers TensorRT::nvinfer)
  if(TARGET ${{target}})
    get_target_property(type ${{target}} TYPE)
    get_target_property(includes ${{target}} INTERFACE_INCLUDE_DIRECTORIES)
    get_target_property(links ${{target}} INTERFACE_LINK_LIBRARIES)
    set(location "")
    if(type STREQUAL "SHARED_LIBRARY")
      get_target_property(location ${{target}} IMPORTED_LOCATION)
    endif()
    message(STATUS "probe ${{target}} type=${{type}} includes=${{includes}} links=${{links}} location=${{location}}")
  endif()
endforeach()
"""


@pytest.fixture
def find(cmake, tmp_path):
    """find(*cmake_options, env=..., args=find_package's arguments) -> {probe key: value}, or
    the failed configure when check=False."""
    source = tmp_path / "probe"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(PROBE.format(module_dir=cmake.plugins / "cmake"))
    runs = iter(range(100))

    def find_(*options, env=None, args=(), check=True):
        build = tmp_path / f"build{next(runs)}"
        result = cmake.configure(build, "-DTensorRT_FROM_PYTHON=OFF", f"-DPROBE_ARGS={';'.join(args)}", *options,
                                 source=source, ci=False, env=env, check=check)
        if not check:
            return result
        found = {}
        for line in result.stdout.splitlines():
            if line.startswith("-- probe "):
                words = line[len("-- probe "):].split(" ")
                prefix = words[0] + "." if "=" not in words[0] else ""
                found.update((prefix + key, value) for key, _, value in (w.partition("=") for w in words if "=" in w))
        found["log"] = result.stdout
        return found

    return find_


@pytest.fixture
def trt_root(trt_headers, tmp_path):
    """A TensorRT installation: include/ (the header set) and lib/libnvinfer.so.10, as a wheel
    names it (no libnvinfer.so)."""
    root = tmp_path / "TensorRT"
    (root / "lib").mkdir(parents=True)
    (root / "include").symlink_to(trt_headers)
    (root / "lib" / "libnvinfer.so.10").write_bytes(b"")
    return root


def test_headers_alone_give_tensorrt_headers_and_the_version(find, trt_headers, trt_version):
    found = find(f"-DTensorRT_INCLUDE_DIR={trt_headers}")
    assert (found["found"], found["version"], found["nvinfer"]) == ("TRUE", trt_version, "FALSE")
    assert f'Found TensorRT: {trt_headers} (found version "{trt_version}")' in found["log"]
    assert found["TensorRT::headers.type"] == "INTERFACE_LIBRARY"
    assert found["TensorRT::headers.includes"] == str(trt_headers)
    assert "TensorRT::nvinfer.type" not in found  # no library, no target


@pytest.mark.parametrize("hint", ["TensorRT_ROOT", "TENSORRT_ROOT", "environment TensorRT_ROOT",
                                  "environment TENSORRT_ROOT"])
def test_a_root_gives_tensorrt_nvinfer(cmake, find, trt_root, trt_version, hint):
    if hint.startswith("environment "):
        found = find(env=cmake.environment(**{hint.split()[1]: str(trt_root)}))
    else:
        found = find(f"-D{hint}={trt_root}")
    library = trt_root / "lib" / "libnvinfer.so.10"
    assert (found["found"], found["version"], found["nvinfer"]) == ("TRUE", trt_version, "TRUE")
    assert found["libraries"] == str(library)
    assert found["TensorRT::nvinfer.type"] == "SHARED_LIBRARY"
    assert found["TensorRT::nvinfer.location"] == str(library)
    assert found["TensorRT::nvinfer.links"] == "TensorRT::headers"
    assert found["TensorRT::headers.includes"] == str(trt_root / "include")


def test_an_include_dir_given_to_cmake_wins_over_a_root_in_the_environment(cmake, find, trt_root, trt_headers):
    found = find(f"-DTensorRT_INCLUDE_DIR={trt_headers}", env=cmake.environment(TENSORRT_ROOT=str(trt_root)))
    assert (found["found"], found["nvinfer"], found["include"]) == ("TRUE", "FALSE", str(trt_headers))


def test_the_nvinfer_component_and_a_version_can_be_required(find, trt_headers, trt_root):
    headers_only = find(f"-DTensorRT_INCLUDE_DIR={trt_headers}", args=("REQUIRED", "COMPONENTS", "nvinfer"),
                        check=False)
    assert headers_only.returncode != 0 and "Could NOT find TensorRT" in headers_only.stderr
    assert "(missing: nvinfer)" in headers_only.stderr, headers_only.stderr
    assert "gives headers only" in headers_only.stderr, headers_only.stderr
    assert find(f"-DTensorRT_ROOT={trt_root}", args=("REQUIRED", "COMPONENTS", "nvinfer"))["nvinfer"] == "TRUE"
    too_new = find(f"-DTensorRT_ROOT={trt_root}", args=("99", "REQUIRED"), check=False)
    assert too_new.returncode != 0 and "unsuitable version" in too_new.stderr, too_new.stderr


def test_without_any_hint_nothing_is_found_and_the_reason_says_what_to_set(find):
    assert find()["found"] == "FALSE"
    required = find(args=("REQUIRED",), check=False)
    assert required.returncode != 0
    assert re.search(r"Could NOT find TensorRT.*\s+Reason given by package:\s+set TensorRT_ROOT or "
                     r"TensorRT_INCLUDE_DIR", required.stderr), required.stderr


def test_the_python_tensorrt_package_is_searched_when_asked(cmake, find, trt_headers, trt_version, tmp_path):
    # A tensorrt_libs package as a wheel lays it out (libraries beside __init__.py), with
    # headers added, found through the interpreter's import path, never imported.
    package = tmp_path / "site" / "tensorrt_libs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('find_spec must not import me')\n")
    (package / "include").symlink_to(trt_headers)
    (package / "libnvinfer.so.10").write_bytes(b"")
    found = find("-DTensorRT_FROM_PYTHON=ON", f"-DPython3_EXECUTABLE={sys.executable}",
                 env=cmake.environment(PYTHONPATH=str(tmp_path / "site")))
    assert (found["found"], found["version"], found["nvinfer"]) == ("TRUE", trt_version, "TRUE")
    assert found["TensorRT::nvinfer.location"] == str(package / "libnvinfer.so.10")
