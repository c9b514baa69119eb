"""Overlays (data.overlay_fraction): a training event's beam hits with another training event's not-beam
and noise hits, drawn from (seed, epoch, event); validation sees the events as simulated."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_inference import tiny_events

from protoseg.cli import main
from protoseg.config import default_config, validate
from protoseg.errors import InputError
from protoseg.events import open_events
from protoseg.hits.data import HIT_COLUMNS, HitDataModule, HitEventsDataset
from protoseg.hits.sites import event_sites
from protoseg.inference import load_model

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "hits-cpu.yaml")
TINY = ["--set", "model.channels=[4, 8]", "--set", "model.reps=1", "--set", "data.validation_events=1", "--set", "trainer.max_steps=2",
        "--set", "trainer.limit_train_batches=2", "--set", "trainer.cpu_time_budget_s=0", "--set", "optim.schedule=none",
        "--set", "trainer.progress_bar=false"]


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    # beam hits lie at wire < 400 and tick > 4000, all others are not-beam: an overlay's beam and cosmic
    # hits never share a site, so its sites are exactly the two events' sites
    return tiny_events(tmp_path_factory.mktemp("overlay") / "events.h5", n=5, seed=11)


def test_an_overlay_is_one_events_beam_hits_with_anothers_not_beam_hits(events):
    dataset = HitEventsDataset(events, np.arange(5), overlay_fraction=1.0, seed=7)
    partner = dataset.overlay_partner(2, 3)
    assert partner is not None and partner != 2
    coords, features, label = dataset[(2, 3)]
    with open_events(events) as file:
        own, other = (file.read_hit_columns(i, list(HIT_COLUMNS[:-1])) for i in (2, partner))
    own_beam, other_not_beam = own["label"] == 1, other["label"] != 1
    assert own_beam.any() and other_not_beam.any() and (~own_beam).any()
    merged = {k: np.concatenate([own[k][own_beam], other[k][other_not_beam]]) for k in own}
    expected = event_sites(merged, hit_label=merged["label"])
    assert torch.equal(coords, torch.from_numpy(expected.coords)) and torch.equal(features, torch.from_numpy(expected.features))
    assert torch.equal(label, torch.from_numpy(expected.label.astype(np.int64)))
    # the beam sites are the event's own, the not-beam sites its partner's
    own_sites = event_sites(own, hit_label=own["label"])
    other_sites = event_sites(other, hit_label=other["label"])
    as_set = lambda c: {tuple(x) for x in np.asarray(c).tolist()}  # noqa: E731
    assert as_set(coords[label == 1]) == as_set(own_sites.coords[own_sites.label == 1])
    assert as_set(coords[label == 2]) == as_set(other_sites.coords[other_sites.label == 2])


def test_overlay_draws_follow_seed_epoch_and_fraction(events):
    always = HitEventsDataset(events, np.arange(5), overlay_fraction=1.0, seed=7)
    keys = [(p, e) for p in range(5) for e in range(40)]
    draws = [always.overlay_partner(p, e) for p, e in keys]
    assert all(d is not None and d != p for d, (p, _) in zip(draws, keys))  # always another event
    assert draws == [HitEventsDataset(events, np.arange(5), overlay_fraction=1.0, seed=7).overlay_partner(p, e)
                     for p, e in keys]  # the same seed draws the same partners
    assert len(set(draws)) == 5  # every other event is drawn
    assert draws != [HitEventsDataset(events, np.arange(5), overlay_fraction=1.0, seed=8).overlay_partner(p, e) for p, e in keys]
    half = HitEventsDataset(events, np.arange(5), overlay_fraction=0.5, seed=7)
    overlays = sum(half.overlay_partner(p, e) is not None for p in range(5) for e in range(200))
    assert 430 <= overlays <= 570  # 1000 draws of p = 0.5: 500 ± 16 (1 σ)
    none = HitEventsDataset(events, np.arange(5), seed=7)
    assert all(none.overlay_partner(p, e) is None for p in range(5) for e in range(10))
    first, again = none[(1, 0)], none[(1, 9)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # without overlays an event is the same every epoch


def test_validation_scores_the_events_as_simulated(events):
    module = HitDataModule(events, validation_events=2, overlay_fraction=1.0, seed=3)
    assert module._dataset("train").overlay_fraction == 1.0 and module._dataset("validation").overlay_fraction == 0.0


def test_overlays_are_refused_where_they_cannot_apply(events, tmp_path, capsys):
    config = default_config()
    config["data"]["overlay_fraction"] = 1.5
    with pytest.raises(InputError, match="data.overlay_fraction"):
        validate(config)
    with pytest.raises(InputError, match="rule 'all'"):
        HitEventsDataset(events, np.arange(5), beam_label_rule="2018", overlay_fraction=0.5)
    code = main(["train", "--config", CONFIG, "--data", str(events), "--out", str(tmp_path / "run"), *TINY,
                 "--set", "data.overlay_fraction=0.5", "--set", "data.beam_label_rule=2018"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "overlay_fraction" in err and not (tmp_path / "run").exists()


def test_training_with_overlays_records_them_in_the_card(events, tmp_path):
    code = main(["train", "--config", CONFIG, "--data", str(events), "--out", str(tmp_path / "run"), *TINY,
                 "--set", "data.overlay_fraction=0.5"])
    assert code == 0
    card = load_model(tmp_path / "run").card
    assert card["training_data"]["overlay_fraction"] == 0.5 and card["recipe"]["data"]["overlay_fraction"] == 0.5
