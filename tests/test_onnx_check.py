"""check --onnx B --against A.onnx: one ONNX file against another run on ONNX Runtime's CPU,
without SPEC or PyTorch (ONNX-only checks against saved outputs: tests/test_saved_outputs.py)."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.cli_helpers import assert_user_error, run

SHAPES = ("--shape", "1x32x8x8", "--shape", "2x32x11x7")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("against")
    model = folder / "m.onnx"
    assert run("export", "conv_transpose", "-o", model).exit_code == 0
    proto = onnx.load(str(model))
    weight = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    changed = folder / "changed.onnx"
    onnx.save(proto, str(changed))
    return model, changed


def test_a_file_against_another_runs_without_torch(files, tmp_path, torch_unimportable):
    model, _ = files
    report = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "deploykit", "check", "--onnx", str(model), "--against", str(model),
                             *SHAPES, "--backends", "ort,onnx-ref", "--report", str(report)], capture_output=True,
                            text=True, cwd=tmp_path, env=torch_unimportable(),
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["reference"] == f"{model} on ONNX Runtime CPU"
    assert {r["backend"] for r in data["results"]} == {"ort", "onnx-ref"} and len(data["results"]) == 4


def test_a_file_that_computes_otherwise_fails_against_the_reference(files):
    model, changed = files
    result = run("check", "--onnx", changed, "--against", model, *SHAPES)
    assert result.exit_code == 1 and "parity FAILED" in result.output


@pytest.mark.parametrize("option, value", [("--val-range", "0,1"), ("--input-dtype", "int64"), ("-p", "stride=2"),
                                           ("--weights", "w.pt"), ("--inputs", "x.npz")])
def test_a_check_against_another_file_refuses_model_and_input_choices_it_would_ignore(files, option, value):
    model, changed = files
    assert_user_error(run("check", "--onnx", changed, "--against", model, *SHAPES, option, value),
                      f"takes no {option}")


def test_a_dynamic_reference_needs_a_shape_and_one_reference_at_a_time(files, tmp_path):
    model, changed = files
    assert_user_error(run("check", "--onnx", changed, "--against", model), "has dynamic dims", "--shape")
    npz = tmp_path / "ref.npz"
    np.savez(npz, x=np.zeros(1))
    assert_user_error(run("check", "--onnx", changed, "--against", model, "--load-outputs", npz),
                      "--against with --load-outputs")


def test_a_file_is_benched_alone_without_spec_or_torch(files, tmp_path, torch_unimportable):
    model, _ = files
    report = tmp_path / "b.json"
    result = subprocess.run([sys.executable, "-m", "deploykit", "bench", "--onnx", str(model), "--shape", "1x32x8x8",
                             "--iters", "3", "--warmup", "1", "--report", str(report)], capture_output=True, text=True,
                            cwd=tmp_path, env=torch_unimportable(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(report.read_text())["results"]
    assert row["backend"] == "ort" and row["shape"] == {"input": [1, 32, 8, 8]} and row["ratio_to_torch"] is None


def test_a_bench_of_a_file_explains_no_ratio_it_lacks_and_nothing_with_quiet(files):
    model, _ = files
    args = ["bench", "--onnx", model, "--shape", "1x32x8x8", "--iters", "3", "--warmup", "1"]
    told = run(*args)
    assert told.exit_code == 0, told.output
    assert "Times are execution only" in told.stdout and "vs torch = " not in told.stdout  # no torch row: no ratio
    quiet = run(*args, "-q")
    assert quiet.exit_code == 0 and "Times are execution only" not in quiet.stdout and "latency" in quiet.stdout


def test_a_bench_without_spec_needs_the_file_and_no_model_options(files):
    model, _ = files
    assert_user_error(run("bench"), "missing argument 'SPEC'", "--onnx")
    assert_user_error(run("bench", "--onnx", model, "--shape", "1x32x8x8", "-p", "stride=2"), "takes no -p")
    for option, value in (("--val-range", "0,1"), ("--input-dtype", "int64")):  # drawn from the file, never ignored
        assert_user_error(run("bench", "--onnx", model, "--shape", "1x32x8x8", option, value), f"takes no {option}")
    assert_user_error(run("bench", "--onnx", model, "--shape", "1x32x8x8", "--backends", "torch,ort"),
                      "backend torch runs the PyTorch model")


# --- check --onnx F alone: the PyTorch model F's metadata records --------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A zoo export with a parameter and a seed of its own, which the check must take from the file."""
    path = tmp_path_factory.mktemp("recorded") / "ct.onnx"
    assert run("export", "conv_transpose", "-p", "stride=4", "--seed", 7, "-o", path).exit_code == 0
    return path


