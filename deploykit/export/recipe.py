"""Export recipes (exports/*.toml): a model family's SPEC, parameters and export settings in one file.

A recipe's folder is importable while its SPEC's module loads, so a recipe can name a module beside it
(``spec = "sr_head:build"``). Command-line options override what the recipe sets.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UserError, first_line
from deploykit.export.dysample import DYSAMPLE_IMPLS
from deploykit.export.maxpool_indices import MAXPOOL_IMPLS
from deploykit.export.options import DEFAULT_TARGET, TARGETS, ExportOptions
from deploykit.spec import IMPORT_FOLDERS, LoadedModel, load_model

MAX_RECIPE_BYTES = 1 << 20
_TOP_KEYS = {"description", "spec", "params", "export"}
_EXPORT_KEYS = {"opset", "target", "static", "trace_shape", "shapes", "dysample_impl", "maxpool_impl",
                "input_dtypes", "val_ranges"}


@dataclass
class Recipe:
    path: Path
    spec: str
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)
    opset: int | None = None
    target: str | None = None
    static: bool = False
    # shapes as written ("2x64x37x45", or "image=...,mask=..." for several inputs): resolve_model
    # reads them against the model's inputs
    trace_shape: str | None = None
    shapes: list[str] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)  # as --input-dtype, before the command line's
    val_ranges: list[str] = field(default_factory=list)  # as --val-range, likewise
    dysample_impl: str | None = None  # None: the exporter's default for the target
    maxpool_impl: str | None = None  # likewise


def is_recipe(spec: str) -> bool:
    return spec.endswith(".toml")


def load_recipe(path: Path | str) -> Recipe:
    from deploykit.files import note_input

    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"
        raise UserError(f"recipe {path} {what}", "give the path of a .toml file, e.g. exports/segnet_decoder.toml")
    note_input(path)
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise UserError(f"recipe {path} is {path.stat().st_size:,} bytes, not a recipe",
                        f"a recipe is a short TOML file (at most {MAX_RECIPE_BYTES:,} bytes)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {path} is not valid TOML ({first_line(exc)})", "fix the file's syntax") from None
    except RecursionError:  # tables or arrays nested thousands deep
        raise UserError(f"recipe {path} nests tables or arrays too deeply to be a recipe",
                        "write spec, [params] and [export] at the top level") from None
    unknown = set(data) - _TOP_KEYS
    export = data.get("export", {})
    if not isinstance(export, dict):
        raise UserError(f"recipe {path}: export must be a table", "write it as [export]")
    unknown |= {f"export.{k}" for k in set(export) - _EXPORT_KEYS}
    if unknown:
        raise UserError(f"recipe {path} has unknown keys: {', '.join(sorted(unknown))}",
                        f"use {', '.join(sorted(_TOP_KEYS))} and export.{{{', '.join(sorted(_EXPORT_KEYS))}}}")
    if not isinstance(data.get("spec"), str):
        raise UserError(f"recipe {path} has no 'spec'", "add spec = \"zoo_name\" or \"module:callable\"")
    _check_types(path, data, export)
    folder = str(path.parent.resolve())
    if folder not in IMPORT_FOLDERS:
        IMPORT_FOLDERS.append(folder)  # only while the SPEC's module is imported and built
    return Recipe(
        path=path,
        spec=data["spec"],
        description=data.get("description", ""),
        params={k: str(v) for k, v in data.get("params", {}).items()},
        opset=export.get("opset"),
        target=export.get("target"),
        static=export.get("static", False),
        trace_shape=export.get("trace_shape"),
        shapes=list(export.get("shapes", [])),
        input_dtypes=list(export.get("input_dtypes", [])),
        val_ranges=list(export.get("val_ranges", [])),
        dysample_impl=export.get("dysample_impl"),
        maxpool_impl=export.get("maxpool_impl"),
    )


def _alternatives(values) -> str:
    """'"a", "b" or "c"': the values a key takes, as a type error lists them."""
    quoted = [f'"{value}"' for value in values]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else quoted[0]


_TYPES = {  # key -> (accepted type, how to write it)
    "description": (str, 'a string'),
    "spec": (str, 'a string: "zoo_name" or "module:callable"'),
    "params": (dict, "a table: [params]"),
    "export": (dict, "a table: [export]"),
    "export.opset": (int, "an integer, e.g. 17"),
    "export.target": (str, _alternatives(TARGETS)),
    "export.static": (bool, "true or false"),
    "export.trace_shape": (str, 'a shape string, e.g. "2x64x37x45"'),
    "export.shapes": (list, 'a list of shape strings, e.g. ["1x64x32x32"]'),
    "export.input_dtypes": (list, 'a list of "NAME=DTYPE" strings, e.g. ["mask=int64"]'),
    "export.val_ranges": (list, 'a list of "[NAME=]LOW,HIGH" strings, e.g. ["image=0,1"]'),
    "export.dysample_impl": (str, _alternatives(DYSAMPLE_IMPLS)),
    "export.maxpool_impl": (str, _alternatives(MAXPOOL_IMPLS)),
}


def _check_types(path: Path, data: dict, export: dict) -> None:
    values = {**data, **{f"export.{k}": v for k, v in export.items()}}
    for key, value in values.items():
        kind, how = _TYPES[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UserError(f"recipe {path}: {key} = {value!r} has the wrong type", f"write it as {how}")
    for key in ("shapes", "input_dtypes", "val_ranges"):
        for item in export.get(key, []):
            if not isinstance(item, str):
                raise UserError(f"recipe {path}: export.{key} holds {item!r}", "write each entry as a string")
    for key, value in data.get("params", {}).items():
        if isinstance(value, (dict, list)):
            raise UserError(f"recipe {path}: params.{key} = {value!r} is not a single value",
                            "give a number, boolean or string")


def resolve_model(spec: str, params: dict[str, str] | None = None, weights: Path | None = None, seed: int = 0,
                  input_dtypes=(), val_ranges=(), inputs_file: Path | None = None
                  ) -> tuple[LoadedModel, Recipe | None]:
    """SPEC, a zoo name, package.module:callable or a recipe (.toml), as the commands load it:
    (model, recipe or None). The recipe's parameters, shapes, input dtypes and value ranges come
    first, then the command line's; an --inputs file adds one test case of real data."""
    from deploykit.model_io import input_specs, load_npz, parse_case

    recipe = load_recipe(spec) if is_recipe(spec) else None
    if recipe is None:
        model = load_model(spec, params, weights, seed)
    else:
        model = load_model(recipe.spec, {**recipe.params, **(params or {})}, weights, seed)
        model.recipe = spec
        if recipe.shapes:
            model.default_shapes = [parse_case(text, model.input_names) for text in recipe.shapes]
        if recipe.trace_shape:
            recipe.trace_shape = parse_case(recipe.trace_shape, model.input_names)
    model.inputs = input_specs(model.input_names, [*(recipe.input_dtypes if recipe else []), *input_dtypes],
                               [*(recipe.val_ranges if recipe else []), *val_ranges])
    if inputs_file is not None:
        case, arrays = load_npz(inputs_file, model.inputs)
        model.data_cases[case] = arrays
    return model, recipe


def export_options(recipe: Recipe | None, *, opset: int | None = None, static: bool = False,
                   target: str | None = None, trace_shape=None, dysample_impl: str | None = None,
                   maxpool_impl: str | None = None) -> ExportOptions:
    """Export settings: the command line's, else the recipe's, else export's defaults."""
    return ExportOptions(
        opset=opset if opset is not None else (recipe.opset if recipe else None),
        dynamic=not (static or (recipe.static if recipe else False)),
        trace_shape=trace_shape or (recipe.trace_shape if recipe else None),
        target=target or (recipe.target if recipe and recipe.target else DEFAULT_TARGET),
        dysample_impl=dysample_impl or (recipe.dysample_impl if recipe else None),
        maxpool_impl=maxpool_impl or (recipe.maxpool_impl if recipe else None),
    )
