"""Reference outputs saved with their inputs (``check --save-outputs``), so an ONNX file is
checked later, or elsewhere, without the model's source or PyTorch (``check --onnx F
--load-outputs ref.npz``): Polygraphy's ``--save-outputs`` / ``--load-outputs`` habit.

One ``.npz`` holds every case: ``case{i}/input/{name}`` and ``case{i}/output/{name}`` arrays
(PyTorch fp32's outputs, the reference check compared with), and ``__meta__`` (JSON: the
format, the SPEC, seed and tolerance they came from). Loading it imports neither torch nor any
model code; the arrays are loaded without pickle.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.errors import UserError
from deploykit.files import atomic_path

FORMAT = "deploykit.saved_outputs/1"
_META = "__meta__"


@dataclasses.dataclass
class SavedCase:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]  # the reference's, by output name


def save_outputs(path: Path, cases: list[SavedCase], meta: dict[str, Any], force: bool = False) -> None:
    """Write ``cases`` and ``meta`` to ``path`` atomically (never over a file without ``force``)."""
    arrays = {_META: np.array(json.dumps({"format": FORMAT, **meta}))}
    for index, case in enumerate(cases):
        for kind, named in (("input", case.inputs), ("output", case.outputs)):
            for name, array in named.items():
                if not isinstance(array, np.ndarray) or array.dtype == object:
                    raise UserError(f"output {name!r} is not a tensor, so it cannot be saved",
                                    "save the outputs of a model that returns tensors")
                arrays[f"case{index}/{kind}/{name}"] = array
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_path(Path(path), force) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_outputs(path: Path) -> tuple[dict[str, Any], list[SavedCase]]:
    """(meta, cases) of a file ``save_outputs`` wrote; a UserError naming what is wrong with any other."""
    from deploykit.model_io import read_npz

    path = Path(path)
    arrays = read_npz(path, "saved outputs", "pass the .npz that 'check --save-outputs' wrote")
    try:
        meta = json.loads(str(arrays.pop(_META)))
    except (KeyError, ValueError):
        meta = {}
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} holds no outputs saved by deploykit ({FORMAT})",
                        "make it with 'deploykit check SPEC --onnx F --save-outputs FILE.npz'")
    cases: dict[int, SavedCase] = {}
    for key, array in arrays.items():
        head, kind, name = (key.split("/", 2) + ["", ""])[:3]
        if not head.startswith("case") or not head[4:].isdigit() or kind not in ("input", "output") or not name:
            raise UserError(f"{path} has an array {key!r} that is not case<i>/input|output/<name>",
                            "pass the .npz that 'check --save-outputs' wrote, unchanged")
        case = cases.setdefault(int(head[4:]), SavedCase({}, {}))
        (case.inputs if kind == "input" else case.outputs)[name] = array
    if not cases or any(not c.inputs or not c.outputs for c in cases.values()):
        raise UserError(f"{path} has a case without inputs or outputs", "save the outputs again")
    return meta, [cases[index] for index in sorted(cases)]
