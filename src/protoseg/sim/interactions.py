"""Decays, captures and hadronic inelastic interactions: what a particle turns into when it ends.

Each function takes a batch of ending particles and returns their daughters as ``Products``
(index of the parent in the batch, PDG code, kinetic energy, direction, delay). Neutrinos are not
returned (they leave no charge). What is modelled, and how closely:

* μ⁺ at rest: Michel decay, e⁺ spectrum dN/dx ∝ x²(3 − 2x) (x = E/W, W = 52.83 MeV; no radiative
  corrections), delay Exp(2.197 µs). μ⁻ at rest: bound in argon, mean life 537 ns (Suzuki et al.,
  PRC 35 (1987) 2212); captured with probability ``mu_capture_fraction`` (neutrons and neutrino:
  nothing visible is made) or decays to a Michel e⁻.
* π⁺ at rest → μ⁺ν (μ⁺ of 4.12 MeV); π⁻ at rest is absorbed by a nucleus: its 139.6 MeV is shared
  by a few nucleons (phenomenological: 0–2 protons, 1–3 neutrons, 8 MeV binding each).
* π±, μ±, K± in flight: two- and three-body decays in the rest frame, boosted. K⁺ branching
  ratios PDG 2024; three-body final states by phase space (no matrix element).
* e⁺ at rest: two 511 keV photons back to back.
* Hadronic inelastic of π±, K±, p on argon: cross sections from PHYSICS.md (λ_I = 85.8 cm for
  protons, σ(π–Ar) ≈ 0.75 b at ~1 GeV) with a Δ-resonance rise for pions (an estimate, documented
  below); the final state is a phenomenological model, not an intranuclear cascade: a leading
  hadron, produced pions (π⁺, π⁻, π⁰ equally) whose number grows with log T above the production
  threshold, knocked-out protons and neutrons with a falling spectrum, 8 MeV binding per nucleon
  and low-energy pion absorption. Energy is conserved up to the nuclear remnant; momentum only
  on average.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protoseg.detector import ARGON
from protoseg.sim import physics as ph
from protoseg.sim.directions import isotropic_directions, rotate_from_axis

__all__ = ["Products", "inelastic_length_cm", "at_rest", "decay_in_flight", "inelastic",
           "sample_michel_kinetic_mev", "MICHEL_ENDPOINT_MEV", "K_PLUS_DECAYS"]

MICHEL_ENDPOINT_MEV = (ph.MUON_MASS_MEV ** 2 + ph.ELECTRON_MASS_MEV ** 2) / (2.0 * ph.MUON_MASS_MEV)  # total energy
MU_MINUS_BOUND_LIFETIME_NS = 537.0  # μ⁻ in argon (Suzuki, Measday, Roalsvig 1987)
NUCLEON_BINDING_MEV = 8.0
# Mean number of produced pions = this × ln(T / 280 MeV). Set so that the mean number of shower
# particles (charged, β > 0.7: the leading hadron, produced π±, fast protons) of 4.5 GeV/c π⁻
# interactions is the 2.0 ± 0.1 measured in nuclear emulsion ("The analysis of 4.5 BeV negative
# pion interactions in nuclear emulsion", 200 interactions in Ilford G5; same paper: pion
# ⟨p_T⟩ = 290 ± 50 MeV/c, which the model gives within errors). The earlier 1.1 gave 2.7 there
# (one and a third times the data) and 3.1 shower particles, 1.3 π⁰ at 7 GeV/c; now 2.0 and 2.3, 0.8.
PRODUCED_PIONS_PER_LOG_ENERGY = 0.65
_ARGON_A = 39.948
_AVOGADRO = 6.02214076e23

# K⁺ decays, PDG 2024 branching ratios (the last 0.3% of rare modes dropped; renormalised)
K_PLUS_DECAYS: list[tuple[float, tuple[int, ...]]] = [
    (0.6356, (-13, 14)),
    (0.2067, (211, 111)),
    (0.0558, (211, 211, -211)),
    (0.0507, (111, -11, 12)),
    (0.0335, (111, -13, 14)),
    (0.0176, (211, 111, 111)),
]
_NEUTRINOS = {12, -12, 14, -14, 16, -16}
_MASSES = {**{k: v.mass_mev for k, v in ph.PARTICLES.items()}, 12: 0.0, -12: 0.0, 14: 0.0, -14: 0.0}


@dataclass
class Products:
    """Daughters of a batch of ending particles."""

    parent_index: np.ndarray
    pdg: np.ndarray
    kinetic_mev: np.ndarray
    direction: np.ndarray  # (n, 3)
    delay_ns: np.ndarray  # time of the decay after the parent came to its end
    process: np.ndarray  # str per daughter

    def __len__(self) -> int:
        return int(self.pdg.shape[0])

    @classmethod
    def build(cls, rows: list[tuple[int, int, float, np.ndarray, float, str]]) -> Products:
        if not rows:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), np.zeros((0, 3)),
                       np.zeros(0), np.zeros(0, object))
        idx, pdg, kin, direction, delay, process = zip(*rows)
        return cls(np.array(idx, np.int64), np.array(pdg, np.int32), np.array(kin, float),
                   np.array(direction, float).reshape(-1, 3), np.array(delay, float), np.array(process, object))

    @classmethod
    def concatenate(cls, parts: list[Products]) -> Products:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.build([])
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


# ---------------------------------------------------------------------------------------------
# Cross sections
# ---------------------------------------------------------------------------------------------
def _length_from_barn(sigma_barn: np.ndarray, density_g_per_cm3: float = ARGON.density_g_per_cm3) -> np.ndarray:
    return _ARGON_A / (_AVOGADRO * density_g_per_cm3 * np.maximum(sigma_barn, 1e-9) * 1e-24)


def inelastic_cross_section_barn(pdg: np.ndarray, kinetic_mev: np.ndarray) -> np.ndarray:
    """Hadron–argon inelastic (reaction) cross section (barn); an estimate, see the module docstring.

    Protons: 0.554 b (λ_I = 85.8 cm, PDG) above ~100 MeV, falling to zero at the ~10 MeV Coulomb
    barrier. Pions: 0.75 b at high energy (PHYSICS.md) plus a Δ(1232) bump peaking at T ≈ 170 MeV
    (1.15 b), falling below ~50 MeV. K⁺: 0.60 b (K⁺N is about half of πN).
    """
    a = np.abs(pdg)
    t = np.asarray(kinetic_mev, dtype=float)
    proton = 0.554 * np.clip(1.0 - np.exp(-(t - 10.0) / 40.0), 0.0, None)
    delta_width = 110.0
    pion = (0.75 + 0.45 * delta_width ** 2 / ((t - 170.0) ** 2 + delta_width ** 2)) * (1.0 - np.exp(-t / 60.0))
    kaon = 0.60 * np.clip(1.0 - np.exp(-(t - 10.0) / 40.0), 0.0, None)
    return np.where(a == 2212, proton, np.where(a == 211, pion, np.where(a == 321, kaon, 0.0)))


def inelastic_length_cm(pdg: np.ndarray, kinetic_mev: np.ndarray) -> np.ndarray:
    """Mean free path (cm) for a hadronic inelastic interaction in liquid argon."""
    return _length_from_barn(inelastic_cross_section_barn(pdg, kinetic_mev))


# ---------------------------------------------------------------------------------------------
# Kinematics
# ---------------------------------------------------------------------------------------------
def _two_body_momentum(mass: float, m1: float, m2: float) -> float:
    return float(np.sqrt(max((mass ** 2 - (m1 + m2) ** 2) * (mass ** 2 - (m1 - m2) ** 2), 0.0)) / (2.0 * mass))


def _boost(p_rest: np.ndarray, e_rest: np.ndarray, beta_vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lorentz-boost rest-frame momenta (n,3) and energies (n) by velocity ``beta_vec`` (n,3)."""
    b2 = np.sum(beta_vec * beta_vec, axis=1)
    gamma = 1.0 / np.sqrt(np.maximum(1.0 - b2, 1e-12))
    bp = np.sum(beta_vec * p_rest, axis=1)
    factor = np.where(b2 > 0.0, (gamma - 1.0) * bp / np.where(b2 > 0.0, b2, 1.0), 0.0) + gamma * e_rest
    p = p_rest + factor[:, None] * beta_vec
    e = gamma * (e_rest + bp)
    return p, e


