"""Rich progress bars on a terminal; silent in CI logs and when output is not a TTY."""
from __future__ import annotations

import contextlib
import os
import sys


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextlib.contextmanager
def progress_bar(description: str, total: int):
    """Yields ``update(done, total)``; a no-op off-terminal."""
    if not interactive():
        yield lambda done, tot=None: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True) as prog:
        task = prog.add_task(description, total=total)
        yield lambda done, tot=None: prog.update(task, completed=done)
