"""Electromagnetic showers in liquid argon: photons, and electrons above the shower cut.

A Monte Carlo of the shower tree, vectorised over all photons (or all energetic electrons) of an
event at once:

* electrons and positrons above ``em_cut_mev`` move in straight segments between bremsstrahlung
  emissions of photons above ``brem_photon_min_mev`` (Bethe–Heitler complete-screening spectrum,
  dσ/dk ∝ (4/3 − 4/3 y + y²)/k with argon's X0 = 14.0 cm), losing their collision energy
  (Rohrlich–Carlson dE/dx) evenly along each segment and scattering by the Highland angle of the
  segment; below the cut they are handed to the charged-particle transport (Landau fluctuations,
  multiple scattering, range-out);
* photons: Compton scattering, pair production and photoabsorption with the cross sections of NIST
  XCOM for argon (incoherent scattering, photoelectric, pair in the nuclear + electron field;
  log-log interpolation of the tabulated values), Klein–Nishina for the Compton final state and
  Bethe–Heitler for the pair energy sharing; coherent (Rayleigh) scattering, 0.6% of μ at 1 MeV and
  nearly forward, is left out; photons below ``photon_cut_mev`` are absorbed where they next interact.

The Molière radius (9.04 cm) is not an input: the lateral spread comes from the scattering of the
electrons and the Compton photons, and the tests check it.
"""
from __future__ import annotations

import numpy as np

from protoseg.detector import ARGON
from protoseg.sim import physics as ph
from protoseg.sim.directions import rotate_from_axis
from protoseg.sim.transport import ray_box

__all__ = ["compton_per_cm", "klein_nishina_per_cm", "pair_per_cm", "photoelectric_per_cm", "photon_attenuation_per_cm",
           "brem_photons_per_cm", "sample_brem_fraction", "sample_klein_nishina", "sample_pair_fraction"]

_AVOGADRO = 6.02214076e23
_ELECTRONS_PER_CM3 = ARGON.density_g_per_cm3 * _AVOGADRO * ARGON.z_over_a
_CLASSICAL_RADIUS_CM = 2.8179403262e-13
M_E = ph.ELECTRON_MASS_MEV


