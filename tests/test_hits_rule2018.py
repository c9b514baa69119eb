"""Hit-level training under the 2018 beam label rule (data.beam_label_rule: 2018): the hits the rule drops
stay in the input but count in neither loss nor metrics; the card, predict and the working point follow the rule."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_inference import tiny_images

from protoseg.cli import main
from protoseg.events import Event, EventsWriter
from protoseg.hits.data import IGNORE_LABEL, HitEventsDataset
from protoseg.hits.sites import HitGrid, event_sites
from protoseg.inference import load_model

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "hits-cpu.yaml")
# track 1: the beam pion (a generator primary); 3: a pion of its inelastic interaction (dropped by rule 2018);
# 4: a delta ray of the beam pion (EM: credited to it, kept); 2: a cosmic muon
PARTICLES = {"track_id": [1, 2, 3, 4], "parent_id": [-1, -1, 1, 1], "pdg": [211, 13, 211, 11], "origin": [1, 2, 1, 1],
             "process": ["primary", "primary", "pi+Inelastic", "delta"]}


def _event(event_id: int, rng: np.random.Generator) -> Event:
    # one hit per site (rows of 6 ticks), plus wire 100 where a daughter hit (larger) and a primary hit share a site
    groups = [(1, 1, 20, 40), (3, 1, 40, 60), (4, 1, 60, 62), (2, 2, 200, 260)]  # (track, label, first wire, last wire)
    wire, tick, track, label = [], [], [], []
    for track_id, klass, lo, hi in groups:
        w = np.arange(lo, hi)
        wire += list(w)
        tick += list(3000.0 + 6.0 * (w - lo) + rng.uniform(0, 1, len(w)))
        track += [track_id] * len(w)
        label += [klass] * len(w)
    wire += [100, 100]
    tick += [1200.5, 1202.5]
    track += [3, 1]
    label += [1, 1]
    n = len(wire)
    integral = np.full(n, 500.0, np.float32)
    integral[-2] = 900.0  # the daughter's hit leads its shared site
    hits = {"wire": np.array(wire, np.uint16), "tick": np.array(tick, np.float32), "integral": integral,
            "rms": np.full(n, 3.0, np.float32), "peak": np.full(n, 100.0, np.float32), "label": np.array(label, np.uint8),
            "origin": np.where(np.array(label) == 1, 1, 2).astype(np.uint8), "track_id": np.array(track, np.int32),
            "pdg": np.array([dict(zip(PARTICLES["track_id"], PARTICLES["pdg"]))[t] for t in track], np.int32)}
    particles = {"track_id": np.array(PARTICLES["track_id"], np.int32), "parent_id": np.array(PARTICLES["parent_id"], np.int32),
                 "pdg": np.array(PARTICLES["pdg"], np.int32), "origin": np.array(PARTICLES["origin"], np.uint8),
                 "process": np.array(PARTICLES["process"], object), "end_process": np.array(["stop"] * 4, object),
                 **{k: np.zeros(4, np.float32) for k in ("start_x", "start_y", "start_z", "end_x", "end_y", "end_z", "start_t",
                                                       "start_px", "start_py", "start_pz", "energy_deposited", "track_length")}}
    return Event(event_id=event_id, hits=hits, is_mc=True, particles=particles)


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rule2018") / "events.h5"
    rng = np.random.default_rng(5)
    with EventsWriter(path, config={"test": "rule2018"}, is_mc=True, source="test") as writer:
        for i in range(4):
            writer.append(_event(100 + i, rng))
    return path


def test_sites_the_rule_drops_carry_the_ignore_label(events):
    all_rule = HitEventsDataset(events, np.arange(1), beam_label_rule="all")[0]
    rule2018 = HitEventsDataset(events, np.arange(1), beam_label_rule="2018")[0]
    assert torch.equal(all_rule[0], rule2018[0]) and torch.equal(all_rule[1], rule2018[1])  # the same sites and features
    hits = _event(100, np.random.default_rng(5)).hits
    sites = event_sites(hits, HitGrid(), hit_label=hits["track_id"].astype(np.int64))
    lead_track = torch.from_numpy(sites.label)  # the track of each site's largest hit
    expected = torch.tensor([{1: 1, 2: 2, 3: IGNORE_LABEL, 4: 1}[int(t)] for t in lead_track])
    assert torch.equal(rule2018[2], expected)
    assert int((rule2018[2] == IGNORE_LABEL).sum()) == 21  # 20 daughter sites and the shared site its hit leads
    assert torch.equal(all_rule[2], torch.where(lead_track == 2, 2, 1))


def test_a_rule_2018_hit_model_trains_records_its_rule_and_is_scored_under_it(events, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--config", CONFIG, "--data", str(events), "--out", str(run), "--set", "model.channels=[4, 8]",
                 "--set", "model.reps=1", "--set", "data.validation_events=1", "--set", "data.beam_label_rule=2018",
                 "--set", "trainer.max_steps=2", "--set", "trainer.limit_train_batches=2", "--set", "trainer.cpu_time_budget_s=0",
                 "--set", "optim.schedule=none", "--set", "trainer.progress_bar=false"])
    assert code == 0
    model = load_model(run)
    assert model.card["input"]["image"]["beam_label_rule"] == "2018"
    # validation counted the 82 sites of its event that rule 2018 keeps, not the 21 it drops
    assert np.asarray(model.card["metrics"]["validation"]["confusion"]).sum() == 82
    capsys.readouterr()
    assert main(["predict", str(run), str(events), "-o", str(tmp_path / "p.h5")]) == 0
    assert "beam label rule 2018" in capsys.readouterr().out
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        metrics = json.loads(handle.attrs["hit_metrics"])
    # per event 104 hits, 21 of them the daughter's (dropped); the beam hits kept: the pion's 20 + 1 and its delta ray's 2
    assert metrics["beam_label_rule"] == "2018" and metrics["n_hits"] == 4 * 83 and metrics["beam_hits"] == 4 * 23

    spec = importlib.util.spec_from_file_location("working_point", Path(__file__).parents[1] / "benchmarks" / "working_point.py")
    working_point = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(working_point)
    assert working_point.working_points(events, tmp_path / "p.h5", [0.5])["beam_hits"] == 4 * 23

    # resuming it under another rule is refused in one line
    assert main(["train", "--config", CONFIG, "--data", str(events), "--out", str(run), "--set", "model.channels=[4, 8]",
                 "--set", "model.reps=1", "--set", "data.validation_events=1", "--set", "trainer.max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beam label rule 2018" in err


def test_the_rule_option_is_refused_for_an_image_network(tmp_path, capsys):
    images = tiny_images(tmp_path / "images.h5")
    code = main(["train", "--config", str(Path(__file__).resolve().parents[1] / "configs" / "cpu.yaml"), "--data", str(images),
                 "--out", str(tmp_path / "run"), "--set", "data.beam_label_rule=2018"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "carries the rule it was made with" in err and not (tmp_path / "run").exists()
