"""A progress bar for long runs (several shapes, backends, the whole zoo), on a terminal only.

On stderr, so tables and JSON on stdout stay clean; off when stderr is not a terminal (CI,
pipes, files) or with --quiet, so logs never fill with redraws.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

ProgressCallback = Callable[[int, int, str], None]  # (steps done, steps in all, what runs next)


@contextlib.contextmanager
def progress_bar(title: str, quiet: bool = False) -> Iterator[ProgressCallback | None]:
    """Yield a callback for the library to report steps to, or None when there is no terminal."""
    from rich.console import Console

    console = Console(stderr=True, emoji=False)
    if quiet or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"{title}: {{task.description}}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # step names hold entry names and parameters: never markup
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def report(done: int, total: int, step: str) -> None:
            bar.update(task, completed=done, total=total, description=step)

        yield report
