"""deploykit's ONNX Runtime custom-op library (deploykit.ops.ort_library): a plain
onnxruntime.InferenceSession runs plugin graphs with it, bit-equal to the fused kernel; bad nodes
are ONNX Runtime errors naming the node; the first-use build is cached, keyed and explained."""

import importlib.util
import shutil
import subprocess

import numpy as np
import pytest

from deploykit.errors import EnvironmentProblem
from deploykit.ops import ort_library
from tests.ort_graphs import DOUBLE, FLOAT, FLOAT16, dysample_model, sample_inputs, session

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
HEADERS_FIX = "DEPLOYKIT_ORT_INCLUDE_DIR"


def test_ort_library_path_is_public_and_what_a_plain_session_registers(ort_custom_ops, tmp_path):
    """The README's serving snippet: an exported plugin graph in a plain InferenceSession."""
    import onnxruntime as ort

    from deploykit.export import export_onnx
    from deploykit.ops import ort_library_path
    from deploykit.spec import load_model, reference_outputs

    model = load_model("dysample_plus", {"in_channels": "16", "groups": "4"})
    path = export_onnx(model, tmp_path / "p.onnx", dysample_impl="plugin", verify=False).path
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(ort_library_path()))
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert ort_library_path() == ort_custom_ops
    for shape in [(1, 16, 5, 7), (2, 16, 12, 9)]:
        feed = model.feed(shape)
        (got,) = plain.run(None, feed)
        (want,) = reference_outputs(model, feed).values()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [FLOAT, FLOAT16])
@pytest.mark.parametrize("scale, groups, channels", [(2, 2, 8), (3, 1, 5), (4, 4, 12)])
def test_bit_equal_to_the_fused_kernel_with_nan_and_inf_placed_as_grid_sample(ort_custom_ops, dtype, scale, groups,
                                                                              channels):
    import torch

    from deploykit.ops.fused import fused_sample
    from deploykit.ops.reference import reference_sample

    feed = sample_inputs(2, channels, 7, 6, scale, groups, dtype, seed=scale, special=True)
    (got,) = session(dysample_model(scale, groups, channels, dtype), ort_custom_ops, threads=2).run(None, feed)
    x, offset = (torch.from_numpy(feed[name]) for name in ("x", "offset"))
    fused = fused_sample(x, offset, scale, groups).numpy()
    assert got.dtype == feed["x"].dtype and got.shape == (2, channels, 7 * scale, 6 * scale)
    np.testing.assert_array_equal(got, fused)  # NaN where NaN, bit for bit elsewhere
    reference = reference_sample(x.float(), offset.float(), scale, groups).numpy()
    assert np.array_equal(np.isnan(got.astype(np.float32)), np.isnan(reference))


def test_threads_split_rows_without_changing_a_bit(ort_custom_ops):
    model = dysample_model(2, 2, 8)
    feed = sample_inputs(3, 8, 33, 17, 2, 2, seed=4)
    (one,) = session(model, ort_custom_ops, threads=1).run(None, feed)
    (two,) = session(model, ort_custom_ops, threads=2).run(None, feed)
    np.testing.assert_array_equal(one, two)


def test_shape_inference_gives_the_output_its_type_and_dims(ort_custom_ops):
    dynamic = session(dysample_model(3, 2, 8, FLOAT16), ort_custom_ops).get_outputs()[0]
    assert dynamic.type == "tensor(float16)" and dynamic.shape == ["batch", 8, "height*3", "width*3"]
    static = session(dysample_model(2, 2, 8, x_dims=[1, 8, 5, 7], offset_dims=[1, 16, 5, 7]),
                     ort_custom_ops).get_outputs()[0]
    assert static.type == "tensor(float)" and static.shape == [1, 8, 10, 14]


