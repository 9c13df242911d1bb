"""Drives deploykit's ONNX Runtime library through ONNX Runtime itself, for
tests/plugins/test_ort_harness.py, which builds the library with AddressSanitizer and UBSan and
runs this script with their runtimes preloaded: every kernel-creation refusal, shape inference,
fp32 and fp16 dispatch, rows on ONNX Runtime's thread pool, run-time refusals, an empty batch.
Imports numpy, onnx and onnxruntime only. Prints "N checks passed, M failed"; a sanitizer
finding aborts the process.

    python tests/plugins/ort_harness/driver.py LIBRARY
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np  # noqa: E402

from deploykit.ops.numpy_reference import numpy_sample  # noqa: E402
from tests.ort_graphs import DOUBLE, FLOAT, FLOAT16, dysample_model, sample_inputs, session  # noqa: E402

BAD_NODES = [  # (model arguments, what the error says besides the node's name)
    (dict(dtype=DOUBLE), "takes float32 or float16"),
    (dict(offset_dtype=FLOAT16), "type"),
    (dict(scale=0), "positive 32-bit integers"),
    (dict(attributes={"groups": -3}), "positive 32-bit integers"),
    (dict(attributes={"scale": 2**40}), "positive 32-bit integers"),
    (dict(attributes={"groups": None}), "needs the int attribute 'groups'"),
    (dict(attributes={"scale": None, "groups": None}), "needs the int attribute"),
    (dict(attributes={"scale": 1.5}), "needs the int attribute 'scale'"),
    (dict(attributes={"scale": "two"}), "needs the int attribute 'scale'"),
    (dict(x_dims=["batch", 8, "height"]), "4-D"),
    (dict(offset_dims=["batch", 16, "height", "width", 1]), "4-D"),
]


class Checks:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def check(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAILED: {what}", flush=True)


def main(library: str) -> int:
    np.seterr(invalid="ignore")  # the reference meets the NaN and Inf put into x on purpose
    checks = Checks()
    for arguments, fragment in BAD_NODES:
        try:
            session(dysample_model(name="bad.node", **arguments), library)
            checks.check(False, f"{arguments} was accepted")
        except Exception as exc:  # ONNX Runtime's own error types
            checks.check("bad.node" in str(exc) and fragment in str(exc), f"{arguments}: {exc}")

    output = session(dysample_model(3, 2, 8, FLOAT16), library).get_outputs()[0]
    checks.check(output.type == "tensor(float16)" and output.shape == ["batch", 8, "height*3", "width*3"],
                 f"inferred {output.type} {output.shape}")

    for dtype, atol in ((FLOAT, 1e-5), (FLOAT16, 2e-3)):
        for scale, groups, channels, threads in ((2, 2, 8, 1), (3, 1, 5, 2), (4, 4, 12, 2), (2, 1, 1, 1)):
            feed = sample_inputs(2, channels, 9, 5, scale, groups, dtype, seed=scale, special=True)
            (got,) = session(dysample_model(scale, groups, channels, dtype), library, threads).run(None, feed)
            want = numpy_sample(feed["x"], feed["offset"], scale, groups)
            same = got.dtype == want.dtype and np.allclose(got.astype(np.float32), want.astype(np.float32),
                                                           atol=atol, rtol=atol, equal_nan=True)
            checks.check(same, f"dtype {dtype} scale {scale} groups {groups}: max difference "
                         f"{np.nanmax(np.abs(got.astype(np.float32) - want.astype(np.float32)))}")

    dynamic = session(dysample_model(2, 2, x_dims=["batch", "channels", "height", "width"], name="run.node"), library)
    for feed, fragment in ((sample_inputs(1, 8, 4, 5, 2, 1), "2 * groups * scale^2"),
                           (sample_inputs(1, 7, 4, 5, 2, 2), "divisible by groups"),
                           ({"x": np.zeros((1, 8, 4, 5), np.float32), "offset": np.zeros((2, 16, 4, 5), np.float32)},
                            "same batch size")):
        try:
            dynamic.run(None, feed)
            checks.check(False, f"x {feed['x'].shape}, offset {feed['offset'].shape} ran")
        except Exception as exc:
            checks.check("run.node" in str(exc) and fragment in str(exc), str(exc))
    for shape in ((0, 8, 4, 5), (1, 8, 0, 5), (1, 0, 4, 5)):
        feed = {"x": np.zeros(shape, np.float32), "offset": np.zeros((shape[0], 16, *shape[2:]), np.float32)}
        (empty,) = dynamic.run(None, feed)
        checks.check(empty.shape == (shape[0], shape[1], shape[2] * 2, shape[3] * 2), f"empty {shape}: {empty.shape}")

    print(f"{checks.passed} checks passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
