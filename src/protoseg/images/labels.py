"""What each hit is labelled: label schemes, class priorities and beam label rules.

Label schemes: ``beam3`` (background, beam, not-beam) is the events file's hit label; ``species``
splits beam hits by the PDG code of the particle that gave the hit most of its charge (|pdg| 211 π±,
2212 p, 11 or 22 e/γ shower, 13 μ, 321 K, anything else "other beam"); not-beam stays one class.
Noise hits (label 0: no particle) keep their charge in the image and are labelled background, which
is what a network must learn on data, where noise hits are present; ``drop_noise=True`` removes them
instead, as the 2018 study did (it dropped hits that no simulated particle matched).

Beam label rules (which hits of the beam interaction count as beam; ``beam_label_rule``):

* ``all``: every hit of the beam particle and of everything it made (secondary hadrons, π⁰
  showers, decay products) is beam, as the events file labels it;
* ``2018``: the 2018 study's rule. Each hit is credited to its particle's first ancestor (itself
  included) that was not made by an electromagnetic process (delta ray, bremsstrahlung, Compton,
  pair conversion, photoelectric, annihilation): "EM daughters map to their parent". Hits credited
  to a particle that is not a generator primary (hadronic daughters: inelastic products, decay
  products, captures, and their showers) are dropped, for the beam and for cosmics alike, so beam
  is the primary's own track with its delta rays and its own EM shower (a beam e⁺). Needs the
  events file's particle table.

``all`` is the default: under ``2018`` a π⁺, p or K⁺ primary keeps only the ~80 hits it makes
before its first inelastic interaction (λ ≈ 60–90 cm), so the ≥ 2000 beam-hit selection keeps only
beam e⁺ events (20% of the beam), and the images lose the hits of the hadronic daughters, which
data images do contain.
"""
from __future__ import annotations

import numpy as np

from protoseg.errors import InputError

__all__ = ["LABEL_SCHEMES", "CLASS_RANK", "BEAM_LABEL_RULES", "EM_PROCESSES", "hit_labels", "particle_rows", "credited_particle_rows",
           "apply_beam_label_rule"]

LABEL_SCHEMES: dict[str, list[str]] = {
    "beam3": ["background", "beam", "not-beam"],
    "species": [
        "background",
        "not-beam",
        "beam pi+-",
        "beam p",
        "beam e/gamma shower",
        "beam mu",
        "beam K",
        "other beam",
    ],
}
# Priority of each class for beam-priority labels and charge-majority ties: beam > not-beam > background.
CLASS_RANK: dict[str, np.ndarray] = {
    "beam3": np.array([0, 2, 1], dtype=np.int8),
    "species": np.array([0, 1, 2, 2, 2, 2, 2, 2], dtype=np.int8),
}
BEAM_LABEL_RULES: tuple[str, ...] = ("all", "2018")
# Processes that make "EM daughters" (names of the particle table's "process" column). In LArG4 the
# 2018 simulation did not even store these particles: their energy went to the parent's track id.
EM_PROCESSES: tuple[str, ...] = ("delta", "brem", "compt", "conv", "phot", "annihil")


def hit_labels(hits: dict[str, np.ndarray], label_scheme: str = "beam3") -> np.ndarray | None:
    """Class of each hit under ``label_scheme`` (uint8), or None when the hits carry no truth."""
    if label_scheme not in LABEL_SCHEMES:
        raise InputError(f"unknown label scheme '{label_scheme}' (choose from {', '.join(LABEL_SCHEMES)})")
    if "label" not in hits:
        return None
    label = np.asarray(hits["label"])
    if label_scheme == "beam3":
        return label.astype(np.uint8, copy=False)
    if "pdg" not in hits:
        raise InputError("species labels need the per-hit truth pdg, which these hits do not have")
    pdg = np.abs(np.asarray(hits["pdg"]))
    species = np.select(
        [pdg == 211, pdg == 2212, (pdg == 11) | (pdg == 22), pdg == 13, pdg == 321],
        [2, 3, 4, 5, 6],
        default=7,
    ).astype(np.uint8)
    return np.where(label == 1, species, np.where(label == 2, np.uint8(1), np.uint8(0))).astype(np.uint8)


def particle_rows(track_id: np.ndarray, particles: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Row of each ``track_id`` in the particle table (int64) and whether it was found there."""
    table_ids = np.asarray(particles["track_id"], dtype=np.int64)
    order = np.argsort(table_ids, kind="stable")
    sorted_ids = table_ids[order]
    track_id = np.asarray(track_id, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.zeros(len(track_id), dtype=np.int64), np.zeros(len(track_id), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, track_id), len(sorted_ids) - 1)
    found = sorted_ids[pos] == track_id
    return order[pos], found


def credited_particle_rows(particles: dict[str, np.ndarray]) -> np.ndarray:
    """Row of each particle's first ancestor (itself included) not made by an EM process (int64).

    ``particles`` needs ``track_id``, ``parent_id`` (-1 for primaries) and ``process``. The chain
    is climbed for all particles at once, one generation per step (no loop over particles).
    """
    n = len(particles["track_id"])
    parent_row, has_parent = particle_rows(particles["parent_id"], particles)
    has_parent &= np.asarray(particles["parent_id"]) >= 0
    em_made = np.isin(np.asarray(particles["process"]).astype(str), EM_PROCESSES)
    climbs = em_made & has_parent  # a particle whose hits go to its parent
    row = np.arange(n, dtype=np.int64)
    for _ in range(n + 1):  # an EM chain is at most n long; a cycle in the table would stop here
        up = climbs[row]
        if not up.any():
            return row
        row = np.where(up, parent_row[row], row)
    raise InputError("the particle table's parent links form a cycle")


def apply_beam_label_rule(
    hits: dict[str, np.ndarray], particles: dict[str, np.ndarray] | None, rule: str = "all"
) -> dict[str, np.ndarray]:
    """The hits under a beam label rule (module docstring): ``all`` returns ``hits`` unchanged.

    ``2018``: hits credited to a particle that is not a generator primary are removed, and the
    kept hits' ``track_id`` / ``pdg`` become those of the credited particle (so species labels name
    the primary, not its delta electron). Noise hits (``track_id`` < 0) are kept. Needs
    ``track_id`` (and ``label``) per hit and the event's particle table.
    """
    if rule not in BEAM_LABEL_RULES:
        raise InputError(f"unknown beam label rule '{rule}' (choose from {', '.join(BEAM_LABEL_RULES)})")
    if rule == "all" or "label" not in hits:
        return hits
    if particles is None or "track_id" not in hits:
        raise InputError("the 2018 beam label rule needs the per-hit track_id and the particle table")
    track_id = np.asarray(hits["track_id"], dtype=np.int64)
    matched = track_id >= 0
    row, found = particle_rows(track_id, particles)
    if not found[matched].all():
        missing = int(track_id[matched & ~found][0])
        raise InputError(f"hit truth names track {missing}, which is not in the particle table")
    credited = credited_particle_rows(particles)[row]
    is_primary = np.asarray(particles["parent_id"])[credited] < 0
    keep = ~matched | is_primary
    out = {name: np.asarray(column)[keep] for name, column in hits.items()}
    kept_matched = matched[keep]
    credited = credited[keep]
    out["track_id"] = np.where(kept_matched, np.asarray(particles["track_id"])[credited], out["track_id"]).astype(
        np.asarray(hits["track_id"]).dtype)
    if "pdg" in hits:
        out["pdg"] = np.where(kept_matched, np.asarray(particles["pdg"])[credited], out["pdg"]).astype(
            np.asarray(hits["pdg"]).dtype)
    return out
