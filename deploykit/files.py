"""Writing outputs safely: never half-written, never silently replacing the user's file.

Every writer stages its file beside the target and commits it at the end:
- without ``force`` by ``os.link`` (hard link), which fails if the target exists, so a file
  that appeared while deploykit worked (another run, another program) is never replaced;
- with ``force`` by ``os.replace``, and only over a regular file (or a link to one): a device,
  FIFO, socket or folder is refused, never turned into a regular file.
An output that is one of the run's inputs (the ``--onnx`` being checked, ``--weights``, the
recipe) is refused, with or without ``force``: inputs are noted with ``note_input``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from deploykit.errors import EnvironmentProblem, UserError, raise_if_terminated

# Files read in this run (by identity and by resolved path): no output may replace one.
_inputs: dict[str, tuple[int, int] | None] = {}
# What write_folder_atomic lists in a folder it fills, so --force removes only what deploykit wrote.
MANIFEST = ".deploykit-files"
# A file name's limit on Linux filesystems, and what staging adds to it ('.' NAME '.' 8 random).
_NAME_MAX = 255
_STAGING_EXTRA = 16


def note_input(path: Path | str, label: str = "") -> None:
    """Remember ``path`` as an input of this run: ``ensure_writable`` refuses to write over it."""
    key = os.path.realpath(path)
    try:
        info = os.stat(path)
        _inputs[key] = (info.st_dev, info.st_ino)
    except OSError:
        _inputs[key] = None


def forget_inputs() -> None:
    """A new command starts (the CLI calls this first): no inputs yet."""
    _inputs.clear()


def is_input(path: Path | str) -> bool:
    if os.path.realpath(path) in _inputs:
        return True
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) in _inputs.values()


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file: the same resolved path, or (both existing) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_outputs_that_are_inputs(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """Before any work: no output names an input, and no two outputs name one file.
    ``outputs`` and ``inputs`` map an option (``--report``) to its path (None: not given)."""
    given_outputs = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    given_inputs = [(name, Path(p)) for name, p in inputs.items() if p is not None]
    for index, (name, path) in enumerate(given_outputs):
        for other, source in given_inputs:
            if same_file(path, source):
                raise UserError(f"{name} {path} is the {other} file this command reads",
                                f"write {name} to another path")
            if inside(source, path):  # a folder output (--html's figures) is replaced whole
                raise UserError(f"{name} {path} would replace the folder holding the {other} file {source}",
                                f"write {name} elsewhere")
        for other, earlier in given_outputs[:index]:
            if same_file(path, earlier):
                raise UserError(f"{name} and {other} name the same file {path}", "give each output its own path")
            if inside(path, earlier) or inside(earlier, path):
                raise UserError(f"{name} {path} and {other} {earlier} are one inside the other, and a folder output "
                                "is replaced whole", "give each output its own place")


def inside(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` lies within ``folder`` (resolved; a path is not inside itself)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path != folder and path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_target(path: Path, force: bool, what: str = "file") -> None:
    """The rule for an existing output path: refused without force, and with force unless it
    is a regular file (a symlink counts as what it points to; a dangling one may be replaced)."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # the parent's checks say what is wrong
        return
    except OSError as exc:  # EACCES, ENAMETOOLONG, ELOOP: the path itself is unusable
        raise EnvironmentProblem(f"cannot use {path} as an output ({exc.strerror})", "choose another path") from None
    if stat.S_ISLNK(info.st_mode):
        with contextlib.suppress(OSError):
            info = os.stat(path)
    if stat.S_ISDIR(info.st_mode) and what == "file":
        raise UserError(f"{path} is a directory", "give a file path")
    if not force:
        raise UserError(f"{path} already exists", "pass --force to overwrite it, or choose another path")
    if what == "folder" and not stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path} exists and is not a folder", "remove it or choose another report name")
    if what == "file" and not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
        raise UserError(f"{path} is not a regular file (a device, FIFO or socket); --force replaces only files",
                        "choose another path")


