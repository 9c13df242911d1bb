"""The CLI fuzzed as a hostile user would: Hypothesis over commands, shapes, parameters, file kinds
and contents, and output paths. For every run: the exit code is in the contract (0, 1, 2; never
3, a deploykit bug), no traceback, a usage error is one line, no file changed that was not an
output, no existing output overwritten without --force, no staging file left behind."""

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deploykit.cli import main

# SPEC -> its input channels: the zoo's pool, a model that writes into its input, integer outputs
SPECS = {"pool": 16, "tests.user_models:in_place": 3, "tests.user_models:argmax_ids": 3}


def _valid_shapes(channels: int):
    return st.builds(lambda b, h, w: f"{b}x{channels}x{h}x{w}", st.integers(1, 2), st.integers(1, 9),
                     st.integers(1, 9))


_ODD_SHAPES = st.one_of(
    st.sampled_from(["1x16x8", "1x16x4x4x4", "0x16x4x4", "1x16x4x4x", "1x16x99999x99999", "[bold]", "1x16x4x4 ",
                     "x", "1X16X5X5", "1,16,6,6"]),
    st.text(alphabet="0123456789x[]/:,-", max_size=12),
)
PARAMS = st.one_of(st.sampled_from(["kind=max", "kind=avg", "kernel_size=3", "stride=1", "padding=9", "kind=[/]",
                                    "ceil_mode=true", "nope=1", "=", "kernel_size", "kind=\u0663"]),
                   st.text(alphabet="ak=[]/:_1", max_size=10))
BACKENDS = st.lists(st.sampled_from(["torch", "ort", "onnx-ref", "trt", "torch-cuda", "nope", "[red]"]),
                    min_size=0, max_size=3).map(",".join)
FILE_KINDS = ["good"] * 6 + ["nested", "empty", "garbage", "truncated", "directory", "fifo", "missing", "loop",
              "markup", "not-utf8"]
OUTPUT_KINDS = ["new"] * 4 + ["existing", "same-as-input", "fifo", "no-folder", "proc", "markup", "not-utf8"]


@pytest.fixture(scope="module")
def good_onnx(tmp_path_factory):
    """SPEC -> its exported file, and "nested" -> a graph with an opset-20 GridSample inside an If."""
    import onnx
    from onnx import TensorProto, helper

    from deploykit.export import export_onnx
    from deploykit.spec import load_model

    folder = tmp_path_factory.mktemp("fuzz")
    files = {}
    for index, (spec, channels) in enumerate(SPECS.items()):
        files[spec] = folder / f"model{index}.onnx"
        export_onnx(load_model(spec), files[spec], trace_shape=(2, channels, 6, 7))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 16, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    grid = helper.make_tensor("g", TensorProto.FLOAT, [1, 2, 2, 2], [0.0] * 8)
    branch = helper.make_graph([helper.make_node("GridSample", ["input", "g"], ["output"], name="inner",
                                                 mode="linear")], "then", [], [y], [grid])
    other = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "else", [], [y])
    cond = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True]))
    graph = helper.make_graph([cond, helper.make_node("If", ["c"], ["output"], name="branch", then_branch=branch,
                                                      else_branch=other)], "nested", [x], [y])
    files["nested"] = folder / "nested.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(files["nested"]))
    return files


def _make_input(work: Path, kind: str, good: Path, suffix: str) -> Path:
    names = {"markup": f"[bold]in[red] :x:{suffix}", "not-utf8": os.fsdecode(b"in\xff") + suffix}
    path = work / names.get(kind, f"in-{kind}{suffix}")
    if kind in ("good", "markup", "not-utf8", "nested"):
        shutil.copy(good, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 3)
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:200])
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    return path


def _make_output(work: Path, kind: str, source: Path | None, suffix: str) -> str:
    if kind == "same-as-input" and source is not None:
        return str(source)
    if kind == "proc":
        return f"/proc/deploykit-fuzz{suffix}"
    names = {"markup": f"[red]out[bold]{suffix}", "not-utf8": os.fsdecode(b"out\xfe") + suffix,
             "no-folder": f"missing/out{suffix}"}
    path = work / names.get(kind, f"out-{kind}{suffix}")
    if kind == "existing":
        path.write_text("the user's file")
    elif kind == "fifo":
        os.mkfifo(path)
    return str(path)