# NIST XCOM (Berger & Hubbell, NIST Standard Reference Database 8), argon (Z = 18, A = 39.948):
# photon energy (MeV) and cross sections in barn/atom for incoherent (Compton) scattering,
# photoelectric absorption and pair production (nuclear + electron field). From the XCOM data file
# MDATX3.018. μ/ρ (cm²/g) = σ · N_A / A; with coherent scattering added the totals are the XCOM
# values 0.0576 (1 MeV), 0.0245 (10 MeV) and 0.0307 cm²/g (100 MeV).
_XCOM_ARGON = np.array([
    (0.01, 6.161, 4134, 0), (0.015, 7.33, 1278, 0), (0.02, 8.048, 544.4, 0), (0.03, 8.727, 159.4, 0),
    (0.04, 8.961, 65.73, 0), (0.05, 9.013, 32.81, 0), (0.06, 8.975, 18.53, 0), (0.08, 8.767, 7.479, 0),
    (0.1, 8.493, 3.691, 0), (0.15, 7.8, 1.024, 0), (0.2, 7.209, 0.4166, 0), (0.3, 6.314, 0.1215, 0),
    (0.4, 5.674, 0.05293, 0), (0.5, 5.189, 0.02882, 0), (0.6, 4.805, 0.01805, 0), (0.8, 4.225, 0.009158, 0),
    (1, 3.801, 0.005696, 0), (1.022, 3.761, 0.005389, 0), (1.25, 3.4, 0.003651, 0.002826),
    (1.5, 3.09, 0.002639, 0.01507), (2, 2.638, 0.001639, 0.0588), (2.044, 2.605, 0.001584, 0.06336),
    (3, 2.076, 0.0008991, 0.1665), (4, 1.731, 0.0006101, 0.27), (5, 1.495, 0.000459, 0.3627),
    (6, 1.322, 0.0003669, 0.4462), (7, 1.188, 0.0003052, 0.5208), (8, 1.081, 0.000261, 0.5882),
    (9, 0.9938, 0.0002279, 0.6493), (10, 0.9208, 0.0002022, 0.7049), (11, 0.8588, 0.0001817, 0.7555),
    (12, 0.8054, 0.0001649, 0.8019), (13, 0.7588, 0.0001509, 0.8449), (14, 0.7178, 0.0001391, 0.8851),
    (15, 0.6815, 0.000129, 0.9226), (16, 0.649, 0.0001203, 0.9579), (18, 0.5932, 0.0001059, 1.022),
    (20, 0.547, 9.463e-05, 1.08), (22, 0.5081, 8.55e-05, 1.132), (24, 0.4748, 7.797e-05, 1.18),
    (26, 0.4458, 7.166e-05, 1.223), (28, 0.4205, 6.629e-05, 1.264), (30, 0.3982, 6.167e-05, 1.301),
    (40, 0.3164, 4.573e-05, 1.454), (50, 0.2642, 3.633e-05, 1.568), (60, 0.2276, 3.014e-05, 1.657),
    (80, 0.1795, 2.247e-05, 1.791), (100, 0.149, 1.791e-05, 1.887), (150, 0.1061, 1.189e-05, 2.043),
    (200, 0.08318, 8.894e-06, 2.139), (300, 0.05896, 5.915e-06, 2.253), (400, 0.04617, 4.431e-06, 2.32),
    (500, 0.03822, 3.542e-06, 2.364), (600, 0.03273, 2.951e-06, 2.396), (800, 0.02556, 2.212e-06, 2.439),
    (1000, 0.02103, 1.769e-06, 2.467), (1500, 0.01469, 1.179e-06, 2.508), (2000, 0.01137, 8.837e-07, 2.53),
    (3000, 0.007903, 5.89e-07, 2.555), (4000, 0.0061, 4.417e-07, 2.568), (5000, 0.004988, 3.533e-07, 2.576),
    (6000, 0.004229, 2.944e-07, 2.582), (8000, 0.003259, 2.208e-07, 2.59), (1e4, 0.00266, 1.766e-07, 2.594),
    (1.5e4, 0.001839, 1.178e-07, 2.601), (2e4, 0.001414, 8.832e-08, 2.606), (3e4, 0.0009748, 5.888e-08, 2.609),
    (4e4, 0.0007484, 4.416e-08, 2.611), (5e4, 0.0006095, 3.533e-08, 2.612), (6e4, 0.0005152, 2.944e-08, 2.612),
    (8e4, 0.000395, 2.208e-08, 2.614), (1e5, 0.0003214, 1.766e-08, 2.615),
])
_BARN_TO_PER_CM = 1e-24 * _AVOGADRO / 39.948 * ARGON.density_g_per_cm3
_XCOM_LOG_E = np.log(_XCOM_ARGON[:, 0])
_PAIR_THRESHOLD_MEV = 2.0 * M_E


def _xcom_loglog(energy_mev: np.ndarray, column: int) -> np.ndarray:
    """Log-log interpolation of one XCOM column (1/cm); constant beyond the table's ends."""
    e = np.clip(np.asarray(energy_mev, dtype=float), _XCOM_ARGON[0, 0], _XCOM_ARGON[-1, 0])
    return np.exp(np.interp(np.log(e), _XCOM_LOG_E, np.log(_XCOM_ARGON[:, column]))) * _BARN_TO_PER_CM


def klein_nishina_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    """Klein–Nishina attenuation (1/cm) on argon's electrons taken as free (the Compton final state's law)."""
    k = np.maximum(np.asarray(energy_mev, dtype=float), 1e-4) / M_E
    log = np.log1p(2.0 * k)
    sigma = 2.0 * np.pi * _CLASSICAL_RADIUS_CM ** 2 * (
        (1.0 + k) / k ** 2 * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - log / k) + log / (2.0 * k)
        - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2)
    return sigma * _ELECTRONS_PER_CM3


def compton_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    """Incoherent (Compton) scattering attenuation (1/cm), XCOM: Klein–Nishina with atomic binding."""
    return _xcom_loglog(energy_mev, 1)


def pair_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    """Pair production attenuation (1/cm) in the nuclear and electron fields, XCOM; 7/(9 X0) at high energy.

    Between threshold (2mc²) and the first tabulated non-zero value (1.25 MeV) it rises linearly.
    """
    e = np.asarray(energy_mev, dtype=float)
    above = e >= 1.25
    tabulated = np.exp(np.interp(np.log(np.maximum(e, 1.25)), _XCOM_LOG_E[18:], np.log(_XCOM_ARGON[18:, 3])))
    near = np.clip((e - _PAIR_THRESHOLD_MEV) / (1.25 - _PAIR_THRESHOLD_MEV), 0.0, 1.0) * _XCOM_ARGON[18, 3]
    return np.where(above, tabulated, near) * _BARN_TO_PER_CM


