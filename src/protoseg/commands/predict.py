"""`protoseg predict`: predict per-pixel and per-hit classes for image or events files (data or MC)"""
from __future__ import annotations

import argparse

from protoseg.errors import NotAvailableError

ACCEPTS_ANY_ARGUMENTS = True
HELP = "predict per-pixel and per-hit classes for image or events files (data or MC)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Not implemented yet: any arguments are accepted so that the one-line notice is what users see."""


def run(args: argparse.Namespace) -> int:
    raise NotAvailableError("not available yet in this version (tracked in issue #5)")
