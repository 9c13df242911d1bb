"""From what the user typed (SPEC, -p, --weights, --seed) to a ready PyTorch model, and its reference outputs.

SPEC is a zoo entry name or ``package.module:callable``. The same SPEC, parameters and seed
always give the same weights, so ``export`` and a later ``check --onnx`` compare one model.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import UserError, first_line, is_out_of_memory, out_of_memory
from deploykit.model_io import Shape, format_shape

logger = logging.getLogger(__name__)
MAX_SEED = 2**32 - 1  # --seed's bound, and a recorded seed's


def parse_assignment(text: str) -> tuple[str, str]:
    """-p 'scale=2' -> ('scale', '2'): checked as the command line is parsed, before any model loads."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"malformed parameter {text!r}", "write -p key=value, e.g. -p scale=2")
    return key.strip(), value.strip()


@dataclass
class LoadedModel:
    """A model in eval mode, with what deploykit needs to feed it."""

    spec: str
    module: Any  # torch.nn.Module
    params: dict[str, Any]
    default_shapes: list[Shape] | None
    shape_rule: Any = None  # callable(shape) -> problem text or None
    seed: int = 0
    recipe: str | None = None  # the recipe (.toml) SPEC came from, as given: export records it
    # name -> InputSpec, in forward's order (deploykit.model_io); filled from forward's signature
    inputs: dict = field(default_factory=dict)
    data_cases: dict = field(default_factory=dict)  # Case from --inputs FILE -> its arrays by name

    def __post_init__(self):
        from deploykit.model_io import InputSpec, forward_input_names

        if not self.inputs:
            self.inputs = {name: InputSpec(name) for name in forward_input_names(self.module)}

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    def shapes_or_default(self, shapes: list[Shape] | None) -> list[Shape]:
        """The test cases: the given ones (or the default shapes), then any --inputs file's."""
        if shapes:
            for shape in shapes:
                self.validate_shape(shape)
            return list(shapes) + list(self.data_cases)
        if len(self.inputs) > 1 and not self.default_shapes and not self.data_cases:
            names = ",".join(f"{n}=NxCxHxW" for n in self.inputs)
            raise UserError(f"{self.spec} takes {len(self.inputs)} inputs ({', '.join(self.inputs)}) and has no "
                            "default shapes", f"pass --shape {names} (repeatable)")
        if not self.default_shapes and not self.data_cases:
            raise UserError(f"{self.spec} has no default input shapes", "pass --shape NxCxHxW (repeatable)")
        return list(self.default_shapes or []) + list(self.data_cases)

    def feed(self, case) -> dict[str, Any]:
        """The inputs of a test case by name: an --inputs file's arrays, or seeded ones."""
        from deploykit.model_io import draw_inputs

        return self.data_cases.get(case) or draw_inputs(case, self.seed, self.inputs)

    def forward(self, *tensors: Any) -> Any:
        """Run the module once; a shape it cannot take becomes a UserError, not a traceback."""
        import torch

        shown = ", ".join(format_shape(tuple(t.shape)) for t in tensors)
        try:
            with torch.no_grad():
                return self.module(*tensors)
        except UserError:
            raise
        except Exception as exc:  # whatever the user's module raises on an input it cannot take
            if is_out_of_memory(exc):  # the machine's limit, not the shape's fault
                raise out_of_memory(f"running {self.spec} at {shown}") from None
            raise UserError(f"{self.spec} cannot take input {shown}: {type(exc).__name__}: {first_line(exc)}",
                            _forward_fix(exc)) from None

    def validate_shape(self, shape: Shape) -> None:
        from deploykit.model_io import Case

        problem = self.shape_rule(shape) if self.shape_rule and not isinstance(shape, Case) else None
        if problem:
            raise UserError(f"shape {format_shape(shape)} does not fit {self.spec}: {problem}",
                            "pass a --shape the module can take")


