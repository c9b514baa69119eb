"""`protoseg train`: train a Tiramisu network (Lightning: CPU, GPU, DDP, Slurm)"""
from __future__ import annotations

import argparse

from protoseg.errors import NotAvailableError

ACCEPTS_ANY_ARGUMENTS = True
HELP = "train a Tiramisu network (Lightning: CPU, GPU, DDP, Slurm)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Not implemented yet: any arguments are accepted so that the one-line notice is what users see."""


def run(args: argparse.Namespace) -> int:
    raise NotAvailableError("not available yet in this version (tracked in issue #5)")