def photoelectric_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    """Photoabsorption (1/cm), XCOM (0.0556 cm²/g at 100 keV, falling ≈ E^-3.1 below 300 keV)."""
    return _xcom_loglog(energy_mev, 2)


def photon_attenuation_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    return compton_per_cm(energy_mev) + pair_per_cm(energy_mev) + photoelectric_per_cm(energy_mev)


def brem_photons_per_cm(kinetic_mev: np.ndarray, k_min_mev: float) -> np.ndarray:
    """Rate (1/cm) of bremsstrahlung photons above ``k_min_mev`` (complete screening)."""
    e = np.asarray(kinetic_mev, dtype=float) + M_E
    y_min = np.minimum(k_min_mev / e, 1.0)
    y_max = np.asarray(kinetic_mev, dtype=float) / e
    rate = (4.0 / 3.0 * (np.log(np.maximum(y_max, 1e-30) / y_min) - (y_max - y_min))
            + 0.5 * (y_max ** 2 - y_min ** 2)) / ARGON.radiation_length_cm
    return np.where(y_max > y_min, rate, 0.0)


def sample_brem_fraction(rng: np.random.Generator, y_min: np.ndarray, y_max: np.ndarray) -> np.ndarray:
    """Photon energy fraction y = k/E from (4/3)(1 − y + 3y²/4)/y on [y_min, y_max] (accept-reject on 1/y)."""
    out = np.empty(y_min.shape[0])
    todo = np.arange(y_min.shape[0])
    while todo.size:
        y = y_min[todo] * (y_max[todo] / y_min[todo]) ** rng.random(todo.size)
        accept = rng.random(todo.size) < 1.0 - y + 0.75 * y * y
        out[todo[accept]] = y[accept]
        todo = todo[~accept]
    return out


def sample_klein_nishina(rng: np.random.Generator, energy_mev: np.ndarray) -> np.ndarray:
    """Scattered-photon energy fraction ε = E'/E (the Geant4 G4KleinNishinaCompton sampling)."""
    k = energy_mev / M_E
    eps0 = 1.0 / (1.0 + 2.0 * k)
    alpha1 = -np.log(eps0)
    alpha2 = 0.5 * (1.0 - eps0 * eps0)
    out = np.empty(k.shape[0])
    todo = np.arange(k.shape[0])
    while todo.size:
        a1, a2, e0, kk = alpha1[todo], alpha2[todo], eps0[todo], k[todo]
        r1, r2, r3 = rng.random((3, todo.size))
        first = a1 / (a1 + a2) > r1
        eps = np.where(first, np.exp(-a1 * r2), np.sqrt(e0 * e0 + (1.0 - e0 * e0) * r2))
        one_minus_cos = (1.0 - eps) / (eps * kk)
        sin2 = one_minus_cos * (2.0 - one_minus_cos)
        accept = 1.0 - eps * sin2 / (1.0 + eps * eps) >= r3
        out[todo[accept]] = eps[accept]
        todo = todo[~accept]
    return out


def sample_pair_fraction(rng: np.random.Generator, energy_mev: np.ndarray) -> np.ndarray:
    """Electron's share ε of the photon energy: Bethe–Heitler ∝ 1 − (4/3)ε(1 − ε) on [m/E, 1 − m/E]."""
    lo = M_E / energy_mev
    out = np.empty(energy_mev.shape[0])
    todo = np.arange(energy_mev.shape[0])
    while todo.size:
        eps = lo[todo] + (1.0 - 2.0 * lo[todo]) * rng.random(todo.size)
        accept = rng.random(todo.size) < 1.0 - 4.0 / 3.0 * eps * (1.0 - eps)
        out[todo[accept]] = eps[accept]
        todo = todo[~accept]
    return out


def _forward_angle_cos(rng: np.random.Generator, energy_mev: np.ndarray) -> np.ndarray:
    """cos θ with θ ~ (m/E)√(u/(1−u)): the ∝ θ/(1 + (Eθ/m)²)² angular law of brem and pair products."""
    u = rng.uniform(0.0, 0.999, energy_mev.shape[0])
    theta = M_E / np.maximum(energy_mev, M_E) * np.sqrt(u / (1.0 - u))
    return np.cos(np.minimum(theta, np.pi))


