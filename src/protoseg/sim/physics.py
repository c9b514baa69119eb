"""Energy loss, its fluctuations and multiple scattering of charged particles in liquid argon.

Formulas are those of the PDG review "Passage of particles through matter" (2024), with the argon
constants of ``protoseg.detector.ARGON`` (I = 188 eV and Sternheimer density-effect parameters of
dunetpc). Energies in MeV, lengths in cm, momenta in MeV/c unless the name says otherwise.

* mean and restricted stopping power: Bethe equation with the density effect (heavy particles),
  Rohrlich–Carlson / ICRU 37 collision stopping power (electrons, positrons);
* CSDA range tables: the integral of 1/(dE/dx) on a log-energy grid, per particle mass;
* fluctuations per step: a Landau distribution whose most probable value is the PDG
  Landau–Vavilov Δp (with the density effect) and whose upper tail is truncated so that the mean
  equals the restricted mean loss (energy transfers above the δ-ray threshold are made explicitly
  as δ-ray electrons); thick steps (κ = ξ/T_cut ≥ 1) use the Gaussian (Bohr) limit;
* multiple Coulomb scattering: the Highland formula, applied so that the angular spread after any
  path length s from a track's start is Highland's θ0(s).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from protoseg.detector import ARGON, Argon

__all__ = [
    "ELECTRON_MASS_MEV", "MUON_MASS_MEV", "PION_MASS_MEV", "PI0_MASS_MEV", "KAON_MASS_MEV",
    "PROTON_MASS_MEV", "NEUTRON_MASS_MEV", "SPEED_OF_LIGHT_CM_PER_US", "PARTICLES", "ParticleType",
    "beta_gamma", "density_effect", "tmax_mev", "bethe_dedx", "electron_dedx", "mean_dedx",
    "restricted_dedx", "landau_xi_mev", "most_probable_loss_mev", "RangeTable", "range_table",
    "sample_step_loss", "highland_theta0", "highland_path_function", "kinetic_from_momentum",
    "momentum_from_kinetic",
]

# PDG 2024 masses (MeV/c^2)
ELECTRON_MASS_MEV = 0.51099895
MUON_MASS_MEV = 105.6583755
PION_MASS_MEV = 139.57039
PI0_MASS_MEV = 134.9768
KAON_MASS_MEV = 493.677
PROTON_MASS_MEV = 938.27208816
NEUTRON_MASS_MEV = 939.56542052
SPEED_OF_LIGHT_CM_PER_US = 29979.2458

K_MEV_CM2_PER_MOL = 0.307075  # 4 pi N_A r_e^2 m_e c^2 (PDG)
LANDAU_MODE = -0.22278298  # most probable value of the standard Landau density
PDG_LANDAU_J = 0.200  # PDG Landau–Vavilov constant j


@dataclass(frozen=True)
class ParticleType:
    """What the transport needs to know about a species."""

    name: str
    mass_mev: float
    charge: int
    lifetime_ns: float  # mean life at rest; inf for stable


# PDG 2024 mean lives.
PARTICLES: dict[int, ParticleType] = {
    11: ParticleType("e-", ELECTRON_MASS_MEV, -1, np.inf),
    -11: ParticleType("e+", ELECTRON_MASS_MEV, 1, np.inf),
    13: ParticleType("mu-", MUON_MASS_MEV, -1, 2196.9811),
    -13: ParticleType("mu+", MUON_MASS_MEV, 1, 2196.9811),
    211: ParticleType("pi+", PION_MASS_MEV, 1, 26.033),
    -211: ParticleType("pi-", PION_MASS_MEV, -1, 26.033),
    321: ParticleType("K+", KAON_MASS_MEV, 1, 12.380),
    -321: ParticleType("K-", KAON_MASS_MEV, -1, 12.380),
    2212: ParticleType("p", PROTON_MASS_MEV, 1, np.inf),
    22: ParticleType("gamma", 0.0, 0, np.inf),
    111: ParticleType("pi0", PI0_MASS_MEV, 0, 8.43e-8),
    2112: ParticleType("n", NEUTRON_MASS_MEV, 0, np.inf),
}


def momentum_from_kinetic(kinetic_mev: np.ndarray | float, mass_mev: np.ndarray | float) -> np.ndarray:
    """|p| (MeV/c) of a particle of kinetic energy T (MeV)."""
    t = np.asarray(kinetic_mev, dtype=float)
    return np.sqrt(t * (t + 2.0 * np.asarray(mass_mev, dtype=float)))


def kinetic_from_momentum(momentum_mev: np.ndarray | float, mass_mev: np.ndarray | float) -> np.ndarray:
    """Kinetic energy (MeV) of a particle of momentum |p| (MeV/c)."""
    p = np.asarray(momentum_mev, dtype=float)
    m = np.asarray(mass_mev, dtype=float)
    return np.sqrt(p * p + m * m) - m


def beta_gamma(kinetic_mev: np.ndarray, mass_mev: float) -> np.ndarray:
    return momentum_from_kinetic(kinetic_mev, mass_mev) / mass_mev


def density_effect(bg: np.ndarray, argon: Argon = ARGON) -> np.ndarray:
    """Sternheimer density-effect correction δ(βγ) for a conductor-less medium (δ0 = 0)."""
    x = np.log10(np.maximum(bg, 1e-12))
    two_ln10 = 2.0 * np.log(10.0)
    mid = two_ln10 * x - argon.sternheimer_cbar + argon.sternheimer_a * np.power(
        np.clip(argon.sternheimer_x1 - x, 0.0, None), argon.sternheimer_k)
    high = two_ln10 * x - argon.sternheimer_cbar
    return np.where(x >= argon.sternheimer_x1, high, np.where(x >= argon.sternheimer_x0, mid, 0.0))


def tmax_mev(kinetic_mev: np.ndarray, mass_mev: float) -> np.ndarray:
    """Largest energy transfer to a free electron in one collision (PDG eq. 34.4)."""
    bg = beta_gamma(kinetic_mev, mass_mev)
    gamma = np.sqrt(1.0 + bg * bg)
    ratio = ELECTRON_MASS_MEV / mass_mev
    return 2.0 * ELECTRON_MASS_MEV * bg * bg / (1.0 + 2.0 * gamma * ratio + ratio * ratio)


def _bethe_bracket(kinetic_mev: np.ndarray, mass_mev: float, t_up: np.ndarray | None,
                   argon: Argon) -> tuple[np.ndarray, np.ndarray]:
    bg = beta_gamma(kinetic_mev, mass_mev)
    beta2 = bg * bg / (1.0 + bg * bg)
    tmax = tmax_mev(kinetic_mev, mass_mev)
    i_mev = argon.mean_excitation_ev * 1e-6
    delta = density_effect(bg, argon)
    if t_up is None:
        t_up = tmax
    t_up = np.minimum(t_up, tmax)
    return (0.5 * np.log(2.0 * ELECTRON_MASS_MEV * bg * bg * t_up / (i_mev * i_mev))
            - 0.5 * beta2 * (1.0 + t_up / tmax) - 0.5 * delta), beta2


def bethe_dedx(kinetic_mev: np.ndarray, mass_mev: float, argon: Argon = ARGON,
               t_cut_mev: np.ndarray | float | None = None) -> np.ndarray:
    """Mean (or, with ``t_cut_mev``, restricted) collision stopping power of a |z| = 1 heavy particle (MeV/cm).

    Below βγ = 0.046 (protons under 1 MeV, 3% of a 10 MeV proton's range) Bethe's logarithm
    loses validity; there the stopping power is continued as T^0.45 matched at that point, an
    approximation of the Andersen–Ziegler region.
    """
    t = np.asarray(kinetic_mev, dtype=float)
    t_low = mass_mev * (np.sqrt(1.0 + _BG_LOW ** 2) - 1.0)
    t_eval = np.maximum(t, t_low)
    t_up = None if t_cut_mev is None else np.broadcast_to(np.asarray(t_cut_mev, dtype=float), t.shape)
    bracket, beta2 = _bethe_bracket(t_eval, mass_mev, t_up, argon)
    dedx = K_MEV_CM2_PER_MOL * argon.z_over_a * argon.density_g_per_cm3 / beta2 * np.maximum(bracket, 0.0)
    # ~T^0.45 below t_low: the slope of the Lindhard/Andersen–Ziegler electronic stopping near its maximum
    return np.where(t < t_low, dedx * np.power(np.maximum(t, 1e-9) / t_low, 0.45), dedx)


# βγ = 0.046 is T = 1 MeV for a proton: below it Bethe's log fails (shell corrections); the
# continuation leaves the PSTAR range of a 10 MeV proton within 1.5%.
_BG_LOW = 0.046


def electron_dedx(kinetic_mev: np.ndarray, positron: bool = False, argon: Argon = ARGON) -> np.ndarray:
    """Collision stopping power of electrons or positrons (MeV/cm), Rohrlich–Carlson (ICRU 37)."""
    t = np.maximum(np.asarray(kinetic_mev, dtype=float), 1e-3)
    tau = t / ELECTRON_MASS_MEV
    gamma = tau + 1.0
    beta2 = 1.0 - 1.0 / (gamma * gamma)
    i_over_m = argon.mean_excitation_ev * 1e-6 / ELECTRON_MASS_MEV
    delta = density_effect(np.sqrt(gamma * gamma - 1.0), argon)
    if positron:
        y = 1.0 / (tau + 2.0)
        f = 2.0 * np.log(2.0) - beta2 / 12.0 * (23.0 + 14.0 * y + 10.0 * y * y + 4.0 * y ** 3)
    else:
        f = 1.0 - beta2 + (tau * tau / 8.0 - (2.0 * tau + 1.0) * np.log(2.0)) / (gamma * gamma)
    bracket = np.log(tau * tau * (tau + 2.0) / (2.0 * i_over_m * i_over_m)) + f - delta
    return 0.5 * K_MEV_CM2_PER_MOL * argon.z_over_a * argon.density_g_per_cm3 / beta2 * np.maximum(bracket, 0.0)


def electron_radiative_fraction(kinetic_mev: np.ndarray, argon_z: float = 18.0) -> np.ndarray:
    """Radiative/collision stopping-power ratio of electrons, ≈ Z·E/800 MeV (PDG / Knoll rule)."""
    return argon_z * (np.asarray(kinetic_mev, dtype=float) + ELECTRON_MASS_MEV) / 800.0


def mean_dedx(kinetic_mev: np.ndarray, pdg: int, argon: Argon = ARGON, radiative: bool = True) -> np.ndarray:
    """Mean total stopping power (MeV/cm) used for CSDA ranges.

    Electrons include the radiative loss (the Z·E/800 rule) when ``radiative``; muons include the
    radiative (bremsstrahlung, pair, photonuclear) term b(E)·E with b = 3.0e-6 cm²/g, the
    Groom–Mokhov–Striganov value for argon at a few tens of GeV (a 1% effect at 5 GeV).
    """
    if abs(pdg) == 11:
        coll = electron_dedx(kinetic_mev, positron=pdg < 0, argon=argon)
        return coll * (1.0 + electron_radiative_fraction(kinetic_mev)) if radiative else coll
    mass = PARTICLES[pdg].mass_mev
    dedx = bethe_dedx(kinetic_mev, mass, argon)
    if abs(pdg) == 13 and radiative:
        dedx = dedx + 3.0e-6 * argon.density_g_per_cm3 * (np.asarray(kinetic_mev, dtype=float) + mass)
    return dedx


def restricted_dedx(kinetic_mev: np.ndarray, pdg: int, t_cut_mev: float, argon: Argon = ARGON) -> np.ndarray:
    """Mean loss (MeV/cm) from collisions transferring less than ``t_cut_mev`` (the continuous part)."""
    if abs(pdg) == 11:
        # Delta rays of electrons are not made explicitly: the continuous loss is the full collision loss.
        return electron_dedx(kinetic_mev, positron=pdg < 0, argon=argon)
    return bethe_dedx(kinetic_mev, PARTICLES[pdg].mass_mev, argon, t_cut_mev=t_cut_mev)


def landau_xi_mev(beta2: np.ndarray, step_cm: np.ndarray | float, argon: Argon = ARGON) -> np.ndarray:
    """ξ = (K/2)(Z/A)ρ x/β² (MeV): the scale of the Landau distribution."""
    return 0.5 * K_MEV_CM2_PER_MOL * argon.z_over_a * argon.density_g_per_cm3 * np.asarray(step_cm) / beta2


def most_probable_loss_mev(kinetic_mev: np.ndarray, mass_mev: float, step_cm: np.ndarray | float,
                           argon: Argon = ARGON) -> np.ndarray:
    """PDG Landau–Vavilov most probable energy loss Δp in a layer of thickness ``step_cm`` (eq. 34.12)."""
    bg = beta_gamma(np.asarray(kinetic_mev, dtype=float), mass_mev)
    beta2 = bg * bg / (1.0 + bg * bg)
    xi = landau_xi_mev(beta2, step_cm, argon)
    i_mev = argon.mean_excitation_ev * 1e-6
    return xi * (np.log(2.0 * ELECTRON_MASS_MEV * bg * bg / i_mev) + np.log(xi / i_mev) + PDG_LANDAU_J
                 - beta2 - density_effect(bg, argon))


class RangeTable:
    """CSDA range R(T) = ∫ dT / (dE/dx) of one species, and its inverse T(R), on a log grid."""

    def __init__(self, pdg: int, argon: Argon = ARGON, t_min_mev: float = 1e-3, t_max_mev: float = 2e6,
                 n_points: int = 4000) -> None:
        self.pdg = pdg
        self.kinetic_mev = np.geomspace(t_min_mev, t_max_mev, n_points)
        self.dedx_mev_per_cm = mean_dedx(self.kinetic_mev, pdg, argon)
        inv = 1.0 / self.dedx_mev_per_cm
        # Range below t_min: stopping power ∝ T^0.45 there, so R(t_min) = t_min / (0.55 dE/dx(t_min)).
        r0 = self.kinetic_mev[0] * inv[0] / 0.55
        steps = 0.5 * (inv[1:] + inv[:-1]) * np.diff(self.kinetic_mev)
        self.range_cm = r0 + np.concatenate([[0.0], np.cumsum(steps)])
        self._log_t = np.log(self.kinetic_mev)
        self._log_r = np.log(self.range_cm)

    def range_cm_of(self, kinetic_mev: np.ndarray) -> np.ndarray:
        t = np.maximum(np.asarray(kinetic_mev, dtype=float), 1e-12)
        return np.exp(np.interp(np.log(t), self._log_t, self._log_r,
                                left=-np.inf, right=self._log_r[-1]))

    def kinetic_mev_of(self, range_cm: np.ndarray) -> np.ndarray:
        r = np.asarray(range_cm, dtype=float)
        out = np.exp(np.interp(np.log(np.maximum(r, 1e-30)), self._log_r, self._log_t, left=-np.inf))
        return np.where(r > 0.0, out, 0.0)

    def dedx_of(self, kinetic_mev: np.ndarray) -> np.ndarray:
        return np.interp(np.log(np.maximum(kinetic_mev, 1e-12)), self._log_t, self.dedx_mev_per_cm)


@lru_cache(maxsize=None)
def range_table(pdg: int) -> RangeTable:
    """Cached range table for a charged species (antiparticles share their partner's table except e+)."""
    key = pdg if abs(pdg) == 11 else abs(pdg)
    return RangeTable(key)


# ---------------------------------------------------------------------------------------------
# Landau fluctuations with a truncated upper tail
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _landau_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """λ grid, CDF F(λ), truncated mean m(λ) = E[λ' | λ' < λ] and truncated variance of the standard Landau density."""
    from scipy.stats import landau

    lam = np.concatenate([np.linspace(-3.8, 10.0, 2000), np.geomspace(10.0, 2e5, 1500)[1:]])
    pdf = landau.pdf(lam)
    cdf = landau.cdf(lam)

    def cumulative(f: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(lam))])

    norm = np.maximum(cdf, 1e-300)
    # the negligible mass below the grid sits at its edge
    mean = (cumulative(lam * pdf) + lam[0] * cdf[0]) / norm
    second = (cumulative(lam * lam * pdf) + lam[0] ** 2 * cdf[0]) / norm
    return lam, cdf, mean, np.maximum(second - mean * mean, 0.0)


