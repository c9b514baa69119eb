"""What the transport hands to the detector simulation: the particle table and the energy deposits.

Both are plain column containers (numpy arrays of equal length) so that the readout can work on
all deposits of an event at once. Origins follow the events file: 1 beam, 2 cosmic, 3 beam halo
(0 is reserved for noise hits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The origin codes and the particle table belong to the events file, their format; the transport fills them.
from protoseg.events import ORIGIN_BEAM, ORIGIN_COSMIC, ORIGIN_HALO, ORIGIN_NOISE, PARTICLE_COLUMNS

__all__ = ["ORIGIN_NOISE", "ORIGIN_BEAM", "ORIGIN_COSMIC", "ORIGIN_HALO", "Deposits", "EventTruth", "PARTICLE_COLUMNS"]


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
