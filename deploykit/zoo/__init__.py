"""The operator zoo: upsamplers and downsamplers as named, parametrized PyTorch modules.

Each family lives in its own module and registers its entries on import; adding a family is
one new module and one line in ``_FAMILIES``.
"""

from __future__ import annotations

import importlib

from deploykit.errors import UserError
from deploykit.zoo.registry import ZooEntry

_FAMILIES = ("dysample", "interpolate", "upconv", "unpool", "downsample")


def entries() -> dict[str, ZooEntry]:
    """All zoo entries by name (imports the family modules, and with them torch)."""
    from deploykit.zoo.registry import registered

    for family in _FAMILIES:
        importlib.import_module(f"deploykit.zoo.{family}")
    return dict(sorted(registered().items()))


def get(name: str) -> ZooEntry:
    all_entries = entries()
    if name not in all_entries:
        raise UserError(
            f"unknown zoo entry {name!r}",
            f"choose one of {', '.join(all_entries)} (or give package.module:callable)",
        )
    return all_entries[name]
