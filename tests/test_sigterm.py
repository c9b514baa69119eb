"""SIGTERM (what Slurm sends at a time limit) cleans up like Ctrl-C: no temporary file left, exit code 143."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from protoseg.errors import SIGTERM_EXIT_CODE

# Cheap events (a muon gun, no noise), many of them: the run is still going when the signal comes.
SIMULATE = ["simulate", "-n", "40", "--seed", "5", "--gun", "13", "--momentum", "1", "--quiet"]


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("workers, whole_group", [(1, False), (2, True)])
def test_sigterm_mid_simulation_leaves_no_temporary_file_and_exits_143(tmp_path, workers, whole_group):
    """With --workers 2 the signal goes to the whole process group, as Slurm signals every process of a job."""
    out = tmp_path / "events.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "protoseg", *SIMULATE, "--workers", str(workers), "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        # The events writer opens its hidden temporary file before the first event; wait until the run is under way.
        _wait_for(lambda: any(p.name.startswith(".events.h5.") for p in tmp_path.iterdir()), 120, "the temporary file")
        time.sleep(1.0)
        assert process.poll() is None, process.communicate()
        if whole_group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == SIGTERM_EXIT_CODE == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1] == "protoseg simulate: terminated by SIGTERM, unfinished outputs removed"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    _wait_for(lambda: not _group_alive(process.pid), 10, "the worker processes to end")


def test_sigterm_handler_is_removed_after_the_command(tmp_path):
    """In-process callers (tests, notebooks) get their own SIGTERM handler back."""
    from protoseg.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["stats", str(tmp_path / "missing.h5")]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
