"""What an events file holds: its format name and version, the column names and dtypes, the codes
of labels and origins, and the ``Event`` record (the package docstring shows the layout)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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

# Per-event table: name in /events -> dtype (MC files add MC_EVENT_DTYPES).
EVENT_DTYPES: dict[str, Any] = {"id": np.int64, "run": np.int32, "is_mc": np.bool_, "trigger": np.uint32}
MC_EVENT_DTYPES: dict[str, Any] = {"beam_pdg": np.int32, "beam_momentum": np.float64}

# 64 Ki rows per chunk: ~3 chunks per event of 20k hits; large enough that LZF's per-chunk cost is
# negligible, small enough that reading one event does not decompress much more than it needs.
HIT_CHUNK_ROWS = 1 << 16
PARTICLE_CHUNK_ROWS = 1 << 14


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
