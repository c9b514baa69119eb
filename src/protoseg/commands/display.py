"""`protoseg display`: event display of one entry of an events, image or predictions file."""
from __future__ import annotations

import argparse

HELP = "event display (PNG) of an events, image or predictions file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="events, image or predictions file")
    parser.add_argument("--event", type=int, default=0, metavar="I", help="entry index in the file (default 0)")
    parser.add_argument("-o", "--out", required=True, metavar="PNG")


def run(args: argparse.Namespace) -> int:
    from protoseg.display import display_file

    path = display_file(args.file, args.event, args.out)
    print(f"wrote {path}")
    return 0
