"""Export recipes (exports/*.toml): a model family's SPEC, parameters and export settings in one file.

A recipe's folder is importable while it loads, so a recipe can name a module beside it
(``spec = "sr_head:build"``). Command-line options override what the recipe sets.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UserError
from deploykit.spec import Shape, parse_shape

_TOP_KEYS = {"description", "spec", "params", "export"}
_EXPORT_KEYS = {"opset", "target", "static", "trace_shape", "shapes", "dysample_impl"}


@dataclass
class Recipe:
    path: Path
    spec: str
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)
    opset: int | None = None
    target: str | None = None
    static: bool = False
    trace_shape: Shape | None = None
    shapes: list[Shape] = field(default_factory=list)
    dysample_impl: str = "standard"


def is_recipe(spec: str) -> bool:
    return spec.endswith(".toml")


def load_recipe(path: Path | str) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} not found", "give the path of a .toml file, e.g. exports/segnet_decoder.toml")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {path} is not valid TOML ({exc})", "fix the file's syntax") from None
    unknown = set(data) - _TOP_KEYS
    export = data.get("export", {})
    unknown |= {f"export.{k}" for k in set(export) - _EXPORT_KEYS}
    if unknown:
        raise UserError(f"recipe {path} has unknown keys: {', '.join(sorted(unknown))}",
                        f"use {', '.join(sorted(_TOP_KEYS))} and export.{{{', '.join(sorted(_EXPORT_KEYS))}}}")
    if not isinstance(data.get("spec"), str):
        raise UserError(f"recipe {path} has no 'spec'", "add spec = \"zoo_name\" or \"module:callable\"")
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return Recipe(
        path=path,
        spec=data["spec"],
        description=data.get("description", ""),
        params={k: str(v) for k, v in data.get("params", {}).items()},
        opset=export.get("opset"),
        target=export.get("target"),
        static=bool(export.get("static", False)),
        trace_shape=parse_shape(export["trace_shape"]) if "trace_shape" in export else None,
        shapes=[parse_shape(s) for s in export.get("shapes", [])],
        dysample_impl=export.get("dysample_impl", "standard"),
    )
