"""The events file (format ``protoseg-events``, version 1): hits, truth and particles at full resolution.

Layout (DESIGN.md). Jagged per-event data is stored flat with offsets: event ``i`` owns the rows
``offsets[i]:offsets[i + 1]`` of every column under ``/hits`` (and ``/particles``)::

    /                 attrs: format, version, detector, config (JSON), protoseg_version, is_mc, source
    /events/id, run, is_mc, trigger            [n_events]
    /events/beam_pdg, beam_momentum            [n_events]   (MC only; GeV/c)
    /hits/offsets                              [n_events + 1]  int64
    /hits/wire, tick, integral, rms, peak      HIT_DTYPES
    /hits/label, origin, track_id, pdg         TRUTH_HIT_DTYPES (MC only)
    /particles/offsets + PARTICLE_COLUMNS      (MC only; strings are variable-length UTF-8)
    /hits/source_index, /events/source_entry, source_hits   (optional: SOURCE_* below; import-root)

Hit columns are chunked, LZF-compressed (of the filters every h5py ships, the fastest to write
and read back: ~3x gzip-1 on hits) and Fletcher-32 checksummed, so that a damaged chunk is an
error on reading rather than silently wrong hits. ``rms`` and ``peak`` may be NaN where the source
did not record them (the 2018 ROOT dumps hold only the integral and the peak tick).
"""
from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.version import __version__
from protoseg.detector import READOUT
from protoseg.errors import InputError
from protoseg.fileio import atomic_output, open_h5_checked

__all__ = [
    "FORMAT",
    "VERSION",
    "HIT_DTYPES",
    "TRUTH_HIT_DTYPES",
    "SOURCE_HIT_DTYPES",
    "SOURCE_EVENT_DTYPES",
    "LABEL_NONE",
    "LABEL_BEAM",
    "LABEL_NOT_BEAM",
    "ORIGIN_NOISE",
    "ORIGIN_BEAM",
    "ORIGIN_COSMIC",
    "ORIGIN_HALO",
    "PARTICLE_COLUMNS",
    "Event",
    "EventsWriter",
    "EventsFile",
    "open_events",
    "validate_events_file",
]

FORMAT = "protoseg-events"
VERSION = 1
DETECTOR = "protodune-sp"

HIT_DTYPES: dict[str, Any] = {
    "wire": np.uint16,  # global collection wire 0..1439
    "tick": np.float32,  # peak time, ticks 0..5999
    "integral": np.float32,  # ADC x tick
    "rms": np.float32,  # ticks (NaN: not recorded)
    "peak": np.float32,  # ADC (NaN: not recorded)
}
TRUTH_HIT_DTYPES: dict[str, Any] = {
    "label": np.uint8,  # 0 none (noise), 1 beam, 2 not-beam
    "origin": np.uint8,  # 0 noise, 1 beam, 2 cosmic, 3 beam halo
    "track_id": np.int32,  # truth particle that gave the most charge
    "pdg": np.int32,  # that particle's PDG code
}
# Optional columns written by import-root: where every event and hit came from in the input tree, so
# that predictions can be written back aligned with it (protoseg.root_friend). Files without them
# (simulated, or imported before they existed) read as before.
SOURCE_HIT_DTYPES: dict[str, Any] = {
    "source_index": np.uint32,  # the hit's position among all hits of its input entry (every plane)
}
SOURCE_EVENT_DTYPES: dict[str, Any] = {
    "source_entry": np.int64,  # the entry of the input tree
    "source_hits": np.int64,  # how many hits that entry holds (every plane, imported or not)
}
LABEL_NONE, LABEL_BEAM, LABEL_NOT_BEAM = 0, 1, 2
MAX_LABEL = 2
MAX_ORIGIN = 3
# Origin of a hit or particle (/hits/origin, /particles/origin).
ORIGIN_NOISE, ORIGIN_BEAM, ORIGIN_COSMIC, ORIGIN_HALO = 0, 1, 2, 3

# Column name -> dtype of the particle table, as stored in /particles of the events file (DESIGN.md).
# Row 0 of an event is its beam or gun primary. Positions cm, time µs relative to the trigger,
# momenta GeV/c, energy MeV, length cm. "process" says how the particle was made ("primary", "decay",
# "inelastic", "compton", "conv", "brem", "delta", "capture", ...), "end_process" how it ended
# ("stop", "escape", "decay", "inelastic", "capture", "brem-cut", ...).
PARTICLE_COLUMNS: dict[str, np.dtype] = {
    "track_id": np.dtype(np.int32),
    "parent_id": np.dtype(np.int32),  # -1 for primaries
    "pdg": np.dtype(np.int32),
    "origin": np.dtype(np.uint8),
    "process": np.dtype(object),  # str
    "end_process": np.dtype(object),  # str
    "start_x": np.dtype(np.float32),
    "start_y": np.dtype(np.float32),
    "start_z": np.dtype(np.float32),
    "end_x": np.dtype(np.float32),
    "end_y": np.dtype(np.float32),
    "end_z": np.dtype(np.float32),
    "start_t": np.dtype(np.float32),
    "start_px": np.dtype(np.float32),
    "start_py": np.dtype(np.float32),
    "start_pz": np.dtype(np.float32),
    "energy_deposited": np.dtype(np.float32),
    "track_length": np.dtype(np.float32),
}