def _forward_fix(exc: BaseException) -> str:
    """What to change when forward raised on deploykit's inputs: blame the shape only when the
    error is about sizes; name dtypes, devices and arguments when it is about them."""
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(word in text for word in ("cuda", "pin_memory", "pinned memory", "accelerator", "mps")):
        return ("the model asks for a GPU or pinned memory this machine lacks: run on a CUDA machine, or make "
                "forward device-agnostic")
    if any(word in text for word in ("dtype", "scalar type", "expected object of", "long", "int64", "float16",
                                     "half", "bool")):
        return "check the inputs' dtypes and values: --input-dtype NAME=DTYPE, --val-range NAME=LOW,HIGH"
    if isinstance(exc, (TypeError, KeyError, AttributeError)) and "size" not in text and "shape" not in text:
        return ("forward takes something deploykit does not feed (one tensor per required parameter): wrap the "
                "model in a module whose forward takes tensors")
    return "pass a --shape the module accepts"


def reference_outputs(model: LoadedModel, feed: dict[str, Any]) -> dict[str, Any]:
    """PyTorch fp32 eager on the CPU, DySample on its published math: what every backend is
    compared with (so a fused-kernel model is checked against the reference, not itself)."""
    import numpy as np
    import torch

    from deploykit.model_io import tensors_to_numpy
    from deploykit.zoo.dysample import dysample_impl

    with dysample_impl(model.module, "reference"):
        outputs = model.forward(*[torch.from_numpy(np.array(feed[name])) for name in model.input_names])
    return tensors_to_numpy(outputs, model.spec)


METADATA_WEIGHTS = "deploykit.weights_sha256"


def weights_fingerprint(module) -> str:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes, values) in the module's
    order: the same SPEC, parameters, seed and --weights give the same fingerprint, any other
    model another, so a file is never checked against a model it was not exported from."""
    import hashlib

    import numpy as np
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not isinstance(tensor, torch.Tensor):
                continue
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(np.ascontiguousarray(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy()).tobytes()
                          if tensor.numel() else b"")
    return digest.hexdigest()


def check_same_model(model: LoadedModel, meta: dict[str, str], path) -> None:
    """Refuse to compare ``path`` with ``model`` when the file records other weights."""
    recorded = meta.get(METADATA_WEIGHTS)
    if not recorded:
        return
    mine = weights_fingerprint(model.module)
    if mine != recorded:
        origin = ", ".join(f"{key.removeprefix('deploykit.')} {meta[key]}"
                           for key in (METADATA_SPEC, METADATA_PARAMS, METADATA_SEED) if meta.get(key))
        raise UserError(f"{path} was exported from other weights than {model.spec} has now (the file: {origin}; "
                        f"weights {recorded[:12]}, here {mine[:12]}): the comparison would only measure that",
                        "check the file against the SPEC, -p parameters, --seed and --weights it was exported with")


def load_model(spec: str, params: dict[str, str] | None = None, weights: Path | None = None,
               seed: int = 0) -> LoadedModel:
    """Build the module for SPEC with deterministic weights (``params`` are -p texts), then load
    --weights if given."""
    import torch

    params = params or {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if ":" in spec:
            typed = {key: _literal(value) for key, value in params.items()}
            module = _build_callable(spec, typed)
            default_shapes, rule = None, None
        else:
            from deploykit import zoo

            entry = zoo.get(spec)
            typed = entry.resolve_params(params)
            module = entry.build(**typed)
            default_shapes = entry.default_shapes(typed)
            rule = lambda shape, e=entry, p=typed: e.shape_problem(shape, p)  # noqa: E731
    if weights is not None:
        load_weights(module, Path(weights))
    if module.training:
        logger.info("%s is put in eval mode (dropout off, batch norm on its running statistics), as deployed", spec)
    module.eval()
    return LoadedModel(spec=spec, module=module, params=typed, default_shapes=default_shapes,
                       shape_rule=rule, seed=seed)


# What 'deploykit export' records of the model a file came from (beside METADATA_WEIGHTS).
METADATA_SPEC = "deploykit.spec"
METADATA_PARAMS = "deploykit.params"
METADATA_SEED = "deploykit.seed"
METADATA_RECIPE = "deploykit.recipe"
_OTHER_REFERENCES = "give the SPEC it was exported from, --load-outputs FILE.npz or --against REF.onnx"


@dataclass(frozen=True)
class RecordedOrigin:
    """The SPEC, parameters (as -p texts) and seed an ONNX file's metadata says it was exported from."""

    spec: str
    params: dict[str, str]
    seed: int
    weights_sha256: str | None
    recipe: str | None = None  # the recipe that named SPEC: its module imports from the recipe's folder

    def __str__(self) -> str:
        params = ", ".join(f"{key}={text}" for key, text in self.params.items())
        return f"{self.spec}{f' ({params})' if params else ''}, seed {self.seed}"

    def command(self, onnx_path, input_dtypes: list[str]) -> str:
        """The check command that names this model itself."""
        import shlex

        params = [f"-p {shlex.quote(f'{key}={text}')}" for key, text in self.params.items()]
        dtypes = [f"--input-dtype {shlex.quote(text)}" for text in input_dtypes]
        return " ".join(["deploykit check", shlex.quote(self.recipe or self.spec), *params, f"--seed {self.seed}", *dtypes,
                         "--onnx", shlex.quote(str(onnx_path))])