def _with_metadata(src, dst, **changes):
    """A copy of ``src`` whose metadata entries deploykit.KEY are replaced (None: removed)."""
    proto = onnx.load(str(src))
    kept = {p.key: p.value for p in proto.metadata_props}
    kept.update({f"deploykit.{key}": value for key, value in changes.items()})
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {key: value for key, value in kept.items() if value is not None})
    onnx.save(proto, str(dst))
    return dst


def test_a_file_without_spec_is_checked_against_the_model_its_metadata_records(recorded, tmp_path):
    report = tmp_path / "r.json"
    result = run("check", "--onnx", recorded, "--report", report)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("reference:")]
    assert "conv_transpose (" in line and "stride=4" in line and "seed 7" in line and "metadata" in line
    data = json.loads(report.read_text())
    assert data["passed"] and data["spec"] == "conv_transpose" and data["seed"] == 7
    assert data["reference"] == f"PyTorch fp32, rebuilt from {recorded}'s metadata" and len(data["results"]) == 6
    quiet = run("check", "--onnx", recorded, "--backends", "ort", "-q")
    assert quiet.exit_code == 0 and "parity passed" in quiet.stdout and "reference:" not in quiet.stdout


def test_the_recorded_model_takes_no_parameters_or_seed_of_its_own(recorded):
    for extra in (["-p", "stride=2"], ["--seed", "7"]):
        assert_user_error(run("check", "--onnx", recorded, *extra), f"takes no {extra[0]}", "give SPEC")


@pytest.mark.parametrize("changes, fragments", [
    ({"spec": None}, ["does not record the SPEC"]),
    ({"params": "not json"}, ["unreadable deploykit.params"]),
    # hand-edited: values export never writes are refused as -p would refuse them, never a crash
    ({"params": '{"in_channels": {"a": [1]}}'}, ["bad value", "'in_channels'"]),
    ({"params": '{"in_channels": "8"}'}, ["bad value", "'in_channels'"]),
    ({"params": '{"in_channels": true}'}, ["bad value 'True'"]),
    ({"params": '{"in_channels": 8.5}'}, ["bad value '8.5'"]),  # not "must be divisible by groups"
    ({"params": '{"in_channels": NaN}'}, ["unreadable deploykit.params"]),
    ({"params": "[" * 5000 + "]" * 5000}, ["unreadable deploykit.params"]),
    ({"params": '{" in_channels": 8}'}, ["unreadable deploykit.params"]),
    ({"seed": "99999999999999999999999"}, ["unreadable deploykit.seed", "0..4294967295"]),
    ({"seed": "7_0"}, ["unreadable deploykit.seed"]),  # not seed 70
    ({"spec": "x;rm -rf ~:y$(id)"}, ["neither a zoo name nor package.module:callable"]),
    ({"spec": "mod:f\n\x1b[31mRED"}, ["records SPEC 'mod:f\\n\\x1b[31mRED'"]),
    ({"spec": "--help:x"}, ["neither a zoo name"]),
])
def test_a_file_whose_metadata_cannot_rebuild_its_model_is_refused(recorded, tmp_path, changes, fragments):
    changed = _with_metadata(recorded, tmp_path / "changed.onnx", **changes)
    assert_user_error(run("check", "--onnx", changed), *fragments, "give the SPEC it was exported from",
                      "--load-outputs", "--against")


def test_a_file_without_a_weights_fingerprint_is_not_checked_against_seeded_weights(recorded, tmp_path):
    """A file of a deploykit before fingerprints may hold --weights: its seeded rebuild would be a
    parity failure (exit 1) of a right graph, so the check that names the model is printed instead."""
    import shlex

    older = _with_metadata(recorded, tmp_path / "older.onnx", weights_sha256=None)
    refused = run("check", "--onnx", older, "--backends", "ort")
    assert_user_error(refused, "records no fingerprint of its weights", "adding any --weights")
    command = shlex.split(refused.stderr.split("exported with: ", 1)[1])
    assert command[:3] == ["deploykit", "check", "conv_transpose"] and "stride=4" in command
    assert run(*command[1:], "--backends", "ort").exit_code == 0


