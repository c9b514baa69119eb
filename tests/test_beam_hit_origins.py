"""benchmarks/beam_hit_origins.py: beam hits split by origin, on a hand-built event with known answers."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from test_images import HAND_PARTICLES

SPEC = importlib.util.spec_from_file_location("beam_hit_origins", Path(__file__).parents[1] / "benchmarks" / "beam_hit_origins.py")
origins = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(origins)


def hand_hits():
    # One hit per HAND_PARTICLES particle and a noise hit; wires 0, 10, ..., 110 (4.792 cm apart), one tick.
    # Beam primary: the pi+ (10) and its EM chain (11-13). Hadronic descendants: the proton (14) and its
    # delta ray (15), the decay photon (16) and its conversion electron (17). Not-beam: the muon (30-32).
    track = np.array([10, 11, 12, 13, 14, 15, 16, 17, 30, 31, 32, -1], np.int64)
    return {"wire": np.arange(12) * 10, "tick": np.full(12, 500.0),
            "label": np.array([1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 0], np.uint8), "track_id": track,
            "pdg": np.array([211, 11, 22, 11, 2212, 11, 22, 11, 13, 11, 11, 0], np.int32)}


def test_beam_hits_are_split_into_primary_and_hadronic_descendants_with_their_tags():
    tally = origins.Tally()
    # tagged beam: the primary's first two hits, the proton, and the not-beam hit next to the beam (wire 80)
    tagged = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], bool)
    assert origins.tally_event(tally, hand_hits(), HAND_PARTICLES, tagged)
    c = tally.counts
    assert c["beam / primary"] == [4, 2]
    assert c["beam / primary / pi+-"] == [1, 1] and c["beam / primary / e/gamma"] == [3, 1]
    assert c["beam / hadronic descendants"] == [4, 1]
    assert c["beam / hadronic descendants / p"] == [1, 1] and c["beam / hadronic descendants / e/gamma"] == [3, 0]
    # descendants at wires 40..70: 4.79 cm ... 19.2 cm from the nearest primary hit (wire 30)
    assert c["beam / hadronic descendants / 2-10 cm from the primary"] == [2, 1]
    assert c["beam / hadronic descendants / 10-50 cm from the primary"] == [2, 0]
    # not-beam at wires 80, 90, 100: 4.8, 9.6 and 14.4 cm from the last beam hit (wire 70)
    assert c["not-beam"] == [3, 1] and c["not-beam / 2-10 cm from a beam hit"] == [2, 1]
    assert c["not-beam / 10-50 cm from a beam hit"] == [1, 0] and c["noise"] == [1, 0]


def test_an_event_whose_primary_left_no_hit_is_skipped():
    hits = hand_hits()
    keep = ~np.isin(hits["track_id"], [10, 11, 12, 13])
    tally = origins.Tally()
    assert not origins.tally_event(tally, {k: v[keep] for k, v in hits.items()}, HAND_PARTICLES, np.zeros(keep.sum(), bool))
    assert tally.counts == {}


def test_hits_are_split_by_the_size_of_their_particle():
    hits = hand_hits()
    # the pion gets 11 more hits (12: 10-49), the muon 59 more (60: >= 50), on wires beyond the hand event's
    extra = {10: 11, 30: 59}
    grown = {k: np.concatenate([v, *[np.repeat(v[hits["track_id"] == t], n) for t, n in extra.items()]]) for k, v in hits.items()}
    grown["wire"] = np.arange(len(grown["wire"])) * 10
    tagged = np.zeros(len(grown["wire"]), bool)
    tagged[np.flatnonzero(grown["track_id"] == 10)[:5]] = True   # 5 of the pion's 12 hits
    tagged[np.flatnonzero(grown["track_id"] == 30)[:7]] = True   # 7 of the muon's 60
    tagged[4] = True                                              # the proton, one hit
    tally = origins.Tally()
    assert origins.tally_event(tally, grown, HAND_PARTICLES, tagged)
    c = tally.counts
    assert c["beam / particles of 1-2 hits"] == [7, 1] and c["beam / particles of 10-49 hits"] == [12, 5]
    assert c["beam / particles of 3-9 hits"] == [0, 0] and c["beam / particles of >= 50 hits"] == [0, 0]
    assert c["not-beam / particles of 1-2 hits"] == [2, 0] and c["not-beam / particles of >= 50 hits"] == [60, 7]