def recorded_origin(path, meta: dict[str, str]) -> RecordedOrigin:
    """What ``path``'s metadata records of its model; a UserError when it records none, or
    anything 'deploykit export' could not have written (the file may be hand-edited): a SPEC
    that is no zoo name or package.module:callable, a seed outside --seed's range, parameters
    that no -p value reads back as."""
    import json

    spec = meta.get(METADATA_SPEC)
    if not spec:
        raise UserError(f"{path} does not record the SPEC it was exported from ('deploykit export' writes it)",
                        _OTHER_REFERENCES)
    module, colon, attr = spec.partition(":")
    if not all(part.isidentifier() for part in [*module.split("."), *(attr.split(".") if colon else [])]):
        raise UserError(f"{path}'s metadata records SPEC {spec[:100]!r}, neither a zoo name nor "
                        "package.module:callable", _OTHER_REFERENCES)
    seed = meta.get(METADATA_SEED) or "0"
    if not (seed.isascii() and seed.isdigit() and int(seed) <= MAX_SEED):
        raise UserError(f"{path}'s metadata has unreadable {METADATA_SEED} {seed[:40]!r} (not a whole number in "
                        f"0..{MAX_SEED})", _OTHER_REFERENCES)
    try:
        values = json.loads(meta.get(METADATA_PARAMS) or "{}")
        params = {key: _p_text(value) for key, value in values.items()}
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested past the stack
        params = None
    if params is None or not all(text is not None and key and key == key.strip() and "=" not in key
                                 and key.isprintable() for key, text in params.items()):
        raise UserError(f"{path}'s metadata has unreadable {METADATA_PARAMS} (not an object of values -p "
                        "gives)", _OTHER_REFERENCES)
    recipe = meta.get(METADATA_RECIPE)
    if recipe is not None and not (recipe.isprintable() and recipe.endswith(".toml")):
        raise UserError(f"{path}'s metadata records recipe {recipe[:100]!r}, not a .toml path", _OTHER_REFERENCES)
    return RecordedOrigin(spec, params, int(seed), meta.get(METADATA_WEIGHTS), recipe)


def _p_text(value: Any) -> str | None:
    """The -p text that reads back as ``value`` (a string as typed when it reads back as itself,
    else its Python literal), printable on one line; None when none does (NaN, infinity)."""
    for text in ([value] if isinstance(value, str) else []) + [repr(value)]:
        if text.isprintable() and text == text.strip() and _literal(text) == value:
            return text
    return None