def test_a_recorded_callable_is_never_imported_and_its_command_reads_back_the_same_values(recorded, tmp_path):
    """Values a file records are printed so that the command gives the callable the same values
    (a string that reads as another literal quoted, control characters escaped), on one line;
    os:system is never called."""
    import shlex

    values = {"style": "none", "n": "3", "w": " x", "k": "a\x1b[2Jb\nc\u202e", "l": [1, "a", None, True]}
    odd = _with_metadata(recorded, tmp_path / "odd.onnx", spec="tests.user_models:fpn_renamed",
                         params=json.dumps(values))
    refused = run("check", "--onnx", odd)
    assert_user_error(refused, "code deploykit imports only when you name it")
    assert "\x1b" not in refused.stderr and "\u202e" not in refused.stderr
    command = shlex.split(refused.stderr.split("run: ", 1)[1])
    given = ", ".join(f"{key}={value!r}" for key, value in values.items())
    assert_user_error(run(*command[1:]), f"fpn_renamed({given}) raised TypeError")

    touched = tmp_path / "touched"
    system = _with_metadata(recorded, tmp_path / "system.onnx", spec="os:system",
                            params=json.dumps({"command": f"touch {touched}"}))
    assert_user_error(run("check", "--onnx", system), "code deploykit imports only when you name it")
    assert not touched.exists()


def test_an_error_quoting_a_files_newlines_stays_one_line(recorded, tmp_path):
    other = _with_metadata(recorded, tmp_path / "other.onnx", params='{\n"stride": 2}', weights_sha256="ab\ncd")
    assert_user_error(run("check", "conv_transpose", "--onnx", other, "--backends", "ort"),
                      "exported from other weights", "params {\\n\"stride\": 2}")


def test_an_export_with_weights_is_checked_only_with_those_weights(tmp_path):
    import torch

    from deploykit.spec import load_model

    module = load_model("conv_transpose").module
    weights, other = tmp_path / "w.pt", tmp_path / "other.pt"
    torch.save({name: tensor * 3 for name, tensor in module.state_dict().items()}, weights)
    torch.save(module.state_dict(), other)
    exported = tmp_path / "w.onnx"
    assert run("export", "conv_transpose", "--weights", weights, "-o", exported).exit_code == 0
    assert_user_error(run("check", "--onnx", exported), "with weights other than its seeded ones", "--weights FILE")
    assert_user_error(run("check", "--onnx", exported, "--weights", other), "are not the weights")
    assert run("check", "--onnx", exported, "--weights", weights, "--backends", "ort").exit_code == 0
    weights.unlink()
    assert_user_error(run("check", "--onnx", exported, "--weights", weights), "not found", "--load-outputs")


def test_a_user_models_recorded_code_is_run_only_by_the_command_that_names_it(tmp_path):
    """A file (maybe someone else's) never chooses code for deploykit to import: a recorded
    package.module:callable SPEC is refused with the command that names it, whose typed -p values
    ('pl' a string, 8 an int), seed and integer input dtypes rebuild the same model."""
    import shlex

    fpn, guided = tmp_path / "fpn.onnx", tmp_path / "guided.onnx"
    assert run("export", "tests.user_models:fpn", "-p", "style=pl", "-p", "channels=8", "--shape", "1x3x8x8",
               "-o", fpn).exit_code == 0
    assert run("export", "tests.user_models:guided", "--shape", "image=1x3x10x14,mask=1x1x10x14",
               "--input-dtype", "mask=int64", "-o", guided).exit_code == 0
    commands = {}
    for path, shapes in ((fpn, ["--shape", "2x3x6x10"]), (guided, ["--shape", "image=2x3x10x14,mask=2x1x10x14"])):
        refused = run("check", "--onnx", path, *shapes)
        assert_user_error(refused, "code deploykit imports only when you name it", "run: deploykit check")
        commands[path.stem] = command = shlex.split(refused.stderr.split("run: ", 1)[1].strip())
        checked = run(*command[1:], *shapes)
        assert checked.exit_code == 0, checked.output
    fpn_command = " ".join(commands["fpn"])
    assert fpn_command.startswith("deploykit check tests.user_models:fpn -p ") and "--seed 0" in fpn_command
    assert "-p style=pl" in fpn_command and "-p channels=8" in fpn_command
    assert commands["guided"][2:7] == ["tests.user_models:guided", "--seed", "0", "--input-dtype", "mask=int64"]