@pytest.mark.parametrize("model, fragment", [
    (dict(dtype=DOUBLE), "x is float64; DySample takes float32 or float16"),
    (dict(offset_dtype=FLOAT16), "does not match expected type"),  # ONNX Runtime's own type check comes first
    (dict(scale=0), "scale and groups must be positive 32-bit integers (got scale 0, groups 2)"),
    (dict(attributes={"groups": -3}), "got scale 2, groups -3"),
    (dict(attributes={"scale": 2**40}), "scale and groups must be positive 32-bit integers"),
    (dict(attributes={"groups": None}), "needs the int attribute 'groups'"),
    (dict(attributes={"scale": 1.5}), "needs the int attribute 'scale'"),
    (dict(x_dims=["batch", 8, "height"]), "x must be 4-D (B, C, H, W), got (?, 8, ?)"),
], ids=["float64", "mixed-types", "scale-0", "groups-negative", "scale-huge", "no-groups", "float-scale", "rank-3"])
def test_a_bad_node_is_an_onnx_runtime_error_naming_the_node(ort_custom_ops, model, fragment):
    with pytest.raises(Exception, match="decoder.up3") as caught:
        session(dysample_model(name="decoder.up3", **model), ort_custom_ops)
    assert fragment in str(caught.value), str(caught.value)


def test_inputs_that_do_not_fit_are_an_error_at_run_time_naming_the_node(ort_custom_ops):
    ready = session(dysample_model(2, 2, x_dims=["batch", "channels", "height", "width"], name="head"), ort_custom_ops)
    feed = sample_inputs(1, 8, 4, 5, 2, 1)  # offsets for one group, the node has two
    with pytest.raises(Exception, match="DySample node 'head': offset must have 2 \\* groups \\* scale\\^2 channels"):
        ready.run(None, feed)
    feed = sample_inputs(1, 7, 4, 5, 2, 2)
    with pytest.raises(Exception, match="channels of x must be divisible by groups"):
        ready.run(None, feed)


def test_an_empty_batch_gives_an_empty_output(ort_custom_ops):
    (out,) = session(dysample_model(2, 2, 8), ort_custom_ops).run(None, sample_inputs(0, 8, 4, 5, 2, 2))
    assert out.shape == (0, 8, 8, 10)


# ---- where the library comes from ------------------------------------------------------------

def test_without_headers_it_says_what_to_set_in_one_line(without_ort_library):
    with pytest.raises(EnvironmentProblem) as caught:
        ort_library.ort_library_path()
    message = str(caught.value)
    assert "needs ONNX Runtime's C API headers" in message and HEADERS_FIX in message and "\n" not in message
    assert ort_library.library_problem() == message


def test_headers_older_than_the_c_api_it_needs_are_refused(tmp_path, monkeypatch):
    (tmp_path / "onnxruntime_c_api.h").write_text("#define ORT_API_VERSION 16\n")
    monkeypatch.setenv(ort_library.INCLUDE_ENV, str(tmp_path))
    monkeypatch.setattr(ort_library, "_built", {})
    with pytest.raises(EnvironmentProblem, match="C API version 16; .* needs 17 \\(ONNX Runtime 1.17\\)"):
        ort_library.ort_library_path()


def test_a_library_given_is_used_as_it_is_and_a_missing_one_is_named(tmp_path, monkeypatch):
    given = tmp_path / "libmine.so"
    given.write_bytes(b"")
    monkeypatch.setenv(ort_library.LIBRARY_ENV, str(given))
    assert ort_library.ort_library_path() == given
    monkeypatch.setenv(ort_library.LIBRARY_ENV, str(tmp_path / "gone.so"))
    with pytest.raises(EnvironmentProblem, match="DEPLOYKIT_ORT_LIBRARY=.*gone.so is not a file"):
        ort_library.ort_library_path()


@pytest.fixture
def own_headers(ort_custom_ops, tmp_path, monkeypatch):
    """A copy of the headers in use, and an empty deploykit cache: builds here are this test's."""
    headers = tmp_path / "include"
    shutil.copytree(ort_library.ort_include_dir(), headers)
    monkeypatch.setenv(ort_library.INCLUDE_ENV, str(headers))
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ort_library, "_built", {})
    return headers


