import os

import pytest

from deploykit.errors import UserError
from deploykit.files import ensure_writable, staged_files, write_text_atomic


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