def electron_segments(rng: np.random.Generator, pos: np.ndarray, direction: np.ndarray, kinetic_mev: np.ndarray,
                      t_us: np.ndarray, positron: np.ndarray, em_cut_mev: float, k_min_mev: float, msc: bool) -> dict:
    """Move energetic e± from brem to brem until they fall below ``em_cut_mev`` or leave the box.

    Returns straight segments (start, end, energy lost, index of the electron, start time, kinetic
    energy at the start), the
    brem photons (index, energy, position, direction, time), and each electron's fate: final
    position, direction, kinetic energy, time, total path, and whether it escaped.
    """
    n = kinetic_mev.shape[0]
    pos = pos.copy()
    direction = direction.copy()
    kinetic = kinetic_mev.astype(float).copy()
    t = t_us.astype(float).copy()
    path = np.zeros(n)
    escaped = np.zeros(n, bool)
    segments: list[tuple] = []
    photons: list[tuple] = []
    active = np.arange(n)
    while active.size:
        kin = kinetic[active]
        rate = brem_photons_per_cm(kin, k_min_mev)
        d_brem = rng.exponential(1.0, active.size) / np.maximum(rate, 1e-30)
        dedx = np.where(positron[active], ph.electron_dedx(kin, positron=True), ph.electron_dedx(kin))
        d_cut = np.maximum(kin - em_cut_mev, 0.0) / dedx
        _, d_exit = ray_box(pos[active], direction[active])
        d_exit = np.maximum(d_exit, 0.0)
        d = np.minimum(np.minimum(d_brem, d_cut), d_exit)
        start = pos[active].copy()
        end = start + direction[active] * d[:, None]
        lost = np.minimum(dedx * d, kin)
        segments.append((start, end, lost, active.copy(), t[active].copy(), kin.copy()))
        pos[active] = end
        t[active] += d / ph.SPEED_OF_LIGHT_CM_PER_US
        path[active] += d
        kin = kin - lost
        kinetic[active] = kin
        did_exit = (d_exit <= d_brem) & (d_exit <= d_cut)
        escaped[active[did_exit]] = True
        brem = (d_brem < d_cut) & (d_brem < d_exit)
        if msc and d.size:
            p = ph.momentum_from_kinetic(np.maximum(kin, 1e-3), M_E)
            beta = p / (kin + M_E)
            theta0 = ph.highland_theta0(p, beta, np.maximum(d, 1e-4))
            theta = theta0 * np.sqrt(rng.chisquare(2, d.size))  # 2D Gaussian → space angle
            moved = ~did_exit
            new_dir = rotate_from_axis(direction[active], np.cos(np.minimum(theta, np.pi)), rng.uniform(0, 2 * np.pi, d.size))
            direction[active[moved]] = new_dir[moved]
        if brem.any():
            idx = active[brem]
            e_tot = kinetic[idx] + M_E
            y = sample_brem_fraction(rng, np.minimum(k_min_mev / e_tot, 1.0), kinetic[idx] / e_tot)
            k = np.minimum(y * e_tot, kinetic[idx])
            cos_theta = _forward_angle_cos(rng, e_tot)
            photon_dir = rotate_from_axis(direction[idx], cos_theta, rng.uniform(0, 2 * np.pi, idx.size))
            photons.append((idx, k, pos[idx].copy(), photon_dir, t[idx].copy()))
            kinetic[idx] -= k
        still = brem & (kinetic[active] > em_cut_mev)
        active = active[still]
    if segments:
        seg = tuple(np.concatenate([s[i] for s in segments]) for i in range(6))
    else:
        seg = (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if photons:
        pho = tuple(np.concatenate([s[i] for s in photons]) for i in range(5))
    else:
        pho = (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))
    return {"segments": seg, "photons": pho, "pos": pos, "dir": direction, "kinetic": kinetic, "t": t,
            "path": path, "escaped": escaped}


