"""The zoo's registry: every entry says how to build its module and what inputs it takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from deploykit.errors import UserError
from deploykit.model_io import Shape, shape_text
from deploykit.zoo.params import Param


# Spatial sizes of the default parity shapes, per input rank: one small square shape at
# batch 1, then batch above 1 with odd, non-square sizes (where export bugs show up).
_DEFAULT_SPATIAL = {
    3: [(32,), (45,), (27,)],
    4: [(32, 32), (37, 45), (27, 20)],
    5: [(8, 16, 16), (5, 9, 11), (6, 7, 10)],
}


@dataclass(frozen=True)
class ZooEntry:
    """A named, parametrized operator: ``build(**params)`` returns an ``nn.Module``.

    ``channels(params)`` is the input channel count, ``rank`` the input rank (3, 4 or 5),
    ``spatial_multiple(params)`` a number every spatial size must divide by, and
    ``constraints(params)`` returns a message when parameters do not fit together.
    ``examples`` are parameter sets that cover the entry's variants (tests, support matrix).
    """

    name: str
    family: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[..., Any]
    channels: Callable[[dict], int]
    rank: int | Callable[[dict], int] = 4
    spatial_multiple: Callable[[dict], int] = lambda p: 1
    constraints: Callable[[dict], str | None] = lambda p: None
    examples: tuple[dict, ...] = field(default_factory=lambda: ({},))

    def resolve_params(self, given: dict[str, str] | None = None, typed: dict | None = None) -> dict:
        """Defaults overlaid with the user's ``-p`` texts (parsed) and/or typed values."""
        values = {p.name: p.default for p in self.params}
        for key, text in (given or {}).items():
            values[key] = self._param(key).parse(text, self.name)
        for key, value in (typed or {}).items():
            values[key] = self._param(key).validate(value, self.name)
        problem = self.constraints(values)
        if problem:
            raise UserError(f"{self.name}: {problem}", f"change the -p values (see 'deploykit list {self.name}')")
        return values

    def _param(self, key: str) -> Param:
        for param in self.params:
            if param.name == key:
                return param
        raise UserError(f"unknown parameter {key!r} for zoo entry {self.name!r}",
                        f"valid parameters: {', '.join(p.name for p in self.params) or 'none'} "
                        f"(see 'deploykit list {self.name}')")

    def input_rank(self, params: dict) -> int:
        return self.rank(params) if callable(self.rank) else self.rank

    def default_shapes(self, params: dict) -> list[Shape]:
        channels = self.channels(params)
        multiple = self.spatial_multiple(params)
        shapes = []
        for batch, spatial in zip((1, 2, 3), _DEFAULT_SPATIAL[self.input_rank(params)]):
            sizes = tuple(-(-s // multiple) * multiple for s in spatial)
            shapes.append((batch, channels, *sizes))
        return shapes

    def shape_problem(self, shape: Shape, params: dict) -> str | None:
        """Why ``shape`` cannot feed this entry, or None when it can."""
        rank = self.input_rank(params)
        channels = self.channels(params)
        example = shape_text(self.default_shapes(params)[0])
        if len(shape) != rank:
            return f"{self.name} takes {rank}-D input (e.g. {example}), got {len(shape)}-D"
        if shape[1] != channels:
            return f"{self.name} with these parameters takes {channels} channels (e.g. {example}), got {shape[1]}"
        multiple = self.spatial_multiple(params)
        if any(s % multiple for s in shape[2:]):
            return f"{self.name} needs spatial sizes divisible by {multiple}, got {shape[2:]}"
        return None


_REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"zoo entry {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def registered() -> dict[str, ZooEntry]:
    return _REGISTRY
