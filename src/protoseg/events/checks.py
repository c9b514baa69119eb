"""The checks every event passes on its way into an events file (and ``validate_events_file`` on the
way out): columns present, of the file's dtypes, of equal lengths, values inside the detector."""
from __future__ import annotations

from typing import Any

import numpy as np

from protoseg.detector import READOUT
from protoseg.errors import InputError
from protoseg.events.format import (
    HIT_DTYPES, MAX_LABEL, MAX_ORIGIN, PARTICLE_COLUMNS, SOURCE_HIT_DTYPES, TRUTH_HIT_DTYPES, Event,
)


def _coerce(name: str, values: Any, dtype: Any, where: str) -> np.ndarray:
    """Return ``values`` as a 1-d array of ``dtype``; integers must convert exactly, floats never to ints."""
    arr = np.asarray(values)
    target = np.dtype(dtype)
    if arr.ndim != 1:
        raise InputError(f"{where}: column '{name}' must be 1-dimensional, got shape {arr.shape}")
    if arr.dtype == target:
        return arr
    if target.kind in "iu":
        if arr.size == 0:
            return arr.astype(target)
        if arr.dtype.kind not in "iub":
            raise InputError(f"{where}: column '{name}' must hold integers ({target}), got {arr.dtype}")
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            raise InputError(f"{where}: column '{name}' has values outside the range of {target}")
        return arr.astype(target)
    if target.kind == "f":
        if arr.dtype.kind not in "iuf":
            raise InputError(f"{where}: column '{name}' must be numeric ({target}), got {arr.dtype}")
        return arr.astype(target)
    return arr.astype(target)


def check_hits(hits: dict[str, np.ndarray], *, is_mc: bool, where: str) -> dict[str, np.ndarray]:
    """Validate one event's (or a block's) hit columns and return them with the file's dtypes.

    Raises InputError naming ``where`` and the first problem: a missing column, unequal lengths,
    wire >= 1440, tick outside [0, 6000), a NaN / infinite / negative integral, a negative or infinite
    rms, an infinite peak, a label or origin outside its code range.
    """
    dtypes = dict(HIT_DTYPES, **TRUTH_HIT_DTYPES) if is_mc else dict(HIT_DTYPES)
    missing = [name for name in dtypes if name not in hits]
    if missing:
        raise InputError(f"{where}: hit columns missing: {', '.join(missing)}")
    out = {name: _coerce(name, hits[name], dtype, where) for name, dtype in dtypes.items()}
    lengths = {len(a) for a in out.values()}
    if len(lengths) != 1:
        detail = ", ".join(f"{n}={len(a)}" for n, a in out.items())
        raise InputError(f"{where}: hit columns have different lengths ({detail})")
    if len(out["wire"]) == 0:
        return out
    n_wires, n_ticks = READOUT.n_wires, READOUT.n_ticks
    wire_max = int(out["wire"].max())
    if wire_max >= n_wires:
        raise InputError(f"{where}: hit wire {wire_max} outside the {n_wires} collection wires (0..{n_wires - 1})")
    tick = out["tick"]
    bad_tick = ~((tick >= 0) & (tick < n_ticks))
    if bad_tick.any():
        raise InputError(f"{where}: hit tick {float(tick[bad_tick][0]):g} outside the readout window [0, {n_ticks})")
    integral = out["integral"]
    bad_integral = ~(np.isfinite(integral) & (integral >= 0))
    if bad_integral.any():
        raise InputError(f"{where}: hit integral {float(integral[bad_integral][0]):g} is not a finite non-negative number")
    rms = out["rms"]
    if (np.isinf(rms) | (rms < 0)).any():
        raise InputError(f"{where}: hit rms must be non-negative and finite (NaN allowed: not recorded)")
    if np.isinf(out["peak"]).any():
        raise InputError(f"{where}: hit peak must be finite (NaN allowed: not recorded)")
    if is_mc:
        if int(out["label"].max()) > MAX_LABEL:
            raise InputError(f"{where}: hit label {int(out['label'].max())} is not 0 (none), 1 (beam) or 2 (not-beam)")
        if int(out["origin"].max()) > MAX_ORIGIN:
            raise InputError(f"{where}: hit origin {int(out['origin'].max())} is not 0..3 (noise, beam, cosmic, halo)")
    return out


def check_source_index(event: Event, n_hits: int, where: str) -> dict[str, np.ndarray]:
    """The source index column of an imported event, checked: one per hit, increasing, inside its entry."""
    if "source_index" not in event.hits:
        raise InputError(f"{where}: hit column missing: source_index")
    index = _coerce("source_index", event.hits["source_index"], SOURCE_HIT_DTYPES["source_index"], where)
    if len(index) != n_hits:
        raise InputError(f"{where}: {len(index)} source indices for {n_hits} hits")
    if event.source_entry < 0 or event.source_hits < n_hits:
        raise InputError(f"{where}: source entry {event.source_entry} with {event.source_hits} hits cannot hold its {n_hits} hits")
    if n_hits and (int(index[-1]) >= event.source_hits or np.any(np.diff(index.astype(np.int64)) <= 0)):
        raise InputError(f"{where}: source indices must increase and stay below the entry's {event.source_hits} hits")
    return {"source_index": index}


def check_particles(particles: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    missing = [name for name in PARTICLE_COLUMNS if name not in particles]
    if missing:
        raise InputError(f"{where}: particle columns missing: {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for name, dtype in PARTICLE_COLUMNS.items():
        if dtype.kind == "O":
            arr = np.asarray(particles[name], dtype=object)
            if arr.ndim != 1 or not all(isinstance(s, str) for s in arr):
                raise InputError(f"{where}: particle column '{name}' must be a 1-d array of str")
            out[name] = arr
        else:
            out[name] = _coerce(name, particles[name], dtype, where)
    lengths = {len(a) for a in out.values()}
    if len(lengths) != 1:
        raise InputError(f"{where}: particle columns have different lengths")
    return out
