"""Writing outputs safely: never half-written, never silently replacing the user's file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from deploykit.errors import UserError


def ensure_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing file (or link, even a dangling one) unless --force."""
    path = Path(path)
    if not path.name:
        raise UserError("an empty output path was given", "give a file name")
    if path.is_dir():
        raise UserError(f"{path} is a directory", "give a file path")
    if os.path.lexists(path) and not force:
        raise UserError(f"{path} already exists", "pass --force to overwrite it, or choose another path")
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise UserError(f"{path.parent} {what}", "choose a path in an existing directory")


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the body succeeds."""
    path = Path(path)
    ensure_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; the user expects their umask
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_files(path: Path, force: bool = False) -> Iterator[Path]:
    """Like ``atomic_path`` for writers that may add sibling files (ONNX external data):
    yield ``path``'s name inside a private directory beside it; on success, move every file
    written there into place, each by an atomic rename."""
    import shutil

    path = Path(path)
    ensure_writable(path, force)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield stage / path.name
        produced = sorted(stage.iterdir())
        for item in produced:
            if item.name != path.name:
                ensure_writable(path.parent / item.name, force)
        for item in produced:
            os.chmod(item, 0o666 & ~_umask())
            os.replace(item, path.parent / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def ensure_folder_writable(folder: Path, force: bool) -> None:
    """ensure_writable's rule for an output folder."""
    if os.path.lexists(folder) and not force:
        raise UserError(f"{folder} already exists", "pass --force to overwrite it, or choose another path")


def write_folder_atomic(folder: Path, files: dict[str, bytes], force: bool = False) -> list[Path]:
    """Fill a private folder beside ``folder``, then rename it into place: a reader finds the
    old files or the new ones, never a half-written set."""
    import shutil
    import uuid

    folder = Path(folder)
    ensure_folder_writable(folder, force)
    stage = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.tmp")
    stage.mkdir()  # plain mkdir honours the user's umask (mkdtemp would make it 0700)
    try:
        for name, data in files.items():
            (stage / name).write_bytes(data)
        if os.path.lexists(folder):  # only with force
            old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.old")
            os.replace(folder, old)
            os.replace(stage, folder)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.replace(stage, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [folder / name for name in files]


def write_text_atomic(path: Path, text: str, force: bool = False) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_text(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