def sample_step_loss(rng: np.random.Generator, mean_loss_mev: np.ndarray, xi_mev: np.ndarray,
                     mpv_loss_mev: np.ndarray, t_up_mev: np.ndarray, beta2: np.ndarray) -> np.ndarray:
    """Fluctuated continuous energy loss of each step (MeV), mean ``mean_loss_mev``.

    Landau regime (κ = ξ/T_up < 1): Δ = Δp + ξ(λ − λ_mode) with λ from the standard Landau
    density truncated at the λ_max whose truncated mean reproduces the restricted mean loss, so the
    most probable value is the PDG Δp and the mean is exact. Toward κ ~ 1 (Vavilov region) the
    truncated Landau is narrower than the exact variance σ² = ξ T_up (1 − β²/2) (Bohr); the
    difference is added as a Gaussian of zero mean. For κ ≥ 1, or where the truncation cannot reach
    the mean, the Gaussian limit with that variance, kept non-negative.
    """
    lam, cdf, trunc_mean, trunc_var = _landau_tables()
    n = mean_loss_mev.shape[0]
    out = np.empty(n)
    kappa = xi_mev / np.maximum(t_up_mev, 1e-12)
    target = LANDAU_MODE + (mean_loss_mev - mpv_loss_mev) / np.maximum(xi_mev, 1e-30)
    landau_ok = (kappa < 1.0) & (target > trunc_mean[0] + 0.05) & (target < trunc_mean[-1])
    if landau_ok.any():
        lam_max = np.interp(target[landau_ok], trunc_mean, lam)
        f_max = np.interp(lam_max, lam, cdf)
        u = rng.random(int(landau_ok.sum())) * f_max
        lam_sample = np.interp(u, cdf, lam)
        xi_ok = xi_mev[landau_ok]
        bohr_var = xi_ok * t_up_mev[landau_ok] * (1.0 - 0.5 * beta2[landau_ok])
        extra_sigma = np.sqrt(np.maximum(bohr_var - xi_ok ** 2 * np.interp(lam_max, lam, trunc_var), 0.0))
        smear = extra_sigma * rng.standard_normal(lam_sample.shape[0])
        out[landau_ok] = np.maximum(mpv_loss_mev[landau_ok] + xi_ok * (lam_sample - LANDAU_MODE) + smear, 0.0)
    gauss = ~landau_ok
    if gauss.any():
        sigma = np.sqrt(xi_mev[gauss] * np.minimum(t_up_mev[gauss], 1e6) * (1.0 - 0.5 * beta2[gauss]))
        sigma = np.minimum(sigma, mean_loss_mev[gauss])  # keeps the clipped Gaussian's mean close
        out[gauss] = np.maximum(mean_loss_mev[gauss] + sigma * rng.standard_normal(int(gauss.sum())), 0.0)
    return out


