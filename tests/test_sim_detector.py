"""The detector half of the simulation: recombination, drift, diffusion, readout, noise, hits, truth.

Deposits here are straight MIP segments made in the test, so these tests do not depend on the transport.
"""
from __future__ import annotations

import numpy as np
import pytest

from protoseg.detector import ARGON, GEOMETRY
from protoseg.errors import InputError
from protoseg.sim.drift import DriftConfig, drift_deposits, recombination_fraction, validate_drift_config
from protoseg.sim.hitfinding import HitFindingConfig, SignalProcessor, TruthCharge, find_hits, match_truth
from protoseg.sim.readout import (
    ChannelStatus,
    ReadoutConfig,
    ReadoutModel,
    charge_frame,
    choose_bad_channels,
    load_collection_response,
    noise_sigma_per_bin_adc,
    irfft_noise_rms,
)
from protoseg.sim.truth import Deposits

NO_SCE = DriftConfig(space_charge=False)
QUIET = ReadoutConfig(noise=False, n_dead_channels=0, n_noisy_channels=0)
BEAM_ENTRY_CM = (-27.9, 424.4, 3.8)  # protoduneana EventSelection.fcl


def segment(start, end, *, step_cm=0.3, dedx_mev_per_cm=1.735, t_us=0.0, track_id=1) -> Deposits:
    """A straight track of constant dE/dx cut into equal steps (deposits at the step midpoints)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = float(np.linalg.norm(end - start))
    n = max(int(round(length / step_cm)), 1)
    fractions = (np.arange(n) + 0.5) / n
    points = start[None] + fractions[:, None] * (end - start)[None]
    step = length / n
    return Deposits(points[:, 0], points[:, 1], points[:, 2], np.full(n, t_us), np.full(n, dedx_mev_per_cm * step),
                    np.full(n, step), np.full(n, track_id, np.int32))


def point(x, y, z, *, energy_mev=1.0, t_us=0.0, track_id=1, step_cm=0.0) -> Deposits:
    one = lambda v: np.array([float(v)])  # noqa: E731
    return Deposits(one(x), one(y), one(z), one(t_us), one(energy_mev), one(step_cm), np.array([track_id], np.int32))


# -- recombination and drift ---------------------------------------------------------------------

def test_modified_box_recombination_at_minimum_ionisation():
    # Hand computation: xi = B dE/dx / (rho E) = 0.212 * 2.105 / (1.3954 * 0.4867) = 0.65709
    xi = 0.212 * 2.105 / (1.3954 * 0.4867)
    assert recombination_fraction(np.array([2.105]))[0] == pytest.approx(np.log(0.930 + xi) / xi, rel=1e-12)
    assert recombination_fraction(np.array([2.105]))[0] == pytest.approx(0.70295, abs=2e-5)
    # Heavily ionising (a stopping proton, 20 MeV/cm) keeps far less charge; below 1 MeV/cm LArSoft clamps.
    # xi = 0.31224 * 20 = 6.2449: ln(7.1749) / 6.2449 = 0.3156
    assert recombination_fraction(np.array([20.0]))[0] == pytest.approx(0.3156, abs=2e-4)
    assert recombination_fraction(np.array([0.2]))[0] == recombination_fraction(np.array([1.0]))[0]
    birks = DriftConfig(recombination_model="birks")
    assert recombination_fraction(np.array([2.105]), birks)[0] == pytest.approx(
        0.8 / (1 + 0.0486 * 2.105 / (1.3954 * 0.4867)), rel=1e-12)


def test_beam_entry_point_lands_near_wire_0_at_tick_4737():
    charge = drift_deposits(point(*BEAM_ENTRY_CM), NO_SCE)
    drift_us = (GEOMETRY.anode_x_cm - 27.9) / ARGON.drift_velocity_cm_per_us
    assert charge.tick[0] == pytest.approx(500 + drift_us / 0.5, abs=1e-9)
    assert charge.tick[0] == pytest.approx(4736.7, abs=0.1)
    assert charge.wire[0] == round((3.8 - 0.56) / 0.4792) == 7
    # Along the beam direction (-x, down, +z) the track moves to lower ticks and higher wires.
    later = drift_deposits(point(-27.9 - 19.0, 424.4 - 24.5, 3.8 + 95.1), NO_SCE)
    assert later.tick[0] < charge.tick[0] - 200 and later.wire[0] > charge.wire[0] + 190


def test_charge_yield_lifetime_and_diffusion():
    near = drift_deposits(point(-GEOMETRY.drift_length_cm, 300, 100, step_cm=0.0), NO_SCE)
    far = drift_deposits(point(-1e-6, 300, 100, step_cm=0.0), NO_SCE)
    mip = recombination_fraction(np.array([2.105]))[0]  # zero-length steps get the MIP dE/dx
    assert near.electrons[0] == pytest.approx(1e6 / 23.6 * mip * np.exp(-0.02 / 0.1565 / 35000), rel=1e-5)
    drift_us = GEOMETRY.anode_x_cm / 0.1565
    near_us = (GEOMETRY.anode_x_cm - GEOMETRY.drift_length_cm) / 0.1565
    assert far.electrons[0] / near.electrons[0] == pytest.approx(np.exp(-(drift_us - near_us) / 35000.0), rel=1e-5)
    # sigma_L = sqrt(2 D_L t) = sqrt(2 * 4 cm^2/s * 2.2966 ms) = 0.1355 cm = 1.732 ticks
    assert far.sigma_tick[0] == pytest.approx(np.sqrt(2 * 4.0 * drift_us * 1e-6) / (0.1565 * 0.5), rel=1e-5)
    assert far.sigma_tick[0] == pytest.approx(1.732, abs=2e-3)
    assert far.sigma_wire[0] == pytest.approx(np.sqrt(2 * 8.8 * drift_us * 1e-6) / 0.4792, rel=1e-5)
    assert near.sigma_tick[0] < 0.02  # 0.2 mm of drift


def test_both_drift_volumes_share_global_wires_and_beam_side_only_drops_the_far_one():
    both = Deposits.concatenate([point(-100, 300, 250, track_id=1), point(100, 300, 250, track_id=2)])
    charge = drift_deposits(both, NO_SCE)
    assert len(charge) == 2 and charge.wire[0] == charge.wire[1] == 480 + round((250 - 232.6) / 0.4792)
    assert charge.tick[0] == pytest.approx(charge.tick[1])
    assert list(charge.far_side) == [False, True]
    beam_side = drift_deposits(both, NO_SCE, beam_side_only=True)
    assert list(beam_side.track_id) == [1]


def test_charge_lost_in_apa_gaps_outside_wires_and_outside_the_readout_window():
    lost = Deposits.concatenate([
        point(-100, 300, 231.0),  # gap between APA 0 and 1
        point(-100, 300, 463.5),  # gap between APA 1 and 2
        point(-100, 3.0, 300.0),  # below the wires
        point(-100, 300, 300, t_us=1200.0),  # arrives after tick 6000
        point(-358, 300, 300, t_us=-300.0),  # near the anode, arrives before tick 0
        point(-360, 300, 300),  # behind the anode
    ])
    assert len(drift_deposits(lost, NO_SCE)) == 0
    # A cosmic crossing the cathode 1 ms after the trigger: the part near the cathode arrives too late.
    cosmic = drift_deposits(segment((-359, 300, 300), (-1, 300, 300), t_us=1000.0), NO_SCE)
    drift_cm = GEOMETRY.anode_x_cm - np.abs(cosmic_x := segment((-359, 300, 300), (-1, 300, 300)).x_cm)
    arrival = 500 + (1000.0 + drift_cm / 0.1565) / 0.5
    # Clouds up to 72 ticks late are kept for the start of their pulses (readout.FRAME_MARGIN_TICKS).
    assert len(cosmic) == int(np.sum(arrival < 6000 + 72)) < len(cosmic_x)


def test_space_charge_pulls_charge_toward_the_centre_and_vanishes_at_the_anode():
    at_cathode = point(-1.0, 580.0, 600.0)
    shifted = drift_deposits(at_cathode, DriftConfig())
    plain = drift_deposits(at_cathode, NO_SCE)
    assert shifted.wire[0] < plain.wire[0]  # z pulled toward the middle (wire shift of ~ 4.5 cm / 0.48 cm)
    assert plain.wire[0] - shifted.wire[0] == pytest.approx(5.0 * (600 - 347.38) / 346.82 / 0.4792, abs=1.0)
    at_anode = point(-GEOMETRY.drift_length_cm, 580.0, 600.0)
    assert drift_deposits(at_anode, DriftConfig()).wire[0] == drift_deposits(at_anode, NO_SCE).wire[0]


def test_bad_drift_settings_are_refused():
    with pytest.raises(InputError, match="electron_lifetime_ms"):
        validate_drift_config(DriftConfig(electron_lifetime_ms=-1.0))
    with pytest.raises(InputError, match="recombination_model"):
        validate_drift_config(DriftConfig(recombination_model="nope"))


# -- readout -------------------------------------------------------------------------------------

def test_charge_frame_conserves_charge_away_from_apa_edges():
    track = segment((-200, 300, 100), (-150, 250, 180))
    charge = drift_deposits(track, NO_SCE)
    frame = charge_frame(charge)
    assert frame.dtype == np.float32 and frame.shape == (1440, 6000 + 2 * 72)
    assert frame.sum(dtype=np.float64) == pytest.approx(charge.electrons.sum(dtype=np.float64) / 1000, rel=2e-3)
    # A cloud centred on the last wire of APA 0 loses the part that diffuses into the gap.
    edge = drift_deposits(point(-1, 300, 230.1 + 0.2), NO_SCE)
    assert charge_frame(edge).sum() < 0.95 * edge.electrons[0] / 1000


def test_response_and_noise_match_the_shipped_data():
    response = load_collection_response()
    assert response.max() == pytest.approx(6.13, abs=0.005) and response.sum() == pytest.approx(41.7, abs=0.05)
    sigma = noise_sigma_per_bin_adc(ReadoutConfig(), 6000, 0.5)
    expected_rms = irfft_noise_rms(sigma, 6000)
    assert 3.3 < expected_rms < 3.8  # ProtoDUNE-SP collection incoherent noise (PHYSICS.md)
    status = ChannelStatus(dead=(3, 700), noisy=(10,))
    model = ReadoutModel(ReadoutConfig(coherent_noise_rms_adc=0.0), status)
    adc = model.digitize(np.zeros((1440, 6000), np.float32), np.random.default_rng(5)).astype(np.float64)
    rms = adc.std(axis=1)
    good = np.setdiff1d(np.arange(1440), [3, 700, 10])
    assert np.mean(rms[good]) == pytest.approx(expected_rms, rel=0.02)
    assert rms[3] == rms[700] == 0.0 and adc[3, 0] == 900
    assert rms[10] == pytest.approx(3.0 * expected_rms, rel=0.15)
    assert abs(adc[good].mean() - 900.0) < 0.05


def test_coherent_noise_is_shared_by_the_48_channels_of_a_board():
    model = ReadoutModel(ReadoutConfig(incoherent_noise_scale=0.0, coherent_noise_rms_adc=2.0, n_dead_channels=0), ChannelStatus())
    adc = model.digitize(np.zeros((1440, 6000), np.float32), np.random.default_rng(1)).astype(np.float64)
    assert np.array_equal(adc[0], adc[47]) and not np.array_equal(adc[47], adc[48])
    assert adc.std(axis=1).mean() == pytest.approx(2.0, rel=0.1)


def test_mip_signal_shape_and_signal_to_noise():
    # A 4 GeV muon near the anode, perpendicular to the wires: about 25k electrons per wire.
    track = segment((-350, 300, 100), (-350, 300, 200), dedx_mev_per_cm=1.735)
    charge = drift_deposits(track, NO_SCE)
    frame = charge_frame(charge)
    per_wire_ke = frame.sum(axis=1)[charge.wire.min() + 2: charge.wire.max() - 1]
    assert np.median(per_wire_ke) == pytest.approx(25.0, rel=0.03)
    clean = ReadoutModel(QUIET, ChannelStatus()).digitize(frame, np.random.default_rng(0)).astype(np.float64) - 900
    peak = np.median(clean[charge.wire.min() + 2: charge.wire.max() - 1].max(axis=1))
    assert peak == pytest.approx(6.13 * 25.0, rel=0.05)  # ≈ 154 ADC (PHYSICS.md)
    signal_to_noise = peak / irfft_noise_rms(noise_sigma_per_bin_adc(ReadoutConfig(), 6000, 0.5), 6000)
    assert 38 < signal_to_noise < 47  # PHYSICS.md: S/N ≈ 40–47


# -- signal processing, hits, truth --------------------------------------------------------------

def _hits_of(deposits, readout_config=QUIET, seed=0, hit_config=HitFindingConfig()):
    charge = drift_deposits(deposits, NO_SCE)
    status = ChannelStatus()
    model = ReadoutModel(readout_config, status)
    adc = model.digitize(charge_frame(charge), np.random.default_rng(seed))
    processor = SignalProcessor(hit_config, readout_config.channels_per_board)
    deconvolved, sigma = processor.process(adc, model.alive)
    return charge, find_hits(deconvolved, sigma, hit_config)


def test_hit_integral_tick_and_rms_of_a_single_cloud():
    cloud = point(-200, 300, 0.56 + 207 * 0.4792, energy_mev=1.0, step_cm=0.1)  # centred on wire 207
    charge, hits = _hits_of(cloud)
    assert hits["wire"].size == 1
    assert hits["wire"][0] == charge.wire[0]
    assert hits["tick"][0] == pytest.approx(charge.tick[0], abs=0.15)
    # Transverse diffusion (σ = 0.28 pitch after 1 ms) shares the cloud with the neighbour wires,
    # which stay below threshold here; the hit integrates its own wire's charge.
    own_wire_ke = charge_frame(charge)[charge.wire[0]].sum()
    assert hits["integral"][0] == pytest.approx(41.7 * own_wire_ke, rel=0.01)
    # rms: Wire-Cell's 0.12 MHz Gaussian filter (1.33 µs = 2.65 ticks) with the cloud's own spread
    assert hits["rms"][0] == pytest.approx(np.hypot(1 / (2 * np.pi * 0.12 * 0.5), charge.sigma_tick[0]), rel=0.05)


def test_two_pulses_on_one_wire_give_two_hits_and_are_split_at_the_dip():
    z_wire_207 = 0.56 + 207 * 0.4792
    pair = Deposits.concatenate([point(-200, 300, z_wire_207, energy_mev=1.0, step_cm=0.1),
                                 point(-200 + 12 * 0.0783, 300, z_wire_207, energy_mev=0.5, step_cm=0.05)])  # 12 ticks apart
    charge, hits = _hits_of(pair)
    assert hits["wire"].size == 2
    assert hits["end"][0] == hits["start"][1]  # one ROI split at the dip
    assert hits["integral"][0] / hits["integral"][1] == pytest.approx(2.0, rel=0.1)
    assert np.all(np.diff(hits["tick"]) > 10)


def test_mip_hits_with_default_noise_and_no_fake_hits_elsewhere():
    track = segment((-340, 300, 50), (-340, 300, 200), dedx_mev_per_cm=1.735)
    charge, hits = _hits_of(track, ReadoutConfig(n_dead_channels=0, n_noisy_channels=0), seed=3)
    on_track = (hits["wire"] >= charge.wire.min()) & (hits["wire"] <= charge.wire.max())
    n_wires = charge.wire.max() - charge.wire.min() + 1
    assert on_track.sum() == pytest.approx(n_wires, abs=3)
    assert (~on_track).sum() <= 10  # noise hits in the other ~8.6 M samples (5 sigma threshold)
    # Integral on the pulser scale: 41.7 ADC·tick per 1000 electrons (~25k e- per wire here).
    expected = 41.7 * np.median(charge_frame(charge).sum(axis=1)[charge.wire.min() + 2: charge.wire.max() - 1])
    assert np.median(hits["integral"][on_track]) == pytest.approx(expected, rel=0.04)
    assert np.median(np.abs(hits["tick"][on_track] - charge.tick.mean())) < 0.3


def test_truth_matching_takes_the_particle_with_most_charge():
    particles = {"track_id": np.array([1, 5, 9], np.int32), "pdg": np.array([211, 13, 11], np.int32),
                 "origin": np.array([1, 2, 1], np.uint8)}
    hits = {"wire": np.array([10, 10, 11, 12], np.uint16), "tick": np.array([110, 210, 110, 110], np.float32),
            "start": np.array([100, 200, 100, 100], np.int32),
            "end": np.array([120, 220, 120, 120], np.int32)}
    truth = TruthCharge(wire=np.array([10, 10, 10, 10, 11, 11]), tick=np.array([105, 110, 205, 300, 110, 111]),
                        particle_row=np.array([0, 1, 1, 2, 2, 0]), electrons=np.array([100.0, 300.0, 50.0, 1e6, 80.0, 70.0]))
    matched = match_truth(hits, truth, particles)
    assert list(matched["track_id"]) == [5, 5, 9, -1]
    assert list(matched["pdg"]) == [13, 13, 11, 0]
    assert list(matched["origin"]) == [2, 2, 1, 0]
    assert list(matched["label"]) == [2, 2, 1, 0]


def test_bad_channels_are_distinct_and_reproducible():
    config = ReadoutConfig()
    first = choose_bad_channels(np.random.SeedSequence(7), config, 1440)
    assert first == choose_bad_channels(np.random.SeedSequence(7), config, 1440)
    assert len(first.dead) == 8 and len(first.noisy) == 9 and not set(first.dead) & set(first.noisy)


def test_coherent_noise_removal_brings_the_noise_back_to_the_incoherent_level():
    status = ChannelStatus()
    incoherent_only = ReadoutModel(ReadoutConfig(coherent_noise_rms_adc=0.0, n_dead_channels=0, n_noisy_channels=0), status)
    with_coherent = ReadoutModel(ReadoutConfig(coherent_noise_rms_adc=3.0, n_dead_channels=0, n_noisy_channels=0), status)
    zeros = np.zeros((1440, 6000), np.float32)
    with_cnr = SignalProcessor(HitFindingConfig(), 48)
    without_cnr = SignalProcessor(HitFindingConfig(coherent_noise_removal=False), 48)
    alive = np.ones(1440, bool)
    _, sigma_reference = without_cnr.process(incoherent_only.digitize(zeros, np.random.default_rng(1)), alive)
    adc = with_coherent.digitize(zeros, np.random.default_rng(2))
    _, sigma_removed = with_cnr.process(adc, alive)
    _, sigma_kept = without_cnr.process(adc, alive)
    # The board mean of 48 channels also holds 1/48 of each channel's own noise: sqrt(1 - 1/48).
    assert np.median(sigma_removed) == pytest.approx(np.median(sigma_reference) * np.sqrt(1 - 1 / 48), rel=0.03)
    assert np.median(sigma_kept) == pytest.approx(np.hypot(np.median(sigma_reference), 3.0 * np.median(sigma_reference) / 3.709), rel=0.03)


def test_a_track_along_the_drift_is_cut_into_16_tick_hits_that_keep_its_charge():
    z_wire_300 = 0.56 + 300 * 0.4792
    along_drift = segment((-300, 300, z_wire_300), (-290, 300, z_wire_300), step_cm=0.05)  # 10 cm = 128 ticks
    charge, hits = _hits_of(along_drift)
    on_wire = hits["wire"] == 300
    assert on_wire.sum() == pytest.approx((128 + 20) / 16, abs=2)  # 16-tick pieces over the pulse
    widths = (hits["end"] - hits["start"])[on_wire]
    assert widths.max() <= 40 and np.median(widths) == pytest.approx(16, abs=1.5)
    assert hits["integral"][on_wire].sum() == pytest.approx(41.7 * charge_frame(charge)[300].sum(), rel=0.02)
    assert np.all(np.diff(hits["tick"][on_wire]) > 8)


def test_a_hit_on_a_pulse_tail_takes_the_nearest_cloud_within_the_margin():
    particles = {"track_id": np.array([4], np.int32), "pdg": np.array([13], np.int32), "origin": np.array([2], np.uint8)}
    hits = {"wire": np.array([7, 7], np.uint16), "tick": np.array([110.0, 160.0], np.float32),
            "start": np.array([105, 150], np.int32), "end": np.array([115, 170], np.int32)}
    truth = TruthCharge(wire=np.array([7]), tick=np.array([100]), particle_row=np.array([0]), electrons=np.array([5e4]))
    matched = match_truth(hits, truth, particles)
    assert list(matched["track_id"]) == [4, -1] and list(matched["label"]) == [2, 0]


def test_noise_has_the_wire_cell_mean_amplitude_spectrum():
    """Mean |rfft| of simulated noise = the collection-plane spectrum of protodune-noise-spectra-v1
    (amplitude ⊕ const, Wire-Cell volts → ADC at 4096 / 1.4 V), at low, middle and high frequency."""
    import json
    from importlib import resources

    entry = [e for e in json.loads(resources.files("protoseg").joinpath("data", "protodune-noise-spectra-v1.json").read_text())
             if e["plane"] == 2 and e["wirelen"] == 6000.0][0]
    model = ReadoutModel(ReadoutConfig(coherent_noise_rms_adc=0.0, n_dead_channels=0, n_noisy_channels=0), ChannelStatus())
    adc = model.digitize(np.zeros((1440, 6000), np.float32), np.random.default_rng(9)).astype(np.float64) - 900.0
    mean_amplitude = np.abs(np.fft.rfft(adc, axis=1)).mean(axis=0)
    freqs_mhz = np.fft.rfftfreq(6000, d=0.5)
    for f_mhz in (0.05, 0.2, 0.5, 0.9):
        band = np.abs(freqs_mhz - f_mhz) < 0.01
        amp_volt = np.interp(f_mhz * 1e-3, entry["freqs"], entry["amps"]) * 1e6  # Wire-Cell units: 1 V = 1e-6
        expected = np.hypot(amp_volt, entry["const"] * 1e6) * 4096 / 1.4
        quantisation = np.sqrt(6000 / 12)  # rounding to whole ADC counts adds white noise of 1/12 ADC²
        assert mean_amplitude[band].mean() == pytest.approx(np.hypot(expected, quantisation), rel=0.03)
