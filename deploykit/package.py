"""``deploykit package``: a Triton Inference Server model repository for an exported file.

Triton serves ``<repository>/<name>/config.pbtxt`` with ``<name>/1/model.onnx`` (ONNX Runtime
backend) or ``<name>/1/model.plan`` (TensorRT backend). What only the file knows (tensor names,
dtypes, dims, and whether dim 0 is one batch dim every tensor shares) is read from the ONNX
graph, never guessed; what Triton needs and the file cannot say (the largest batch) comes from
the bounds the export recorded, the user, or Triton's own default, and the command says which.

Custom ops: the ONNX Runtime backend registers the libraries in ``model_operations`` from the
path the *server* sees (it passes the string to ``RegisterCustomOpsLibrary`` as is), so where
the repository is mounted (``server_root``) is part of the config. The TensorRT backend loads
plugins only at server start (``--backend-config=tensorrt,plugins=...`` or ``LD_PRELOAD``):
the model folder's README gives the command.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import shlex
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deploykit.errors import EnvironmentProblem, UserError, first_line
from deploykit.files import MANIFEST, current_umask, inside, note_input, note_scratch, require_utf8_path, same_file
from deploykit.text import printable

PLATFORM_ONNX = "onnxruntime_onnx"
PLATFORM_PLAN = "tensorrt_plan"
DEFAULT_SERVER_ROOT = "/models"  # where Triton's own quick start mounts the repository
TRITON_DEFAULT_MAX_BATCH = 4  # tritonserver --backend-config=default-max-batch-size's default
TRITON_MAX_BATCH = 2**31 - 1  # ModelConfig.max_batch_size is an int32
VERSION = "1"
PLAN_SUFFIX = "_trt"  # the engine's model is NAME_trt
# Triton tensor types by ONNX element type name (onnx.TensorProto.DataType).
_TRITON_TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64", "FLOAT16": "TYPE_FP16", "FLOAT": "TYPE_FP32", "DOUBLE": "TYPE_FP64",
    "STRING": "TYPE_STRING", "BFLOAT16": "TYPE_BF16",
}
# A model folder's name: Triton uses it in URLs and as a directory; no path tricks, no hidden folders.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MODEL_NAME_MAX = 128
# What package writes in a model folder besides the libraries: a --plugin may not take one of these names.
_FOLDER_FILES = (VERSION, "config.pbtxt", "README.md", MANIFEST)


@dataclass(frozen=True)
class TritonTensor:
    name: str
    data_type: str
    dims: tuple[int, ...]  # -1 for a dynamic dim; without the batch dim when the model batches
    scalar: bool = False  # rank 0: dims [1], reshaped to [] where the model batches


@dataclass(frozen=True)
class TritonModel:
    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]
    op_libraries: tuple[str, ...] = ()

    def config_text(self) -> str:
        """The model's config.pbtxt (protobuf text format of Triton's ModelConfig)."""
        lines = [f"name: {_quoted(self.name)}", f"platform: {_quoted(self.platform)}",
                 f"max_batch_size: {self.max_batch_size}"]
        for field_name, tensors in (("input", self.inputs), ("output", self.outputs)):
            lines.append(f"{field_name} [")
            lines.append(",\n".join(_tensor_text(tensor, self.max_batch_size > 0) for tensor in tensors))
            lines.append("]")
        if self.max_batch_size > 0:
            lines.append("dynamic_batching { }")
        if self.op_libraries:
            libraries = ", ".join(_quoted(path) for path in self.op_libraries)
            lines.append(f"model_operations {{ op_library_filename: [ {libraries} ] }}")
        return "\n".join(lines) + "\n"


@dataclass
class Signature:
    """What the ONNX file says Triton's config must hold, and why the batch is what it is."""

    max_batch_size: int
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]
    batch_reason: str


@dataclass
class PackageResult:
    repository: Path
    models: list[TritonModel]
    folders: list[Path]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"repository": str(self.repository),
                "models": [{"name": model.name, "platform": model.platform, "folder": str(folder),
                            "max_batch_size": model.max_batch_size,
                            "inputs": [_tensor_json(t) for t in model.inputs],
                            "outputs": [_tensor_json(t) for t in model.outputs],
                            "op_library_filename": list(model.op_libraries)}
                           for model, folder in zip(self.models, self.folders)],
                "notes": self.notes}