def load_recorded_model(onnx_path: Path, weights: Path | None = None, input_dtypes=(), val_ranges=(),
                        inputs_file: Path | None = None) -> tuple[LoadedModel, RecordedOrigin]:
    """The PyTorch model ``onnx_path`` was exported from, rebuilt from its metadata (SPEC,
    parameters, seed) with ``weights`` if given, so a file is checked without retyping them. The
    file's integer and bool inputs keep their dtypes; --input-dtype, --val-range and --inputs add
    to them as with SPEC. Refused, never replaced by other weights, when the rebuilt weights are
    not the ones the file recorded."""
    from deploykit.model_io import DTYPES, input_specs, load_npz, onnx_dtype_name
    from deploykit.onnx_file import graph_inputs, validate_onnx_file

    proto = validate_onnx_file(onnx_path)
    origin = recorded_origin(onnx_path, {p.key: p.value for p in proto.metadata_props})
    # Floats stay float32: the reference is PyTorch fp32, and an fp16 graph's runners cast its inputs.
    recorded_dtypes = [f"{value.name}={dtype}" for value in graph_inputs(proto)
                       if (dtype := onnx_dtype_name(value, onnx_path)) in DTYPES and "float" not in dtype]
    if ":" in origin.spec:  # the file, maybe someone else's, may not choose code for deploykit to run
        raise UserError(f"{onnx_path} was exported from {origin.spec}, code deploykit imports only when you name it",
                        f"if you trust {origin.spec.partition(':')[0]}, run: {origin.command(onnx_path, recorded_dtypes)}")
    if not origin.weights_sha256:  # a file of a deploykit before fingerprints: it may hold --weights
        raise UserError(f"{onnx_path} records no fingerprint of its weights (an older deploykit wrote it), so the "
                        "model its metadata names cannot be shown to be the one it was exported from",
                        "run the check that names it, adding any --weights it was exported with: "
                        f"{origin.command(onnx_path, recorded_dtypes)}")
    try:
        model = load_model(origin.spec, origin.params, weights, origin.seed)
    except UserError as exc:
        raise UserError(f"{onnx_path} was exported from {origin.spec}, which cannot be rebuilt here: {exc.problem}",
                        f"{exc.fix}; or {_OTHER_REFERENCES}") from None
    if weights_fingerprint(model.module) != origin.weights_sha256:
        if weights is None:
            raise UserError(f"{onnx_path} was exported from {origin.spec} with weights other than its seeded ones "
                            "(a --weights file, or its code changed since)",
                            f"pass --weights FILE, the state dict it was exported with; or {_OTHER_REFERENCES}")
        raise UserError(f"--weights {weights} are not the weights {onnx_path} was exported with",
                        f"pass the state dict it was exported with; or {_OTHER_REFERENCES}")
    recorded_dtypes = [text for text in recorded_dtypes if text.partition("=")[0] in model.input_names]
    model.inputs = input_specs(model.input_names, [*recorded_dtypes, *input_dtypes], list(val_ranges))
    if inputs_file is not None:
        case, arrays = load_npz(inputs_file, model.inputs)
        model.data_cases[case] = arrays
    return model, origin


def source_file(spec: str) -> Path | None:
    """The file that defines a package.module:callable SPEC, found the way import would find
    it (None for a zoo name, or a module that cannot be found): a file the command reads, so
    never one of its outputs."""
    module_name = spec.partition(":")[0] if ":" in spec else ""
    try:
        found = importlib.util.find_spec(module_name) if module_name else None
    except Exception:  # a parent package that fails to import: loading SPEC says so, with the fix
        return None
    origin = getattr(found, "origin", None)
    return Path(origin) if origin and found.has_location else None


