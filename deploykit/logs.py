"""deploykit's logging: module loggers under ``deploykit``, shown on stderr at the level -v asks.

Library modules log with ``logging.getLogger(__name__)`` and never print. The command line
calls ``configure`` once: warnings by default, deploykit's steps with -v, and with -vv also
what PyTorch's exporter logs, which export otherwise keeps for its error report
(``captured_exporter_logs``) instead of silencing every logger in the process.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, TextIO

# The logger trees of PyTorch's exporter and what it drives: the only ones export captures.
EXPORTER_LOGGERS = ("torch", "onnxscript", "onnx_ir")
_STATE = {"verbosity": 0}


class _Printable(logging.Formatter):
    """A record as one printable line: text from files and libraries is escaped (deploykit.text)."""

    def format(self, record):
        from deploykit.text import printable

        return printable(super().format(record))


def configure(verbosity: int) -> None:
    """One stderr handler on the ``deploykit`` logger: WARNING, INFO with -v, DEBUG with -vv."""
    _STATE["verbosity"] = verbosity
    logger = logging.getLogger("deploykit")
    for handler in [h for h in logger.handlers if getattr(h, "deploykit_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.deploykit_cli = True
    handler.setFormatter(_Printable("deploykit: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG)
    logger.propagate = False


@contextlib.contextmanager
def captured_exporter_logs(sink: TextIO) -> Iterator[None]:
    """Within the block, what PyTorch's exporter loggers emit goes to ``sink`` (kept for the
    error message and report) instead of the terminal; with -vv it reaches the terminal too.
    PyTorch attaches handlers to its loggers itself, so each of them is swapped, not muted
    with ``logging.disable``: other loggers, deploykit's included, are untouched."""
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    keep_own = _STATE["verbosity"] >= 2
    swapped = []
    for logger in _exporter_loggers():
        if logger.name in EXPORTER_LOGGERS or logger.handlers:
            swapped.append((logger, logger.handlers, logger.propagate))
            logger.handlers = [handler, *(logger.handlers if keep_own else [])]
            if logger.name in EXPORTER_LOGGERS:
                logger.propagate = False
    try:
        yield
    finally:
        for logger, handlers, propagate in swapped:
            logger.handlers = handlers
            logger.propagate = propagate


def _exporter_loggers() -> list[logging.Logger]:
    names = set(EXPORTER_LOGGERS)
    names |= {name for name in logging.root.manager.loggerDict
              if any(name.startswith(f"{root}.") for root in EXPORTER_LOGGERS)}
    return [logging.getLogger(name) for name in sorted(names)]