def _tensor_json(tensor: TritonTensor) -> dict:
    return {"name": tensor.name, "data_type": tensor.data_type, "dims": list(tensor.dims), "scalar": tensor.scalar}


def _quoted(text: str) -> str:
    """A protobuf text-format string: quotes, backslashes and every byte outside printable
    ASCII escaped (octal), so any tensor name or path reads back as written."""
    out = []
    for byte in text.encode("utf-8", errors="surrogateescape"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _tensor_text(tensor: TritonTensor, batching: bool) -> str:
    """Triton refuses an empty reshape where max_batch_size is 0: there a scalar is plain dims [1],
    as ONNX Runtime's backend writes it itself."""
    dims = ", ".join(str(d) for d in tensor.dims)
    reshape = "\n    reshape { shape: [ ] }" if tensor.scalar and batching else ""
    return (f"  {{\n    name: {_quoted(tensor.name)}\n    data_type: {tensor.data_type}\n"
            f"    dims: [ {dims} ]{reshape}\n  }}")


def read_signature(proto, max_batch: int | None = None) -> Signature:
    """Triton's view of the graph's inputs and outputs.

    The model batches (max_batch_size > 0) only when every input and output has a first dim
    that is symbolic and the same symbol: then Triton owns that dim and the config lists the
    rest. ``max_batch``: the user's choice (0 turns batching off); None takes the bound the
    export recorded for that dim, else Triton's own default."""
    import onnx

    from deploykit.onnx_file import graph_inputs, recorded_ranges

    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    inputs = [(value, "input") for value in graph_inputs(inferred)]
    outputs = [(value, "output") for value in inferred.graph.output]
    for value, kind in inputs + outputs:
        if isinstance(value.name, bytes):  # protobuf's form of a name that is not UTF-8
            raise UserError(f"{kind} name '{value.name.decode('utf-8', 'backslashreplace')}' is not UTF-8, which "
                            "Triton's config (protobuf text) cannot hold", "rename the tensor in the model")
    shapes = {value.name: _dims(value, kind) for value, kind in inputs + outputs}
    batch_symbol, why_not = _shared_batch_symbol([shapes[v.name] for v, _ in inputs + outputs],
                                                 [(v.name, k) for v, k in inputs + outputs])
    bound = _recorded_batch_bound(recorded_ranges({p.key: p.value for p in proto.metadata_props}), batch_symbol)
    if batch_symbol is None:
        if max_batch:
            raise UserError(f"--max-batch {max_batch} needs a batch dim, but {why_not}",
                            "leave --max-batch out (the config then lists every dim), or re-export with a dynamic batch")
        max_batch_size, reason = 0, f"max_batch_size 0 (no batching: {why_not})"
    elif max_batch is not None:
        if bound is not None and max_batch > bound:
            raise UserError(f"--max-batch {max_batch} is past the export's bound {batch_symbol} <= {bound}",
                            f"use --max-batch {bound} or less, or re-export with a larger bound")
        max_batch_size = max_batch
        reason = (f"max_batch_size {max_batch} (--max-batch)" if max_batch
                  else "max_batch_size 0 (--max-batch 0: no batching, every dim listed)")
    elif bound is not None:
        max_batch_size, reason = bound, f"max_batch_size {bound} (the export's bound {batch_symbol} <= {bound})"
    else:
        max_batch_size = TRITON_DEFAULT_MAX_BATCH
        reason = (f"max_batch_size {max_batch_size} (Triton's default: the file bounds no batch; "
                  "--max-batch N to change)")
    skip = 1 if max_batch_size > 0 else 0

    def tensors(values):
        return tuple(TritonTensor(value.name, _triton_type(value, kind),
                                  tuple(-1 if isinstance(d, str) else d for d in shapes[value.name][skip:]) or (1,),
                                  scalar=not shapes[value.name][skip:])
                     for value, kind in values)

    return Signature(max_batch_size, tensors(inputs), tensors(outputs), reason)


def _dims(value, kind: str) -> tuple:
    """The tensor's dims: ints, and a string (its symbol, or '?') for each dynamic one (a negative
    size too: older converters wrote -1 for a dynamic dim). Triton's dims cannot say 0."""
    tensor_type = value.type.tensor_type if value.type.HasField("tensor_type") else None
    if tensor_type is None:
        raise UserError(f"{kind} {printable(value.name)!r} is not a tensor (sequence/map types cannot be served "
                        "by Triton's ONNX Runtime backend)", "export the model with tensor inputs and outputs")
    if not tensor_type.HasField("shape"):
        raise UserError(f"the file does not say the rank of {kind} {printable(value.name)!r}, and Triton's config "
                        "needs it", "re-export it with 'deploykit export' (which records every output's shape)")
    if any(dim.HasField("dim_value") and dim.dim_value == 0 for dim in tensor_type.shape.dim):
        raise UserError(f"{kind} {printable(value.name)!r} has a dim of size 0, which Triton's config cannot hold "
                        "(its dims are >= 1, or -1 for dynamic)", "re-export it with that dim dynamic or non-empty")
    return tuple(dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else (dim.dim_param or "?")
                 for dim in tensor_type.shape.dim)


def _shared_batch_symbol(shapes: list[tuple], names: list[tuple[str, str]]) -> tuple[str | None, str]:
    """The symbol every tensor's dim 0 is, and no later dim uses (Triton's batcher joins and splits
    requests along dim 0 alone), or None and why not."""
    symbols = set()
    for shape, (name, kind) in zip(shapes, names):
        if not shape:
            return None, f"{kind} {printable(name)!r} is a scalar"
        if not isinstance(shape[0], str):
            return None, f"dim 0 of {kind} {printable(name)!r} is fixed at {shape[0]}"
        if shape[0] == "?":
            return None, f"dim 0 of {kind} {printable(name)!r} is dynamic but unnamed, so not provably the batch"
        symbols.add(shape[0])
    if len(symbols) > 1:
        return None, f"dim 0 is not one dim across inputs and outputs ({', '.join(sorted(map(printable, symbols)))})"
    symbol = symbols.pop()
    for shape, (name, kind) in zip(shapes, names):
        if any(d == symbol or symbol in re.findall(r"\w+", d) for d in shape[1:] if isinstance(d, str)):
            return None, (f"{kind} {printable(name)!r} has {printable(symbol)} in a later dim too "
                          "(Triton batches along dim 0 alone)")
    return symbol, ""


def _recorded_batch_bound(ranges, symbol: str | None) -> int | None:
    """The export's bound on the batch; metadata that is no max_batch_size Triton takes (not an
    int, under 1, past int32) bounds nothing."""
    highs = [r.high for r in ranges if r.axis == 0 and r.dim == symbol and type(r.high) is int
             and 1 <= r.high <= TRITON_MAX_BATCH]
    return min(highs) if highs else None


def _triton_type(value, kind: str) -> str:
    import onnx

    elem = value.type.tensor_type.elem_type
    name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else str(elem)
    if name not in _TRITON_TYPES:
        raise UserError(f"{kind} {printable(value.name)!r} has element type {name}, which Triton has no type for",
                        "cast it to a supported type (float32, float16, bfloat16, int*, uint*, bool) in the model")
    return _TRITON_TYPES[name]


def package_repository(onnx_path: Path, repository: Path, name: str | None = None, engine: Path | None = None,
                       plugins: tuple[Path, ...] = (), max_batch: int | None = None,
                       server_root: str = DEFAULT_SERVER_ROOT, force: bool = False) -> PackageResult:
    """Write ``<repository>/<name>`` (ONNX Runtime backend) and, with an engine,
    ``<repository>/<name>_trt`` (TensorRT backend), each committed whole."""
    from deploykit.onnx_file import has_external_data, has_plugin_nodes, validate_onnx_file

    onnx_path, repository = Path(onnx_path), Path(repository)
    proto = validate_onnx_file(onnx_path)
    if has_external_data(proto):
        raise UserError(f"{onnx_path} keeps its weights in external data files, which package does not copy yet",
                        "save the model with its weights inside (onnx.save(model, path, save_as_external_data=False))")
    name = name if name is not None else onnx_path.stem
    _check_model_name(name, "--name" if name != onnx_path.stem else f"the file's name ({onnx_path.name})",
                      MODEL_NAME_MAX - (len(PLAN_SUFFIX) if engine is not None else 0))
    root = _server_root(server_root)
    plugin_graph = has_plugin_nodes(proto)
    _check_engine_and_plugins(onnx_path, plugin_graph, engine, plugins)
    signature = read_signature(proto, max_batch)
    models, notes = _models(onnx_path, plugin_graph, name, root, signature, engine, plugins)
    readmes = [model_readme(model, root, [Path(p).name for p in plugins], signature.batch_reason)
               for model, _ in models]
    written = _write_models(repository, [(model, {**files, "config.pbtxt": model.config_text().encode(),
                                                  "README.md": readme.encode()})
                                         for (model, files), readme in zip(models, readmes)], force, notes)
    return PackageResult(repository, [model for model, _ in models], written, notes)


def _check_engine_and_plugins(onnx_path: Path, plugin_graph: bool, engine: Path | None,
                              plugins: tuple[Path, ...]) -> None:
    """Each file given is a readable, distinct file; plugins come with an engine, and a plugin
    graph's engine comes with them."""
    for path, option in [(engine, "--engine"), *((p, "--plugin") for p in plugins)]:
        if path is not None:
            _require_regular_file(path, option)
    _check_distinct_inputs([("--onnx", onnx_path), *([("--engine", engine)] if engine is not None else []),
                            *(("--plugin", p) for p in plugins)])
    _check_plugin_names([Path(p).name for p in plugins])
    if plugins and engine is None:
        raise UserError("--plugin is for the TensorRT model, which only --engine makes",
                        "add --engine MODEL.plan, or leave --plugin out")
    if engine is not None and not plugins and plugin_graph:
        raise UserError("the graph holds deploykit::DySample nodes, so the TensorRT engine needs deploykit's plugin "
                        "library in the server", "pass --plugin build/libdeploykit_trt_plugins.so, built against "
                        "the server's TensorRT (README: The TensorRT plugin)")


def _models(onnx_path: Path, plugin_graph: bool, name: str, root: str, signature: Signature, engine: Path | None,
            plugins: tuple[Path, ...]) -> tuple[list[tuple[TritonModel, dict[str, Path]]], list[str]]:
    """Each model with the files its folder holds, and what the user should know about them."""
    notes = [signature.batch_reason]
    onnx_files: dict[str, Path] = {f"{VERSION}/model.onnx": onnx_path}
    libraries: tuple[str, ...] = ()
    if plugin_graph:
        from deploykit.ops.ort_library import LIBRARY_NAME, library_description, ort_library_path

        library = ort_library_path()
        onnx_files[LIBRARY_NAME] = library
        libraries = (str(PurePosixPath(root, name, LIBRARY_NAME)),)
        notes.append(f"{name}: the graph's DySample nodes run on deploykit's custom-op library "
                     f"({library_description(library)}), registered from {libraries[0]} as the server sees it")
    models = [(TritonModel(name, PLATFORM_ONNX, signature.max_batch_size, signature.inputs, signature.outputs,
                           libraries), onnx_files)]
    if engine is not None:
        plan_files = {f"{VERSION}/model.plan": Path(engine), **{Path(p).name: Path(p) for p in plugins}}
        models.append((TritonModel(f"{name}{PLAN_SUFFIX}", PLATFORM_PLAN, signature.max_batch_size,
                                   signature.inputs, signature.outputs), plan_files))
    return models, notes


def _write_models(repository: Path, models: list[tuple[TritonModel, dict[str, Path | bytes]]], force: bool,
                  notes: list[str]) -> list[Path]:
    """Check every folder, then stage every folder (the copies, where a disk fills), then commit
    them: a failure leaves no half pair, and an empty repository this run made is taken back."""
    created = _ensure_repository(repository)
    folders = [repository / model.name for model, _ in models]
    written: list[Path] = []
    stages: list[Path] = []
    try:
        for (_, files), folder in zip(models, folders):
            _check_model_folder(folder, force)
            _check_inputs_outside(files, folder)
        invalid = _triton_parse_problem([model for model, _ in models])
        if invalid is not None:
            notes.append(invalid)
        for (_, files), folder in zip(models, folders):
            stages.append(_stage_model_folder(repository, folder.name, files))
        for stage, folder in zip(stages, folders):
            _rename_into_place(stage, folder, force)
            written.append(folder)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                repository.rmdir()  # only while it is still empty
        raise
    finally:
        for stage in stages:
            shutil.rmtree(stage, ignore_errors=True)
    return written


def _check_model_name(name: str, source: str, longest: int) -> None:
    """``longest`` leaves room for the engine model's suffix when there is one."""
    if not _MODEL_NAME.fullmatch(name) or len(name) > longest:
        raise UserError(f"{source} gives the model name {printable(name)!r}, which is not a safe Triton model name",
                        f"pass --name of at most {longest} letters, digits, '_', '-' or '.' (not starting with "
                        "'.' or '-')")


def _check_distinct_inputs(given: list[tuple[str, Path]]) -> None:
    """Each input its own file: an --engine that is the ONNX file would be served as a plan."""
    for index, (option, path) in enumerate(given):
        for other, earlier in given[:index]:
            if same_file(path, earlier):
                raise UserError(f"{option} {printable(path)} is the same file as {other} {printable(earlier)}",
                                "give each option its own file, each --plugin once")


def _check_plugin_names(names: list[str]) -> None:
    """The libraries are copied into the model folder by name: none may take the name of
    another library or of a file package writes there."""
    for index, name in enumerate(names):
        if ";" in name:
            raise UserError(f"--plugin {printable(name)} has ';' in its name, which separates Triton's plugin list",
                            "rename the library")
        if name in _FOLDER_FILES:
            raise UserError(f"--plugin {printable(name)} has the name of what package writes in the model folder",
                            "rename the library (e.g. lib<name>.so)")
        if name in names[:index]:
            raise UserError(f"two --plugin libraries are named {printable(name)}, and the model folder holds "
                            "one file of each name", "rename one of them")


def _server_root(text: str) -> str:
    """A folder below '/' (a container cannot mount a volume at '/'), as the config and README spell it."""
    path = PurePosixPath(text)
    if not path.is_absolute() or len(path.parts) < 2 or ".." in path.parts or not text.isprintable() or ";" in text:
        raise UserError(f"--server-root {printable(text)!r} is not an absolute folder path below '/' (without '..', "
                        "';', which separates Triton's plugin list, or control characters)",
                        "give where the server mounts the repository, e.g. --server-root /models")
    return str(path)


def _require_regular_file(path: Path, option: str) -> None:
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"
        raise UserError(f"{option} {printable(path)} {what}", f"check the {option} path")
    if path.stat().st_size == 0:
        raise UserError(f"{option} {printable(path)} is empty", f"rebuild it, or check the {option} path")
    note_input(path)


def _ensure_repository(repository: Path) -> bool:
    """Whether this call created the repository (so a failed run can take it back)."""
    require_utf8_path(repository)
    if repository.is_dir():
        return False
    if repository.exists() or repository.is_symlink():
        raise UserError(f"-o {printable(repository)} exists and is not a folder", "give the model repository's folder")
    if not repository.parent.is_dir():
        what = "is not a folder" if os.path.lexists(repository.parent) else "does not exist"
        raise UserError(f"{printable(repository.parent)} {what}", "create it, or choose another -o")
    try:
        repository.mkdir()
    except FileExistsError:
        return False
    except PermissionError as exc:
        raise EnvironmentProblem(f"cannot create {printable(repository)} ({exc.strerror})",
                                 "choose a folder you can write") from None
    return True


def _check_model_folder(folder: Path, force: bool) -> None:
    """A model folder is replaced only with --force, and only one deploykit wrote (its
    manifest says so) holding nothing else: a folder a person assembled or added to (other
    versions, their own files) is theirs."""
    if not (folder.exists() or folder.is_symlink()):
        return
    if not force:
        raise UserError(f"{printable(folder)} exists", "pass --force to replace it, or choose another --name")
    if folder.is_symlink() or not folder.is_dir() or not (folder / MANIFEST).is_file():
        raise UserError(f"{printable(folder)} exists and was not written by deploykit package, so --force leaves it",
                        "remove it yourself, or choose another --name")
    added = _first_unlisted(folder)
    if added is not None:
        raise UserError(f"{printable(folder)} also holds {printable(added)}, which deploykit package did not write, "
                        "so --force leaves the folder", "move what you added out of it, or remove the folder yourself")


def _first_unlisted(folder: Path) -> str | None:
    """A file or folder in ``folder`` (relative, '/'-separated) that its manifest does not list."""
    listed = {*(folder / MANIFEST).read_text(errors="replace").splitlines(), MANIFEST}
    parents = {str(parent) for path in listed for parent in PurePosixPath(path).parents}
    for root, folders, files in os.walk(folder):
        for entry in sorted(folders) + sorted(files):
            relative = Path(root, entry).relative_to(folder).as_posix()
            if relative not in listed and relative not in parents:
                return relative
    return None


def _check_inputs_outside(files: dict[str, Path | bytes], folder: Path) -> None:
    """No input is copied from the folder its copy would replace."""
    for path in files.values():
        if isinstance(path, Path) and inside(path, folder):
            raise UserError(f"{printable(path)} is inside {printable(folder)}, which package would replace",
                            "copy the input elsewhere first, or choose another --name")


def _stage_model_folder(repository: Path, name: str, files: dict[str, Path | bytes]) -> Path:
    """Fill a folder that is renamed into place whole, so no one sees half a model: beside the
    repository where that is the same file system (a server polling the repository would try
    to load a folder inside it), else in the repository, hidden."""
    stage = None
    for parent in (repository.resolve().parent, repository):
        candidate = parent / f".{name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            candidate.mkdir()
        except OSError:
            continue
        if candidate.stat().st_dev == repository.stat().st_dev:
            stage = candidate
            break
        candidate.rmdir()
    if stage is None:
        raise EnvironmentProblem(f"cannot create a folder in {printable(repository)}",
                                 "choose a repository folder you can write")
    note_scratch(stage)
    try:
        for relative, source in files.items():
            target = stage / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
            else:
                shutil.copyfile(source, target)
                if os.access(source, os.X_OK):
                    target.chmod(0o755 & ~current_umask())
        (stage / MANIFEST).write_text("".join(f"{relative}\n" for relative in files))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def _rename_into_place(stage: Path, folder: Path, force: bool) -> None:
    try:
        os.rename(stage, folder)  # fails if a folder with entries appeared there meanwhile
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
            raise
    if not force:
        raise UserError(f"{printable(folder)} appeared while deploykit was writing it, and was left alone",
                        "pass --force to replace it, or choose another --name")
    _check_model_folder(folder, force)
    old = stage.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.old")  # beside the stage: out of sight too
    os.rename(folder, old)
    try:
        note_scratch(old)
        os.rename(stage, folder)
    except BaseException:  # an error, or Ctrl-C between the two renames
        os.rename(old, folder)  # put the previous package back rather than leave none
        raise
    shutil.rmtree(old, ignore_errors=True)


def _triton_parse_problem(models: list[TritonModel]) -> str | None:
    """Parse each config with Triton's own ModelConfig message (tritonclient's generated
    module) where it can be loaded; a config it refuses is deploykit's bug. None when parsed."""
    try:
        model_config = triton_model_config_module()
    except Exception as exc:  # noqa: BLE001 - a tritonclient generated for another protobuf
        return f"config.pbtxt not parsed with Triton's ModelConfig: tritonclient did not load ({first_line(exc)})"
    if model_config is None:
        return "config.pbtxt not parsed with Triton's ModelConfig here (pip install tritonclient to have it checked)"
    from google.protobuf import text_format

    for model in models:
        text_format.Parse(model.config_text(), model_config.ModelConfig())  # raises on deploykit's bug
    return None


def triton_model_config_module():
    """tritonclient's ``model_config_pb2``, loaded from its file: importing it as
    ``tritonclient.grpc.model_config_pb2`` would first import grpc, which serving needs and this
    check does not. None where tritonclient is not installed."""
    import sys

    module_name = "deploykit_triton_model_config_pb2"
    if module_name in sys.modules:  # protobuf's pool holds model_config.proto once per process
        return sys.modules[module_name]
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not source.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location(module_name, source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module


def model_readme(model: TritonModel, root: str, plugin_names: list[str], batch_reason: str) -> str:
    """The README a server operator finds in the model folder."""
    tensors = "\n".join(f"| {kind} | {_markdown_code(t.name)} | {t.data_type} | {list(t.dims)}"
                        f"{' (scalar)' if t.scalar else ''} |"
                        for kind, group in (("input", model.inputs), ("output", model.outputs)) for t in group)
    server = f"tritonserver --model-repository={shlex.quote(root)}"
    lines = [f"# {model.name} (written by deploykit package)", "",
             f"Backend: `{model.platform}`. {batch_reason}.", "",
             "| | tensor | type | dims |", "|---|---|---|---|", tensors, "",
             "Serve it from the repository's folder (the one holding this folder), mounted where the config expects it:", "", "```",
             f"docker run --gpus all --rm -p8000:8000 -p8001:8001 -v \"$PWD\":{shlex.quote(root)} "
             "nvcr.io/nvidia/tritonserver:<tag>-py3 \\",
             f"    {_plugin_server_line(model, root, plugin_names, server)}", "```", ""]
    if model.op_libraries:
        lines += [f"The graph's `deploykit::DySample` nodes run on deploykit's ONNX Runtime custom-op library "
                  f"(`{PurePosixPath(model.op_libraries[0]).name}`, in this folder). `config.pbtxt` registers it through "
                  f"`model_operations` at `{model.op_libraries[0]}`: that is the path inside the server, so the "
                  f"repository must be mounted at `{root}` (write the package again with `--server-root` otherwise). "
                  "The library uses ONNX Runtime's C API 17, so any server whose ONNX Runtime is 1.17 or newer "
                  "loads it; it was compiled on the machine that ran deploykit package, so its C++ runtime must "
                  "be no newer than the server image's.", ""]
    if model.platform == PLATFORM_PLAN:
        lines += ["The engine (`1/model.plan`) must come from the same ONNX file (`deploykit build`) and the same "
                  "TensorRT version as the server's, on the same GPU model. Its profile must cover "
                  f"max_batch_size {model.max_batch_size} and the sizes clients send.", ""]
        if plugin_names:
            lines += ["The TensorRT backend loads plugins only at server start: the command above passes "
                      f"{', '.join(f'`{n}`' for n in plugin_names)} with `--backend-config=tensorrt,plugins=...` "
                      "(semicolon-separated). The alternative is `LD_PRELOAD=<the library> tritonserver ...`. "
                      "Build the plugin library against the server's TensorRT.", ""]
    return "\n".join(lines)


def _markdown_code(text: str) -> str:
    """A tensor name as inline code in a table cell: control bytes escaped, no backtick or pipe
    left to end the span or the cell early."""
    return "`" + printable(text).replace("`", "'").replace("|", "\\|") + "`"


def _plugin_server_line(model: TritonModel, root: str, plugin_names: list[str], server: str) -> str:
    if model.platform != PLATFORM_PLAN or not plugin_names:
        return server
    paths = ";".join(str(PurePosixPath(root, model.name, name)) for name in plugin_names)
    return f"{server} --backend-config=tensorrt,plugins={_double_quoted(paths)}"


def _double_quoted(text: str) -> str:
    """``text`` in a shell's double quotes (the form Triton's docs give the plugin list in), with
    what the shell would still expand there escaped."""
    return '"' + re.sub(r'(["\\$`])', r"\\\1", text) + '"'
