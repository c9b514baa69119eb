"""`protoseg images`: downsample events to labelled images (pooling, label scheme, selection, splits)"""
from __future__ import annotations

import argparse

from protoseg.errors import NotAvailableError

ACCEPTS_ANY_ARGUMENTS = True
HELP = "downsample events to labelled images (pooling, label scheme, selection, splits)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Not implemented yet: any arguments are accepted so that the one-line notice is what users see."""


def run(args: argparse.Namespace) -> int:
    raise NotAvailableError("not available yet in this version (tracked in issue #2)")
