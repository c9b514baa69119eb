"""Where the particles of an event come from: the H4-VLE beam, its muon halo, cosmic rays, a gun.

Each sampler returns a ``Primaries`` record (PDG code, kinetic energy, start position inside the
active volume, unit direction, time relative to the trigger, origin). Positions of halo muons and
cosmic rays are moved onto the point where their straight line enters the active volume, since
the transport treats only that box as liquid argon; particles that miss the box are dropped.

Cosmic rays: intensity I(θ) = I0 cos²θ per unit area perpendicular to the direction (flat
Earth), I0 = 70 m⁻²s⁻¹sr⁻¹ for p > 1 GeV/c (PDG cosmic-ray review). Directions are drawn from
cos²θ over the upper hemisphere; each track's position is uniform on a disk perpendicular to its
direction that covers the whole active volume, so the rate through any surface, top or sides, is
the right one (on a horizontal plane it is the familiar cos³θ). The energy spectrum (independent of the
angle, as in PHYSICS.md's factorised model) is the modified Gaisser parameterisation of Guan et al., arXiv:1509.06176 (valid down to
~1 GeV, mean ≈ 4 GeV above 1 GeV/c). Charge ratio μ⁺/μ⁻ = 1.27. Only muons are generated (no
shower electrons, photons or hadrons accompany them).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from protoseg.sim import physics as ph
from protoseg.sim.directions import random_perpendicular_basis
from protoseg.sim.transport import ACTIVE_BOX_MAX_CM, ACTIVE_BOX_MIN_CM, ray_box

__all__ = ["Primaries", "sample_beam", "sample_halo", "sample_cosmics", "make_gun", "cosmic_rate_hz",
           "muon_spectrum_guan", "BEAM_PDG_CODES"]

# Beam species in the order of SourceConfig.beam_composition: π⁺, e⁺, p, K⁺, μ⁺.
BEAM_PDG_CODES = (211, -11, 2212, 321, -13)


@dataclass
class Primaries:
    pdg: np.ndarray
    kinetic_mev: np.ndarray
    pos: np.ndarray  # (n, 3) cm
    dir: np.ndarray  # (n, 3)
    t_us: np.ndarray
    origin: np.ndarray

    def __len__(self) -> int:
        return int(self.pdg.shape[0])

    @classmethod
    def concatenate(cls, parts: list[Primaries]) -> Primaries:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls(np.zeros(0, np.int32), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                       np.zeros(0, np.uint8))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def _mass(pdg: np.ndarray) -> np.ndarray:
    return np.array([ph.PARTICLES[int(p)].mass_mev for p in pdg])


def _smear_direction(rng: np.random.Generator, direction: np.ndarray, sigma_rad: float, n: int) -> np.ndarray:
    """Directions around ``direction`` with Gaussian projected angles of ``sigma_rad``."""
    d = np.tile(np.asarray(direction, float) / np.linalg.norm(direction), (n, 1))
    if sigma_rad <= 0.0:
        return d
    e1, e2 = random_perpendicular_basis(d)
    a = rng.normal(0.0, sigma_rad, (n, 2))
    out = d + a[:, :1] * e1 + a[:, 1:] * e2
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _enter_box(pos: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry points of straight lines into the active volume and a mask of the lines that hit it."""
    t_in, t_out = ray_box(pos, direction)
    hits = (t_out > np.maximum(t_in, 0.0)) & (t_out > 0.0)
    start = pos + direction * np.maximum(t_in, 0.0)[:, None]
    # nudge onto the inside so that the first step starts in argon
    start = start + direction * 1e-5
    return start, hits


