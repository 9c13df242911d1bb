"""Writing outputs safely: never half-written, never silently replacing the user's file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from deploykit.errors import UserError


def ensure_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing file unless the user said --force."""
    if path.exists() and not force:
        raise UserError(f"{path} already exists", "pass --force to overwrite it or choose another -o path")
    if path.exists() and path.is_dir():
        raise UserError(f"{path} is a directory", "give a file path")
    if not path.parent.exists():
        raise UserError(f"directory {path.parent} does not exist", "create it first or choose another path")


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the body succeeds."""
    path = Path(path)
    ensure_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, force: bool = False) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_text(text)
