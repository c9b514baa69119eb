"""Progress in a log: one line per shown step, never steps run together by carriage returns."""
from __future__ import annotations

import io

from protoseg.progress import LOG_LINES, progress_bar


def test_a_log_gets_one_line_per_step():
    log = io.StringIO()
    with progress_bar(6, "predicted", stream=log) as bar:
        for _ in range(3):
            bar.update(2)
    assert log.getvalue() == "predicted: 2/6\npredicted: 4/6\npredicted: 6/6\n"


def test_a_long_job_logs_every_few_percent_and_its_end():
    log = io.StringIO()
    with progress_bar(1003, "images", stream=log) as bar:
        for _ in range(1003):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and lines[-1] == "images: 1003/1003"
    assert len(lines) <= LOG_LINES + 2 and lines[0] == "images: 50/1003"


def test_work_that_fails_at_once_leaves_no_progress_line_and_disabled_bars_are_silent():
    log = io.StringIO()
    try:
        with progress_bar(6, "evaluated", stream=log):
            raise ValueError("bad image")
    except ValueError:
        pass
    with progress_bar(6, "evaluated", stream=log, enabled=False) as bar:
        bar.update(6)
    assert log.getvalue() == ""


def _drain(fd: int) -> str:
    """Everything written to the pty so far (a pty hands it over in pieces)."""
    import os
    import select

    out = b""
    while select.select([fd], [], [], 0.5)[0]:
        out += os.read(fd, 4096)
    return out.decode()


def test_a_pseudo_terminal_without_a_width_gets_log_lines_and_one_with_a_width_gets_a_bar():
    import fcntl
    import os
    import struct
    import termios

    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            # a fresh pty has no window size: 0 columns, where tqdm would draw nothing
            with progress_bar(2, "simulate", stream=tty) as bar:
                bar.update(2)
            tty.flush()
            assert _drain(master).replace("\r\n", "\n") == "simulate: 2/2\n"
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            with progress_bar(2, "simulate", stream=tty) as bar:
                bar.update(2)
            tty.flush()
            drawn = _drain(master)
            assert "\r" in drawn and "100%" in drawn and "2/2" in drawn
    finally:
        os.close(master)
        os.close(slave)
