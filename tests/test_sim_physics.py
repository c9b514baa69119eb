"""Physics of the transport in liquid argon against the PHYSICS.md tables (PSTAR, Groom et al., PDG)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.stats import landau

from protoseg.detector import ARGON
from protoseg.sim import interactions as inter
from protoseg.sim import physics as ph
from protoseg.sim import transport as tr
from protoseg.sim.generator import SourceConfig, TransportConfig, generate_truth

PROTON_CSDA_CM = {10.0: 0.135, 100.0: 7.82, 200.0: 25.98, 500.0: 115.6, 1000.0: 319.1}  # NIST PSTAR via larreco
MUON_CSDA_CM = {100.0: 30.4, 500.0: 217.4, 1000.0: 441.5, 5000.0: 2024.0}  # Groom, Mokhov, Striganov via larreco
MUON_MPV_DEDX = {0.5: 1.63, 1.0: 1.65, 4.0: 1.735, 10.0: 1.77}  # MeV/cm over 0.479 cm, PDG Landau–Vavilov
WIRE_PITCH_CM = 0.479


def _gun(pdg: int, kinetic_mev: float, position=(0.0, 300.0, 10.0), direction=(0.0, 0.0, 1.0)) -> SourceConfig:
    return SourceConfig(beam=False, halo=False, cosmics=False, gun_pdg=pdg, gun_kinetic_mev=kinetic_mev,
                        gun_position_cm=position, gun_direction=direction)


def _landau_mode(samples: np.ndarray, scale_guess: float) -> float:
    """Most probable value from a Landau fit to the histogram core (how a detector physicist reads the MPV)."""
    peak = np.median(samples)
    lo, hi = peak - 4.0 * scale_guess, peak + 6.0 * scale_guess
    counts, edges = np.histogram(samples, bins=80, range=(lo, hi))
    centres = 0.5 * (edges[1:] + edges[:-1])

    def model(x, norm, loc, scale):
        return norm * landau.pdf((x - loc) / scale) / scale

    p0 = (counts.sum() * (edges[1] - edges[0]), peak, scale_guess)
    (norm, loc, scale), _ = curve_fit(model, centres, counts, p0=p0, sigma=np.sqrt(counts + 1.0))
    return loc + scale * ph.LANDAU_MODE


@pytest.mark.parametrize("kinetic_mev", sorted(PROTON_CSDA_CM))
def test_proton_csda_range_of_the_stopping_power_matches_pstar(kinetic_mev):
    assert ph.range_table(2212).range_cm_of(kinetic_mev) == pytest.approx(PROTON_CSDA_CM[kinetic_mev], rel=0.03)


@pytest.mark.parametrize("kinetic_mev", sorted(MUON_CSDA_CM))
def test_muon_csda_range_of_the_stopping_power_matches_groom(kinetic_mev):
    assert ph.range_table(13).range_cm_of(kinetic_mev) == pytest.approx(MUON_CSDA_CM[kinetic_mev], rel=0.03)


def test_minimum_ionisation_matches_pdg():
    # PDG: argon's minimum of the mean stopping power is 1.508 MeV cm²/g (2.105 MeV/cm at 1.396 g/cm³)
    t = np.geomspace(50.0, 5000.0, 2000)
    dedx = ph.bethe_dedx(t, ph.MUON_MASS_MEV) / ARGON.density_g_per_cm3
    assert dedx.min() == pytest.approx(1.508, rel=0.01)


@pytest.mark.parametrize("momentum_gev", sorted(MUON_MPV_DEDX))
def test_muon_most_probable_dedx_formula_matches_table(momentum_gev):
    t = ph.kinetic_from_momentum(momentum_gev * 1e3, ph.MUON_MASS_MEV)
    mpv = ph.most_probable_loss_mev(t, ph.MUON_MASS_MEV, WIRE_PITCH_CM) / WIRE_PITCH_CM
    assert mpv == pytest.approx(MUON_MPV_DEDX[momentum_gev], rel=0.03)


def _step_parameters(kinetic_mev: float, mass_mev: float, step_cm: float, t_cut_mev: float):
    bg = ph.beta_gamma(kinetic_mev, mass_mev)
    beta2 = bg * bg / (1.0 + bg * bg)
    xi = float(ph.landau_xi_mev(beta2, step_cm))
    t_up = min(float(ph.tmax_mev(kinetic_mev, mass_mev)), t_cut_mev)
    mean = float(ph.bethe_dedx(np.array([kinetic_mev]), mass_mev, t_cut_mev=t_cut_mev)[0]) * step_cm
    mpv = float(ph.most_probable_loss_mev(kinetic_mev, mass_mev, step_cm))
    return beta2, xi, t_up, mean, mpv


@pytest.mark.parametrize("momentum_gev", sorted(MUON_MPV_DEDX))
def test_sampled_muon_step_losses_peak_at_the_table_mpv_and_keep_the_mean(momentum_gev):
    rng = np.random.default_rng(11)
    t = float(ph.kinetic_from_momentum(momentum_gev * 1e3, ph.MUON_MASS_MEV))
    beta2, xi, t_up, mean, mpv = _step_parameters(t, ph.MUON_MASS_MEV, WIRE_PITCH_CM, 1.0)
    n = 300_000
    loss = ph.sample_step_loss(rng, np.full(n, mean), np.full(n, xi), np.full(n, mpv), np.full(n, t_up), np.full(n, beta2))
    assert loss.mean() == pytest.approx(mean, rel=0.005)
    mode = _landau_mode(loss / WIRE_PITCH_CM, xi / WIRE_PITCH_CM)
    assert mode == pytest.approx(MUON_MPV_DEDX[momentum_gev], rel=0.03)


@pytest.mark.parametrize("kinetic_mev", [200.0, 100.0, 50.0, 20.0])
def test_proton_step_loss_variance_is_bohr_in_the_vavilov_region(kinetic_mev):
    rng = np.random.default_rng(3)
    beta2, xi, t_up, mean, mpv = _step_parameters(kinetic_mev, ph.PROTON_MASS_MEV, 0.4, 1.0)
    n = 200_000
    loss = ph.sample_step_loss(rng, np.full(n, mean), np.full(n, xi), np.full(n, mpv), np.full(n, t_up), np.full(n, beta2))
    assert loss.mean() == pytest.approx(mean, rel=0.005)
    assert loss.var() == pytest.approx(xi * t_up * (1.0 - 0.5 * beta2), rel=0.06)


def _track_lengths(pdg: int, kinetic_mev: float, n: int, **transport) -> tuple[np.ndarray, np.ndarray, list[float]]:
    rng = np.random.default_rng(2024)
    source = _gun(pdg, kinetic_mev)
    lengths, ends, deposited = [], [], []
    for _ in range(n):
        truth = generate_truth(rng, source, TransportConfig(**transport))
        lengths.append(truth.particles["track_length"][0])
        ends.append(truth.particles["end_process"][0])
        deposited.append(float(truth.deposits.energy_mev.astype(float).sum()))
    return np.array(lengths, float), np.array(ends), deposited


def test_transported_200_mev_protons_range_out_at_the_pstar_range_with_straggling():
    lengths, ends, deposited = _track_lengths(2212, 200.0, 150, hadronic=False)
    assert set(ends) == {"stop"}
    assert lengths.mean() == pytest.approx(PROTON_CSDA_CM[200.0], rel=0.03)
    # Bohr range straggling of protons is ~1% of the range
    assert 0.004 < lengths.std() / lengths.mean() < 0.02
    assert np.allclose(deposited, 200.0, rtol=1e-4)  # every MeV ends up in argon


def test_protons_that_stop_have_the_pstar_range_when_hadronic_interactions_are_on():
    lengths, ends, _ = _track_lengths(2212, 200.0, 150)
    stopped = ends == "stop"
    assert 0.1 < np.mean(ends == "inelastic") < 0.45  # ∫dx/λ_I over 26 cm of argon
    assert lengths[stopped].mean() == pytest.approx(PROTON_CSDA_CM[200.0], rel=0.03)


def test_a_batch_of_particles_keeps_each_particles_energy_and_steps_to_itself():
    # pinned: steps past a particle's end were kept for every particle but the first of a pass
    rng = np.random.default_rng(13)
    n = 30
    kinetic = np.linspace(20.0, 300.0, n)
    movers = tr.Movers(np.arange(n), np.full(n, 2212, np.int32), np.tile([0.0, 300.0, 600.0], (n, 1)),
                       np.tile([0.0, 0.0, 1.0], (n, 1)), kinetic, np.zeros(n), np.zeros(n), np.full(n, 1e9),
                       np.full(n, np.inf))
    config = TransportConfig(hadronic=False)
    deposited = np.zeros(n)
    while len(movers):
        result = tr.charged_pass(rng, movers, config)
        d = result.deposits
        assert tr.inside_box(np.stack([d.x_cm, d.y_cm, d.z_cm], axis=1)).all()
        deposited += np.bincount(d.track_id, weights=d.energy_mev, minlength=n)
        assert result.delta_parent.size == 0  # Tmax < 1 MeV for protons below 400 MeV: no δ rays
        movers = result.continuing
    escaped = kinetic > float(ph.range_table(2212).kinetic_mev_of(94.2))  # range longer than the 94 cm to the wall
    assert np.allclose(deposited[~escaped], kinetic[~escaped], rtol=1e-6)
    assert np.all(deposited[escaped] < kinetic[escaped])


def test_transported_500_mev_muons_range_out_at_the_groom_range():
    lengths, ends, _ = _track_lengths(13, 500.0, 40)
    assert set(ends) <= {"capture", "decay"}
    assert lengths.mean() == pytest.approx(MUON_CSDA_CM[500.0], rel=0.03)


def test_transported_mip_steps_peak_at_the_table_mpv():
    rng = np.random.default_rng(5)
    source = _gun(-13, float(ph.kinetic_from_momentum(10_000.0, ph.MUON_MASS_MEV)), position=(0.0, 300.0, 0.5))
    transport = TransportConfig(step_cm=WIRE_PITCH_CM)
    dedx = []
    for _ in range(40):
        d = generate_truth(rng, source, transport).deposits
        full = (d.track_id == 0) & np.isclose(d.step_cm, WIRE_PITCH_CM)
        dedx.append(d.energy_mev[full] / d.step_cm[full])
    dedx = np.concatenate(dedx).astype(float)
    assert dedx.size > 40_000
    assert _landau_mode(dedx, 0.1) == pytest.approx(MUON_MPV_DEDX[10.0], rel=0.03)


def test_delta_rays_above_1_mev_come_at_the_pdg_rate_of_about_0_1_per_cm():
    rng = np.random.default_rng(6)
    momentum = 4000.0
    kinetic = float(ph.kinetic_from_momentum(momentum, ph.MUON_MASS_MEV))
    source = _gun(-13, kinetic, position=(0.0, 300.0, 0.5))
    n_delta, length = 0, 0.0
    for _ in range(12):
        p = generate_truth(rng, source, TransportConfig()).particles
        delta = (p["parent_id"] == 0) & (p["process"] == "delta")
        assert np.all(p["start_px"][delta] ** 2 + p["start_py"][delta] ** 2 + p["start_pz"][delta] ** 2 > 0.0)
        n_delta += int(delta.sum())
        length += float(p["track_length"][0])
    # PDG eq. 34.8 integrated from 1 MeV to Tmax (spin-0 form)
    t_cut, tmax = 1.0, float(ph.tmax_mev(kinetic, ph.MUON_MASS_MEV))
    beta2 = (momentum / np.hypot(momentum, ph.MUON_MASS_MEV)) ** 2
    xi_per_cm = float(ph.landau_xi_mev(beta2, 1.0))
    expected = xi_per_cm * ((1.0 / t_cut - 1.0 / tmax) - beta2 / tmax * np.log(tmax / t_cut))
    assert expected == pytest.approx(0.1, rel=0.1)  # PHYSICS.md: ≈ 0.1 per cm above 1 MeV
    assert n_delta / length == pytest.approx(expected, rel=0.12)


def test_protons_have_a_bragg_peak_following_the_stopping_power():
    rng = np.random.default_rng(8)
    source = _gun(2212, 200.0)
    near, far = [], []
    for _ in range(30):
        truth = generate_truth(rng, source, TransportConfig(hadronic=False))
        d = truth.deposits
        own = d.track_id == 0
        residual = float(truth.particles["end_z"][0]) - d.z_cm[own]  # the proton goes along +z
        dedx = d.energy_mev[own] / d.step_cm[own]
        near.append(dedx[residual < 1.0].mean())
        far.append(dedx[(residual > 9.0) & (residual < 11.0)].mean())
    expected_far = ph.range_table(2212).dedx_of(ph.range_table(2212).kinetic_mev_of(10.0))
    assert np.mean(far) == pytest.approx(expected_far, rel=0.06)  # δ rays are under 1 MeV here: all continuous
    assert np.mean(near) > 2.5 * np.mean(far)


def test_multiple_scattering_matches_highland_after_one_radiation_length():
    rng = np.random.default_rng(4)
    n, path_cm, momentum = 4000, ARGON.radiation_length_cm, 1000.0
    kinetic = float(ph.kinetic_from_momentum(momentum, ph.MUON_MASS_MEV))
    start_z = tr.ACTIVE_BOX_MAX_CM[2] - path_cm
    movers = tr.Movers(np.arange(n), np.full(n, 13, np.int32), np.tile([0.0, 300.0, start_z], (n, 1)),
                       np.tile([0.0, 0.0, 1.0], (n, 1)), np.full(n, kinetic), np.zeros(n), np.zeros(n),
                       np.full(n, 1e9), np.full(n, np.inf))
    result = tr.charged_pass(rng, movers, TransportConfig(delta_rays=False, step_cm=0.1))
    d = result.escaped.dir
    assert len(d) == n
    projected = np.arctan2(d[:, 0], d[:, 2])
    beta = momentum / np.hypot(momentum, ph.MUON_MASS_MEV)
    assert projected.std() == pytest.approx(float(ph.highland_theta0(momentum, beta, path_cm)), rel=0.05)


def test_electron_shower_containment_and_depth_follow_the_radiation_length():
    rng = np.random.default_rng(12)
    energy_mev = 1000.0
    source = _gun(11, energy_mev, position=(0.0, 300.0, 50.0))
    within_two_moliere, deposited, depth = [], [], []
    for _ in range(12):
        d = generate_truth(rng, source, TransportConfig()).deposits
        e = d.energy_mev.astype(float)
        r = np.hypot(d.x_cm - 0.0, d.y_cm - 300.0)
        within_two_moliere.append(e[r < 2.0 * ARGON.moliere_radius_cm].sum() / e.sum())
        deposited.append(e.sum())
        depth.append(np.average(d.z_cm - 50.0, weights=e))
    assert np.mean(within_two_moliere) > 0.90
    assert np.mean(deposited) == pytest.approx(energy_mev, rel=0.03)
    # GFlash's average longitudinal profile (Grindhammer & Peters): mean depth ⟨t⟩ = α/β = 4.57 X0 at
    # 1 GeV in argon (the PDG's rough b ≈ 0.5 rule, t_max + 2 = 4.92 X0, sits 8% deeper); 12 showers
    # scatter by ≈ 0.3 X0 (7%) around their mean
    from protoseg.sim import gflash

    _, alpha, beta = gflash.longitudinal_parameters(energy_mev)
    assert np.mean(depth) == pytest.approx(alpha / beta * ARGON.radiation_length_cm, rel=0.15)


def test_michel_spectrum_ends_at_52_8_mev():
    rng = np.random.default_rng(1)
    kinetic = inter.sample_michel_kinetic_mev(rng, 200_000)
    total = kinetic + ph.ELECTRON_MASS_MEV
    assert total.max() == pytest.approx(52.83, abs=0.1)
    assert total.max() <= inter.MICHEL_ENDPOINT_MEV + 1e-9
    assert total.mean() == pytest.approx(0.7 * inter.MICHEL_ENDPOINT_MEV, rel=0.01)  # ⟨x⟩ = 7/10


def test_stopping_mu_plus_gives_a_michel_positron_and_mu_minus_is_mostly_captured():
    rng = np.random.default_rng(9)
    ends = {13: [], -13: []}
    for pdg in ends:
        for _ in range(60):
            truth = generate_truth(rng, _gun(pdg, 50.0), TransportConfig())
            p = truth.particles
            ends[pdg].append(p["end_process"][0])
            if p["end_process"][0] == "decay":
                child = (p["parent_id"] == 0) & (p["process"] == "decay")
                assert p["pdg"][child].tolist() == [-11 if pdg == -13 else 11]
                assert p["start_t"][child][0] > 0.0  # the decay comes after the stop
    assert set(ends[-13]) == {"decay"}
    assert 0.55 < np.mean(np.array(ends[13]) == "capture") < 0.92


def test_photon_cross_sections_have_their_known_limits():
    # pair production (XCOM) tends to 7/(9 X0) within 1%; Klein–Nishina on free electrons to the
    # Thomson cross section, and XCOM's Compton to Klein–Nishina at 1 MeV (binding negligible there)
    from protoseg.sim import showers

    assert showers.pair_per_cm(1e5) == pytest.approx(7.0 / 9.0 / ARGON.radiation_length_cm, rel=0.01)
    assert showers.pair_per_cm(1.0) == 0.0
    thomson = 8.0 * np.pi / 3.0 * (2.8179403262e-13) ** 2 * ARGON.density_g_per_cm3 * 6.02214076e23 * ARGON.z_over_a
    assert showers.klein_nishina_per_cm(1e-4) == pytest.approx(thomson, rel=0.01)
    assert showers.compton_per_cm(1.0) == pytest.approx(showers.klein_nishina_per_cm(1.0), rel=0.005)


def test_same_seed_same_event_and_descendants_keep_their_origin():
    a = generate_truth(np.random.default_rng(42), SourceConfig(), TransportConfig())
    b = generate_truth(np.random.default_rng(42), SourceConfig(), TransportConfig())
    for name in a.particles:
        assert np.array_equal(a.particles[name], b.particles[name])
    assert np.array_equal(a.deposits.energy_mev, b.deposits.energy_mev)
    p = a.particles
    assert p["process"][0] == "primary" and p["origin"][0] == 1
    child = p["parent_id"] >= 0
    assert np.all(p["parent_id"][child] < p["track_id"][child])
    assert np.array_equal(p["origin"][child], p["origin"][p["parent_id"][child]])
    assert a.deposits.track_id.min() >= 0 and a.deposits.track_id.max() < p["track_id"].size
    assert np.allclose(np.bincount(a.deposits.track_id, weights=a.deposits.energy_mev, minlength=p["track_id"].size),
                       p["energy_deposited"], rtol=1e-4, atol=1e-3)


def test_pion_argon_final_states_have_the_emulsion_shower_multiplicity_at_4_5_gev():
    # 4.5 GeV/c π⁻ in nuclear emulsion: ⟨n_s⟩ = 2.0 ± 0.1 charged particles with β > 0.7, pion
    # ⟨p_T⟩ = 290 ± 50 MeV/c (see interactions.PRODUCED_PIONS_PER_LOG_ENERGY).
    rng = np.random.default_rng(45)
    kinetic = float(ph.kinetic_from_momentum(4500.0, ph.PION_MASS_MEV))
    n_shower, pt = [], []
    for _ in range(800):
        out = inter.inelastic(rng, np.array([-211]), np.array([kinetic]), np.array([[0.0, 0.0, 1.0]]))
        mass = np.array([ph.PARTICLES[int(c)].mass_mev for c in out.pdg])
        p = ph.momentum_from_kinetic(out.kinetic_mev, mass)
        charged = np.isin(np.abs(out.pdg), (211, 321, 2212))
        n_shower.append(int(np.sum(charged & (p / (out.kinetic_mev + mass) > 0.7))))
        pion = np.abs(out.pdg) == 211
        pt.extend((p * np.sqrt(1.0 - out.direction[:, 2] ** 2))[pion])
    assert np.mean(n_shower) == pytest.approx(2.0, abs=0.15)
    assert 240.0 < np.mean(pt) < 340.0
