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


def test_atomic_output_gives_ordinary_permissions_and_leaves_nothing_on_failure(tmp_path):
    import os

    import pytest

    from protoseg.fileio import atomic_output

    target = tmp_path / "out.h5"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"data")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_bytes() == b"data"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "failed.h5") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