# Folders the SPEC's module may be imported from besides sys.path: the working folder, and a
# recipe's folder (deploykit.export.recipe). They are on sys.path only while the SPEC's module is
# imported and its callable builds the model, never for the rest of the run.
IMPORT_FOLDERS: list[str] = []
# SPEC module -> the modules its import brought in (kept for later loads in the same process).
_BROUGHT: dict[str, set[str]] = {}


@contextlib.contextmanager
def user_import_folders():
    """Within the block the working folder and recipe folders come first on sys.path."""
    folders = [os.getcwd(), *IMPORT_FOLDERS]
    added = [folder for folder in dict.fromkeys(folders) if folder not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)


def _build_callable(spec: str, kwargs: dict[str, Any]) -> Any:
    import torch

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"malformed SPEC {spec!r}", "give a zoo name or package.module:callable")
    before = set(sys.modules)
    with user_import_folders():
        try:
            target = importlib.import_module(module_name)
        except Exception as exc:  # ImportError, or whatever the module raises while importing
            raise UserError(f"cannot import {module_name!r} for SPEC {spec!r}: {type(exc).__name__}: "
                            f"{first_line(exc)}", "check the module path and that it is importable (PYTHONPATH)"
                            ) from None
    parts = module_name.split(".")  # its packages too: finding the SPEC's file may have imported them already
    brought = _BROUGHT.setdefault(module_name, set())  # a second load in one process imports nothing new
    brought |= (set(sys.modules) - before) | {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    _note_user_modules(brought)
    factory = target
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise UserError(f"{module_name} has no attribute {attr!r}", "give package.module:callable")
    try:
        with user_import_folders():
            module = factory(**kwargs)
    except Exception as exc:  # the user's factory rejecting its arguments
        raise UserError(f"{spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) raised "
                        f"{type(exc).__name__}: {first_line(exc)}", "check the -p names and values") from None
    if not isinstance(module, torch.nn.Module):
        raise UserError(f"{spec} returned {type(module).__name__}, not a torch.nn.Module",
                        "point SPEC at a callable that returns an nn.Module")
    return module


def _note_user_modules(names: set[str]) -> None:
    """The source of every module the SPEC's import brought in from outside the installed
    packages (its package's __init__.py, its helpers) is read too: no output may replace it."""
    import sysconfig

    from deploykit.files import note_input

    installed = {os.path.realpath(p) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib",
                                                                              "platlib")}}
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and not any(os.path.realpath(path).startswith(root + os.sep) for root in installed):
            note_input(path)


def _literal(text: str) -> Any:
    """-p text for a callable: true/false/none in any case, else a Python literal, else a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[lowered]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_weights(module: Any, path: Path) -> None:
    """Load a state dict with ``weights_only=True``: a checkpoint cannot run code."""
    import pickle
    import zipfile

    import torch

    from deploykit.files import note_input

    if path.is_dir():
        raise UserError(f"--weights {path} is a directory", "give the path of a state dict file")
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"
        raise UserError(f"weights file {path} {what}", "check the --weights path")
    note_input(path)
    save_hint = "save it with torch.save(model.state_dict(), path)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"weights file {path} holds objects other than tensors, or is not a PyTorch file",
                        save_hint) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UserError(f"weights file {path} cannot be read as a state dict ({first_line(exc, 120)})",
                        save_hint) from None
    except Exception as exc:  # a crafted or damaged zip: TypeError, IndexError, KeyError, struct.error...
        if is_out_of_memory(exc):
            raise out_of_memory(f"reading {path}") from None
        raise UserError(f"weights file {path} is damaged or not a PyTorch file "
                        f"({type(exc).__name__}: {first_line(exc, 120)})", save_hint) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"weights file {path} does not hold a state dict (names -> tensors)", save_hint)
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = " ".join(lines[1:3])[:240] if len(lines) > 1 else lines[0][:240]
        raise UserError(f"weights file {path} does not match the model: {detail}",
                        "use the same SPEC and -p values the weights were saved with") from None