# ---------------------------------------------------------------------------------------------
# Multiple Coulomb scattering
# ---------------------------------------------------------------------------------------------
def highland_theta0(momentum_mev: np.ndarray, beta: np.ndarray, path_cm: np.ndarray,
                    charge: float = 1.0, argon: Argon = ARGON) -> np.ndarray:
    """Highland (PDG eq. 34.15) plane-projected rms angle (rad) after ``path_cm`` of argon."""
    x = np.asarray(path_cm, dtype=float) / argon.radiation_length_cm
    return 13.6 / (beta * momentum_mev) * abs(charge) * np.sqrt(x) * (1.0 + 0.038 * np.log(x * charge * charge / beta ** 2))


def highland_path_function(path_cm: np.ndarray, argon: Argon = ARGON) -> np.ndarray:
    """g(s) = (s/X0)(1 + 0.038 ln(s/X0))²: θ0(s)² = (13.6 MeV/βcp)² g(s) for β = 1, z = 1.

    Successive steps add variance g(s_k) − g(s_{k−1}), so that the spread after any path length
    from a track's start is Highland's. g is increasing for s > 0.002 X0; shorter paths use the
    linear limit.
    """
    x = np.maximum(np.asarray(path_cm, dtype=float) / argon.radiation_length_cm, 2e-3)
    return x * (1.0 + 0.038 * np.log(x)) ** 2
