"""Sources of simulated events: H4 beam, halo, cosmic rays, particle gun, and the refusal of bad settings."""
from __future__ import annotations

import numpy as np
import pytest

from protoseg.errors import InputError
from protoseg.sim import physics as ph
from protoseg.sim import sources as src
from protoseg.sim.generator import (COSMIC_TIME_MAX_US, COSMIC_TIME_MIN_US, SourceConfig, TransportConfig,
                                    generate_truth, gun_momentum_gev_for_kinetic, validate_config)
from protoseg.sim.transport import ACTIVE_BOX_MAX_CM, ACTIVE_BOX_MIN_CM
from protoseg.sim.truth import ORIGIN_BEAM, ORIGIN_COSMIC, ORIGIN_HALO

H4_COMPOSITION = {211: 0.626, -11: 0.206, 2212: 0.107, 321: 0.051, -13: 0.010}  # protodune-tdr h4beamline


def test_beam_composition_of_10k_particles_is_the_h4_composition():
    rng = np.random.default_rng(0)
    config = SourceConfig()
    n = 10_000
    beams = [src.sample_beam(rng, config, ORIGIN_BEAM) for _ in range(n)]
    pdg = np.array([b.pdg[0] for b in beams])
    for code, fraction in H4_COMPOSITION.items():
        observed = np.mean(pdg == code)
        sigma = np.sqrt(fraction * (1.0 - fraction) / n)
        assert abs(observed - fraction) < 4.0 * sigma, (code, observed, fraction)
    # momentum spread and entry point
    mass = np.array([ph.PARTICLES[int(b.pdg[0])].mass_mev for b in beams])
    momentum = ph.momentum_from_kinetic(np.array([b.kinetic_mev[0] for b in beams]), mass) * 1e-3
    assert momentum.mean() == pytest.approx(7.0, rel=0.005)
    assert momentum.std() / 7.0 == pytest.approx(0.06, rel=0.05)
    pos = np.array([b.pos[0] for b in beams])
    assert pos.mean(axis=0) == pytest.approx([-27.9, 424.4, 3.8], abs=0.2)
    assert pos[:, 0].std() == pytest.approx(config.beam_position_sigma_cm, rel=0.05)
    direction = np.array([b.dir[0] for b in beams]).mean(axis=0)
    expected = np.array(config.beam_direction) / np.linalg.norm(config.beam_direction)
    assert direction / np.linalg.norm(direction) == pytest.approx(expected, abs=2e-3)
    assert all(b.t_us[0] == 0.0 for b in beams[:100])


def test_cosmic_rate_angles_and_charge_ratio():
    rng = np.random.default_rng(1)
    config = SourceConfig()
    window_s = (config.cosmic_time_max_us - config.cosmic_time_min_us) * 1e-6
    batches = [src.sample_cosmics(rng, config, ORIGIN_COSMIC) for _ in range(200)]
    cosmics = src.Primaries.concatenate(batches)
    # PHYSICS.md: ≈ 10 kHz of muons through the TPC (I0 = 70 /m²/s/sr, cos²θ)
    rate_hz = len(cosmics) / (200 * window_s)
    assert rate_hz == pytest.approx(10_000.0, rel=0.1)
    cos_zenith = -cosmics.dir[:, 1]
    assert np.all(cos_zenith > 0.0)  # all going down
    # Entering through any face: the rate per solid angle is ∝ cos²θ × projected area; the top face
    # alone sees the cos³θ of a flat plane: ⟨cos θ⟩ = 4/5.
    on_top = np.isclose(cosmics.pos[:, 1], ACTIVE_BOX_MAX_CM[1], atol=1e-3)
    assert cos_zenith[on_top].mean() == pytest.approx(0.8, abs=0.01)
    inside = np.all((cosmics.pos >= ACTIVE_BOX_MIN_CM - 1e-3) & (cosmics.pos <= ACTIVE_BOX_MAX_CM + 1e-3), axis=1)
    assert inside.all()
    mu_plus = np.mean(cosmics.pdg == -13)
    assert mu_plus / (1.0 - mu_plus) == pytest.approx(1.27, rel=0.08)
    assert cosmics.t_us.min() >= COSMIC_TIME_MIN_US and cosmics.t_us.max() <= COSMIC_TIME_MAX_US
    energy_gev = (cosmics.kinetic_mev + ph.MUON_MASS_MEV) * 1e-3
    assert 3.5 < energy_gev.mean() < 6.0  # PDG: mean ≈ 4 GeV at sea level
    momentum_gev = ph.momentum_from_kinetic(cosmics.kinetic_mev, ph.MUON_MASS_MEV) * 1e-3
    assert momentum_gev.min() >= config.cosmic_min_momentum_gev - 1e-9


def test_cosmic_time_window_covers_every_track_that_can_reach_the_readout():
    # a muon at t lands at tick 500 + (t + drift)/0.5 µs; drift up to 359.4 cm / 0.1565 cm/µs
    full_drift_us = 359.4 / 0.1565
    assert COSMIC_TIME_MIN_US <= -250.0 - full_drift_us
    assert COSMIC_TIME_MAX_US >= 2750.0


