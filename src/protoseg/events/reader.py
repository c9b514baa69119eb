"""Reading an events file: ``open_events`` (the index at once, hits on demand) and ``validate_events_file``."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.errors import InputError
from protoseg.events.checks import check_hits
from protoseg.events.format import (
    EVENT_DTYPES, FORMAT, HIT_DTYPES, MC_EVENT_DTYPES, PARTICLE_COLUMNS, SOURCE_EVENT_DTYPES, SOURCE_HIT_DTYPES,
    TRUTH_HIT_DTYPES, VERSION, Event,
)
from protoseg.fileio import closed_if_corrupt, open_h5_checked


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EventsFile:
    """Read access to an events file. Offsets and the event table are read once; hits on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._h5 = open_h5_checked(self.path, FORMAT, (VERSION,))
        with closed_if_corrupt(self._h5, self.path, "events file"):
            self._load_index()

    def _load_index(self) -> None:
        h5 = self._h5
        self.attrs: dict[str, Any] = {k: (_as_str(v) if isinstance(v, (bytes, str)) else v) for k, v in h5.attrs.items()}
        try:
            self.config: dict = json.loads(self.attrs.get("config", "{}"))
        except (json.JSONDecodeError, RecursionError):
            raise InputError("the 'config' attribute is not valid JSON", self.path) from None
        if not isinstance(self.config, dict):
            raise InputError("the 'config' attribute is not a JSON object", self.path)
        self.is_mc = bool(self.attrs.get("is_mc", "particles" in h5))
        for group in ("events", "hits"):
            if group not in h5:
                raise InputError(f"events file has no /{group} group", self.path)
        self.hit_columns: tuple[str, ...] = tuple(n for n in h5["hits"] if n != "offsets")
        self._hit_offsets = np.asarray(h5["hits/offsets"][...], dtype=np.int64)
        self._events = {name: h5["events"][name][...] for name in h5["events"]}
        n_events = len(self._hit_offsets) - 1
        if n_events < 0 or len(self._events.get("id", [])) != n_events:
            raise InputError("events table and hit offsets disagree on the number of events", self.path)
        self._particle_offsets = (
            np.asarray(h5["particles/offsets"][...], dtype=np.int64) if self.is_mc and "particles" in h5 else None
        )
        # The index must be whole before any event is read (no data is read here, only shapes): a damaged
        # offset would otherwise give events columns of different lengths.
        _check_offsets(self._hit_offsets, {n: h5["hits"][n].shape[0] for n in self.hit_columns}, "/hits", self.path)
        for name, column in self._events.items():
            if column.ndim != 1 or len(column) != n_events:
                raise InputError(f"/events/{name} has {len(column)} rows, expected {n_events}", self.path)
        if self._particle_offsets is not None:
            if len(self._particle_offsets) != n_events + 1:
                raise InputError("/particles/offsets does not have n_events + 1 entries", self.path)
            columns = [n for n in h5["particles"] if n != "offsets"]
            _check_offsets(self._particle_offsets, {n: h5["particles"][n].shape[0] for n in columns}, "/particles", self.path)

    # -- container protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._hit_offsets) - 1

    def __enter__(self) -> EventsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._h5.close()

    @property
    def event_ids(self) -> np.ndarray:
        return self._events["id"]

    @property
    def hit_offsets(self) -> np.ndarray:
        return self._hit_offsets

    @property
    def has_source_index(self) -> bool:
        """Whether the file records where each event and hit came from (import-root; SOURCE_*_DTYPES)."""
        return "source_index" in self.hit_columns and all(name in self._events for name in SOURCE_EVENT_DTYPES)

    @property
    def source_entries(self) -> np.ndarray | None:
        """Input tree entry of each event (imported files), else None."""
        return self._events.get("source_entry")

    @property
    def source_hits(self) -> np.ndarray | None:
        """Hits of each event's input entry, every plane (imported files), else None."""
        return self._events.get("source_hits")

    @property
    def n_hits(self) -> int:
        return int(self._hit_offsets[-1])

    @property
    def has_particles(self) -> bool:
        """Whether the file holds the particle table (/particles; MC files)."""
        return self._particle_offsets is not None

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event index {i} out of range for {n} events in {self.path}")
        return i % n

    # -- reading -----------------------------------------------------------------------------------
    def read_hit_columns(self, i: int, names: tuple[str, ...] | list[str] = ("wire", "tick", "integral")) -> dict[str, np.ndarray]:
        """The named hit columns of event ``i`` (only its rows are read)."""
        i = self._check_index(i)
        return self.read_hit_block(names, i, i + 1)

    def read_hit_block(self, names: tuple[str, ...] | list[str], start: int, stop: int) -> dict[str, np.ndarray]:
        """The named hit columns of events ``start..stop-1`` in one read: rows ``hit_offsets[start]:hit_offsets[stop]``.

        Event ``i`` owns the rows ``hit_offsets[i] - hit_offsets[start]`` up to ``hit_offsets[i + 1] - hit_offsets[start]``.
        """
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"events {start}..{stop - 1} out of range for {len(self)} events in {self.path}")
        hits = self._h5["hits"]
        missing = [n for n in names if n not in hits]
        if missing:
            raise InputError(f"events file has no hit column(s) {', '.join(missing)}", self.path)
        return self._read_rows(hits, names, int(self._hit_offsets[start]), int(self._hit_offsets[stop]))

    def _read_rows(self, group, names, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Rows lo:hi of the named datasets; a damaged chunk (checksum, decompression) is an InputError."""
        try:
            return {name: group[name][lo:hi] for name in names}
        except OSError as exc:
            raise InputError(f"hit data cannot be read, the file is corrupt ({str(exc).strip()})", self.path) from None

    def _particles_slice(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        group = self._h5["particles"]
        out = {}
        try:
            for name, dtype in PARTICLE_COLUMNS.items():
                ds = group[name]
                if dtype.kind == "O":
                    out[name] = np.asarray(ds.asstr()[lo:hi], dtype=object)
                else:
                    out[name] = ds[lo:hi]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"particle table cannot be read, the file is corrupt ({str(exc).strip()})", self.path) from None
        return out

    def _event_from(self, i: int, hits: dict[str, np.ndarray], particles: dict[str, np.ndarray] | None) -> Event:
        ev = self._events
        return Event(
            event_id=int(ev["id"][i]),
            hits=hits,
            run=int(ev["run"][i]),
            is_mc=bool(ev["is_mc"][i]),
            trigger=int(ev["trigger"][i]),
            beam_pdg=int(ev["beam_pdg"][i]) if "beam_pdg" in ev else 0,
            beam_momentum_gev=float(ev["beam_momentum"][i]) if "beam_momentum" in ev else float("nan"),
            particles=particles,
            source_entry=int(ev["source_entry"][i]) if "source_entry" in ev else -1,
            source_hits=int(ev["source_hits"][i]) if "source_hits" in ev else -1,
        )

    def read(self, i: int) -> Event:
        """Event ``i`` (0-based position in the file), reading only its rows."""
        i = self._check_index(i)
        hits = self.read_hit_columns(i, self.hit_columns)
        particles = None
        if self._particle_offsets is not None:
            particles = self._particles_slice(int(self._particle_offsets[i]), int(self._particle_offsets[i + 1]))
        return self._event_from(i, hits, particles)

    def iter_hit_columns(
        self, names: tuple[str, ...] | list[str], start: int = 0, stop: int | None = None, chunk_events: int = 64
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(i, columns)`` for events ``start..stop-1``, reading ``chunk_events`` events per HDF5 read."""
        stop = len(self) if stop is None else min(stop, len(self))
        hits = self._h5["hits"]
        missing = [n for n in names if n not in hits]
        if missing:
            raise InputError(f"events file has no hit column(s) {', '.join(missing)}", self.path)
        offsets = self._hit_offsets
        for block_start in range(start, stop, max(1, chunk_events)):
            block_stop = min(stop, block_start + max(1, chunk_events))
            lo, hi = int(offsets[block_start]), int(offsets[block_stop])
            block = self._read_rows(hits, names, lo, hi)
            for i in range(block_start, block_stop):
                a, b = int(offsets[i]) - lo, int(offsets[i + 1]) - lo
                yield i, {name: col[a:b] for name, col in block.items()}

    def iter_events(self, start: int = 0, stop: int | None = None, chunk_events: int = 64) -> Iterator[Event]:
        """Yield events ``start..stop-1``, reading ``chunk_events`` events per HDF5 read for speed."""
        stop = len(self) if stop is None else min(stop, len(self))
        pofs = self._particle_offsets
        for block_start in range(start, stop, max(1, chunk_events)):
            block_stop = min(stop, block_start + max(1, chunk_events))
            block_particles = None
            if pofs is not None:
                plo = int(pofs[block_start])
                block_particles = self._particles_slice(plo, int(pofs[block_stop]))
            for i, hits in self.iter_hit_columns(self.hit_columns, block_start, block_stop, chunk_events):
                particles = None
                if block_particles is not None:
                    a, b = int(pofs[i]) - plo, int(pofs[i + 1]) - plo
                    particles = {name: col[a:b] for name, col in block_particles.items()}
                yield self._event_from(i, hits, particles)


def open_events(path: str | Path) -> EventsFile:
    """Open an events file for reading (InputError if missing, truncated, or of another format/version)."""
    try:
        return EventsFile(path)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read events file ({exc.__class__.__name__}: {exc})", path) from None


def validate_events_file(path: str | Path, *, chunk_events: int = 256) -> None:
    """Check everything in an events file; raise InputError on the first problem found.

    Checks the format/version attributes, the config JSON, every required dataset and its dtype,
    the offsets (start at 0, non-decreasing, end at the column length), and every hit value
    (the same checks as ``EventsWriter.append``), reading the hits block by block.
    """
    with open_events(path) as events:
        h5 = events._h5
        required = dict(HIT_DTYPES, **TRUTH_HIT_DTYPES) if events.is_mc else dict(HIT_DTYPES)
        for name, dtype in required.items():
            if name not in h5["hits"]:
                raise InputError(f"/hits/{name} is missing", path)
            if h5["hits"][name].dtype != np.dtype(dtype):
                raise InputError(f"/hits/{name} has dtype {h5['hits'][name].dtype}, expected {np.dtype(dtype)}", path)
        for name in EVENT_DTYPES if not events.is_mc else (*EVENT_DTYPES, *MC_EVENT_DTYPES):
            if name not in h5["events"]:
                raise InputError(f"/events/{name} is missing", path)
            if len(h5["events"][name]) != len(events):
                raise InputError(f"/events/{name} has {len(h5['events'][name])} rows, expected {len(events)}", path)
        if "source_index" in h5["hits"] or any(name in h5["events"] for name in SOURCE_EVENT_DTYPES):
            if not events.has_source_index:
                raise InputError("/hits/source_index, /events/source_entry and /events/source_hits must come together", path)
            required = dict(required, **SOURCE_HIT_DTYPES)
            for name in SOURCE_EVENT_DTYPES:
                if len(h5["events"][name]) != len(events):
                    raise InputError(f"/events/{name} has {len(h5['events'][name])} rows, expected {len(events)}", path)
        _check_offsets(events.hit_offsets, {n: len(h5["hits"][n]) for n in required}, "/hits", path)
        if events.is_mc:
            if events._particle_offsets is None:
                raise InputError("MC events file has no /particles", path)
            if len(events._particle_offsets) != len(events) + 1:
                raise InputError("/particles/offsets does not have n_events + 1 entries", path)
            for name in PARTICLE_COLUMNS:
                if name not in h5["particles"]:
                    raise InputError(f"/particles/{name} is missing", path)
            _check_offsets(events._particle_offsets, {n: len(h5["particles"][n]) for n in PARTICLE_COLUMNS}, "/particles", path)
        try:
            for block_start in range(0, len(events), chunk_events):
                block_stop = min(len(events), block_start + chunk_events)
                lo, hi = int(events.hit_offsets[block_start]), int(events.hit_offsets[block_stop])
                block = {name: h5["hits"][name][lo:hi] for name in required}
                if events.has_source_index:
                    _check_source_block(events, block["source_index"], block_start, block_stop, lo, path)
                try:
                    check_hits(block, is_mc=events.is_mc, where="hits")
                except InputError:
                    # Only on failure: find the event that holds the bad hit, to name it.
                    for i in range(block_start, block_stop):
                        a, b = int(events.hit_offsets[i]) - lo, int(events.hit_offsets[i + 1]) - lo
                        one = {name: col[a:b] for name, col in block.items()}
                        check_hits(one, is_mc=events.is_mc, where=f"event {int(events.event_ids[i])} (position {i})")
                    raise
        except InputError as exc:
            raise InputError(str(exc), path) from None
        except OSError as exc:
            raise InputError(f"hit data cannot be read, the file is corrupt ({exc})", path) from None


def _check_source_block(events: EventsFile, index: np.ndarray, start: int, stop: int, lo: int, path: str | Path) -> None:
    """Source indices of events start..stop-1 (rows from ``lo``) lie inside their entries (vectorised)."""
    offsets = events.hit_offsets[start : stop + 1] - lo
    counts = np.diff(offsets)
    limit = np.repeat(events.source_hits[start:stop], counts)
    bad = np.asarray(index, dtype=np.int64) >= limit
    if bad.any():
        i = start + int(np.searchsorted(offsets, int(np.flatnonzero(bad)[0]), side="right")) - 1
        raise InputError(f"event {int(events.event_ids[i])} (position {i}): hit source index beyond its entry's "
                         f"{int(events.source_hits[i])} hits", path)


def _check_offsets(offsets: np.ndarray, lengths: dict[str, int], group: str, path: str | Path) -> None:
    if len(offsets) == 0 or offsets[0] != 0:
        raise InputError(f"{group}/offsets must start at 0", path)
    if np.any(np.diff(offsets) < 0):
        raise InputError(f"{group}/offsets decrease", path)
    for name, n in lengths.items():
        if n != offsets[-1]:
            raise InputError(f"{group}/{name} has {n} rows but the offsets end at {int(offsets[-1])}", path)