# Per-event table: name in /events -> dtype.
_EVENT_DTYPES: dict[str, Any] = {"id": np.int64, "run": np.int32, "is_mc": np.bool_, "trigger": np.uint32}
_MC_EVENT_DTYPES: dict[str, Any] = {"beam_pdg": np.int32, "beam_momentum": np.float64}

# 64 Ki rows per chunk: ~3 chunks per event of 20k hits; large enough that LZF's per-chunk cost is
# negligible, small enough that reading one event does not decompress much more than it needs.
HIT_CHUNK_ROWS = 1 << 16
PARTICLE_CHUNK_ROWS = 1 << 14
# The writer buffers appended events in memory and writes them in blocks of about this many hits.
_FLUSH_HITS = 1 << 21
_COMPRESSION = "lzf"


@dataclass
class Event:
    """One readout: collection-plane hits (+ truth for MC) and, for MC, the particle table.

    ``hits`` maps HIT_DTYPES names (and TRUTH_HIT_DTYPES names for MC) to equal-length arrays.
    ``particles`` maps PARTICLE_COLUMNS names to equal-length arrays; row 0 is the beam or gun primary.
    Imported events also carry ``hits["source_index"]``, ``source_entry`` and ``source_hits``
    (SOURCE_HIT_DTYPES, SOURCE_EVENT_DTYPES); -1 means not recorded.
    """

    event_id: int
    hits: dict[str, np.ndarray]
    run: int = 0
    is_mc: bool = True
    trigger: int = 0xC
    beam_pdg: int = 0  # MC only
    beam_momentum_gev: float = float("nan")  # MC only
    particles: dict[str, np.ndarray] | None = None  # MC only
    source_entry: int = -1  # imported events: entry of the input tree
    source_hits: int = -1  # imported events: hits of that entry, every plane

    @property
    def n_hits(self) -> int:
        return int(len(self.hits["wire"]))


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


def _check_source(event: Event, n_hits: int, where: str) -> dict[str, np.ndarray]:
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


def _check_particles(particles: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
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
        self._event_rows: dict[str, list] = {name: [] for name in (*_EVENT_DTYPES, *_MC_EVENT_DTYPES, *SOURCE_EVENT_DTYPES)}
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
                hits |= _check_source(event, len(hits["wire"]), where)
            particles = None
            if self.is_mc:
                if event.particles is None:
                    raise InputError(f"{where}: MC event without a particle table")
                particles = _check_particles(event.particles, where)
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
            for name, dtype in _EVENT_DTYPES.items():
                events.create_dataset(name, data=np.asarray(self._event_rows[name], dtype=dtype))
            if self.is_mc:
                for name, dtype in _MC_EVENT_DTYPES.items():
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


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EventsFile:
    """Read access to an events file. Offsets and the event table are read once; hits on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._h5 = open_h5_checked(self.path, FORMAT, (VERSION,))
        try:
            self._load_index()
        except InputError:
            self._h5.close()
            raise
        except (KeyError, OSError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
            self._h5.close()
            raise InputError(f"events file is incomplete or corrupt ({exc.__class__.__name__}: {exc})", self.path) from None

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

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event index {i} out of range for {n} events in {self.path}")
        return i % n

    # -- reading -----------------------------------------------------------------------------------
    def read_hit_columns(self, i: int, names: tuple[str, ...] | list[str] = ("wire", "tick", "integral")) -> dict[str, np.ndarray]:
        """The named hit columns of event ``i`` (only its rows are read)."""
        i = self._check_index(i)
        lo, hi = int(self._hit_offsets[i]), int(self._hit_offsets[i + 1])
        hits = self._h5["hits"]
        missing = [n for n in names if n not in hits]
        if missing:
            raise InputError(f"events file has no hit column(s) {', '.join(missing)}", self.path)
        return self._read_rows(hits, names, lo, hi)

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
        for name in _EVENT_DTYPES if not events.is_mc else (*_EVENT_DTYPES, *_MC_EVENT_DTYPES):
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