def _phase_space(rng: np.random.Generator, mass: float, daughters: tuple[float, ...]) -> list[np.ndarray]:
    """Rest-frame momenta (MeV/c) of 2- or 3-body decays with flat phase space."""
    if len(daughters) == 2:
        p = _two_body_momentum(mass, *daughters)
        d = isotropic_directions(rng, 1)[0]
        return [p * d, -p * d]
    m1, m2, m3 = daughters
    lo, hi = m1 + m2, mass - m3
    w_max = _two_body_momentum(mass, lo, m3) * _two_body_momentum(hi, m1, m2) + 1e-9
    while True:  # accept-reject on the (m12) phase-space weight; the acceptance is > 30%
        m12 = rng.uniform(lo, hi)
        w = _two_body_momentum(mass, m12, m3) * _two_body_momentum(m12, m1, m2)
        if rng.random() * w_max * 1.5 < w:
            break
    p3 = _two_body_momentum(mass, m12, m3)
    d3 = isotropic_directions(rng, 1)[0]
    p12_vec = -p3 * d3
    p1 = _two_body_momentum(m12, m1, m2)
    d1 = isotropic_directions(rng, 1)[0]
    e12 = np.sqrt(m12 ** 2 + p3 ** 2)
    beta12 = (p12_vec / e12)[None, :]
    q1, _ = _boost((p1 * d1)[None, :], np.array([np.sqrt(m1 ** 2 + p1 ** 2)]), beta12)
    q2, _ = _boost((-p1 * d1)[None, :], np.array([np.sqrt(m2 ** 2 + p1 ** 2)]), beta12)
    return [q1[0], q2[0], p3 * d3]


