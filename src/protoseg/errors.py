"""The one exception type that entry points turn into a one-line message and exit code 2."""
from __future__ import annotations

from pathlib import Path

__all__ = ["InputError", "NotAvailableError"]


class InputError(Exception):
    """Bad input from the user: a missing or malformed file, an impossible setting.

    The message must name the file (when there is one) and say what is wrong, in one line.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class NotAvailableError(InputError):
    """A command or option whose implementation has not landed yet: said plainly, never faked."""
