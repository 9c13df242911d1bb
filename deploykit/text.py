"""The one place text from files, users and third-party libraries is made safe to show.

Node names, paths, parameter values and runtime error messages may hold rich markup
(``[bold]``, ``[/]``), emoji codes, terminal control characters or, in file names that are not
UTF-8, lone surrogates that no UTF-8 stream can write. Every such string goes through
``printable`` before it is shown; ``markup`` and ``plain`` (rich) add the escaping for where it
is shown, and the HTML report's template escapes its values itself.
"""

from __future__ import annotations

import re

# Terminal control characters, and Unicode's bidirectional controls, which reorder what a
# terminal or editor shows (a name could display as another: "Trojan Source").
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` as a string any terminal or file can show: bytes that are not UTF-8 (surrogate
    escapes from file names) as ``\\xNN``, control characters (escape sequences) as ``\\xNN``,
    bidirectional controls as ``\\uNNNN``."""
    text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # surrogates that are not escapes
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)


def markup(text: object) -> str:
    """For a rich console string with markup of our own: the text itself, never markup."""
    from rich.markup import escape

    return escape(printable(text))


def plain(text: object, style: str = ""):
    """A rich Text (no markup, no emoji codes parsed) for a table cell."""
    from rich.text import Text

    return Text(printable(text), style=style)