_MICHEL_X = np.linspace(0.0, 1.0, 2001)
_MICHEL_CDF = 2.0 * _MICHEL_X ** 3 - _MICHEL_X ** 4


def sample_michel_kinetic_mev(rng: np.random.Generator, n: int) -> np.ndarray:
    """Kinetic energy of Michel electrons: x = E/W with dN/dx ∝ x²(3 − 2x), CDF 2x³ − x⁴."""
    x = np.interp(rng.random(n), _MICHEL_CDF, _MICHEL_X)
    return np.maximum(x * MICHEL_ENDPOINT_MEV - ph.ELECTRON_MASS_MEV, 0.0)


def _decay_products(rng: np.random.Generator, pdg: int) -> list[tuple[int, np.ndarray]]:
    """(daughter pdg, rest-frame momentum) of one decay; neutrinos included."""
    a = abs(pdg)
    sign = 1 if pdg > 0 else -1
    if a == 13:  # μ⁻ (pdg 13) → e⁻: the charged lepton keeps the sign of the pdg code
        e_kin = sample_michel_kinetic_mev(rng, 1)[0]
        p = np.sqrt(e_kin * (e_kin + 2.0 * ph.ELECTRON_MASS_MEV))
        return [(11 * sign, p * isotropic_directions(rng, 1)[0])]
    if a == 211:
        daughters = (-13 * sign, 14 * sign)
    elif a == 321:
        fractions = np.array([b for b, _ in K_PLUS_DECAYS])
        channel = K_PLUS_DECAYS[int(rng.choice(len(K_PLUS_DECAYS), p=fractions / fractions.sum()))][1]
        daughters = tuple(c * sign if c != 111 else c for c in channel)
    else:
        raise ValueError(f"no decay for pdg {pdg}")
    mass = ph.PARTICLES[pdg].mass_mev
    momenta = _phase_space(rng, mass, tuple(_MASSES[d] for d in daughters))
    return list(zip(daughters, momenta))


def _products_from_rest_frame(rng: np.random.Generator, index: int, pdg: int, beta_vec: np.ndarray,
                              delay: float, process: str) -> list[tuple]:
    rows = []
    for dpdg, p_rest in _decay_products(rng, pdg):
        if dpdg in _NEUTRINOS:
            continue
        m = _MASSES[dpdg]
        e_rest = np.sqrt(m * m + p_rest @ p_rest)
        p_lab, e_lab = _boost(p_rest[None, :], np.array([e_rest]), beta_vec[None, :])
        pnorm = float(np.linalg.norm(p_lab[0]))
        direction = p_lab[0] / pnorm if pnorm > 0 else isotropic_directions(rng, 1)[0]
        rows.append((index, dpdg, max(float(e_lab[0]) - m, 0.0), direction, delay, process))
    return rows


