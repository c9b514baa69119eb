"""Which beam hits a model misses, and which other hits it calls beam: the hit-level errors by origin.

``protoseg predict MODEL events.h5 -o p.h5`` tags every hit with a class (its own for a hit-level model, its pixel's for an image model). This script joins
those tags with the events file's truth (per-hit track id, the particle table) and splits the beam
hits by where they come from:

* ``primary``: hits of the beam particle itself and of its EM daughters (delta rays, bremsstrahlung,
  its own shower): what the 2018 labelling rule calls beam;
* ``hadronic descendants``: every other beam hit: products of its inelastic interactions, decays and
  captures, and their showers; beam under rule ``all``, dropped under rule 2018;

each further split by the species of the particle that made the hit, and the descendants by the hit's
distance, in the image plane (Δwire × wire pitch, Δtick × drift velocity × tick), from the nearest hit of the primary.
Not-beam and noise hits tagged beam are split by their distance from the nearest beam hit. Beam and
not-beam hits are also split by the size of the particle that made them (its hits in the event): blips of
one or two hits (Compton electrons, delta rays) against tracks and showers. Events whose primary left no
hit are skipped (counted). ::

    protoseg predict default events.h5 -o pred.h5
    python benchmarks/beam_hit_origins.py events.h5 pred.h5 --results benchmarks/results/beam_hit_origins-default.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial import cKDTree

from protoseg.detector import ARGON, READOUT
from protoseg.events import open_events
from protoseg.fileio import write_json
from protoseg.images import credited_particle_rows, particle_rows

BEAM, NOT_BEAM, NOISE = 1, 2, 0
DISTANCE_EDGES_CM = (0.0, 2.0, 10.0, 50.0, np.inf)
PARTICLE_SIZE_EDGES = (1, 3, 10, 50)  # hits of one particle in the event: 1-2, 3-9, 10-49, >= 50
SPECIES = {"pi+-": (211,), "p": (2212,), "e/gamma": (11, 22), "mu": (13,), "K": (321,)}
CM_PER_TICK = READOUT.tick_us * ARGON.drift_velocity_cm_per_us


def _distance_bin_names() -> list[str]:
    edges = DISTANCE_EDGES_CM
    return [f"{lo:g}-{hi:g} cm" if np.isfinite(hi) else f">= {lo:g} cm" for lo, hi in zip(edges[:-1], edges[1:])]


def _species_of(pdg: np.ndarray) -> np.ndarray:
    names = np.full(len(pdg), "other", dtype=object)
    for name, codes in SPECIES.items():
        names[np.isin(np.abs(pdg), codes)] = name
    return names


class Tally:
    """Hits and hits tagged beam, per named group."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, group: str, selected: np.ndarray, tagged_beam: np.ndarray) -> None:
        entry = self.counts.setdefault(group, [0, 0])
        entry[0] += int(selected.sum())
        entry[1] += int((selected & tagged_beam).sum())


def tally_event(tally: Tally, hits: dict[str, np.ndarray], particles: dict[str, np.ndarray], tagged_beam: np.ndarray) -> bool:
    """Add one event's hits to ``tally``; False when the event's beam primary left no hit."""
    label = np.asarray(hits["label"])
    track_id = np.asarray(hits["track_id"], dtype=np.int64)
    row, found = particle_rows(track_id, particles)
    credited = credited_particle_rows(particles)[row]
    primary = found & (np.asarray(particles["parent_id"])[credited] < 0)
    beam = label == BEAM
    beam_primary = beam & primary
    if not beam_primary.any():
        return False
    xy_cm = np.column_stack([np.asarray(hits["wire"], dtype=np.float64) * READOUT.wire_pitch_cm,
                             np.asarray(hits["tick"], dtype=np.float64) * CM_PER_TICK])
    to_primary, _ = cKDTree(xy_cm[beam_primary]).query(xy_cm)
    to_beam, _ = cKDTree(xy_cm[beam]).query(xy_cm)
    species = _species_of(np.asarray(hits["pdg"]))
    names = _distance_bin_names()
    for origin, members in (("primary", beam_primary), ("hadronic descendants", beam & ~primary)):
        tally.add(f"beam / {origin}", members, tagged_beam)
        for name in (*SPECIES, "other"):
            tally.add(f"beam / {origin} / {name}", members & (species == name), tagged_beam)
    for k, name in enumerate(names):  # the primary's own hits are at 0 cm by definition
        near = (to_primary >= DISTANCE_EDGES_CM[k]) & (to_primary < DISTANCE_EDGES_CM[k + 1])
        tally.add(f"beam / hadronic descendants / {name} from the primary", beam & ~primary & near, tagged_beam)
    _, particle, hits_of_particle = np.unique(track_id, return_inverse=True, return_counts=True)
    size = hits_of_particle[particle]
    edges = (*PARTICLE_SIZE_EDGES, np.inf)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sized = (size >= lo) & (size < hi)
        name = f"particles of {lo}-{hi - 1:g} hits" if np.isfinite(hi) else f"particles of >= {lo} hits"
        tally.add(f"beam / {name}", beam & sized, tagged_beam)
        tally.add(f"not-beam / {name}", (label == NOT_BEAM) & sized, tagged_beam)
    for what, code in (("not-beam", NOT_BEAM), ("noise", NOISE)):
        tally.add(what, label == code, tagged_beam)
        for k, name in enumerate(names):
            near = (to_beam >= DISTANCE_EDGES_CM[k]) & (to_beam < DISTANCE_EDGES_CM[k + 1])
            tally.add(f"{what} / {name} from a beam hit", (label == code) & near, tagged_beam)
    return True


