"""What the transport hands to the detector simulation: the particle table and the energy deposits.

Both are plain column containers (numpy arrays of equal length) so that the readout can work on
all deposits of an event at once. Origins follow the events file: 1 beam, 2 cosmic, 3 beam halo
(0 is reserved for noise hits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ORIGIN_NOISE", "ORIGIN_BEAM", "ORIGIN_COSMIC", "ORIGIN_HALO", "Deposits", "EventTruth", "PARTICLE_COLUMNS"]

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


@dataclass
class Deposits:
    """Energy deposited in liquid argon by charged-particle steps (one row per step).

    Positions are the step midpoints in detector coordinates (cm; cathode at x = 0, beam side x < 0),
    ``t_us`` is the time of the step relative to the beam trigger (µs), ``energy_mev`` the energy
    left in the step and ``step_cm`` its length (their ratio is the dE/dx that recombination needs).
    ``track_id`` refers to the particle table of the same event.
    """

    x_cm: np.ndarray
    y_cm: np.ndarray
    z_cm: np.ndarray
    t_us: np.ndarray
    energy_mev: np.ndarray
    step_cm: np.ndarray
    track_id: np.ndarray

    def __len__(self) -> int:
        return int(self.x_cm.shape[0])

    @classmethod
    def concatenate(cls, parts: list[Deposits]) -> Deposits:
        if not parts:
            empty = np.zeros(0)
            return cls(empty, empty, empty, empty, empty, empty, np.zeros(0, np.int32))
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__))


@dataclass
class EventTruth:
    """Everything the transport knows about one event."""

    particles: dict[str, np.ndarray]  # PARTICLE_COLUMNS
    deposits: Deposits
    beam_pdg: int = 0  # pdg of row 0 (beam or gun primary)
    beam_momentum_gev: float = float("nan")
    info: dict = field(default_factory=dict)  # free-form counters (n_cosmics, n_halo, ...) for logs
