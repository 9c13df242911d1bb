import os
from pathlib import Path

import pytest

from deploykit.errors import EnvironmentProblem, UserError
from deploykit.files import (MANIFEST, atomic_path, ensure_writable, forget_inputs, note_input,
                             refuse_outputs_that_are_inputs, staged_files, write_folder_atomic, write_text_atomic)


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        with staged_files(tmp_path / "m.onnx") as staged:
            staged.write_text("model")
            (staged.parent / "m.onnx.data").write_text("weights")
    finally:
        os.umask(old)
    for name in ("a.json", "m.onnx", "m.onnx.data"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "m.onnx", "m.onnx.data"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_files(tmp_path / "m.onnx") as staged:
            staged.write_text("half")
            (staged.parent / "m.onnx.data").write_text("half")
            raise RuntimeError("exporter failed")
    assert list(tmp_path.iterdir()) == []


def test_refusals(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="already exists"):
        ensure_writable(tmp_path / "dangling", force=False)
    with pytest.raises(UserError, match="is not a directory"):
        ensure_writable(tmp_path / "file" / "r.json", force=False)
    with pytest.raises(UserError, match="is a directory"):
        ensure_writable(tmp_path, force=True)
    with pytest.raises(UserError, match="does not exist"):
        ensure_writable(tmp_path / "missing" / "r.json", force=False)
    with pytest.raises(UserError, match="already exists"):
        with staged_files(tmp_path / "m.onnx") as staged:
            staged.write_text("model")
            (tmp_path / "m.onnx.data").write_text("someone else's")
            (staged.parent / "m.onnx.data").write_text("ours")
    assert (tmp_path / "m.onnx.data").read_text() == "someone else's" and not (tmp_path / "m.onnx").exists()


def test_a_file_that_appears_during_the_write_is_never_replaced(tmp_path):
    target = tmp_path / "r.json"
    with pytest.raises(UserError, match="appeared while deploykit was writing it"):
        with atomic_path(target) as staged:
            staged.write_text("ours")
            target.write_text("theirs")  # another run, another program
    assert target.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    with pytest.raises(UserError, match="appeared"):
        with staged_files(tmp_path / "m.onnx") as staged:
            staged.write_text("model")
            (staged.parent / "m.onnx.data").write_text("weights")
            (tmp_path / "m.onnx").write_text("theirs")
    # the sibling committed first is taken back: no half set is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "r.json"]
    assert (tmp_path / "m.onnx").read_text() == "theirs"


def test_force_replaces_regular_files_only(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for target in (tmp_path / "fifo", Path("/dev/null")):
        with pytest.raises(UserError, match="not a regular file"):
            ensure_writable(target, force=True)
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    with pytest.raises(UserError, match="not a regular file"):
        ensure_writable(tmp_path / "link", force=True)
    with pytest.raises(UserError, match="not a regular file"):  # a FIFO that appears before the commit
        with atomic_path(tmp_path / "late", force=True) as staged:
            staged.write_text("x")
            os.mkfifo(tmp_path / "late")
    (tmp_path / "file").write_text("old")
    write_text_atomic(tmp_path / "file", "new", force=True)
    assert (tmp_path / "file").read_text() == "new"


def test_outputs_that_are_inputs_are_refused_even_with_force(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_text("model")
    (tmp_path / "alias.onnx").symlink_to(model)
    forget_inputs()
    note_input(model)
    try:
        for target in (model, tmp_path / "alias.onnx", tmp_path / "." / "m.onnx"):
            with pytest.raises(UserError, match="is an input"):
                write_text_atomic(target, "report", force=True)
    finally:
        forget_inputs()
    assert model.read_text() == "model"
    with pytest.raises(UserError, match="is the --onnx file"):
        refuse_outputs_that_are_inputs({"--report": tmp_path / "alias.onnx"}, {"--onnx": model})
    with pytest.raises(UserError, match="name the same file"):
        refuse_outputs_that_are_inputs({"--report": tmp_path / "r", "--html": tmp_path / "r"}, {})


def test_force_on_a_folder_removes_only_what_deploykit_wrote(tmp_path):
    folder = tmp_path / "R_files"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's")
    with pytest.raises(UserError, match="already exists"):
        write_folder_atomic(folder, {"a.png": b"1"})
    write_folder_atomic(folder, {"a.png": b"1", "b.png": b"2"}, force=True)
    write_folder_atomic(folder, {"a.png": b"3"}, force=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != MANIFEST} == {
        "a.png": b"3", "notes.txt": b"the user's"}
    with pytest.raises(UserError, match="not a folder"):
        (tmp_path / "plain").write_text("x")
        write_folder_atomic(tmp_path / "plain", {"a.png": b"1"}, force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder is left"


def test_an_unwritable_folder_is_refused_up_front():
    with pytest.raises(EnvironmentProblem, match="cannot write in /proc"):
        ensure_writable(Path("/proc/r.json"), force=False)


def test_a_termination_a_library_swallowed_still_stops_the_commit(tmp_path):
    """PyTorch's exporter retries a failed capture whatever stopped it, so a SIGTERM raised
    inside it can be lost: the commit checks for it again."""
    from deploykit.errors import TERMINATION_REQUESTED, Terminated

    try:
        try:
            raise Terminated(15)
        except BaseException:  # the library swallowing it
            pass
        with pytest.raises(Terminated):
            with atomic_path(tmp_path / "out.txt") as staged:
                staged.write_text("x")
        assert list(tmp_path.iterdir()) == []
    finally:
        TERMINATION_REQUESTED.clear()


def test_the_spec_modules_own_file_is_never_an_output(tmp_path, monkeypatch):
    from tests.cli_helpers import assert_user_error, run

    source = tmp_path / "my_net.py"
    source.write_text("import torch\n\ndef build():\n    return torch.nn.Conv2d(3, 4, 1)\n")
    weights = tmp_path / "w.pt"
    monkeypatch.syspath_prepend(str(tmp_path))
    for output in (source, weights):
        original = output.read_bytes() if output.exists() else None
        result = run("export", "my_net:build", "--shape", "1x3x8x8", "-o", output, "--force",
                     *(["--weights", weights] if output == weights else []))
        if output == weights:
            assert result.exit_code == 2 and "is the --weights file" in result.stderr
        else:
            assert_user_error(result, "is the SPEC's module file this command reads")
            assert output.read_bytes() == original
    assert run("export", "my_net:build", "--shape", "1x3x8x8", "-o", tmp_path / "ok.onnx").exit_code == 0


def test_a_module_loaded_as_spec_is_noted_as_an_input(tmp_path, monkeypatch):
    from deploykit.spec import load_model, source_file

    source = tmp_path / "other_net.py"
    source.write_text("import torch\n\ndef build():\n    return torch.nn.Conv2d(3, 4, 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert source_file("other_net:build") == source and source_file("pool") is None
    forget_inputs()
    try:
        load_model("other_net:build")
        with pytest.raises(UserError, match="is an input"):
            write_text_atomic(source, "not python", force=True)
    finally:
        forget_inputs()


@pytest.mark.parametrize("squatter", ["symlink", "file", "open_folder"])
def test_private_folders_are_never_used_as_found_when_someone_else_could_have_made_them(tmp_path, monkeypatch,
                                                                                         squatter):
    import tempfile

    from deploykit.files import private_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spot, elsewhere = tmp_path / "deploykit-reports", tmp_path / "elsewhere"
    elsewhere.mkdir()
    if squatter == "symlink":
        spot.symlink_to(elsewhere)
    elif squatter == "file":
        spot.write_text("not a folder")
    else:
        spot.mkdir(mode=0o777)
        spot.chmod(0o777)
    folder = private_folder("deploykit-reports")
    assert folder != spot and folder.is_dir() and not folder.is_symlink()
    assert folder.stat().st_mode & 0o077 == 0


def test_a_private_folder_is_made_closed_and_then_reused(tmp_path, monkeypatch):
    import tempfile

    from deploykit.files import private_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = private_folder("deploykit-reports")
    assert first == tmp_path / "deploykit-reports" and first.stat().st_mode & 0o777 == 0o700
    assert private_folder("deploykit-reports") == first


def test_an_empty_home_is_an_environment_error(monkeypatch):
    from deploykit.ops.native_build import cache_dir

    monkeypatch.delenv("DEPLOYKIT_CACHE", raising=False)
    monkeypatch.setenv("HOME", "")
    with pytest.raises(EnvironmentProblem, match="HOME is set but empty"):
        cache_dir()


def test_every_file_the_spec_imports_is_an_input(tmp_path, monkeypatch):
    """The package's __init__.py and a helper module the SPEC's module imports are read too."""
    from tests.cli_helpers import run

    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("SCALE = 2\n")
    (package / "layers.py").write_text("import torch\n\ndef conv():\n    return torch.nn.Conv2d(3, 4, 1)\n")
    (package / "net.py").write_text("from my_pkg.layers import conv\n\ndef build():\n    return conv()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for victim in (package / "__init__.py", package / "layers.py"):
        original = victim.read_bytes()
        result = run("export", "my_pkg.net:build", "--shape", "1x3x8x8", "-o", victim, "--force", "--no-verify")
        assert result.exit_code == 2 and "is an input" in result.stderr, result.output
        assert victim.read_bytes() == original


def test_an_output_inside_another_outputs_folder_or_around_an_input_is_refused(tmp_path):
    from tests.cli_helpers import assert_user_error, run

    figures = tmp_path / "rep_files"
    figures.mkdir()
    nested = run("check", "pixel_shuffle", "--html", tmp_path / "rep.html", "--report", figures / "r.json")
    assert_user_error(nested, "one inside the other")
    model = figures / "m.onnx"
    assert run("export", "pixel_shuffle", "-o", model).exit_code == 0
    around = run("check", "pixel_shuffle", "--onnx", model, "--html", tmp_path / "rep.html", "--force")
    assert_user_error(around, "would replace the folder holding the --onnx file")
    assert model.exists()