def origins(events_path: Path, predictions_path: Path) -> dict:
    """The tally of ``predictions_path`` (hit tags of ``protoseg predict``) against the truth of ``events_path``."""
    tally = Tally()
    skipped = 0
    with h5py.File(predictions_path, "r") as predictions, open_events(events_path) as events:
        offsets = predictions["hits/offsets"][:]
        tags = predictions["hits/pred"]
        row_of = {int(e): i for i, e in enumerate(events.event_ids)}
        event_ids = predictions["event_id"][:]
        model = str(predictions.attrs.get("model", ""))
        for j, event_id in enumerate(event_ids):
            event = events.read(row_of[int(event_id)])
            tagged_beam = tags[offsets[j]:offsets[j + 1]] == BEAM
            if len(tagged_beam) != len(event.hits["label"]):
                raise ValueError(f"{predictions_path}: event {event_id} has {len(tagged_beam)} tagged hits, the events file {len(event.hits['label'])}")
            skipped += not tally_event(tally, event.hits, event.particles, tagged_beam)
    n_beam = tally.counts["beam / primary"][0] + tally.counts["beam / hadronic descendants"][0]
    n_tagged = sum(tally.counts[g][1] for g in ("beam / primary", "beam / hadronic descendants", "not-beam", "noise"))
    groups = {}
    for group, (n, k) in tally.counts.items():
        entry = {"hits": n, "tagged_beam": k}
        if group.startswith("beam"):
            entry["fraction_of_beam_hits"] = round(n / n_beam, 4) if n_beam else None
            entry["efficiency"] = round(k / n, 4) if n else None
            entry["missed_fraction_of_beam_hits"] = round((n - k) / n_beam, 4) if n_beam else None
        else:
            entry["fraction_of_tagged_beam"] = round(k / n_tagged, 4) if n_tagged else None
        groups[group] = entry
    both = tally.counts["beam / primary"][1] + tally.counts["beam / hadronic descendants"][1]
    return {"events": str(events_path), "predictions": str(predictions_path), "model": model,
            "n_events": int(len(event_ids)), "skipped_no_primary_hit": skipped, "beam_hits": n_beam,
            "efficiency": round(both / n_beam, 4) if n_beam else None,
            "purity": round(both / n_tagged, 4) if n_tagged else None, "groups": groups}


def print_table(result: dict) -> None:
    print(f"{result['n_events']} events ({result['skipped_no_primary_hit']} without a primary hit), "
          f"{result['beam_hits']} beam hits: efficiency {result['efficiency']}, purity {result['purity']}")
    for group, e in result["groups"].items():
        if "efficiency" in e:
            print(f"  {group:55s} {e['fraction_of_beam_hits']:7.1%} of beam hits   efficiency {e['efficiency'] if e['efficiency'] is not None else '-':>6}   "
                  f"missed {e['missed_fraction_of_beam_hits']:6.1%} of beam hits")
        else:
            print(f"  {group:55s} {e['hits']:9d} hits   tagged beam {e['tagged_beam']:7d} ({e['fraction_of_tagged_beam']:6.1%} of all tagged beam)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path, help="events file with truth (track ids and particle table)")
    parser.add_argument("predictions", type=Path, help="protoseg predict's output for those events")
    parser.add_argument("--results", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    result = origins(args.events, args.predictions)
    print_table(result)
    if args.results:
        write_json(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
