"""The program's front door: every DESIGN.md subcommand is listed, and misuse exits 2 in one line."""
from __future__ import annotations

import subprocess
import sys

from protoseg.cli import COMMANDS, main

DESIGN_COMMANDS = {"simulate", "import-root", "images", "train", "evaluate", "predict", "export", "display", "demo"}


def test_every_design_command_is_registered():
    assert DESIGN_COMMANDS <= set(COMMANDS)


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "protoseg", "--help"], capture_output=True, text=True, check=True).stdout
    for name in DESIGN_COMMANDS:
        assert name in out


def test_no_command_exits_2(capsys):
    assert main([]) == 2
