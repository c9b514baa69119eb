"""`protoseg simulate` end to end: the events file, its recorded configuration, determinism, bad input."""
from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from protoseg.cli import main
from protoseg.errors import InputError
from protoseg.events import open_events
from protoseg.sim.generator import SourceConfig
from protoseg.sim.simulate import SimulationConfig, apply_overrides, simulate_events

# A small, quick configuration: a 1 GeV/c muon gun with cosmics and noise (cosmics make it a full frame).
GUN_WITH_COSMICS = SimulationConfig(
    sources=SourceConfig(beam=False, halo=False, cosmics=True, gun_pdg=13, gun_momentum_gev=1.0,
                         cosmic_intensity_per_m2_s_sr=10.0),
)


def _read_all(path):
    """Every dataset of an HDF5 file, and the root attributes, for bit-for-bit comparisons."""
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in h5.attrs.items()}
    return out, attrs


def test_same_seed_same_file_with_one_or_two_workers(tmp_path, capsys):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    simulate_events(one, 3, seed=11, config=GUN_WITH_COSMICS, workers=1)
    assert capsys.readouterr().err == ""  # progress is off unless asked
    simulate_events(two, 3, seed=11, config=GUN_WITH_COSMICS, workers=2, progress=True)
    assert capsys.readouterr().err == "simulate: 1/3\nsimulate: 2/3\nsimulate: 3/3\n"  # a log: a line per step
    data_one, attrs_one = _read_all(one)
    data_two, attrs_two = _read_all(two)
    assert attrs_one == attrs_two
    assert data_one.keys() == data_two.keys()
    for name in data_one:
        assert np.array_equal(data_one[name], data_two[name]), name
    other = tmp_path / "other.h5"
    simulate_events(other, 1, seed=12, config=GUN_WITH_COSMICS)
    with open_events(one) as a, open_events(other) as b:
        assert not np.array_equal(a.read(0).hits["tick"][:50], b.read(0).hits["tick"][:50])


def test_gun_event_file_holds_hits_truth_particles_and_config(tmp_path):
    path = tmp_path / "gun.h5"
    assert main(["simulate", "-o", str(path), "-n", "1", "--seed", "3", "--gun", "2212", "--momentum", "0.6442",
                 "--position", "-200", "300", "100", "--direction", "0", "0", "1", "--quiet"]) == 0
    with open_events(path) as events:
        config = events.config if isinstance(events.config, dict) else json.loads(events.config)
        event = events.read(0)
    # 0.6442 GeV/c proton = 200 MeV kinetic: CSDA range 25.98 cm (PSTAR), i.e. ~54 wires along z.
    hits, particles = event.hits, event.particles
    assert particles["pdg"][0] == 2212 and particles["process"][0] == "primary"
    proton = hits["track_id"] == particles["track_id"][0]
    assert proton.sum() > 40
    span_cm = (hits["wire"][proton].max() - hits["wire"][proton].min() + 1) * 0.4792
    assert span_cm == pytest.approx(25.98, rel=0.12)
    assert set(np.unique(hits["label"])) <= {1}  # a gun is a beam-origin particle; no noise in gun mode
    assert np.all(hits["origin"][proton] == 1)
    # the whole configuration is recorded, with the gun and the detector defaults
    assert config["sources"]["gun_pdg"] == 2212 and config["sources"]["beam"] is False
    assert config["readout"]["noise"] is False and config["drift"]["electron_lifetime_ms"] == 35.0
    assert config["hits"]["integral_adc_tick_per_ke"] == pytest.approx(41.73, abs=0.01)
    assert config["run"]["seed"] == 3 and config["run"]["dead_channels"] == []
    # Stopping proton: charge per wire rises toward the end (Bragg peak, with recombination).
    order = np.argsort(hits["wire"][proton])
    integrals = hits["integral"][proton][order]
    assert integrals[-6:].max() > 2.0 * np.median(integrals[: integrals.size // 2])


def test_beam_event_has_cosmics_noise_and_the_beam_near_wire_0_tick_4700(tmp_path):
    path = tmp_path / "beam.h5"
    summary = simulate_events(path, 1, seed=2018)
    assert summary["events"] == 1
    with open_events(path) as events:
        event = events.read(0)
    hits, particles = event.hits, event.particles
    assert particles["origin"][0] == 1 and particles["parent_id"][0] == -1 and event.trigger == 0xC
    assert event.beam_pdg == particles["pdg"][0]
    counts = np.bincount(hits["label"], minlength=3)
    assert counts[2] > 3000  # tens of cosmic tracks from both drift volumes
    assert counts[0] < 0.05 * hits["wire"].size  # few noise hits at the 5 sigma threshold
    beam = np.flatnonzero(hits["track_id"] == particles["track_id"][0])
    first = beam[np.argmin(hits["wire"][beam])]
    assert hits["wire"][first] < 40 and abs(hits["tick"][first] - 4737) < 120
    assert np.all(np.isin(np.unique(hits["origin"][hits["label"] == 2]), [2, 3]))


def test_set_overrides_reach_the_configuration():
    config = apply_overrides(SimulationConfig(), ["drift.electron_lifetime_ms=10", "readout.noise=false",
                                                  "sources.beam_composition=[1,0,0,0,0]", "detector.beam_side_only=1"])
    assert config.drift.electron_lifetime_ms == 10.0 and config.readout.noise is False
    assert config.sources.beam_composition == (1, 0, 0, 0, 0) and config.detector.beam_side_only is True
    with pytest.raises(InputError, match="unknown section"):
        apply_overrides(SimulationConfig(), ["nope.x=1"])
    with pytest.raises(InputError, match="cannot read"):
        apply_overrides(SimulationConfig(), ["drift.electron_lifetime_ms=long"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["-n", "0"], "at least 1"),
        (["-n", "1", "--gun", "13", "--momentum", "-1"], "gun momentum must be positive"),
        (["-n", "1", "--gun", "99", "--momentum", "1"], "PDG code 99"),
        (["-n", "1", "--gun", "13", "--momentum", "1", "--position", "-500", "300", "300", "--direction", "-1", "0", "0"],
         "outside the TPC"),
        (["-n", "1", "--electron-lifetime-ms", "-3"], "electron_lifetime_ms"),
        (["-n", "1", "--momentum", "1"], "needs --gun"),
        (["-n", "1", "--beam-momentum", "-7"], "beam momentum must be positive"),
    ],
)
def test_impossible_settings_exit_2_with_one_line_and_no_file(tmp_path, capsys, arguments, message):
    out = tmp_path / "events.h5"
    assert main(["simulate", "-o", str(out), *arguments, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("protoseg simulate: error:")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_config_dataclasses_are_all_recorded(tmp_path):
    path = tmp_path / "q.h5"
    config = dataclasses.replace(GUN_WITH_COSMICS, sources=dataclasses.replace(GUN_WITH_COSMICS.sources, cosmics=False))
    simulate_events(path, 1, seed=1, config=config)
    with open_events(path) as events:
        recorded = events.config if isinstance(events.config, dict) else json.loads(events.config)
    for section in ("sources", "transport", "drift", "readout", "hits", "detector"):
        assert recorded[section] == json.loads(json.dumps(dataclasses.asdict(getattr(config, section))))
