"""Progress of long work (tqdm): a live bar on a terminal, plain lines in a log.

On a terminal the bar is redrawn in place. Piped to a file, redrawing with carriage returns would run
the steps together on one line ("predicted 2/6predicted 4/6"), so there every shown step is a line of
its own, at most about one per ``100 / LOG_LINES`` % of the work, and the last step always.
"""
from __future__ import annotations

import os
import sys
from typing import IO

from tqdm import tqdm

__all__ = ["LOG_LINES", "progress_bar"]

# A log gets at most about this many progress lines per bar (one per 5%), plus the last.
LOG_LINES = 20


class _LineWriter:
    """What tqdm writes, as lines: carriage returns and padding dropped, a repeated line written once."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.last: str | None = None

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: IO[str]) -> bool:
    """A terminal that can show a bar: a tty whose width is known and not 0.

    A pseudo-terminal without a window size (``ssh -T``-like wrappers, some batch systems, CI runners)
    says it is a tty but reports 0 columns; tqdm then draws nothing at all, so it gets log lines.
    """
    try:
        if not stream.isatty():
            return False
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):  # no isatty/fileno, a closed stream, not a real descriptor
        return False


def progress_bar(total: int, desc: str, *, enabled: bool = True, stream: IO[str] | None = None, unit: str = "it") -> tqdm:
    """A tqdm bar over ``total`` steps on ``stream`` (default stderr); a silent one when not ``enabled``.

    Use it as a context manager and call ``update(n)``; a log gets lines "``desc``: done/total".
    """
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(total=total, disable=True)
    if _is_terminal(stream):
        return tqdm(total=total, desc=desc, file=stream, unit=unit, dynamic_ncols=True)
    # miniters: a line per 1/LOG_LINES of the work; maxinterval=inf stops tqdm's monitor thread from
    # lowering it again after ten quiet seconds (which would make a slow step print every update). A
    # delay, however short, skips the "0/total" line: work that fails at once leaves only its error.
    return tqdm(total=total, desc=desc, file=_LineWriter(stream), bar_format="{desc}: {n_fmt}/{total_fmt}",
                mininterval=0, maxinterval=float("inf"), miniters=max(1, total // LOG_LINES), delay=1e-6)