def sample_beam(rng: np.random.Generator, config, origin: int) -> Primaries:
    """One beam particle at the trigger time, at the measured entry point with spreads."""
    fractions = np.asarray(config.beam_composition, float)
    pdg = np.array([BEAM_PDG_CODES[int(rng.choice(len(BEAM_PDG_CODES), p=fractions / fractions.sum()))]], np.int32)
    momentum = config.beam_momentum_gev * 1e3 * max(1.0 + config.beam_momentum_spread * rng.standard_normal(), 0.05)
    kinetic = ph.kinetic_from_momentum(np.array([momentum]), _mass(pdg))
    direction = _smear_direction(rng, config.beam_direction, config.beam_angle_sigma_rad, 1)
    pos = np.asarray(config.beam_entry_cm, float)[None, :].copy()
    pos[:, :2] += rng.normal(0.0, config.beam_position_sigma_cm, (1, 2))
    pos = np.clip(pos, ACTIVE_BOX_MIN_CM, ACTIVE_BOX_MAX_CM)
    return Primaries(pdg, kinetic, pos, direction, np.zeros(1), np.full(1, origin, np.uint8))


def sample_halo(rng: np.random.Generator, config, origin: int) -> Primaries:
    """Beam-halo muons parallel to the beam, over the TPC's upstream face, uniform in time."""
    area_m2 = (ACTIVE_BOX_MAX_CM[0] - ACTIVE_BOX_MIN_CM[0]) * (ACTIVE_BOX_MAX_CM[1] - ACTIVE_BOX_MIN_CM[1]) * 1e-4
    n = int(rng.poisson(config.halo_muons_per_m2 * area_m2))
    if n == 0:
        return Primaries.concatenate([])
    x = rng.uniform(ACTIVE_BOX_MIN_CM[0], ACTIVE_BOX_MAX_CM[0], n)
    y = rng.uniform(ACTIVE_BOX_MIN_CM[1], ACTIVE_BOX_MAX_CM[1], n)
    pos = np.stack([x, y, np.full(n, ACTIVE_BOX_MIN_CM[2])], axis=1)
    direction = _smear_direction(rng, config.beam_direction, config.halo_angle_sigma_rad, n)
    start, hits = _enter_box(pos - direction * 1e-3, direction)
    momentum = rng.uniform(config.halo_momentum_min_gev, config.halo_momentum_max_gev, n) * 1e3
    pdg = np.where(rng.random(n) < config.halo_mu_plus_fraction, -13, 13).astype(np.int32)
    kinetic = ph.kinetic_from_momentum(momentum, ph.MUON_MASS_MEV)
    t = rng.uniform(-config.halo_time_window_us, config.halo_time_window_us, n)
    keep = hits
    return Primaries(pdg[keep], kinetic[keep], start[keep], direction[keep], t[keep], np.full(int(keep.sum()), origin, np.uint8))


def _cos_theta_star(cos_theta: np.ndarray) -> np.ndarray:
    """Effective zenith cosine for the Earth's curvature (Chirkin, as used by Guan et al.)."""
    p1, p2, p3, p4, p5 = 0.102573, -0.068287, 0.958633, 0.0407253, 0.817285
    c = np.asarray(cos_theta, float)
    return np.sqrt((c * c + p1 * p1 + p2 * np.power(c, p3) + p4 * np.power(c, p5)) / (1.0 + p1 * p1 + p2 + p4))


def muon_spectrum_guan(energy_gev: np.ndarray, cos_theta: np.ndarray) -> np.ndarray:
    """Modified Gaisser sea-level muon spectrum dI/dE (cm⁻² s⁻¹ sr⁻¹ GeV⁻¹), Guan et al. 2015 eq. (3)."""
    e = np.asarray(energy_gev, float)
    cs = _cos_theta_star(cos_theta)
    return 0.14 * np.power(e * (1.0 + 3.64 / (e * np.power(cs, 1.29))), -2.7) * (
        1.0 / (1.0 + 1.1 * e * cs / 115.0) + 0.054 / (1.0 + 1.1 * e * cs / 850.0))


@lru_cache(maxsize=4)
def _spectrum_table(min_momentum_gev: float) -> tuple[np.ndarray, np.ndarray]:
    e_min = np.sqrt(min_momentum_gev ** 2 + (ph.MUON_MASS_MEV * 1e-3) ** 2)
    e_grid = np.geomspace(e_min, 1e4, 2000)
    pdf = muon_spectrum_guan(e_grid, 1.0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(e_grid))])
    return e_grid, cdf / cdf[-1]


