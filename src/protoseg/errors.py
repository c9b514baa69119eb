"""The one exception type that entry points turn into a one-line message and exit code 2."""
from __future__ import annotations

from pathlib import Path

__all__ = ["InputError", "NotAvailableError", "Terminated", "SIGTERM_EXIT_CODE"]

# 128 + SIGTERM (15): the shell's code for a process ended by SIGTERM, which Slurm sends at a time limit.
SIGTERM_EXIT_CODE = 143


class InputError(Exception):
    """Bad input from the user: a missing or malformed file, an impossible setting.

    The message must name the file (when there is one) and say what is wrong, in one line.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class NotAvailableError(InputError):
    """A command or option whose implementation has not landed yet: said plainly, never faked."""


class Terminated(SystemExit):
    """Raised in the main thread when the process receives SIGTERM (``protoseg.cli`` installs the handler).

    A ``SystemExit`` (not a ``KeyboardInterrupt``) so that it unwinds like Ctrl-C through every
    ``atomic_output`` (temporary files removed) but is not mistaken for Ctrl-C by libraries that
    treat that specially (Lightning exits with code 1 on KeyboardInterrupt); left uncaught, the
    interpreter exits with ``SIGTERM_EXIT_CODE``.
    """

    def __init__(self) -> None:
        super().__init__(SIGTERM_EXIT_CODE)