def ensure_writable(path: Path, force: bool) -> None:
    """Refuse, before any work, an output deploykit must not or cannot write: an existing file
    (or link, even a dangling one) unless ``force``; anything but a regular file even with it;
    an input of this run; a folder that does not exist or cannot be written."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise UserError(f"output path {str(path)!r} names no file", "give a file name")
    if len(os.fsencode(path.name)) > _NAME_MAX - _STAGING_EXTRA:  # '.NAME.XXXXXXXX' must fit too
        raise UserError(f"output file name {path.name[:40]!r}... is {len(os.fsencode(path.name))} bytes, too long for "
                        f"the staging name written beside it (at most {_NAME_MAX - _STAGING_EXTRA})",
                        "choose a shorter file name")
    _check_target(path, force)
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if os.path.lexists(parent) else "does not exist"
        raise UserError(f"{parent} {what}", "choose a path in an existing directory")
    _probe_folder(parent)
    if is_input(path):
        raise UserError(f"{path} is an input of this command", "write the output to another path")


def _commit(staged: Path, target: Path, force: bool) -> None:
    """Put the staged file at ``target``: without force only if nothing is there now."""
    if force:
        _check_target(target, force=True)  # what is there now, not what was there at the start
        if is_input(target):
            raise UserError(f"{target} is an input of this command", "write the output to another path")
        os.replace(staged, target)
        return
    try:
        os.link(staged, target)
    except FileExistsError:
        raise UserError(f"{target} appeared while deploykit was writing it, and was left alone",
                        "pass --force to overwrite it, or choose another path") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        _commit_without_links(staged, target)
        return
    staged.unlink()


def _commit_without_links(staged: Path, target: Path) -> None:
    """For file systems without hard links: claim the name exclusively, then rename over the claim."""
    try:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        raise UserError(f"{target} appeared while deploykit was writing it, and was left alone",
                        "pass --force to overwrite it, or choose another path") from None
    os.replace(staged, target)


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; commit it into place only if the body succeeds."""
    path = Path(path)
    ensure_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    note_scratch(tmp_path)
    try:
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; the user expects their umask
        yield tmp_path
        raise_if_terminated()
        _commit(tmp_path, path, force)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_files(path: Path, force: bool = False) -> Iterator[Path]:
    """Like ``atomic_path`` for writers that may add sibling files (ONNX external data):
    yield ``path``'s name inside a private directory beside it; on success, commit every file
    written there into place (siblings first, the main file last). If one cannot be committed,
    those already committed are taken back, so no half set is left."""
    import shutil

    path = Path(path)
    ensure_writable(path, force)
    require_utf8_path(path)
    stage = None
    try:
        with _signals_deferred():  # a signal between making the folder and recording it would leak it
            stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
            note_scratch(stage)
        yield stage / path.name
        raise_if_terminated()  # a signal a library swallowed still stops the commit
        produced = sorted(stage.iterdir(), key=lambda item: item.name == path.name)  # main file last
        for item in produced:
            if item.name != path.name:
                ensure_writable(path.parent / item.name, force)
        committed = []
        try:
            for item in produced:
                os.chmod(item, 0o666 & ~current_umask())
                identity = os.stat(item)
                _commit(item, path.parent / item.name, force)
                committed.append((path.parent / item.name, (identity.st_dev, identity.st_ino)))
        except BaseException:
            if not force:
                for target, identity in committed:
                    with contextlib.suppress(OSError):
                        info = os.lstat(target)
                        if (info.st_dev, info.st_ino) == identity:  # still ours
                            target.unlink()
            raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT, SIGTERM and SIGHUP held back (by the OS) within the block, delivered after it."""
    import signal

    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # not a POSIX main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def require_utf8_path(path: Path) -> None:
    """ONNX's checker and PyTorch's exporter take paths as UTF-8 text: a name that is not
    (bytes a file system allows) is refused with the reason, not a TypeError from deep inside."""
    text = os.path.abspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        from deploykit.text import printable

        raise UserError(f"{printable(text)} is not a UTF-8 path, which the ONNX tools cannot open",
                        "rename it, or choose a path in UTF-8") from None


def ensure_folder_writable(folder: Path, force: bool) -> None:
    """ensure_writable's rule for an output folder: refused if it exists (without force) or is
    not a folder; its parent must exist and be writable."""
    folder = Path(folder)
    _check_target(folder, force, what="folder")
    if not folder.parent.is_dir():
        what = "is not a directory" if os.path.lexists(folder.parent) else "does not exist"
        raise UserError(f"{folder.parent} {what}", "choose a path in an existing directory")
    _probe_folder(folder.parent)
    if os.path.isdir(folder):
        _probe_folder(folder)


def _probe_folder(folder: Path) -> None:
    """Create and remove a file in ``folder``: the only test that holds for root, read-only
    mounts and pseudo file systems alike (os.access says yes to root everywhere)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".deploykit-probe-", dir=folder)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write in {folder} ({exc.strerror or type(exc).__name__})",
                                 "choose an output path in a folder you can write") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def write_folder_atomic(folder: Path, files: dict[str, bytes], force: bool = False) -> list[Path]:
    """Write ``files`` into ``folder``, each file staged and committed as ``atomic_path`` does.

    Without ``force`` the folder must not exist: it is created here (exclusively) and filled.
    With ``force`` an existing folder is kept: the files deploykit writes now replace those of
    the same name, the files a previous run listed in its manifest and not written now are
    removed, and anything else in it (the user's own files) is left alone.
    """
    import shutil
    import uuid

    folder = Path(folder)
    ensure_folder_writable(folder, force)
    for name in files:
        if not name or "/" in name or name in (".", "..", MANIFEST):
            raise ValueError(f"bad figure file name {name!r}")
    stage = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.tmp")
    stage.mkdir()  # plain mkdir honours the user's umask (mkdtemp would make it 0700)
    note_scratch(stage)
    try:
        for name, data in files.items():
            (stage / name).write_bytes(data)
        (stage / MANIFEST).write_text("".join(f"{name}\n" for name in files))
        previous = _manifest(folder) if force else set()
        created = False
        try:
            folder.mkdir()
            created = True
        except FileExistsError:
            if not force:
                raise UserError(f"{folder} appeared while deploykit was writing it, and was left alone",
                                "pass --force to overwrite it, or choose another path") from None
            _check_target(folder, force=True, what="folder")
        try:
            for name in [*files, MANIFEST]:
                _commit(stage / name, folder / name, force)
        except BaseException:
            if created:  # a folder this call made holds only what it wrote: take it back
                shutil.rmtree(folder, ignore_errors=True)
            raise
        for stale in previous - set(files):
            with contextlib.suppress(FileNotFoundError):
                target = folder / stale
                if target.is_file() and not target.is_symlink():
                    target.unlink()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [folder / name for name in files]