def test_the_build_is_cached_and_keyed_by_the_headers_it_was_built_against(own_headers, monkeypatch):
    first = ort_library.ort_library_path(cuda=False)
    built_at = first.stat().st_mtime_ns
    monkeypatch.setattr(ort_library, "_built", {})  # a new process: finds the build, builds nothing
    assert ort_library.ort_library_path(cuda=False) == first and first.stat().st_mtime_ns == built_at
    header = own_headers / "onnxruntime_c_api.h"
    header.write_text(header.read_text() + "\n// another release\n")
    monkeypatch.setattr(ort_library, "_built", {})
    other = ort_library.ort_library_path(cuda=False)
    assert other != first and other.is_file() and first.is_file()
    assert [p.name for p in other.parent.iterdir() if p.name.startswith(".")] == []  # no half-written library


def test_a_failed_build_is_one_line_naming_the_compilers_log(own_headers):
    header = own_headers / "onnxruntime_c_api.h"
    header.write_text(header.read_text() + "\n#error the headers are broken\n")
    with pytest.raises(EnvironmentProblem, match="building the ONNX Runtime custom-op library failed") as caught:
        ort_library.ort_library_path(cuda=False)
    log = next(own_headers.parent.glob("cache/deploykit_ort-*/build.log"))
    assert str(log) in str(caught.value) and "the headers are broken" in log.read_text()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH: the CUDA provider's kernel is not "
                    "compiled here")
def test_the_cuda_build_compiles_links_the_cuda_runtime_and_still_runs_on_the_cpu(own_headers):
    """Where onnxruntime-gpu is installed, the library also carries the CUDA provider's kernel;
    here that build is compiled and loaded (its CPU kernel runs; no GPU runs the other)."""
    library = ort_library.ort_library_path(cuda=True)
    assert "libcudart" in subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout
    feed = sample_inputs(1, 8, 4, 5, 2, 2)
    (out,) = session(dysample_model(2, 2, 8), library).run(None, feed)
    assert out.shape == (1, 8, 8, 10)


def test_a_build_in_a_cache_that_cannot_be_written_is_used_as_it_is(own_headers, monkeypatch):
    built = ort_library.ort_library_path(cuda=False)

    def unwritable():
        raise EnvironmentProblem("cannot write in the deploykit cache (Read-only file system)", "set DEPLOYKIT_CACHE")

    monkeypatch.setattr(ort_library, "usable_cache_dir", unwritable)
    monkeypatch.setattr(ort_library, "_built", {})
    assert ort_library.ort_library_path(cuda=False) == built


def test_a_build_made_with_headers_is_reused_where_there_are_none(own_headers, monkeypatch):
    built = ort_library.ort_library_path(cuda=False)
    monkeypatch.delenv(ort_library.INCLUDE_ENV)
    monkeypatch.setattr(ort_library, "_SYSTEM_INCLUDES", ())
    monkeypatch.setattr(ort_library, "_built", {})
    assert ort_library.ort_library_path(cuda=False) == built


def test_a_library_or_header_folder_named_but_unusable_stops_every_command(tmp_path, monkeypatch):
    """Asked for by name, the library is never quietly replaced by onnx-ref: exit 2."""
    from tests.cli_helpers import assert_user_error, run

    monkeypatch.setattr(ort_library, "_built", {})
    monkeypatch.setenv(ort_library.LIBRARY_ENV, str(tmp_path))  # a folder
    result = run("check", "dysample", "--dysample-impl", "plugin", "--backends", "torch,ort", "--shape", "1x64x8x8")
    assert_user_error(result, "DEPLOYKIT_ORT_LIBRARY=", "is not a file")
    monkeypatch.delenv(ort_library.LIBRARY_ENV)
    monkeypatch.setenv(ort_library.INCLUDE_ENV, str(tmp_path))  # no header there
    result = run("export", "dysample", "-o", tmp_path / "d.onnx")
    assert_user_error(result, f"DEPLOYKIT_ORT_INCLUDE_DIR={tmp_path} holds no onnxruntime_c_api.h")