def test_cosmic_spectrum_is_gaisser_at_high_energy_and_gives_the_pdg_intensity():
    # Guan et al. 2015 reduce to Gaisser's formula far above the 3.64 GeV correction
    e = 1000.0
    gaisser = 0.14 * e ** -2.7 * (1 / (1 + 1.1 * e / 115) + 0.054 / (1 + 1.1 * e / 850))
    assert src.muon_spectrum_guan(e, 1.0) == pytest.approx(gaisser, rel=0.02)
    # PDG: vertical intensity above 1 GeV/c ≈ 70 m⁻² s⁻¹ sr⁻¹
    energy = np.geomspace(np.hypot(1.0, ph.MUON_MASS_MEV * 1e-3), 1e5, 20_000)
    intensity_per_m2 = np.trapezoid(src.muon_spectrum_guan(energy, 1.0), energy) * 1e4
    assert intensity_per_m2 == pytest.approx(70.0, rel=0.2)


def test_halo_muons_run_parallel_to_the_beam_at_random_times():
    rng = np.random.default_rng(2)
    config = SourceConfig()
    halo = src.Primaries.concatenate([src.sample_halo(rng, config, ORIGIN_HALO) for _ in range(100)])
    area_m2 = 718.8 * 598.4 * 1e-4
    assert len(halo) / 100 == pytest.approx(config.halo_muons_per_m2 * area_m2, rel=0.2)
    beam_dir = np.array(config.beam_direction) / np.linalg.norm(config.beam_direction)
    assert np.all(halo.dir @ beam_dir > np.cos(0.12))
    assert set(np.abs(halo.pdg)) == {13}
    assert np.all(np.abs(halo.t_us) <= 3000.0)
    assert np.all(halo.origin == ORIGIN_HALO)


def test_a_gun_event_holds_the_gun_particle_in_row_0_and_nothing_else_primary():
    rng = np.random.default_rng(3)
    config = SourceConfig(beam=False, halo=False, cosmics=False, gun_pdg=211, gun_momentum_gev=1.0)
    truth = generate_truth(rng, config, TransportConfig())
    p = truth.particles
    assert p["pdg"][0] == 211 and truth.beam_pdg == 211
    assert truth.beam_momentum_gev == pytest.approx(1.0, rel=1e-5)
    assert np.sum(p["parent_id"] == -1) == 1
    assert (p["start_x"][0], p["start_y"][0], p["start_z"][0]) == pytest.approx((-27.9, 424.4, 3.8), abs=1e-4)
    assert np.all(p["origin"] == ORIGIN_BEAM)


def test_a_gun_outside_the_tpc_aimed_at_it_starts_where_it_enters():
    config = SourceConfig(beam=False, halo=False, cosmics=False, gun_pdg=13, gun_momentum_gev=1.0,
                          gun_position_cm=(-100.0, 300.0, -50.0), gun_direction=(0.0, 0.0, 1.0))
    truth = generate_truth(np.random.default_rng(0), config, TransportConfig())
    assert truth.particles["start_z"][0] == pytest.approx(0.0, abs=1e-3)


def test_gun_momentum_for_a_kinetic_energy():
    p = gun_momentum_gev_for_kinetic(2212, 200.0)
    assert p == pytest.approx(0.64444, abs=1e-5)  # sqrt(200 × (200 + 2 × 938.272)) MeV/c


@pytest.mark.parametrize("sources, message", [
    (SourceConfig(beam_momentum_gev=0.0), "beam momentum must be positive"),
    (SourceConfig(beam_momentum_gev=-7.0), "beam momentum must be positive"),
    (SourceConfig(beam_composition=(0.5, 0.5, -0.1, 0.0, 0.0)), "beam composition"),
    (SourceConfig(gun_pdg=99, gun_momentum_gev=1.0), "gun PDG code 99"),
    (SourceConfig(gun_pdg=13), "exactly one of a momentum"),
    (SourceConfig(gun_pdg=13, gun_momentum_gev=0.0), "gun momentum must be positive"),
    (SourceConfig(gun_pdg=13, gun_momentum_gev=1.0, gun_position_cm=(0.0, 1000.0, 0.0), gun_direction=(0.0, 1.0, 0.0)),
     "never enters it"),
    (SourceConfig(gun_pdg=13, gun_momentum_gev=1.0, gun_direction=(0.0, 0.0, 0.0)), "zero vector"),
    (SourceConfig(gun_momentum_gev=1.0), "without a gun PDG code"),
    (SourceConfig(beam=True, gun_pdg=13, gun_momentum_gev=1.0), "a gun replaces the beam"),
    (SourceConfig(cosmic_time_min_us=10.0, cosmic_time_max_us=0.0), "window"),
    (SourceConfig(beam_momentum_gev=float("nan")), "finite"),
])
def test_bad_source_settings_are_refused_in_one_line(sources, message):
    with pytest.raises(InputError, match=message) as info:
        validate_config(sources, TransportConfig())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("transport, message", [
    (TransportConfig(step_cm=0.0), "step length must be positive"),
    (TransportConfig(step_cm=10.0), "longer than 5 cm"),
    (TransportConfig(em_cut_mev=-1.0), "em cut mev must be positive"),
    (TransportConfig(mu_capture_fraction=1.5), "capture fraction"),
])
def test_bad_transport_settings_are_refused(transport, message):
    with pytest.raises(InputError, match=message):
        validate_config(SourceConfig(), transport)