def sample_muon_energy_gev(rng: np.random.Generator, n: int, min_momentum_gev: float) -> np.ndarray:
    """Total energies (GeV) from the vertical Guan spectrum above ``min_momentum_gev`` (up to 10 TeV).

    The model factorises, I(E, θ) = I0 cos²θ f(E) (PHYSICS.md); with f at vertical incidence and
    p > 0.3 GeV/c the mean energy is 4.8 GeV (PDG: ≈ 4 GeV at sea level).
    """
    e_grid, cdf = _spectrum_table(float(min_momentum_gev))
    return np.exp(np.interp(rng.random(n), cdf, np.log(e_grid)))


def _cosmic_disk_radius_cm() -> float:
    return 0.5 * float(np.linalg.norm(ACTIVE_BOX_MAX_CM - ACTIVE_BOX_MIN_CM)) + 1.0


def cosmic_rate_hz(config) -> float:
    """Muons per second crossing the generation disk (π R² × I0 × ∫cos²θ dΩ = 2π/3)."""
    radius_m = _cosmic_disk_radius_cm() * 1e-2
    return config.cosmic_intensity_per_m2_s_sr * 2.0 * np.pi / 3.0 * np.pi * radius_m ** 2


def sample_cosmics(rng: np.random.Generator, config, origin: int) -> Primaries:
    """Cosmic muons over [cosmic_time_min_us, cosmic_time_max_us] that cross the active volume."""
    window_s = (config.cosmic_time_max_us - config.cosmic_time_min_us) * 1e-6
    n = int(rng.poisson(cosmic_rate_hz(config) * window_s))
    if n == 0:
        return Primaries.concatenate([])
    cos_theta = np.power(rng.random(n), 1.0 / 3.0)  # I ∝ cos²θ per solid angle
    sin_theta = np.sqrt(1.0 - cos_theta ** 2)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    direction = np.stack([sin_theta * np.cos(phi), -cos_theta, sin_theta * np.sin(phi)], axis=1)  # y is up
    radius = _cosmic_disk_radius_cm()
    e1, e2 = random_perpendicular_basis(direction)
    r = radius * np.sqrt(rng.random(n))
    a = rng.uniform(0.0, 2.0 * np.pi, n)
    centre = 0.5 * (ACTIVE_BOX_MIN_CM + ACTIVE_BOX_MAX_CM)
    through = centre + (r * np.cos(a))[:, None] * e1 + (r * np.sin(a))[:, None] * e2
    upstream = through - direction * 2.0 * radius
    start, hits = _enter_box(upstream, direction)
    energy_gev = sample_muon_energy_gev(rng, n, config.cosmic_min_momentum_gev)
    kinetic = energy_gev * 1e3 - ph.MUON_MASS_MEV
    mu_plus = rng.random(n) < config.cosmic_charge_ratio / (1.0 + config.cosmic_charge_ratio)
    pdg = np.where(mu_plus, -13, 13).astype(np.int32)
    t = rng.uniform(config.cosmic_time_min_us, config.cosmic_time_max_us, n)
    keep = hits
    return Primaries(pdg[keep], kinetic[keep], start[keep], direction[keep], t[keep], np.full(int(keep.sum()), origin, np.uint8))


def make_gun(config, origin: int) -> Primaries:
    """The gun particle (deterministic), moved onto the active volume if it starts outside."""
    pdg = np.array([config.gun_pdg], np.int32)
    mass = _mass(pdg)
    if config.gun_kinetic_mev is not None:
        kinetic = np.array([float(config.gun_kinetic_mev)])
    else:
        kinetic = ph.kinetic_from_momentum(np.array([config.gun_momentum_gev * 1e3]), mass)
    pos = np.asarray(config.gun_position_cm if config.gun_position_cm is not None else config.beam_entry_cm, float)[None, :]
    d = np.asarray(config.gun_direction if config.gun_direction is not None else config.beam_direction, float)[None, :]
    d = d / np.linalg.norm(d)
    inside = bool(np.all((pos >= ACTIVE_BOX_MIN_CM) & (pos <= ACTIVE_BOX_MAX_CM)))
    if not inside:
        pos, _ = _enter_box(pos, d)
    return Primaries(pdg, kinetic, pos, d, np.zeros(1), np.full(1, origin, np.uint8))
