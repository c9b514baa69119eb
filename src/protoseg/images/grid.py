"""The pixel grid: hits (tick, wire) → pixel (row, column), and the checks on hits before they are imaged.

The grid is the 2018 study's: the readout window (6000 ticks) and the 1440 collection wires are
mapped linearly onto H×W pixels, row = tick bin (row 0 = tick 0), column = wire bin, with
``bin = floor(value × size / range)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from protoseg.detector import READOUT
from protoseg.errors import InputError

__all__ = ["DEFAULT_SIZE", "check_size", "pixel_indices", "check_hit_values"]

DEFAULT_SIZE = (320, 320)


def check_size(size: Sequence[int], where: str | Path | None = None) -> tuple[int, int]:
    """``size`` as (H, W) ints, or InputError: 1 <= H <= 6000 ticks and 1 <= W <= 1440 wires."""
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"image size must be two integers H W, got {size!r}", where) from None
    if not (1 <= height <= READOUT.n_ticks and 1 <= width <= READOUT.n_wires):
        raise InputError(
            f"impossible image size {height}x{width}: rows must be 1..{READOUT.n_ticks} (ticks) "
            f"and columns 1..{READOUT.n_wires} (wires)",
            where,
        )
    return height, width


def pixel_indices(tick: np.ndarray, wire: np.ndarray, size: Sequence[int] = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, col) of each hit: row = floor(tick × H / 6000), col = floor(wire × W / 1440).

    Computed in float64 ((value × size) / range, in that order), so an independent computation with
    the same formula gives the same bins. Returns int64 arrays.
    """
    height, width = check_size(size)
    tick64 = np.asarray(tick, dtype=np.float64)
    row = np.floor(tick64 * height / READOUT.n_ticks).astype(np.int64)
    wire = np.asarray(wire)
    if wire.dtype.kind in "iu":  # exact integer arithmetic: the same floor as in float64
        col = wire.astype(np.int64) * width // READOUT.n_wires
    else:
        col = np.floor(np.asarray(wire, dtype=np.float64) * width / READOUT.n_wires).astype(np.int64)
    # Hits are validated to lie inside the window; clipping only guards against float rounding.
    np.clip(row, 0, height - 1, out=row)
    np.clip(col, 0, width - 1, out=col)
    return row, col


def check_hit_values(hits: dict[str, np.ndarray], event_id: int, path: str | Path) -> None:
    """The checks of the events writer on the columns an image needs (a file may come from elsewhere, or
    be damaged): InputError naming the file and the event. Used by every reader of events files."""
    where = f"event {event_id}"
    if len(hits["wire"]) == 0:
        return
    if int(hits["wire"].max()) >= READOUT.n_wires:
        raise InputError(f"{where}: hit wire {int(hits['wire'].max())} outside the {READOUT.n_wires} collection wires", path)
    tick = hits["tick"]
    if not ((tick >= 0) & (tick < READOUT.n_ticks)).all():
        raise InputError(f"{where}: hit tick outside the readout window [0, {READOUT.n_ticks})", path)
    integral = hits["integral"]
    if not (np.isfinite(integral) & (integral >= 0)).all():
        raise InputError(f"{where}: hit integral that is not a finite non-negative number", path)
    if "label" in hits and hits["label"].max() > 2:
        raise InputError(f"{where}: hit label {int(hits['label'].max())} is not 0, 1 or 2", path)
