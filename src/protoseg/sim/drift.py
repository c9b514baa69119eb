"""Charge and drift: energy deposits → ionisation electrons arriving at the collection planes.

For every deposit: modified-Box (or Birks) recombination gives the free electrons, the drift distance
to its anode gives the drift time and the arrival tick, the electron lifetime attenuates the charge,
longitudinal and transverse diffusion give the spread (σ in ticks and in wire pitches), an optional
space-charge model shifts the apparent (y, z), and the wire coordinate follows z across the three
APAs, so charge that reaches a gap between APAs (or leaves the wire coverage in y or z) is lost.
Charge arriving outside the readout window ``[0, n_ticks)`` is lost too (clouds within 72 ticks of
it are kept, for the parts of their pulses that fall inside): that is how cosmics out of time with
the trigger appear cut at the anode or the cathode.

Coordinates follow shared/PHYSICS.md: cathode at x = 0, beam side x < 0, anodes at x = ±359.42 cm,
y up, z along the beam; the collection-wire number measures z. Both drift volumes map onto the
same global wire numbers (global wire = APA index along z × 480 + wire in the APA), as the 2018 images
overlaid them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protoseg.detector import ARGON, GEOMETRY, READOUT, Geometry, Readout
from protoseg.errors import InputError
from protoseg.sim.truth import Deposits

# Ticks beyond each end of the readout window that the readout frame also simulates (readout.py).
FRAME_MARGIN_TICKS = 72

__all__ = ["DriftConfig", "DriftedCharge", "recombination_fraction", "drift_deposits", "validate_drift_config"]

# Muon minimum ionisation in LAr, 2.105 MeV/cm (PDG, PHYSICS.md): the dE/dx given to zero-length steps.
_MIP_DEDX_MEV_PER_CM = 2.105


@dataclass(frozen=True)
class DriftConfig:
    """Charge-yield and drift settings; defaults are the shared/PHYSICS.md values."""

    recombination_model: str = "box"  # "box" (modified Box, LArSoft default) or "birks"
    box_a: float = ARGON.box_a  # larsim simulationservices.fcl
    box_b_kv_g_per_cm2_mev: float = ARGON.box_b_kv_g_per_cm2_mev
    birks_a: float = 0.800  # larsim simulationservices.fcl
    birks_k_kv_g_per_cm2_mev: float = 0.0486
    # LArSoft (ISCalculationSeparate) clamps dE/dx below 1 MeV/cm before the Box formula, where it
    # would otherwise give a fraction > 1 (and negative logs for A < 1).
    min_dedx_mev_per_cm: float = 1.0
    electric_field_kv_per_cm: float = ARGON.electric_field_kv_per_cm
    density_g_per_cm3: float = ARGON.density_g_per_cm3
    w_ion_ev: float = ARGON.w_ion_ev
    drift_velocity_cm_per_us: float = ARGON.drift_velocity_cm_per_us
    diffusion_longitudinal_cm2_per_s: float = ARGON.diffusion_longitudinal_cm2_per_s
    diffusion_transverse_cm2_per_s: float = ARGON.diffusion_transverse_cm2_per_s
    electron_lifetime_ms: float = ARGON.electron_lifetime_ms
    # Space charge: positive ions pull drifting electrons toward the middle of the detector. A
    # parametric model (not the experiment's data-driven map): the transverse shift grows from 0 at
    # the anode to its maximum at the cathode as (1 - cos(pi d/L))/2 (the integral of a transverse
    # field that vanishes on both electrodes) and linearly with the distance from the centre in y
    # and in z, reaching max_shift at the faces of the volume: "several cm near the edges"
    # (PHYSICS.md, spacecharge_dune.fcl).
    space_charge: bool = True
    space_charge_max_shift_y_cm: float = 5.0
    space_charge_max_shift_z_cm: float = 5.0


def validate_drift_config(config: DriftConfig) -> None:
    """Raise InputError for impossible drift settings (one line naming the setting)."""
    if config.recombination_model not in ("box", "birks"):
        raise InputError(f"drift.recombination_model must be 'box' or 'birks', got {config.recombination_model!r}")
    positive = (
        "box_b_kv_g_per_cm2_mev",
        "birks_a",
        "electric_field_kv_per_cm",
        "density_g_per_cm3",
        "w_ion_ev",
        "drift_velocity_cm_per_us",
        "electron_lifetime_ms",
        "min_dedx_mev_per_cm",
    )
    for name in positive:
        value = getattr(config, name)
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"drift.{name} must be a positive number, got {value}")
    for name in ("box_a", "birks_k_kv_g_per_cm2_mev", "diffusion_longitudinal_cm2_per_s",
                 "diffusion_transverse_cm2_per_s", "space_charge_max_shift_y_cm", "space_charge_max_shift_z_cm"):
        value = getattr(config, name)
        if not (np.isfinite(value) and value >= 0):
            raise InputError(f"drift.{name} must be a non-negative number, got {value}")
    if config.recombination_model == "box" and config.box_a + config.box_b_kv_g_per_cm2_mev / (
        config.density_g_per_cm3 * config.electric_field_kv_per_cm
    ) * config.min_dedx_mev_per_cm <= 1.0:
        raise InputError("drift: modified Box parameters give no free charge at the minimum dE/dx (A + B·dE/dx/(ρE) must exceed 1)")


@dataclass
class DriftedCharge:
    """Electron clouds at the collection plane, one row per deposit that reached a wire in time.

    ``wire`` is the global wire (0..n_wires-1) under the cloud centre, ``wire_offset`` the centre's
    position across that wire in pitches (0..1), ``tick`` the continuous arrival tick, ``sigma_*``
    the diffusion widths (pitches, ticks), ``electrons`` the charge after recombination and lifetime.
    ``apa`` is the APA index along z (wire spreading stops at APA edges: gaps collect nothing).
    """

    wire: np.ndarray  # int32
    wire_offset: np.ndarray  # float32, 0..1
    tick: np.ndarray  # float64
    sigma_wire: np.ndarray  # float32, pitches
    sigma_tick: np.ndarray  # float32, ticks
    electrons: np.ndarray  # float32
    track_id: np.ndarray  # int32
    apa: np.ndarray  # int8
    far_side: np.ndarray  # bool: True for the drift volume x > 0 (away from the beam)

    def __len__(self) -> int:
        return int(self.wire.shape[0])


def recombination_fraction(dedx_mev_per_cm: np.ndarray, config: DriftConfig = DriftConfig()) -> np.ndarray:
    """Fraction of ionisation electrons that escape recombination, for dE/dx in MeV/cm.

    Modified Box (ArgoNeuT): R = ln(A + ξ)/ξ with ξ = B·(dE/dx)/(ρ·E). Birks: R = A/(1 + k·(dE/dx)/(ρ·E)).
    dE/dx is clamped to at least ``min_dedx_mev_per_cm`` as LArSoft does.
    """
    dedx = np.maximum(np.asarray(dedx_mev_per_cm, dtype=np.float64), config.min_dedx_mev_per_cm)
    rho_e = config.density_g_per_cm3 * config.electric_field_kv_per_cm
    if config.recombination_model == "birks":
        return config.birks_a / (1.0 + config.birks_k_kv_g_per_cm2_mev / rho_e * dedx)
    xi = config.box_b_kv_g_per_cm2_mev / rho_e * dedx
    return np.minimum(np.log(config.box_a + xi) / xi, 1.0)


def _space_charge_shift(
    y_cm: np.ndarray, z_cm: np.ndarray, drift_cm: np.ndarray, config: DriftConfig, geometry: Geometry
) -> tuple[np.ndarray, np.ndarray]:
    """Apparent (Δy, Δz) in cm of electrons drifting ``drift_cm`` to the anode (see DriftConfig)."""
    growth = 0.5 * (1.0 - np.cos(np.pi * np.clip(drift_cm / geometry.drift_length_cm, 0.0, 1.0)))
    y_centre = 0.5 * (geometry.y_min_cm + geometry.y_max_cm)
    y_half = 0.5 * (geometry.y_max_cm - geometry.y_min_cm)
    z_lo, z_hi = geometry.apa_z_ranges_cm[0][0], geometry.apa_z_ranges_cm[-1][1]
    z_centre, z_half = 0.5 * (z_lo + z_hi), 0.5 * (z_hi - z_lo)
    dy = -config.space_charge_max_shift_y_cm * growth * np.clip((y_cm - y_centre) / y_half, -1.0, 1.0)
    dz = -config.space_charge_max_shift_z_cm * growth * np.clip((z_cm - z_centre) / z_half, -1.0, 1.0)
    return dy, dz


def drift_deposits(
    deposits: Deposits,
    config: DriftConfig = DriftConfig(),
    *,
    beam_side_only: bool = False,
    readout: Readout = READOUT,
    geometry: Geometry = GEOMETRY,
) -> DriftedCharge:
    """Turn energy deposits into electron clouds at the collection planes (vectorised over deposits).

    Deposits outside the active volumes, in the APA gaps, outside the wire coverage in y, or whose
    charge arrives outside the readout window are dropped. ``beam_side_only`` drops the x > 0 volume.
    """
    x = np.asarray(deposits.x_cm, dtype=np.float64)
    y = np.asarray(deposits.y_cm, dtype=np.float64)
    z = np.asarray(deposits.z_cm, dtype=np.float64)
    t_us = np.asarray(deposits.t_us, dtype=np.float64)
    energy_mev = np.asarray(deposits.energy_mev, dtype=np.float64)
    step_cm = np.asarray(deposits.step_cm, dtype=np.float64)

    drift_cm = geometry.anode_x_cm - np.abs(x)
    inside = (np.abs(x) <= geometry.drift_length_cm) & (drift_cm >= 0.0) & (energy_mev > 0.0)
    if beam_side_only:
        inside &= x < 0.0

    dedx = np.where(step_cm > 0.0, energy_mev / np.where(step_cm > 0.0, step_cm, 1.0), _MIP_DEDX_MEV_PER_CM)
    drift_time_us = drift_cm / config.drift_velocity_cm_per_us
    electrons = (
        energy_mev * (1.0e6 / config.w_ion_ev)
        * recombination_fraction(dedx, config)
        * np.exp(-drift_time_us / (config.electron_lifetime_ms * 1.0e3))
    )

    if config.space_charge:
        dy, dz = _space_charge_shift(y, z, drift_cm, config, geometry)
        y, z = y + dy, z + dz

    # Wire coordinate: which APA's collection-wire span holds z, and where across it.
    # The APA z ranges are the first and last wire positions: each wire collects half a pitch
    # either side, and the rest of the 2.5 cm between APAs collects nothing.
    half_pitch = 0.5 * readout.wire_pitch_cm
    apa_lo = np.array([lo for lo, _ in geometry.apa_z_ranges_cm]) - half_pitch
    apa_hi = np.array([hi for _, hi in geometry.apa_z_ranges_cm]) + half_pitch
    apa = np.clip(np.searchsorted(apa_lo, z, side="right") - 1, 0, len(apa_lo) - 1)
    inside &= (z >= apa_lo[apa]) & (z < apa_hi[apa]) & (y >= geometry.y_min_cm) & (y <= geometry.y_max_cm)
    wire_coordinate = (z - apa_lo[apa]) / readout.wire_pitch_cm  # pitches from the APA's first wire edge
    wire_in_apa = np.floor(wire_coordinate)
    inside &= (wire_in_apa >= 0) & (wire_in_apa < readout.n_wires_per_apa)

    tick = readout.trigger_tick + (t_us + drift_time_us) / readout.tick_us
    # Clouds arriving up to FRAME_MARGIN_TICKS outside the window are kept: their pulses reach into it.
    inside &= (tick >= -FRAME_MARGIN_TICKS) & (tick < readout.n_ticks + FRAME_MARGIN_TICKS)

    # Diffusion. Across wires, also the step's own extent: its charge is spread along the step,
    # whose direction the deposit does not carry, so a Gaussian of the uniform distribution's
    # variance step²/12 is added (this removes the comb a train of point charges leaves on wires).
    # Along the drift the response (5.8 ticks FWHM) already smooths steps of a few mm, and adding
    # their extent there would lower the peak of tracks parallel to the wire plane.
    drift_time_s = np.maximum(drift_time_us, 0.0) * 1.0e-6
    step_variance_cm2 = np.maximum(step_cm, 0.0) ** 2 / 12.0
    sigma_tick = np.sqrt(2.0 * config.diffusion_longitudinal_cm2_per_s * drift_time_s) / (
        config.drift_velocity_cm_per_us * readout.tick_us
    )
    sigma_wire = np.sqrt(
        2.0 * config.diffusion_transverse_cm2_per_s * drift_time_s + step_variance_cm2
    ) / readout.wire_pitch_cm

    keep = np.flatnonzero(inside)
    return DriftedCharge(
        wire=(apa[keep] * readout.n_wires_per_apa + wire_in_apa[keep]).astype(np.int32),
        wire_offset=(wire_coordinate[keep] - wire_in_apa[keep]).astype(np.float32),
        tick=tick[keep],
        sigma_wire=sigma_wire[keep].astype(np.float32),
        sigma_tick=sigma_tick[keep].astype(np.float32),
        electrons=electrons[keep].astype(np.float32),
        track_id=np.asarray(deposits.track_id)[keep].astype(np.int32),
        apa=apa[keep].astype(np.int8),
        far_side=x[keep] > 0.0,
    )
