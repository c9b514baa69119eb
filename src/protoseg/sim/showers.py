"""Electromagnetic showers in liquid argon: photons, and electrons above the shower cut.

A Monte Carlo of the shower tree, vectorised over all photons (or all energetic electrons) of an
event at once:

* electrons and positrons above ``em_cut_mev`` move in straight segments between bremsstrahlung
  emissions of photons above ``brem_photon_min_mev`` (Bethe–Heitler complete-screening spectrum,
  dσ/dk ∝ (4/3 − 4/3 y + y²)/k with argon's X0 = 14.0 cm), losing their collision energy
  (Rohrlich–Carlson dE/dx) evenly along each segment and scattering by the Highland angle of the
  segment; below the cut they are handed to the charged-particle transport (Landau fluctuations,
  multiple scattering, range-out);
* photons: Compton scattering (Klein–Nishina, free electrons), pair production (Bethe–Heitler with
  complete screening at high energy, unscreened at a few tens of MeV, Maximon's threshold form
  near 2mc², all scaled to 7/(9 X0)) and photoabsorption (≈ Z⁴/E³ scaled to XCOM's 0.027 cm²/g at
  100 keV); photons below ``photon_cut_mev`` are absorbed where they next interact.

The Molière radius (9.04 cm) is not an input: the lateral spread comes from the scattering of the
electrons and the Compton photons, and the tests check it.
"""
from __future__ import annotations

import numpy as np

from protoseg.detector import ARGON
from protoseg.sim import physics as ph
from protoseg.sim.directions import rotate_from_axis
from protoseg.sim.transport import ray_box

__all__ = ["compton_per_cm", "pair_per_cm", "photoelectric_per_cm", "photon_attenuation_per_cm",
           "brem_photons_per_cm", "sample_brem_fraction", "sample_klein_nishina", "sample_pair_fraction"]

_AVOGADRO = 6.02214076e23
_ELECTRONS_PER_CM3 = ARGON.density_g_per_cm3 * _AVOGADRO * ARGON.z_over_a
_CLASSICAL_RADIUS_CM = 2.8179403262e-13
_ALPHA = 1.0 / 137.035999
_Z = 18.0
M_E = ph.ELECTRON_MASS_MEV


def compton_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    """Klein–Nishina attenuation (1/cm) on argon's electrons taken as free."""
    k = np.maximum(np.asarray(energy_mev, dtype=float), 1e-4) / M_E
    log = np.log1p(2.0 * k)
    sigma = 2.0 * np.pi * _CLASSICAL_RADIUS_CM ** 2 * (
        (1.0 + k) / k ** 2 * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - log / k) + log / (2.0 * k)
        - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2)
    return sigma * _ELECTRONS_PER_CM3


def _pair_shape(energy_mev: np.ndarray) -> np.ndarray:
    """σ_pair(E)/σ_pair(∞) for argon: Maximon near threshold, unscreened Bethe–Heitler, complete screening."""
    k = np.asarray(energy_mev, dtype=float) / M_E
    screened = 28.0 / 9.0 * np.log(183.0 * _Z ** (-1.0 / 3.0)) - 2.0 / 27.0
    unscreened = 28.0 / 9.0 * np.log(2.0 * np.maximum(k, 1.0)) - 218.0 / 27.0
    kk = np.maximum(k, 2.0)
    eps = (2.0 * kk - 4.0) / (2.0 + kk + 2.0 * np.sqrt(2.0 * kk))
    maximon = 2.0 * np.pi / 3.0 * ((kk - 2.0) / kk) ** 3 * (
        1.0 + 0.5 * eps + 23.0 / 40.0 * eps ** 2 + 11.0 / 60.0 * eps ** 3 + 29.0 / 960.0 * eps ** 4)
    maximon *= _Z / (_Z + 1.0)  # Maximon is the nuclear-field (Z²) part; the others carry Z(Z+1)
    shape = np.minimum(np.maximum(maximon, unscreened), screened) / screened
    return np.where(k > 2.0, shape, 0.0)


def pair_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    """Pair-production attenuation (1/cm): 7/(9 X0) at high energy."""
    return 7.0 / (9.0 * ARGON.radiation_length_cm) * _pair_shape(energy_mev)


def photoelectric_per_cm(energy_mev: np.ndarray) -> np.ndarray:
    """Photoabsorption (1/cm), ∝ E^-3 through 0.027 cm²/g at 100 keV (XCOM argon, approximate)."""
    e = np.maximum(np.asarray(energy_mev, dtype=float), 1e-3)
    return 0.027 * ARGON.density_g_per_cm3 * (e / 0.1) ** -3.0


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
