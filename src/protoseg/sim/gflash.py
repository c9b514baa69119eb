"""The GFlash parameterisation of average electromagnetic showers in a homogeneous medium (liquid argon).

A reference for checking the shower Monte Carlo of ``showers``, not used to simulate. From
G. Grindhammer, S. Peters, "The parameterized simulation of electromagnetic showers in homogeneous
and sampling calorimeters", hep-ex/0001020 (1993), as coded in Geant4
(``parameterisations/gflash``: GFlashHomoShowerParameterisation.cc, GVFlashHomoShowerTuning.hh).

Longitudinal (depth t in X0, y = E/E_c)::

    (1/E) dE/dt = f(t) = (β t)^(α−1) β exp(−β t) / Γ(α),   T = (α − 1)/β  (shower maximum)
    T_hom = ln y + t1,          t1 = −0.858                  (paper, eq. 4: average profile)
    α_hom = a1 + (a2 + a3/Z) ln y,  a1 = 0.21, a2 = 0.492, a3 = 2.38

(Geant4's tuning class holds the means of the *logarithms* for fluctuated showers:
⟨ln T⟩ = ln(ln y − 0.812), ⟨ln α⟩ = ln(0.81 + (0.458 + 2.26/Z) ln y); the average profile above is
the paper's.) E_c = 2.66 (X0 Z/A)^1.1 MeV with X0 in g/cm², the GFlash critical energy.

Radial (r in units of R_M = X0 · 21 MeV / E_c, the GFlash Molière radius; τ = t/T)::

    (1/dE(t)) dE(t, r)/dr = p 2r R_C²/(r² + R_C²)² + (1 − p) 2r R_T²/(r² + R_T²)²
    R_C(τ) = z1 + z2 τ,   z1 = 0.0251 + 0.00319 ln(E/GeV),   z2 = 0.1162 − 0.000381 Z
    R_T(τ) = k1 (exp(k3 (τ − k2)) + exp(k4 (τ − k2))),
             k1 = 0.659 − 0.00309 Z,  k2 = 0.645,  k3 = −2.59,  k4 = 0.3585 + 0.0412 ln(E/GeV)
    p(τ) = p1 exp((p2 − τ)/p3 − exp((p2 − τ)/p3)),
             p1 = 2.632 − 0.00094 Z,  p2 = 0.401 + 0.00187 Z,  p3 = 1.313 − 0.0686 ln(E/GeV)

The fraction within r of each term is r²/(r² + R²). Photons: GFlash starts an electron shower of
the photon's energy after an exponential conversion depth of mean 9/7 X0 (GenerateExponential).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from protoseg.detector import ARGON

__all__ = ["GFLASH_ARGON", "GflashMedium", "longitudinal_parameters", "longitudinal_profile",
           "radial_containment", "depth_quantiles_x0"]


@dataclass(frozen=True)
class GflashMedium:
    """The medium as GFlash sees it: X0 in g/cm² and cm, effective Z and A."""

    z: float = 18.0
    a: float = 39.948
    radiation_length_g_per_cm2: float = 19.55  # PDG argon
    radiation_length_cm: float = ARGON.radiation_length_cm

    @property
    def critical_energy_mev(self) -> float:
        return 2.66 * (self.radiation_length_g_per_cm2 * self.z / self.a) ** 1.1

    @property
    def moliere_radius_cm(self) -> float:
        return self.radiation_length_cm * 21.0 / self.critical_energy_mev


GFLASH_ARGON = GflashMedium()
_PHOTON_CONVERSION_X0 = 9.0 / 7.0


def longitudinal_parameters(energy_mev: float, medium: GflashMedium = GFLASH_ARGON) -> tuple[float, float, float]:
    """(T, α, β) of the average electron-shower profile (T in X0, β in 1/X0)."""
    ln_y = np.log(energy_mev / medium.critical_energy_mev)
    t_max = ln_y - 0.858
    alpha = 0.21 + (0.492 + 2.38 / medium.z) * ln_y
    return t_max, alpha, (alpha - 1.0) / t_max


def _electron_profile(t_x0: np.ndarray, energy_mev: float, medium: GflashMedium) -> np.ndarray:
    _, alpha, beta = longitudinal_parameters(energy_mev, medium)
    t = np.maximum(np.asarray(t_x0, dtype=float), 1e-12)
    return np.exp((alpha - 1.0) * np.log(beta * t) + np.log(beta) - beta * t - gammaln(alpha))


def longitudinal_profile(t_x0: np.ndarray, energy_mev: float, photon: bool = False,
                         medium: GflashMedium = GFLASH_ARGON) -> np.ndarray:
    """(1/E) dE/dt (per X0) at depths ``t_x0``; photons convolved with their Exp(9/7 X0) conversion depth."""
    t = np.asarray(t_x0, dtype=float)
    if not photon:
        return _electron_profile(t, energy_mev, medium)
    s = np.linspace(0.0, 1.0, 401)[:, None] * t[None, :]  # conversion depth s in [0, t]
    w = np.exp(-s / _PHOTON_CONVERSION_X0) / _PHOTON_CONVERSION_X0
    return np.trapezoid(w * _electron_profile(t[None, :] - s, energy_mev, medium), s, axis=0)


def _radial_terms(energy_mev: float, tau: np.ndarray, medium: GflashMedium) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ln_e = np.log(energy_mev * 1e-3)
    z = medium.z
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3, k4 = 0.659 - 0.00309 * z, 0.645, -2.59, 0.3585 + 0.0412 * ln_e
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2, p3 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z, 1.313 - 0.0686 * ln_e
    x = (p2 - tau) / p3
    p_core = np.clip(p1 * np.exp(x - np.exp(x)), 0.0, 1.0)
    return r_core, r_tail, p_core


def radial_containment(radius_cm: np.ndarray | float, energy_mev: float, photon: bool = False,
                       medium: GflashMedium = GFLASH_ARGON, max_depth_x0: float = 60.0) -> np.ndarray:
    """Fraction of the shower energy within ``radius_cm`` of the axis, averaged over the depth profile."""
    r = np.atleast_1d(np.asarray(radius_cm, dtype=float)) / medium.moliere_radius_cm
    t_max, _, _ = longitudinal_parameters(energy_mev, medium)
    depth = np.linspace(1e-3, max_depth_x0, 3000)
    weight_e = _electron_profile(depth, energy_mev, medium)
    tau = depth / t_max
    r_core, r_tail, p_core = _radial_terms(energy_mev, tau, medium)
    rr = r[:, None] ** 2
    inside = p_core * rr / (rr + r_core ** 2) + (1.0 - p_core) * rr / (rr + r_tail ** 2)
    # the radial law follows the electron shower's own depth, so a photon's conversion depth does not change it
    out = np.trapezoid(weight_e * inside, depth, axis=1) / np.trapezoid(weight_e, depth)
    return out if np.ndim(radius_cm) else out[0]


def depth_quantiles_x0(energy_mev: float, quantiles=(0.5, 0.9, 0.95), photon: bool = False,
                       medium: GflashMedium = GFLASH_ARGON, max_depth_x0: float = 60.0) -> np.ndarray:
    """Depths (X0) holding the given fractions of the shower energy."""
    depth = np.linspace(0.0, max_depth_x0, 6001)
    f = longitudinal_profile(depth, energy_mev, photon, medium)
    c = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(depth))])
    c /= c[-1]
    return np.interp(np.asarray(quantiles, dtype=float), c, depth)