def photon_interactions(rng: np.random.Generator, pos: np.ndarray, direction: np.ndarray, energy_mev: np.ndarray,
                        t_us: np.ndarray, photon_cut_mev: float) -> dict:
    """Follow photons through Compton scatters until they convert, are absorbed or leave the box.

    Returns the electrons and positrons made (index of the photon, pdg, kinetic, position,
    direction, time, process), energy absorbed at points (index, energy, position, time), and each
    photon's fate (final position, path, end process).
    """
    n = energy_mev.shape[0]
    pos = pos.copy()
    direction = direction.copy()
    energy = energy_mev.astype(float).copy()
    t = t_us.astype(float).copy()
    path = np.zeros(n)
    end_process = np.full(n, "escape", dtype=object)
    leptons: list[tuple] = []
    absorbed: list[tuple] = []
    active = np.arange(n)
    while active.size:
        e = energy[active]
        mu_c, mu_p, mu_pe = compton_per_cm(e), pair_per_cm(e), photoelectric_per_cm(e)
        mu = mu_c + mu_p + mu_pe
        d = rng.exponential(1.0, active.size) / mu
        _, d_exit = ray_box(pos[active], direction[active])
        d_exit = np.maximum(d_exit, 0.0)
        leaves = d >= d_exit
        d = np.minimum(d, d_exit)
        pos[active] += direction[active] * d[:, None]
        t[active] += d / ph.SPEED_OF_LIGHT_CM_PER_US
        path[active] += d
        inside = ~leaves
        idx = active[inside]
        e = e[inside]
        u = rng.random(idx.size) * mu[inside]
        low = e < photon_cut_mev
        is_pe = (~low) & (u < mu_pe[inside])
        is_pair = (~low) & (~is_pe) & (u < mu_pe[inside] + mu_p[inside])
        is_compton = (~low) & (~is_pe) & (~is_pair)
        # absorbed here (below the cut, or photoelectric): the energy is left at the point or as an electron
        gone = low | is_pe
        if low.any():
            absorbed.append((idx[low], e[low], pos[idx[low]].copy(), t[idx[low]].copy()))
        if is_pe.any():
            j = idx[is_pe]
            leptons.append((j, np.full(j.size, 11), e[is_pe], pos[j].copy(), direction[j].copy(), t[j].copy(),
                            np.full(j.size, "phot", dtype=object)))
        end_process[idx[gone]] = "phot"
        if is_pair.any():
            j = idx[is_pair]
            ej = e[is_pair]
            eps = sample_pair_fraction(rng, ej)
            e_minus = eps * ej - M_E
            e_plus = (1.0 - eps) * ej - M_E
            phi = rng.uniform(0, 2 * np.pi, j.size)
            d_minus = rotate_from_axis(direction[j], _forward_angle_cos(rng, e_minus + M_E), phi)
            d_plus = rotate_from_axis(direction[j], _forward_angle_cos(rng, e_plus + M_E), phi + np.pi)
            conv = np.full(j.size, "conv", dtype=object)
            leptons.append((j, np.full(j.size, 11), np.maximum(e_minus, 0.0), pos[j].copy(), d_minus, t[j].copy(), conv))
            leptons.append((j, np.full(j.size, -11), np.maximum(e_plus, 0.0), pos[j].copy(), d_plus, t[j].copy(), conv))
            end_process[j] = "conv"
        if is_compton.any():
            j = idx[is_compton]
            ej = e[is_compton]
            eps = sample_klein_nishina(rng, ej)
            cos_g = np.clip(1.0 - (1.0 - eps) / (eps * ej / M_E), -1.0, 1.0)
            new_dir = rotate_from_axis(direction[j], cos_g, rng.uniform(0, 2 * np.pi, j.size))
            p_electron = ej[:, None] * direction[j] - (eps * ej)[:, None] * new_dir
            norm = np.linalg.norm(p_electron, axis=1, keepdims=True)
            e_dir = p_electron / np.where(norm > 0, norm, 1.0)
            leptons.append((j, np.full(j.size, 11), ej * (1.0 - eps), pos[j].copy(), e_dir, t[j].copy(),
                            np.full(j.size, "compt", dtype=object)))
            energy[j] = eps * ej
            direction[j] = new_dir
        active = idx[is_compton]
    if leptons:
        lep = tuple(np.concatenate([s[i] for s in leptons]) for i in range(7))
    else:
        lep = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)),
               np.zeros(0), np.zeros(0, object))
    if absorbed:
        ab = tuple(np.concatenate([s[i] for s in absorbed]) for i in range(4))
    else:
        ab = (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros(0))
    return {"leptons": lep, "absorbed": ab, "pos": pos, "path": path, "end_process": end_process}