# ---------------------------------------------------------------------------------------------
# Ends of particles
# ---------------------------------------------------------------------------------------------
def at_rest(rng: np.random.Generator, pdg: np.ndarray, mu_capture_fraction: float,
            decays: bool = True) -> tuple[Products, np.ndarray]:
    """Daughters of particles that came to rest, and each parent's end process ("stop", "decay", "capture")."""
    rows: list[tuple] = []
    end = np.full(pdg.shape[0], "stop", dtype=object)
    for i, code in enumerate(pdg.tolist()):
        if code == -11:  # positron annihilation at rest
            d = isotropic_directions(rng, 1)[0]
            rows += [(i, 22, ph.ELECTRON_MASS_MEV, d, 0.0, "annihil"), (i, 22, ph.ELECTRON_MASS_MEV, -d, 0.0, "annihil")]
            end[i] = "annihil"
        elif not decays:
            continue
        elif code == -13:
            rows += _products_from_rest_frame(rng, i, code, np.zeros(3), rng.exponential(ph.PARTICLES[-13].lifetime_ns), "decay")
            end[i] = "decay"
        elif code == 13:
            delay = rng.exponential(MU_MINUS_BOUND_LIFETIME_NS)
            if rng.random() < mu_capture_fraction:
                end[i] = "capture"
            else:
                rows += _products_from_rest_frame(rng, i, code, np.zeros(3), delay, "decay")
                end[i] = "decay"
        elif code in (211, 321):
            rows += _products_from_rest_frame(rng, i, code, np.zeros(3), rng.exponential(ph.PARTICLES[code].lifetime_ns), "decay")
            end[i] = "decay"
        elif code in (-211, -321):
            rows += _nuclear_absorption(rng, i, ph.PARTICLES[code].mass_mev, "capture")
            end[i] = "capture"
    return Products.build(rows), end


def _nuclear_absorption(rng: np.random.Generator, index: int, energy_mev: float, process: str,
                        axis: np.ndarray | None = None) -> list[tuple]:
    """A few nucleons share ``energy_mev`` (less 8 MeV binding each): protons are what is visible."""
    n_protons = int(rng.integers(0, 3))
    n_neutrons = int(rng.integers(1, 4))
    available = energy_mev - NUCLEON_BINDING_MEV * (n_protons + n_neutrons)
    while available <= 0.0 and n_neutrons + n_protons > 1:
        if n_neutrons > 0:
            n_neutrons -= 1
        else:
            n_protons -= 1
        available = energy_mev - NUCLEON_BINDING_MEV * (n_protons + n_neutrons)
    n = n_protons + n_neutrons
    if available <= 0.0 or n == 0:
        return []
    shares = rng.dirichlet(np.full(n, 1.5)) * available
    directions = isotropic_directions(rng, n)
    pdgs = [2212] * n_protons + [2112] * n_neutrons
    return [(index, p, float(s), d, 0.0, process) for p, s, d in zip(pdgs, shares, directions)]


def decay_in_flight(rng: np.random.Generator, pdg: np.ndarray, kinetic_mev: np.ndarray,
                    direction: np.ndarray) -> Products:
    rows: list[tuple] = []
    for i, code in enumerate(pdg.tolist()):
        m = ph.PARTICLES[code].mass_mev
        p = float(ph.momentum_from_kinetic(kinetic_mev[i], m))
        beta_vec = direction[i] * p / (kinetic_mev[i] + m)
        rows += _products_from_rest_frame(rng, i, code, beta_vec, 0.0, "decay")
    return Products.build(rows)


def inelastic(rng: np.random.Generator, pdg: np.ndarray, kinetic_mev: np.ndarray, direction: np.ndarray) -> Products:
    """Final states of hadronic inelastic interactions on argon (see the module docstring)."""
    rows: list[tuple] = []
    for i, code in enumerate(pdg.tolist()):
        rows += _inelastic_one(rng, i, code, float(kinetic_mev[i]), direction[i])
    return Products.build(rows)


