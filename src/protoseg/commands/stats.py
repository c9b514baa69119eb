"""`protoseg stats`: print the class balance of an image file (2018-style median class weights)"""
from __future__ import annotations

import argparse

from protoseg.errors import NotAvailableError

ACCEPTS_ANY_ARGUMENTS = True
HELP = "print the class balance of an image file (2018-style median class weights)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Not implemented yet: any arguments are accepted so that the one-line notice is what users see."""


def run(args: argparse.Namespace) -> int:
    raise NotAvailableError("not available yet in this version (tracked in issue #2)")
