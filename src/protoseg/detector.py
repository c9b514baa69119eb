"""ProtoDUNE-SP geometry, readout and liquid-argon constants: the one place these numbers live.

Every value carries its unit in its name and its source in a comment (see shared/PHYSICS.md).
Simulation settings that a user may change are fields of these frozen dataclasses; the defaults
are the PHYSICS.md values, and ``dataclasses.asdict`` of the instances in use is written into
every events file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Readout", "Geometry", "Argon", "READOUT", "GEOMETRY", "ARGON"]


@dataclass(frozen=True)
class Readout:
    """Collection-plane readout window and the image grid of the 2018 study."""

    n_ticks: int = 6000  # 3 ms at 0.5 us: dunetpc detectorclocks_dune.fcl
    tick_us: float = 0.5
    trigger_tick: int = 500  # 250 us pre-trigger: detectorclocks_dune.fcl
    n_wires_per_apa: int = 480  # collection wires per APA face: protodune-numbers WireDump v2_2
    n_apas_along_z: int = 3
    wire_pitch_cm: float = 0.4792
    # 2018 study: global wire = wire + 480 * (tpc // 4), overlaying both drift volumes.
    global_wire_tpc_divisor: int = 4

    @property
    def n_wires(self) -> int:
        return self.n_wires_per_apa * self.n_apas_along_z  # 1440


@dataclass(frozen=True)
class Geometry:
    """TPC volumes (cm). Cathode at x = 0; beam side is x < 0. Source: protodune-numbers, JINST 15 P12004."""

    anode_x_cm: float = 359.42  # collection planes at x = +-359.42 cm
    drift_length_cm: float = 359.4
    y_min_cm: float = 7.6
    y_max_cm: float = 606.0
    # Collection-wire z coverage of the three APAs; 2.5 cm gaps between them.
    apa_z_ranges_cm: tuple[tuple[float, float], ...] = ((0.56, 230.1), (232.6, 462.2), (464.7, 694.2))


@dataclass(frozen=True)
class Argon:
    """Liquid argon at 87.68 K, 486.7 V/cm (dunetpc detectorproperties_dune.fcl, larproperties.fcl)."""

    density_g_per_cm3: float = 1.3954
    w_ion_ev: float = 23.6  # larsim
    mean_excitation_ev: float = 188.0
    # Sternheimer density-effect parameters (detectorproperties_dune.fcl)
    sternheimer_a: float = 0.1956
    sternheimer_k: float = 3.0
    sternheimer_x0: float = 0.2
    sternheimer_x1: float = 3.0
    sternheimer_cbar: float = 5.2146
    z_over_a: float = 18.0 / 39.948
    radiation_length_cm: float = 14.0
    moliere_radius_cm: float = 9.04
    critical_energy_mev: float = 32.8
    nuclear_interaction_length_cm: float = 85.8
    # Modified Box recombination (larsim simulationservices.fcl)
    box_a: float = 0.930
    box_b_kv_g_per_cm2_mev: float = 0.212
    electric_field_kv_per_cm: float = 0.4867
    drift_velocity_cm_per_us: float = 0.1565  # wirecell_dune.fcl
    diffusion_longitudinal_cm2_per_s: float = 4.0
    diffusion_transverse_cm2_per_s: float = 8.8
    electron_lifetime_ms: float = 35.0


READOUT = Readout()
GEOMETRY = Geometry()
ARGON = Argon()