def _direction_with_pt(rng: np.random.Generator, axis: np.ndarray, momentum_mev: float, mean_pt_mev: float) -> np.ndarray:
    """A direction whose transverse momentum to ``axis`` is ~ p_T e^(−p_T/⟨p_T⟩/2)-like (exponential in p_T)."""
    pt = min(rng.gamma(2.0, mean_pt_mev / 2.0), momentum_mev)
    sin_theta = pt / max(momentum_mev, 1e-9)
    cos_theta = np.sqrt(max(1.0 - sin_theta * sin_theta, 0.0))
    if rng.random() < 0.5 * sin_theta:  # slow particles can go backwards
        cos_theta = -cos_theta
    return rotate_from_axis(axis[None, :], np.array([cos_theta]), np.array([rng.uniform(0, 2 * np.pi)]))[0]


def _inelastic_one(rng: np.random.Generator, index: int, pdg: int, kinetic: float, axis: np.ndarray) -> list[tuple]:
    a = abs(pdg)
    rows: list[tuple] = []
    # Low-energy pion absorption (no pion in the final state): about half of the π–Ar reaction
    # cross section below 300 MeV (Ashery et al., PRC 23 (1981) 2173).
    if a == 211 and kinetic < 300.0 and rng.random() < 0.5:
        return _nuclear_absorption(rng, index, kinetic + ph.PION_MASS_MEV, "inelastic", axis)

    # Knocked-out nucleons: more at higher energy; spectra falling with a 40 MeV slope.
    log_t = np.log1p(kinetic / 100.0)
    n_protons = rng.poisson(0.8 + 0.4 * log_t)
    n_neutrons = rng.poisson(1.0 + 0.5 * log_t)
    # Produced pions above the single-pion production threshold (~280 MeV on a nucleon).
    n_pions = rng.poisson(max(0.0, PRODUCED_PIONS_PER_LOG_ENERGY * np.log(kinetic / 280.0))) if kinetic > 280.0 else 0
    available = kinetic - NUCLEON_BINDING_MEV * (n_protons + n_neutrons) - ph.PION_MASS_MEV * n_pions
    while available < 0.2 * kinetic and (n_pions or n_protons + n_neutrons):
        if n_pions:
            n_pions -= 1
        elif n_neutrons:
            n_neutrons -= 1
        else:
            n_protons -= 1
        available = kinetic - NUCLEON_BINDING_MEV * (n_protons + n_neutrons) - ph.PION_MASS_MEV * n_pions
    if available <= 0.0:
        return rows
    nucleon_kinetic = rng.exponential(40.0, n_protons + n_neutrons)
    scale = min(1.0, 0.4 * available / max(nucleon_kinetic.sum(), 1e-9))
    nucleon_kinetic *= scale
    available -= nucleon_kinetic.sum()
    # The leading hadron keeps the projectile's identity (π± charge exchange to π⁰ in 10%).
    leading = pdg
    if a == 211 and rng.random() < 0.1:
        leading = 111
    shares = rng.dirichlet(np.concatenate([[3.0], np.full(n_pions, 1.0)])) * available
    lead_mass = ph.PARTICLES[leading].mass_mev
    lead_p = float(ph.momentum_from_kinetic(shares[0], lead_mass))
    rows.append((index, leading, float(shares[0]), _direction_with_pt(rng, axis, lead_p, 250.0), 0.0, "inelastic"))
    for share in shares[1:]:
        code = int(rng.choice([211, -211, 111]))
        p = float(ph.momentum_from_kinetic(share, ph.PARTICLES[code].mass_mev))
        rows.append((index, code, float(share), _direction_with_pt(rng, axis, p, 350.0), 0.0, "inelastic"))
    nucleon_codes = [2212] * n_protons + [2112] * n_neutrons
    for code, t_kin in zip(nucleon_codes, nucleon_kinetic):
        # forward-peaked for fast (cascade) nucleons, isotropic for slow (evaporation) ones
        cos_theta = np.clip(rng.uniform(-1.0, 1.0) + min(t_kin / 200.0, 0.8), -1.0, 1.0)
        d = rotate_from_axis(axis[None, :], np.array([cos_theta]), np.array([rng.uniform(0, 2 * np.pi)]))[0]
        rows.append((index, code, float(t_kin), d, 0.0, "inelastic"))
    return rows
