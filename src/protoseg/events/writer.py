"""Writing an events file: ``EventsWriter`` buffers events and writes them in blocks, atomically."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.errors import InputError
from protoseg.events.checks import check_hits, check_particles, check_source_index
from protoseg.events.format import (
    DETECTOR, EVENT_DTYPES, FORMAT, HIT_CHUNK_ROWS, HIT_DTYPES, MC_EVENT_DTYPES, PARTICLE_CHUNK_ROWS, PARTICLE_COLUMNS,
    SOURCE_EVENT_DTYPES, SOURCE_HIT_DTYPES, TRUTH_HIT_DTYPES, VERSION, Event,
)
from protoseg.fileio import atomic_output
from protoseg.version import __version__

# The writer buffers appended events in memory and writes them in blocks of about this many hits.
_FLUSH_HITS = 1 << 21
_COMPRESSION = "lzf"


def _json_default(value: Any) -> Any:
    """Make numpy scalars/arrays, paths and dataclasses JSON-serialisable for the config attribute."""
    import dataclasses

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"config value of type {type(value).__name__} cannot be stored as JSON")


def config_to_json(config: dict) -> str:
    """The JSON text stored in the ``config`` attribute (sorted keys, so equal configs give equal text)."""
    return json.dumps(config, sort_keys=True, default=_json_default)


class EventsWriter:
    """Write an events file event by event; the file appears under its name only on a clean close.

    Usage::

        with EventsWriter("events.h5", config=settings, is_mc=True, source="simulate") as writer:
            for event in events:
                writer.append(event)

    Appended events are buffered and written in blocks into resizable, chunked, compressed datasets,
    so memory stays bounded (about ``_FLUSH_HITS`` hits) however many events are written.
    """

    def __init__(self, path: str | Path, *, config: dict, is_mc: bool, source: str = "", with_source_index: bool = False) -> None:
        self.path = Path(path)
        self.is_mc = bool(is_mc)
        # Imported files record where each event and hit came from (SOURCE_*_DTYPES).
        self.with_source_index = bool(with_source_index)
        self._config_json = config_to_json(config)
        self._source = str(source)
        self._stack: contextlib.ExitStack | None = None
        self._h5 = None
        self._hit_dtypes = dict(HIT_DTYPES, **TRUTH_HIT_DTYPES) if self.is_mc else dict(HIT_DTYPES)
        if self.with_source_index:
            self._hit_dtypes |= SOURCE_HIT_DTYPES
        self._hit_buffer: dict[str, list[np.ndarray]] = {name: [] for name in self._hit_dtypes}
        self._particle_buffer: dict[str, list[np.ndarray]] = {name: [] for name in PARTICLE_COLUMNS}
        self._buffered_hits = 0
        self._hit_offsets: list[int] = [0]
        self._particle_offsets: list[int] = [0]
        self._event_rows: dict[str, list] = {name: [] for name in (*EVENT_DTYPES, *MC_EVENT_DTYPES, *SOURCE_EVENT_DTYPES)}
        self._written_hits = 0
        self._written_particles = 0

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> EventsWriter:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort(exc_type, exc, tb)

    def open(self) -> None:
        """Create the temporary file (``with`` does this for you)."""
        import h5py

        if self._stack is not None:
            return
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_output(self.path))
        try:
            self._h5 = stack.enter_context(h5py.File(tmp, "w"))
        except BaseException:
            stack.__exit__(*sys.exc_info())
            raise
        self._stack = stack
        h5 = self._h5
        hits = h5.create_group("hits")
        for name, dtype in self._hit_dtypes.items():
            hits.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(HIT_CHUNK_ROWS,), compression=_COMPRESSION,
                fletcher32=True,
            )
        if self.is_mc:
            particles = h5.create_group("particles")
            for name, dtype in PARTICLE_COLUMNS.items():
                h5_dtype = h5py.string_dtype("utf-8") if dtype.kind == "O" else dtype
                particles.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=h5_dtype, chunks=(PARTICLE_CHUNK_ROWS,),
                    compression=_COMPRESSION, fletcher32=dtype.kind != "O",  # HDF5: no checksum on variable-length data
                )

    def _abort(self, exc_type=None, exc=None, tb=None) -> None:
        stack, self._stack, self._h5 = self._stack, None, None
        if stack is not None:
            if exc_type is None:
                exc = RuntimeError("events writer aborted")
                exc_type, tb = type(exc), None
            # atomic_output re-raises the exception it is given after deleting the temporary file.
            with contextlib.suppress(BaseException):
                stack.__exit__(exc_type, exc, tb)

    # -- writing -----------------------------------------------------------------------------------
    def append(self, event: Event) -> None:
        """Validate ``event`` and add it to the file (InputError on bad hits or a MC/data mismatch)."""
        if self._stack is None:
            self.open()
        where = f"event {event.event_id}"
        if bool(event.is_mc) != self.is_mc:
            raise InputError(f"{where}: is_mc={event.is_mc} but the file is {'MC' if self.is_mc else 'data'}", self.path)
        try:
            hits = check_hits(event.hits, is_mc=self.is_mc, where=where)
            if self.with_source_index:
                hits |= check_source_index(event, len(hits["wire"]), where)
            particles = None
            if self.is_mc:
                if event.particles is None:
                    raise InputError(f"{where}: MC event without a particle table")
                particles = check_particles(event.particles, where)
        except InputError as exc:
            raise InputError(str(exc), self.path) from None
        n_hits = len(hits["wire"])
        for name, arr in hits.items():
            self._hit_buffer[name].append(arr)
        self._buffered_hits += n_hits
        self._hit_offsets.append(self._hit_offsets[-1] + n_hits)
        if particles is not None:
            for name, arr in particles.items():
                self._particle_buffer[name].append(arr)
            self._particle_offsets.append(self._particle_offsets[-1] + len(particles["track_id"]))
        rows = self._event_rows
        rows["id"].append(int(event.event_id))
        rows["run"].append(int(event.run))
        rows["is_mc"].append(bool(event.is_mc))
        rows["trigger"].append(int(event.trigger))
        rows["beam_pdg"].append(int(event.beam_pdg))
        rows["beam_momentum"].append(float(event.beam_momentum_gev))
        rows["source_entry"].append(int(event.source_entry))
        rows["source_hits"].append(int(event.source_hits))
        if self._buffered_hits >= _FLUSH_HITS:
            self._flush()

    def __len__(self) -> int:
        return len(self._hit_offsets) - 1

    def _flush(self) -> None:
        h5 = self._h5
        if self._hit_buffer["wire"]:
            n = self._buffered_hits
            for name, parts in self._hit_buffer.items():
                if not parts:
                    continue
                ds = h5["hits"][name]
                ds.resize((self._written_hits + n,))
                ds[self._written_hits:] = np.concatenate(parts)
                parts.clear()
            self._written_hits += n
            self._buffered_hits = 0
        if self.is_mc and self._particle_buffer["track_id"]:
            n = sum(len(p) for p in self._particle_buffer["track_id"])
            for name, parts in self._particle_buffer.items():
                ds = h5["particles"][name]
                ds.resize((self._written_particles + n,))
                if n:
                    ds[self._written_particles:] = np.concatenate(parts)
                parts.clear()
            self._written_particles += n

    def close(self) -> None:
        """Write the event table, offsets and attributes, then move the file to its final name."""
        if self._stack is None:
            self.open()
        try:
            self._flush()
            h5 = self._h5
            h5.create_dataset("hits/offsets", data=np.asarray(self._hit_offsets, dtype=np.int64))
            events = h5.create_group("events")
            for name, dtype in EVENT_DTYPES.items():
                events.create_dataset(name, data=np.asarray(self._event_rows[name], dtype=dtype))
            if self.is_mc:
                for name, dtype in MC_EVENT_DTYPES.items():
                    events.create_dataset(name, data=np.asarray(self._event_rows[name], dtype=dtype))
                h5.create_dataset("particles/offsets", data=np.asarray(self._particle_offsets, dtype=np.int64))
            if self.with_source_index:
                for name, dtype in SOURCE_EVENT_DTYPES.items():
                    events.create_dataset(name, data=np.asarray(self._event_rows[name], dtype=dtype))
            h5.attrs["format"] = FORMAT
            h5.attrs["version"] = VERSION
            h5.attrs["detector"] = DETECTOR
            h5.attrs["config"] = self._config_json
            h5.attrs["protoseg_version"] = __version__
            h5.attrs["is_mc"] = self.is_mc
            h5.attrs["source"] = self._source
            h5.attrs["n_events"] = len(self)
        except BaseException:
            self._abort(*sys.exc_info())
            raise
        stack, self._stack, self._h5 = self._stack, None, None
        stack.close()  # closes the HDF5 file, then renames the temporary file onto self.path
