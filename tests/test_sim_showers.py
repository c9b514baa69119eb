"""EM showers in argon against their references: XCOM photon cross sections, GFlash and the PDG profiles."""
from __future__ import annotations

import numpy as np
import pytest

from protoseg.detector import ARGON
from protoseg.sim import gflash, showers
from protoseg.sim.generator import SourceConfig, TransportConfig, generate_truth

# NIST XCOM, argon, total attenuation without coherent scattering (cm²/g)
XCOM_TOTAL_NO_COHERENT = {0.1: 0.1837, 1.0: 0.05739, 10.0: 0.02451, 100.0: 0.03069}
XCOM_PHOTOELECTRIC_100_KEV = 0.05564  # cm²/g


@pytest.mark.parametrize("energy_mev", sorted(XCOM_TOTAL_NO_COHERENT))
def test_photon_attenuation_is_xcom(energy_mev):
    mu_over_rho = showers.photon_attenuation_per_cm(energy_mev) / ARGON.density_g_per_cm3
    assert mu_over_rho == pytest.approx(XCOM_TOTAL_NO_COHERENT[energy_mev], rel=0.01)


def test_photoabsorption_at_100_kev_is_xcom_not_half_of_it():
    assert showers.photoelectric_per_cm(0.1) / ARGON.density_g_per_cm3 == pytest.approx(XCOM_PHOTOELECTRIC_100_KEV, rel=0.01)


def test_gflash_longitudinal_profile_is_normalised_and_peaks_at_t_max():
    t = np.linspace(0.0, 60.0, 20001)
    for energy in (1000.0, 7000.0):
        f = gflash.longitudinal_profile(t, energy)
        assert np.trapezoid(f, t) == pytest.approx(1.0, abs=1e-3)
        t_max, _, _ = gflash.longitudinal_parameters(energy)
        assert t[np.argmax(f)] == pytest.approx(t_max, abs=0.01)
        # GFlash: T = ln(E/Ec) − 0.858 with Ec = 2.66 (X0 Z/A)^1.1 = 29.1 MeV for argon
        assert t_max == pytest.approx(np.log(energy / 29.13) - 0.858, abs=0.01)
    photon = gflash.longitudinal_profile(t, 1000.0, photon=True)
    assert np.trapezoid(photon, t) == pytest.approx(1.0, abs=2e-3)
    assert np.trapezoid(photon * t, t) - np.trapezoid(gflash.longitudinal_profile(t, 1000.0) * t, t) == pytest.approx(9 / 7, abs=0.02)


def test_gflash_radial_containment_grows_to_one():
    r = np.array([0.5, 1.0, 3.5, 50.0]) * ARGON.moliere_radius_cm
    c = gflash.radial_containment(r, 3000.0)
    assert np.all(np.diff(c) > 0) and c[-1] > 0.995
    assert 0.75 < c[1] < 0.90  # GFlash in argon: ≈ 0.80 within the PDG Molière radius


@pytest.fixture(scope="module")
def one_gev_showers():
    start = (-150.0, 300.0, 50.0)
    source = SourceConfig(beam=False, halo=False, cosmics=False, gun_pdg=11, gun_kinetic_mev=1000.0,
                          gun_position_cm=start, gun_direction=(0.0, 0.0, 1.0))
    rng = np.random.default_rng(20)
    out = []
    for _ in range(6):
        d = generate_truth(rng, source, TransportConfig()).deposits
        e = d.energy_mev.astype(float)
        r = np.hypot(d.x_cm - start[0], d.y_cm - start[1])
        out.append((e, r, (d.z_cm - start[2]) / ARGON.radiation_length_cm))
    return out


def test_one_gev_shower_lateral_containment_lies_between_gflash_and_the_pdg(one_gev_showers):
    """Within 1 and 3.5 Molière radii: GFlash (argon) gives 0.77 and 0.945, the PDG's rule ≈ 0.90 and 0.99.

    The bounds hold the simulation to that band with room for 6 showers' spread (≈ 1%); a tail three
    times too heavy (0.85 → 0.80 at 1 R_M with 5% beyond 3.5 R_M at 1 GeV) would still pass the lower one,
    so the upper bounds are the PDG's and the lower ones GFlash's minus 3%.
    """
    rm = ARGON.moliere_radius_cm
    within = np.array([[e[r < f * rm].sum() / e.sum() for f in (1.0, 3.5)] for e, r, _ in one_gev_showers]).mean(axis=0)
    reference = gflash.radial_containment(np.array([1.0, 3.5]) * rm, 1000.0)
    assert reference[0] - 0.03 < within[0] < 0.92
    assert reference[1] - 0.02 < within[1] < 0.995


def test_one_gev_shower_depth_follows_gflash(one_gev_showers):
    depths = []
    for e, _, t in one_gev_showers:
        order = np.argsort(t)
        cumulative = np.cumsum(e[order]) / e.sum()
        depths.append([t[order][np.searchsorted(cumulative, q)] for q in (0.5, 0.9)])
    reference = gflash.depth_quantiles_x0(1000.0, (0.5, 0.9))
    assert np.mean(depths, axis=0) == pytest.approx(reference, rel=0.15)