def _snapshot(work: Path) -> dict[str, tuple]:
    state = {}
    for root, dirs, files in os.walk(work):
        for name in dirs + files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            digest = None
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            state[path] = (stat.S_IFMT(info.st_mode), digest, info.st_mtime_ns)
    return state


@st.composite
def invocations(draw):
    command = draw(st.sampled_from(["check", "check", "check", "lint", "lint", "bench", "export"]))
    spec = draw(st.sampled_from(list(SPECS)))
    valid = _valid_shapes(SPECS[spec])
    plan = {"command": command, "spec": spec, "input": draw(st.sampled_from(FILE_KINDS)),
            "output": draw(st.sampled_from(OUTPUT_KINDS)), "force": draw(st.booleans()),
            "shapes": draw(st.lists(st.one_of(valid, valid, valid, _ODD_SHAPES), max_size=2)),
            "params": draw(st.one_of(st.just([]), st.just([]), st.lists(PARAMS, min_size=1, max_size=1))),
            "backends": draw(st.one_of(st.none(), BACKENDS)), "seed": draw(st.sampled_from([0, 0, 1, -1, 2**32])),
            "weights": draw(st.sampled_from([None, None, "garbage", "empty", "directory"])),
            "output_option": draw(st.sampled_from(["--report", "--report", "--html"]))}
    return plan


def _args(plan: dict, work: Path, good: Path) -> tuple[list[str], list[str], bool]:
    """(argv, output paths, whether an output may replace an existing file)."""
    command = plan["command"]
    spec = plan["spec"]
    model = _make_input(work, plan["input"], good["nested" if plan["input"] == "nested" else spec], ".onnx")
    output_suffix = ".html" if plan["output_option"] == "--html" and command == "check" else ".json"
    if command == "export":
        output_suffix = ".onnx"
    output = _make_output(work, plan["output"], model, output_suffix)
    outputs = [output]
    if output_suffix == ".html":
        outputs.append(str(Path(output).with_name(Path(output).stem + "_files")))
    if command == "lint":
        args = ["lint", str(model), "--report", output]
    else:
        args = [command, spec, "--seed", str(plan["seed"])]
        for shape in plan["shapes"]:
            args += ["--shape", shape]
        for param in plan["params"]:
            args += ["-p", param]
        if plan["weights"]:
            args += ["--weights", str(_make_input(work, plan["weights"], good[spec], ".pt"))]
        if command == "export":
            args += ["-o", output]
        else:
            args += ["--onnx", str(model), plan["output_option"] if command == "check" else "--report", output, "-q"]
            if plan["backends"] is not None:
                args += ["--backends", plan["backends"]]
            if command == "bench":
                args += ["--iters", "2", "--warmup", "0", "--max-seconds", "5"]
    if plan["force"]:
        args.append("--force")
    return args, outputs, plan["force"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(plan=invocations())
def test_every_cli_run_keeps_the_contract(good_onnx, plan):
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        work = Path(folder)
        args, outputs, force = _args(plan, work, good_onnx)
        before = _snapshot(work)
        result = CliRunner().invoke(main, args, prog_name="deploykit")
        after = _snapshot(work)
    text = result.output
    event(f"{plan['command']} exit {result.exit_code}")
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, text)
    assert "Traceback" not in text and "internal error" not in text, (args, text)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    written = {os.path.abspath(p) for p in outputs}

    def is_output(path: str) -> bool:
        return path in written or any(path.startswith(w + os.sep) for w in written)

    for path, state in before.items():
        if is_output(path) and force:
            continue
        assert after.get(path) == state, f"{path} changed: {args}"
    for path in set(after) - set(before):
        assert is_output(path), f"{path} appeared: {args}"
        assert not Path(path).name.startswith(".") or Path(path).parent.name.endswith("_files"), (path, args)