def _manifest(folder: Path) -> set[str]:
    """The file names a previous deploykit run wrote in ``folder`` (none if it has no manifest)."""
    try:
        lines = (folder / MANIFEST).read_text(errors="replace").splitlines()
    except OSError:
        return set()
    return {line for line in lines if line and "/" not in line and line not in (".", "..", MANIFEST)}


def write_text_atomic(path: Path, text: str, force: bool = False) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


@contextlib.contextmanager
def temporary_directory(prefix: str = "deploykit-") -> Iterator[Path]:
    """A scratch folder in TMPDIR, removed on the way out (also by the supervisor after a crash)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        note_scratch(work)
        yield Path(work)


def private_folder(name: str) -> Path:
    """``TMPDIR/name``, this user's only: created with mode 0700, and used as found only when it
    is a real folder (never a symlink) owned by this user and closed to others; otherwise a
    fresh ``TMPDIR/name-XXXX`` (a file or someone else's link there never masks the real error)."""
    folder = Path(tempfile.gettempdir()) / name
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"{name}-"))
    try:
        info = os.lstat(folder)
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"{name}-"))
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return Path(tempfile.mkdtemp(prefix=f"{name}-"))
    return folder


def note_scratch(path: Path | str) -> None:
    from deploykit.supervisor import note_scratch as note

    note(path)


def current_umask() -> int:
    """The process umask (read by setting it and putting it back): files are made as the user expects."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
