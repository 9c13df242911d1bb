"""Typed, range-checked zoo parameters, so ``-p key=value`` errors name the valid range."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deploykit.errors import UserError

_TRUE = {"1", "true", "yes", "on"}
_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One constructor argument of a zoo entry: its type, default and valid values."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    optional: bool = False  # True when "none" is a valid value

    def valid_range(self) -> str:
        if self.choices is not None:
            text = "|".join(str(c) for c in self.choices)
        elif self.kind is bool:
            text = "true|false"
        elif self.low is not None or self.high is not None:
            low = "-inf" if self.low is None else _fmt(self.low)
            high = "inf" if self.high is None else _fmt(self.high)
            text = f"{self.kind.__name__} in [{low}, {high}]"
        else:
            text = self.kind.__name__
        return f"{text}|none" if self.optional else text

    def parse(self, text: str, entry: str) -> Any:
        """Turn the command-line text into a value, or say which values are allowed."""
        bad = UserError(
            f"bad value {text!r} for parameter {self.name!r} of {entry}",
            f"use {self.valid_range()}",
        )
        raw = text.strip()
        if self.optional and raw.lower() == "none":
            return None
        if self.kind is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise bad
        pattern = {int: _INT, float: _FLOAT}.get(self.kind)
        if pattern is not None and not pattern.match(raw):  # plain ASCII numbers: no "1_0", "nan", "inf"
            raise bad
        try:
            value = self.kind(raw)
        except ValueError:
            raise bad from None
        try:
            return self.validate(value, entry)
        except UserError:
            raise bad from None

    def validate(self, value: Any, entry: str) -> Any:
        bad = UserError(
            f"bad value {value!r} for parameter {self.name!r} of {entry}",
            f"use {self.valid_range()}",
        )
        if value is None:
            if self.optional:
                return None
            raise bad
        if self.choices is not None and value not in self.choices:
            raise bad
        if self.low is not None and value < self.low:
            raise bad
        if self.high is not None and value > self.high:
            raise bad
        return value


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


# Constraints several entries share (each returns a message, or None when the values fit).

def groups_problem(p: dict) -> str | None:
    if p["in_channels"] % p["groups"] or p["out_channels"] % p["groups"]:
        return f"in_channels and out_channels must be divisible by groups ({p['groups']})"
    return None


def pool_padding_problem(p: dict) -> str | None:
    if p["padding"] * 2 > p["kernel_size"]:
        return f"padding ({p['padding']}) must be at most half of kernel_size ({p['kernel_size']})"
    return None
