"""Hits → labelled images: pixel grid, pooling strategies, label schemes, selection, splits, the image file.

The grid is the 2018 study's: the readout window (6000 ticks) and the 1440 collection wires are
mapped linearly onto H×W pixels, row = tick bin (row 0 = tick 0), column = wire bin, with
``bin = floor(value × size / range)``.

Poolings (what a pixel holds when several hits fall into it; ``integral`` is the hit integral):

=================  ============================  ===========================================================
pooling            pixel value                   pixel label
=================  ============================  ===========================================================
``max``            largest integral              label of that hit (2018; equal integrals: the first hit)
``sum``            summed integrals              charge majority: the class holding most of the charge
``mean``           mean integral of its hits     charge majority
``beam-priority``  largest integral              beam if any beam hit is there, else not-beam, else background
                                                 (species: the beam class of the largest beam hit)
``charge-majority`` largest integral             charge majority
=================  ============================  ===========================================================

Charge-majority ties go to the higher-priority class (beam > not-beam > background). ``max`` loses a
beam pixel whenever a larger cosmic hit shares it; ``beam-priority`` keeps every such pixel.

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

import json
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.version import __version__
from protoseg.detector import READOUT
from protoseg.errors import InputError
from protoseg.fileio import atomic_output, open_h5_checked

__all__ = [
    "FORMAT",
    "VERSION",
    "LABEL_SCHEMES",
    "POOLINGS",
    "BEAM_LABEL_RULES",
    "credited_particle_rows",
    "apply_beam_label_rule",
    "SPLIT_NAMES",
    "pixel_indices",
    "hit_labels",
    "event_to_image",
    "parse_split",
    "make_image_file",
    "write_images",
    "open_images",
    "ImageFile",
    "check_image_values",
    "check_hit_values",
    "validate_images_file",
    "class_balance",
    "format_class_balance",
]

FORMAT = "protoseg-images"
VERSION = 1

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
_CLASS_RANK: dict[str, np.ndarray] = {
    "beam3": np.array([0, 2, 1], dtype=np.int8),
    "species": np.array([0, 1, 2, 2, 2, 2, 2, 2], dtype=np.int8),
}
POOLINGS: tuple[str, ...] = ("max", "sum", "mean", "beam-priority", "charge-majority")
BEAM_LABEL_RULES: tuple[str, ...] = ("all", "2018")
# Processes that make "EM daughters" (names of the particle table's "process" column). In LArG4 the
# 2018 simulation did not even store these particles: their energy went to the parent's track id.
EM_PROCESSES: tuple[str, ...] = ("delta", "brem", "compt", "conv", "phot", "annihil")
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
SPLIT_CODES: dict[str, int] = {"train": 0, "validation": 1, "val": 1, "test": 2}

DEFAULT_SIZE = (320, 320)
# A spread hit covers peak ± 3 rms (99.7% of a Gaussian pulse); the pieces are renormalised to the
# hit integral, so spreading never changes an image's total charge.
_SPREAD_SIGMAS = 3.0


# ----------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------
def check_size(size: Sequence[int], where: str | Path | None = None) -> tuple[int, int]:
    """``size`` as (H, W) ints, or InputError: 1 <= H <= 6000 ticks and 1 <= W <= 1440 wires."""
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"image size must be two integers H W, got {size!r}", where) from None
    if not (1 <= height <= READOUT.n_ticks and 1 <= width <= READOUT.n_wires):
        raise InputError(
            f"impossible image size {height}x{width}: rows must be 1..{READOUT.n_ticks} (ticks) "
            f"and columns 1..{READOUT.n_wires} (wires)",
            where,
        )
    return height, width


def pixel_indices(tick: np.ndarray, wire: np.ndarray, size: Sequence[int] = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, col) of each hit: row = floor(tick × H / 6000), col = floor(wire × W / 1440).

    Computed in float64 ((value × size) / range, in that order), so an independent computation with
    the same formula gives the same bins. Returns int64 arrays.
    """
    height, width = check_size(size)
    tick64 = np.asarray(tick, dtype=np.float64)
    row = np.floor(tick64 * height / READOUT.n_ticks).astype(np.int64)
    wire = np.asarray(wire)
    if wire.dtype.kind in "iu":  # exact integer arithmetic: the same floor as in float64
        col = wire.astype(np.int64) * width // READOUT.n_wires
    else:
        col = np.floor(np.asarray(wire, dtype=np.float64) * width / READOUT.n_wires).astype(np.int64)
    # Hits are validated to lie inside the window; clipping only guards against float rounding.
    np.clip(row, 0, height - 1, out=row)
    np.clip(col, 0, width - 1, out=col)
    return row, col


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


def _particle_rows(track_id: np.ndarray, particles: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
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
    parent_row, has_parent = _particle_rows(particles["parent_id"], particles)
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
    row, found = _particle_rows(track_id, particles)
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


def _spread_pieces(
    tick: np.ndarray, rms: np.ndarray, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split hits over the tick rows their pulse covers: (hit index, row, charge fraction) per piece."""
    from scipy.special import ndtr

    n_ticks = READOUT.n_ticks
    tick64 = np.asarray(tick, dtype=np.float64)
    sigma = np.asarray(rms, dtype=np.float64)
    spread = np.isfinite(sigma) & (sigma > 0)
    sigma = np.where(spread, sigma, 0.0)
    lo_tick = np.clip(tick64 - _SPREAD_SIGMAS * sigma, 0.0, n_ticks)
    hi_tick = np.clip(tick64 + _SPREAD_SIGMAS * sigma, 0.0, n_ticks)
    point_row = np.floor(tick64 * height / n_ticks).astype(np.int64)
    row_lo = np.where(spread, np.floor(lo_tick * height / n_ticks).astype(np.int64), point_row)
    row_hi = np.where(spread, np.floor(np.nextafter(hi_tick, 0.0) * height / n_ticks).astype(np.int64), point_row)
    np.clip(row_lo, 0, height - 1, out=row_lo)
    np.clip(row_hi, row_lo, height - 1, out=row_hi)
    n_rows = row_hi - row_lo + 1
    hit = np.repeat(np.arange(len(tick64)), n_rows)
    starts = np.cumsum(n_rows) - n_rows
    row = row_lo[hit] + (np.arange(len(hit)) - starts[hit])
    # Charge in each row: Gaussian mass between the row's tick edges (clipped to the pulse window).
    edge_lo = np.maximum(row * n_ticks / height, lo_tick[hit])
    edge_hi = np.minimum((row + 1) * n_ticks / height, hi_tick[hit])
    s = np.where(spread[hit], sigma[hit], 1.0)
    mass = np.where(spread[hit], ndtr((edge_hi - tick64[hit]) / s) - ndtr((edge_lo - tick64[hit]) / s), 1.0)
    mass = np.maximum(mass, 0.0)
    total = np.bincount(hit, weights=mass, minlength=len(tick64))
    fraction = mass / np.where(total > 0, total, 1.0)[hit]
    return hit, row, fraction


class _Workspace:
    """Per-pixel scratch arrays reused from event to event (one set per thread and image size).

    Allocating and filling full-image temporaries for every event costs more than the pooling
    itself (page faults on fresh memory), so each array is allocated once, in its "empty" state,
    and after use only the entries of the pixels that were touched are put back.
    """

    _local = threading.local()

    def __init__(self, n_pix: int) -> None:
        self.n_pix = n_pix
        self.first = np.full(n_pix, _NO_HIT, dtype=np.int64)  # smallest winning hit index
        self.best_rank = np.full(n_pix, -1, dtype=np.int8)
        self.best_value = np.full(n_pix, -np.inf, dtype=np.float32)
        self.total = np.zeros(n_pix, dtype=np.float64)
        self.count = np.zeros(n_pix, dtype=np.int64)
        self.slot = np.zeros(n_pix, dtype=np.int64)  # scratch, always written before it is read

    @classmethod
    def get(cls, n_pix: int) -> _Workspace:
        ws = getattr(cls._local, "ws", None)
        if ws is None or ws.n_pix != n_pix:
            ws = cls._local.ws = cls(n_pix)
        return ws


_NO_HIT = np.iinfo(np.int64).max


def _label_of_first(ws: _Workspace, pix: np.ndarray, candidate: np.ndarray, label: np.ndarray, label_out: np.ndarray) -> None:
    """label_out[p] = label of the first (lowest-index) candidate hit in pixel p."""
    index = np.flatnonzero(candidate)
    cand_pix = pix[index]
    np.minimum.at(ws.first, cand_pix, index)
    # Every candidate of a pixel writes the same winner's label, so the write order is irrelevant.
    label_out[cand_pix] = label[ws.first[cand_pix]]
    ws.first[cand_pix] = _NO_HIT


def _charge_majority(ws: _Workspace, pix: np.ndarray, value: np.ndarray, label: np.ndarray, rank: np.ndarray,
                     label_out: np.ndarray) -> None:
    """label_out[p] = the class holding the largest summed charge in p (ties: higher rank, then lower class)."""
    n = len(pix)
    if n == 0:
        return
    n_classes = len(rank)
    # Compact ids of the occupied pixels without sorting: scatter hit numbers, read back one
    # representative hit per pixel (whichever write landed), number those pixels 0..K-1.
    hit = np.arange(n)
    ws.slot[pix] = hit
    pixels = pix[ws.slot[pix] == hit]
    ws.slot[pixels] = np.arange(len(pixels))
    local = ws.slot[pix]
    charge = np.bincount(local * n_classes + label, weights=value, minlength=len(pixels) * n_classes)
    charge = charge.reshape(len(pixels), n_classes)
    order = np.lexsort((np.arange(n_classes), -rank.astype(np.int64)))  # columns by priority
    label_out[pixels] = order[np.argmax(charge[:, order], axis=1)]


def _pool_into(adc_out: np.ndarray, label_out: np.ndarray | None, pix: np.ndarray, value: np.ndarray,
               label: np.ndarray | None, pooling: str, rank: np.ndarray | None) -> None:
    """Pool hits (flat pixel index ``pix``) into zeroed flat outputs ``adc_out`` / ``label_out``."""
    ws = _Workspace.get(len(adc_out))
    if pooling in ("sum", "mean"):
        np.add.at(ws.total, pix, value.astype(np.float64))
        if pooling == "mean":
            np.add.at(ws.count, pix, 1)
            adc_out[pix] = ws.total[pix] / ws.count[pix]
            ws.count[pix] = 0
        else:
            adc_out[pix] = ws.total[pix]
        ws.total[pix] = 0.0
    else:
        np.maximum.at(adc_out, pix, value)
    if label is None or label_out is None:
        return
    if pooling == "max":
        _label_of_first(ws, pix, value == adc_out[pix], label, label_out)
    elif pooling == "beam-priority":
        hit_rank = rank[label]
        np.maximum.at(ws.best_rank, pix, hit_rank)
        candidate = hit_rank == ws.best_rank[pix]
        np.maximum.at(ws.best_value, pix[candidate], value[candidate])
        candidate &= value == ws.best_value[pix]
        ws.best_rank[pix] = -1
        ws.best_value[pix] = -np.inf
        _label_of_first(ws, pix, candidate, label, label_out)
    else:
        _charge_majority(ws, pix, value, label, rank, label_out)


def event_to_image(
    hits: dict[str, np.ndarray],
    size: Sequence[int] = DEFAULT_SIZE,
    pooling: str = "max",
    label_scheme: str | None = "beam3",
    spread_rms: bool = False,
    drop_noise: bool = False,
    out: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One event's hits → (adc float32 [H, W], label uint8 [H, W] or None).

    ``hits`` needs ``wire``, ``tick``, ``integral`` (and ``label``, plus ``pdg`` for species, for
    labels; ``rms`` for ``spread_rms``). Labels are None when ``label_scheme`` is None or the hits
    carry no truth. Pixels without hits are 0 (background). ``out``: optional preallocated
    (adc, label) arrays of shape [H, W] to fill (they are zeroed first).
    """
    height, width = check_size(size)
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling '{pooling}' (choose from {', '.join(POOLINGS)})")
    label = hit_labels(hits, label_scheme) if label_scheme is not None else None
    tick = np.asarray(hits["tick"])
    wire = np.asarray(hits["wire"])
    value = np.asarray(hits["integral"], dtype=np.float32)
    rms = np.asarray(hits["rms"]) if spread_rms and "rms" in hits else None
    if spread_rms and rms is None:
        raise InputError("spread_rms needs the per-hit rms")
    if drop_noise and "label" in hits:
        keep = np.asarray(hits["label"]) != 0
        tick, wire, value = tick[keep], wire[keep], value[keep]
        label = label[keep] if label is not None else None
        rms = rms[keep] if rms is not None else None
    row, col = pixel_indices(tick, wire, (height, width))
    if spread_rms:
        piece_hit, row, fraction = _spread_pieces(tick, rms, height)
        col = col[piece_hit]
        value = (value[piece_hit] * fraction).astype(np.float32)
        if label is not None:
            label = label[piece_hit]
    pix = row * width + col
    if out is None:
        adc_image = np.zeros((height, width), dtype=np.float32)
        label_image = np.zeros((height, width), dtype=np.uint8) if label is not None else None
    else:
        adc_image, label_image = out
        adc_image.fill(0)
        if label is None:
            label_image = None
        elif label_image is None:
            label_image = np.zeros((height, width), dtype=np.uint8)
        else:
            label_image.fill(0)
    _pool_into(adc_image.reshape(-1), label_image.reshape(-1) if label_image is not None else None, pix, value,
               label, pooling, _CLASS_RANK[label_scheme] if label is not None else None)
    return adc_image, label_image


# ----------------------------------------------------------------------------------------------
# Selection and splits
# ----------------------------------------------------------------------------------------------
def parse_split(split: Sequence[float] | None, n_available: int, where: str | Path | None = None) -> tuple[int, int, int]:
    """Numbers of (train, validation, test) images: three counts, or three fractions summing to 1.

    Fractions are turned into counts of ``n_available`` by largest remainder (they add up to it).
    Counts that need more events than ``n_available`` raise InputError.
    """
    if split is None:
        split = (0.8, 0.1, 0.1)
    values = [float(v) for v in split]
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values):
        raise InputError(f"--split needs three non-negative numbers TRAIN VAL TEST, got {list(split)}", where)
    if sum(values) <= 0:
        raise InputError("--split asks for no images at all", where)
    if abs(sum(values) - 1.0) < 1e-9:  # numbers that sum to 1 are fractions (DESIGN.md)
        exact = np.array(values) * n_available
        counts = np.floor(exact).astype(np.int64)
        remainder = n_available - int(counts.sum())
        for k in np.argsort(-(exact - counts), kind="stable")[:remainder]:
            counts[k] += 1
        return int(counts[0]), int(counts[1]), int(counts[2])
    if any(v != int(v) for v in values):
        raise InputError(f"--split: counts must be whole numbers, or fractions must sum to 1 (got {values})", where)
    counts = tuple(int(v) for v in values)
    if sum(counts) > n_available:
        raise InputError(
            f"--split asks for {sum(counts)} images ({counts[0]} + {counts[1]} + {counts[2]}) "
            f"but only {n_available} events pass the selection",
            where,
        )
    return counts


def _hit_class_counts(events, chunk_events: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per event: number of full-resolution beam (label 1) and not-beam (label 2) hits."""
    n_events = len(events)
    n_beam = np.zeros(n_events, dtype=np.int64)
    n_not_beam = np.zeros(n_events, dtype=np.int64)
    offsets = events.hit_offsets
    dataset = events._h5["hits/label"]
    for start in range(0, n_events, chunk_events):
        stop = min(n_events, start + chunk_events)
        lo, hi = int(offsets[start]), int(offsets[stop])
        label = dataset[lo:hi]
        starts = offsets[start:stop] - lo
        counts = np.diff(offsets[start : stop + 1])
        has_hits = counts > 0
        if not has_hits.any():
            continue
        for code, out in ((1, n_beam), (2, n_not_beam)):
            # reduceat over 1-byte flags: no hit-sized integer temporaries. Empty events are skipped
            # (reduceat would return the next event's first element for them).
            flags = (label == code).view(np.uint8)
            out[start:stop][has_hits] = np.add.reduceat(flags, starts[has_hits], dtype=np.int64)
    return n_beam, n_not_beam


def _hit_class_counts_relabelled(events, rule: str, chunk_events: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per event: beam and not-beam hits after ``apply_beam_label_rule`` (reads the particle table)."""
    n_beam = np.zeros(len(events), dtype=np.int64)
    n_not_beam = np.zeros(len(events), dtype=np.int64)
    for i, event in enumerate(events.iter_events(0, len(events), chunk_events)):
        try:
            label = apply_beam_label_rule(event.hits, event.particles, rule)["label"]
        except InputError as exc:
            raise InputError(f"event {event.event_id}: {exc}", events.path) from None
        n_beam[i] = np.count_nonzero(label == 1)
        n_not_beam[i] = np.count_nonzero(label == 2)
    return n_beam, n_not_beam


def _events_charge_scale(events) -> str:
    # "hit_scale" is what `protoseg simulate` records; "charge_scale" any other producer.
    for source in (events.config, events.attrs):
        for key in ("charge_scale", "hit_scale"):
            value = source.get(key) if isinstance(source, dict) else None
            if value:
                return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "hit integral in ADC x tick, as stored in the events file (no rescaling)"


# Settings that may differ between events files made into one image file: what identifies a piece of a
# sample (its seed, its event range, its bad channels, which follow from the seed; the dump it was imported
# from), not how events were made. Everything else in the files' configs must be equal.
_PER_PIECE_SETTINGS = frozenset({
    "run.seed", "run.n_events", "run.first_event", "run.dead_channels", "run.noisy_channels",  # simulate
    "source", "tree", "step_size", "source_entries",  # import-root
})
# Of those, what only says which events of a sample a file holds: files equal in everything else are
# pieces of one sample, and must not hold the same events twice.
_RANGE_SETTINGS = frozenset({"run.n_events", "run.first_event", "step_size"})


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {"": config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


def _producer(config: dict) -> str:
    if "command" in config:
        return str(config["command"])
    return "simulate" if "run" in config and "sources" in config else "an unknown producer"


def check_compatible_events(files: Sequence[Any]) -> None:
    """Refuse events files that cannot make one image file; InputError names the file and the setting.

    Files must agree on MC / data and on every setting of their configs except those of
    ``_PER_PIECE_SETTINGS`` (seed, event range, bad channels, imported dump); files that are pieces
    of one sample (equal but for their event range) must not share an event.
    """
    if len(files) < 2:
        return
    first = files[0]
    reference = _flatten(first.config)
    for other in files[1:]:
        if bool(other.is_mc) != bool(first.is_mc):
            kinds = {True: "MC (with truth)", False: "data (no truth)"}
            raise InputError(f"is {kinds[bool(other.is_mc)]} but {first.path} is {kinds[bool(first.is_mc)]}: "
                             "they cannot make one image file", other.path)
        if _producer(other.config) != _producer(first.config):
            raise InputError(f"was made by {_producer(other.config)} but {first.path} by {_producer(first.config)}: "
                             "their hits are not on one footing (charge scale, truth)", other.path)
        settings = _flatten(other.config)
        differing = sorted(
            key for key in set(reference) | set(settings)
            if key not in _PER_PIECE_SETTINGS and reference.get(key, "(not set)") != settings.get(key, "(not set)")
        )
        if differing:
            shown = ", ".join(f"{key} ({settings.get(key, '(not set)')!r} vs {reference.get(key, '(not set)')!r})"
                              for key in differing[:3])
            more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
            raise InputError(f"was made with other settings than {first.path}: {shown}{more}", other.path)
    samples: dict[str, list[Any]] = {}
    for events in files:
        identity = json.dumps({k: v for k, v in _flatten(events.config).items() if k not in _RANGE_SETTINGS},
                              sort_keys=True, default=str)
        samples.setdefault(identity, []).append(events)
    for pieces in samples.values():
        if len(pieces) < 2:
            continue
        ids = np.concatenate([np.asarray(events.event_ids, dtype=np.int64) for events in pieces])
        owner = np.repeat(np.arange(len(pieces)), [len(events) for events in pieces])
        order = np.argsort(ids, kind="stable")
        ids, owner = ids[order], owner[order]
        repeated = np.flatnonzero((ids[1:] == ids[:-1]) & (owner[1:] != owner[:-1]))
        if repeated.size:
            k = int(repeated[0])
            raise InputError(
                f"holds event {int(ids[k])} of {pieces[owner[k]].path} again (same sample: same seed or the same "
                "imported dump); an event must not be in two files", pieces[owner[k + 1]].path)


def make_image_file(
    events_path: str | Path | Sequence[str | Path],
    out_path: str | Path,
    *,
    size: Sequence[int] = DEFAULT_SIZE,
    pooling: str = "max",
    label_scheme: str = "beam3",
    min_beam_hits: int = 2000,
    min_notbeam_hits: int = 2000,
    split: Sequence[float] | None = None,
    seed: int = 0,
    spread_rms: bool = False,
    drop_noise: bool = False,
    beam_label_rule: str = "all",
    chunk_events: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """Events file(s) → image file (format ``protoseg-images`` v1). Returns a summary dict.

    Events pass the selection with at least ``min_beam_hits`` beam and ``min_notbeam_hits``
    not-beam hits at full resolution; ``split`` (counts, or fractions summing to 1; default
    0.8 0.1 0.1) picks the train / validation / test images among them at random with ``seed``.
    Images are written in the order of the events file. Data files (no truth) give images without
    labels and need both minimums to be 0. ``beam_label_rule`` (``all`` or ``2018``, module
    docstring) is applied before the selection, so the minimums count the relabelled hits.

    Several events files (a list) are read as one sample, in the order given: they must be
    compatible (``check_compatible_events``); ``/source_file`` says which file each image comes from
    and ``/event_index`` its position in that file. The split is drawn over the events of all files
    in that order, so the pieces of a simulation run, given in order, make the same images and the
    same split as the single file of the whole run.
    """
    import contextlib

    import h5py

    from protoseg.events import open_events

    paths = [Path(events_path)] if isinstance(events_path, (str, Path)) else [Path(p) for p in events_path]
    if not paths:
        raise InputError("no events file given")
    out_path = Path(out_path)
    height, width = check_size(size)
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling '{pooling}' (choose from {', '.join(POOLINGS)})")
    if label_scheme not in LABEL_SCHEMES:
        raise InputError(f"unknown label scheme '{label_scheme}' (choose from {', '.join(LABEL_SCHEMES)})")
    if beam_label_rule not in BEAM_LABEL_RULES:
        raise InputError(f"unknown beam label rule '{beam_label_rule}' (choose from {', '.join(BEAM_LABEL_RULES)})")
    if min_beam_hits < 0 or min_notbeam_hits < 0:
        raise InputError("--min-beam-hits and --min-notbeam-hits must be >= 0")
    for k, path in enumerate(paths):
        if out_path.exists() and path.exists() and out_path.resolve() == path.resolve():
            raise InputError("output would overwrite the input file", out_path)
        if path.exists() and any(path.resolve() == q.resolve() for q in paths[:k] if q.exists()):
            raise InputError("events file given twice", path)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open_events(path)) for path in paths]
        check_compatible_events(files)
        counts_per_file = np.array([len(events) for events in files], dtype=np.int64)
        n_events = int(counts_per_file.sum())
        if n_events == 0:
            raise InputError("events file holds no events" if len(files) == 1 else "the events files hold no events",
                             paths[0] if len(files) == 1 else None)
        is_mc = all(events.is_mc and "label" in events.hit_columns for events in files)
        if not is_mc and (min_beam_hits > 0 or min_notbeam_hits > 0):
            raise InputError(
                "events have no truth labels (data), so there are no beam / not-beam hits to select on: "
                "use --min-beam-hits 0 --min-notbeam-hits 0",
                next(e.path for e in files if not (e.is_mc and "label" in e.hit_columns)),
            )
        relabel = is_mc and beam_label_rule != "all"
        n_beam_parts, n_not_beam_parts = [], []
        for events in files:
            truth_columns = events.config.get("truth_columns")
            if is_mc and label_scheme == "species" and (
                "pdg" not in events.hit_columns or (truth_columns is not None and "pdg" not in truth_columns)
            ):
                raise InputError("species labels need the per-hit truth pdg, which this events file does not record", events.path)
            if relabel and ("track_id" not in events.hit_columns or events._particle_offsets is None
                            or (truth_columns is not None and "track_id" not in truth_columns)):
                raise InputError(
                    f"the {beam_label_rule} beam label rule needs per-hit track ids and the particle table, "
                    "which this events file does not have", events.path)
            if spread_rms and "rms" not in events.hit_columns:
                raise InputError("--spread-rms needs the per-hit rms, which this events file does not have", events.path)
            try:
                if relabel:
                    n_beam, n_not_beam = _hit_class_counts_relabelled(events, beam_label_rule)
                elif is_mc:
                    n_beam, n_not_beam = _hit_class_counts(events)
                else:
                    n_beam = n_not_beam = np.zeros(len(events), dtype=np.int64)
            except OSError as exc:
                raise InputError(f"hit data cannot be read, the file is corrupt ({exc})", events.path) from None
            n_beam_parts.append(n_beam)
            n_not_beam_parts.append(n_not_beam)
        n_beam, n_not_beam = np.concatenate(n_beam_parts), np.concatenate(n_not_beam_parts)
        # Events are numbered over all files in the order given (file k starts at file_start[k]).
        file_start = np.concatenate([[0], np.cumsum(counts_per_file)])
        where = paths[0] if len(paths) == 1 else None
        passing = np.flatnonzero((n_beam >= min_beam_hits) & (n_not_beam >= min_notbeam_hits))
        if len(passing) == 0:
            raise InputError(
                f"no event of {n_events} has >= {min_beam_hits} beam and >= {min_notbeam_hits} not-beam hits", where)
        n_train, n_val, n_test = parse_split(split, len(passing), where)
        rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
        chosen = rng.permutation(passing)[: n_train + n_val + n_test]
        split_of = np.concatenate([np.zeros(n_train), np.ones(n_val), np.full(n_test, 2)]).astype(np.uint8)
        order = np.argsort(chosen, kind="stable")
        chosen, split_codes = chosen[order], split_of[order]
        file_of = np.searchsorted(file_start, chosen, side="right") - 1
        positions = chosen - file_start[file_of]
        n_images = len(chosen)
        event_ids = np.empty(n_images, dtype=np.int64)
        for k, events in enumerate(files):
            mine = file_of == k
            event_ids[mine] = events.event_ids[positions[mine]]
        class_names = LABEL_SCHEMES[label_scheme]
        columns = ["wire", "tick", "integral"] + (["rms"] if spread_rms else [])
        if is_mc:
            columns += ["label"] + (["pdg"] if label_scheme == "species" else [])
        selection = {
            "min_beam_hits": int(min_beam_hits),
            "min_notbeam_hits": int(min_notbeam_hits),
            "n_events_read": int(n_events),
            "n_events_passing": int(len(passing)),
            "n_images": int(n_images),
            "split_requested": None if split is None else [float(v) for v in split],
            "split_counts": {"train": n_train, "validation": n_val, "test": n_test},
            "seed": int(seed),
        }
        source = str(paths[0]) if len(paths) == 1 else f"{len(paths)} events files (/source_files), the first {paths[0]}"
        attrs = {
            "size": [height, width],
            "pooling": pooling,
            "label_scheme": label_scheme,
            "class_names": class_names,
            "source": source,
            "source_format": "protoseg-events",
            "n_source_files": len(paths),
            "selection": selection,
            "spread_rms": bool(spread_rms),
            "drop_noise": bool(drop_noise),
            "beam_label_rule": beam_label_rule if is_mc else "none (no truth)",
            "charge_scale": _events_charge_scale(files[0]),
            "pixel_value": f"{pooling} of hit integrals (ADC x tick); not normalised",
            "grid": f"row = floor(tick * {height} / {READOUT.n_ticks}), column = floor(wire * {width} / {READOUT.n_wires})",
            "events_config": json.dumps(files[0].config, sort_keys=True),
        }
        with atomic_output(out_path) as tmp:
            with h5py.File(tmp, "w") as h5:
                _write_attrs(h5, attrs)
                adc_ds, label_ds = _create_image_datasets(h5, n_images, height, width, with_labels=is_mc)
                h5.create_dataset("event_id", data=event_ids)
                h5.create_dataset("event_index", data=positions.astype(np.int64))
                h5.create_dataset("source_file", data=file_of.astype(np.uint32))
                strings = h5py.string_dtype("utf-8")
                h5.create_dataset("source_files", data=[str(p) for p in paths], dtype=strings)
                h5.create_dataset("source_configs", data=[json.dumps(e.config, sort_keys=True) for e in files], dtype=strings)
                h5.create_dataset("split", data=split_codes)
                first_row = 0
                for k, events in enumerate(files):
                    mine = positions[file_of == k]
                    _fill_images(events, mine, columns, adc_ds, label_ds, (height, width), pooling,
                                 label_scheme if is_mc else None, spread_rms, drop_noise, chunk_events, progress,
                                 beam_label_rule if relabel else "all", first_row=first_row)
                    first_row += len(mine)
    return {
        "input": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
        "output": str(out_path),
        "n_events_read": int(n_events),
        "n_events_passing": int(len(passing)),
        "n_images": int(n_images),
        "split_counts": selection["split_counts"],
        "size": [height, width],
        "pooling": pooling,
        "label_scheme": label_scheme,
        "beam_label_rule": beam_label_rule,
        "class_names": class_names,
        "has_labels": bool(is_mc),
    }


def _create_image_datasets(h5, n_images: int, height: int, width: int, with_labels: bool):
    # One image per chunk: a dataset reader touches exactly the images it asks for. LZF: images are
    # mostly empty, compress ~10x, and decompress far faster than gzip for the training loader.
    chunks = (1, height, width) if n_images else None
    # Fletcher-32: a damaged image is a read error, not silently wrong pixels.
    adc = h5.create_dataset("adc", shape=(n_images, height, width), dtype=np.float32, chunks=chunks,
                            compression="lzf" if n_images else None, fletcher32=bool(n_images))
    label = None
    if with_labels:
        label = h5.create_dataset("label", shape=(n_images, height, width), dtype=np.uint8, chunks=chunks,
                                  compression="lzf" if n_images else None, fletcher32=bool(n_images))
    return adc, label


def _relabelled_hits(events, columns, start: int, stop: int, chunk_events: int, rule: str):
    """``iter_hit_columns`` for a beam label rule other than ``all``: hits relabelled with the particle table."""
    for offset, event in enumerate(events.iter_events(start, stop, chunk_events)):
        hits = apply_beam_label_rule(event.hits, event.particles, rule)
        yield start + offset, {name: hits[name] for name in columns}


def _fill_images(events, positions, columns, adc_ds, label_ds, size, pooling, label_scheme, spread_rms,
                 drop_noise, chunk_events, progress, beam_label_rule: str = "all", first_row: int = 0) -> None:
    """Images of the events at ``positions`` (increasing) into rows ``first_row...`` of the datasets."""
    n_images = len(positions)
    if n_images == 0:
        return
    height, width = size
    block = max(1, chunk_events)
    adc_block = np.zeros((block, height, width), dtype=np.float32)
    label_block = np.zeros((block, height, width), dtype=np.uint8)
    wanted = np.zeros(len(events), dtype=bool)
    wanted[positions] = True
    written = first_row
    filled = 0
    show = progress and sys.stderr.isatty()
    # Read contiguous runs of events in blocks; skip the events that were not chosen.
    start, stop = int(positions[0]), int(positions[-1]) + 1
    if beam_label_rule == "all":
        blocks = events.iter_hit_columns(columns, start, stop, chunk_events)
    else:
        blocks = _relabelled_hits(events, columns, start, stop, chunk_events, beam_label_rule)
    for i, hits in blocks:
        if not wanted[i]:
            continue
        check_hit_values(hits, int(events.event_ids[i]), events.path)
        event_to_image(hits, size, pooling, label_scheme, spread_rms, drop_noise,
                       out=(adc_block[filled], label_block[filled]))
        filled += 1
        if filled == block:
            adc_ds[written : written + filled] = adc_block[:filled]
            if label_ds is not None:
                label_ds[written : written + filled] = label_block[:filled]
            written += filled
            filled = 0
            if show:
                print(f"\rimages: {written - first_row}/{n_images}", end="", file=sys.stderr, flush=True)
    if filled:
        adc_ds[written : written + filled] = adc_block[:filled]
        if label_ds is not None:
            label_ds[written : written + filled] = label_block[:filled]
        written += filled
    if show:
        print(f"\rimages: {written - first_row}/{n_images}", file=sys.stderr, flush=True)


def check_hit_values(hits: dict[str, np.ndarray], event_id: int, path: str | Path) -> None:
    """The checks of the events writer on the columns an image needs (a file may come from elsewhere, or
    be damaged): InputError naming the file and the event. Used by every reader of events files."""
    where = f"event {event_id}"
    if len(hits["wire"]) == 0:
        return
    if int(hits["wire"].max()) >= READOUT.n_wires:
        raise InputError(f"{where}: hit wire {int(hits['wire'].max())} outside the {READOUT.n_wires} collection wires", path)
    tick = hits["tick"]
    if not ((tick >= 0) & (tick < READOUT.n_ticks)).all():
        raise InputError(f"{where}: hit tick outside the readout window [0, {READOUT.n_ticks})", path)
    integral = hits["integral"]
    if not (np.isfinite(integral) & (integral >= 0)).all():
        raise InputError(f"{where}: hit integral that is not a finite non-negative number", path)
    if "label" in hits and hits["label"].max() > 2:
        raise InputError(f"{where}: hit label {int(hits['label'].max())} is not 0, 1 or 2", path)


def _write_attrs(h5, attrs: dict[str, Any]) -> None:
    h5.attrs["format"] = FORMAT
    h5.attrs["version"] = VERSION
    h5.attrs["protoseg_version"] = __version__
    for key, value in attrs.items():
        if key in ("format", "version"):
            continue
        if isinstance(value, (dict, list, tuple)) and key != "size":
            h5.attrs[key] = json.dumps(value, sort_keys=isinstance(value, dict))
        elif key == "size":
            h5.attrs[key] = np.asarray(value, dtype=np.int64)
        elif value is None:
            h5.attrs[key] = "null"
        else:
            h5.attrs[key] = value


def write_images(
    path: str | Path,
    adc: np.ndarray,
    label: np.ndarray | None,
    event_id: np.ndarray | Sequence[int],
    split: np.ndarray | Sequence[int | str],
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a complete image file from arrays (atomically). ``split``: codes 0/1/2 or names.

    ``attrs`` may set ``class_names`` (default: those of ``label_scheme``, default beam3),
    ``pooling``, ``label_scheme``, ``source``, ``selection``... ``size`` is taken from ``adc``.
    """
    import h5py

    adc = np.asarray(adc, dtype=np.float32)
    if adc.ndim != 3:
        raise InputError(f"adc must be [N, H, W], got shape {adc.shape}", path)
    n_images, height, width = adc.shape
    split_codes = np.array([SPLIT_CODES[s] if isinstance(s, str) else int(s) for s in np.asarray(split).tolist()], dtype=np.uint8)
    event_id = np.asarray(event_id, dtype=np.int64)
    if len(split_codes) != n_images or len(event_id) != n_images:
        raise InputError("adc, event_id and split must have the same length", path)
    if split_codes.size and split_codes.max() > 2:
        raise InputError("split codes must be 0 (train), 1 (validation) or 2 (test)", path)
    attrs = dict(attrs or {})
    scheme = attrs.setdefault("label_scheme", "beam3")
    attrs.setdefault("class_names", LABEL_SCHEMES.get(scheme, LABEL_SCHEMES["beam3"]))
    attrs.setdefault("pooling", "max")
    attrs.setdefault("source", "")
    attrs["size"] = [height, width]
    if label is not None:
        label = np.asarray(label, dtype=np.uint8)
        if label.shape != adc.shape:
            raise InputError(f"label shape {label.shape} differs from adc shape {adc.shape}", path)
        if label.size and int(label.max()) >= len(attrs["class_names"]):
            raise InputError(f"label value {int(label.max())} but only {len(attrs['class_names'])} classes", path)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            _write_attrs(h5, attrs)
            adc_ds, label_ds = _create_image_datasets(h5, n_images, height, width, with_labels=label is not None)
            adc_ds[...] = adc
            if label_ds is not None:
                label_ds[...] = label
            h5.create_dataset("event_id", data=event_id)
            h5.create_dataset("split", data=split_codes)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_image_values(adc: np.ndarray | None, label: np.ndarray | None, num_classes: int, path: str | Path,
                       rows: Sequence[int]) -> None:
    """Refuse what no image file holds: a NaN, infinite or negative pixel (pooled hit integrals are
    finite and >= 0), a label outside the classes. ``rows`` are the images' positions in the file
    (for the message). Vectorised over the batch."""
    if adc is not None and adc.size:
        bad = ~(np.isfinite(adc) & (adc >= 0))
        if bad.any():
            k, r, c = (int(v) for v in np.argwhere(bad)[0])
            raise InputError(f"image {int(rows[k])}: pixel (row {r}, column {c}) holds {float(adc[k, r, c]):g}, "
                             "not a finite non-negative hit integral", path)
    if label is not None and label.size:
        top = int(label.max())
        if top >= num_classes:
            k = int(np.flatnonzero(label.reshape(len(label), -1).max(axis=1) == top)[0])
            raise InputError(f"image {int(rows[k])}: label {top} outside the {num_classes} classes 0..{num_classes - 1}", path)


class ImageFile:
    """An open image file: ``adc`` / ``label`` are h5py datasets [N, H, W] (``label`` None without truth).

    ``split`` (uint8 codes 0 train, 1 validation, 2 test) and ``event_id`` are numpy arrays;
    ``class_names`` is a list; ``attrs`` a dict with JSON attributes decoded.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._h5 = open_h5_checked(self.path, FORMAT, (VERSION,))
        try:
            self._load()
        except InputError:
            self._h5.close()
            raise
        except (KeyError, OSError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
            self._h5.close()
            raise InputError(f"image file is incomplete or corrupt ({exc.__class__.__name__}: {exc})", self.path) from None

    def _load(self) -> None:
        h5 = self._h5
        for name in ("adc", "event_id", "split"):
            if name not in h5:
                raise InputError(f"image file has no /{name} dataset", self.path)
        self.adc = h5["adc"]
        if self.adc.ndim != 3:
            raise InputError(f"/adc must be [N, H, W], found shape {self.adc.shape}", self.path)
        self.label = h5["label"] if "label" in h5 else None
        if self.label is not None and self.label.shape != self.adc.shape:
            raise InputError(f"/label shape {self.label.shape} differs from /adc {self.adc.shape}", self.path)
        if self.adc.dtype.kind != "f" or (self.label is not None and self.label.dtype != np.uint8):
            raise InputError(f"/adc must hold floats and /label uint8, found {self.adc.dtype} and "
                             f"{None if self.label is None else self.label.dtype}", self.path)
        self.split = np.asarray(h5["split"][...], dtype=np.uint8)
        self.event_id = np.asarray(h5["event_id"][...], dtype=np.int64)
        n = self.adc.shape[0]
        if len(self.split) != n or len(self.event_id) != n:
            raise InputError(f"/split or /event_id length differs from the {n} images", self.path)
        if n and self.split.max() > 2:
            raise InputError("/split holds codes other than 0 (train), 1 (validation), 2 (test)", self.path)
        self.event_index = np.asarray(h5["event_index"][...], dtype=np.int64) if "event_index" in h5 else None
        # Files made from one events file (all before several could be given) have no /source_file: all 0.
        self.source_file = (np.asarray(h5["source_file"][...], dtype=np.int64) if "source_file" in h5
                            else np.zeros(len(self.event_id), dtype=np.int64))
        if len(self.source_file) != n:
            raise InputError(f"/source_file length differs from the {n} images", self.path)
        self.attrs: dict[str, Any] = {key: _attr_value(value) for key, value in h5.attrs.items()}
        names = self.attrs.get("class_names")
        if not isinstance(names, list) or not names:
            raise InputError("image file has no class_names attribute", self.path)
        self.class_names: list[str] = [str(c) for c in names]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.adc.shape[1]), int(self.adc.shape[2])

    @property
    def source_files(self) -> list[str]:
        """The events files the images were made from, in order (``source_file`` indexes this list)."""
        if "source_files" in self._h5:
            return [str(name) for name in self._h5["source_files"].asstr()[...]]
        source = self.attrs.get("source")
        return [str(source)] if source else []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def read(self, rows: Sequence[int], adc: bool = True, label: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(adc float32 [n, H, W], label uint8 [n, H, W] or None)`` of images ``rows`` (increasing), checked.

        A damaged chunk (checksum, decompression) or a value no image holds (``check_image_values``)
        is an InputError naming the file.
        """
        rows = [int(r) for r in rows]
        try:
            pixels = np.asarray(self.adc[rows], dtype=np.float32) if adc else None
            labels = np.asarray(self.label[rows], dtype=np.uint8) if label and self.label is not None else None
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"images cannot be read, the file is corrupt ({' '.join(str(exc).split())[:160]})", self.path) from None
        check_image_values(pixels, labels, self.num_classes, self.path, rows)
        return pixels, labels

    def indices(self, split: str | int | None) -> np.ndarray:
        """Image indices of a split ("train", "validation"/"val", "test", a code, or None for all)."""
        if split is None:
            return np.arange(len(self))
        code = SPLIT_CODES.get(split) if isinstance(split, str) else int(split)
        if code is None or code not in (0, 1, 2):
            raise InputError(f"unknown split '{split}' (train, validation, test)", self.path)
        return np.flatnonzero(self.split == code)

    def __len__(self) -> int:
        return int(self.adc.shape[0])

    def __enter__(self) -> ImageFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._h5.close()
        except Exception:  # already closed
            pass


def open_images(path: str | Path) -> ImageFile:
    """Open an image file (InputError when missing, truncated, or of another format/version)."""
    try:
        return ImageFile(path)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read image file ({exc.__class__.__name__}: {exc})", path) from None


def validate_images_file(path: str | Path, block: int = 64) -> None:
    """Read every image of an image file and check it (``ImageFile.read``); InputError on the first problem.

    Training reads images through a torch DataLoader that cannot say which file was bad; checking the
    file once first turns a NaN pixel or a damaged chunk into one line instead of a dead run.
    """
    with open_images(path) as images:
        for start in range(0, len(images), block):
            images.read(range(start, min(start + block, len(images))))


# ----------------------------------------------------------------------------------------------
# Class balance
# ----------------------------------------------------------------------------------------------
def class_balance(labels: Iterable[np.ndarray] | ImageFile | np.ndarray, num_classes: int, block: int = 64) -> dict[str, Any]:
    """Pixel statistics of label images, as the 2018 study computed its class weights.

    Returns a dict with ``pixel_counts`` and ``pixel_fractions`` (pooled over all images),
    ``median_weights`` (per class, the median over images that contain the class of
    background pixels / class pixels; background is 1 by construction), ``mean_weights``, the
    ``ratio`` of pooled counts to the rarest present class (the "1 : x : y" of 2018),
    ``images_with_class``, ``absent`` (classes in no image; their weights are set to 1.0, they never
    enter a loss) and ``n_images``.
    """
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1")
    per_image: list[np.ndarray] = []

    def add(batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        if batch.ndim == 2:
            batch = batch[None]
        if batch.size and int(batch.max()) >= num_classes:
            raise InputError(f"label value {int(batch.max())} is not below num_classes={num_classes}")
        flat = batch.reshape(batch.shape[0], -1).astype(np.int64)
        offsets = (np.arange(batch.shape[0]) * num_classes)[:, None]
        counts = np.bincount((flat + offsets).ravel(), minlength=batch.shape[0] * num_classes)
        per_image.append(counts.reshape(batch.shape[0], num_classes))

    if isinstance(labels, ImageFile):
        if labels.label is None:
            raise InputError("image file has no labels", labels.path)
        for start in range(0, len(labels), block):
            add(labels.label[start : start + block])
    elif isinstance(labels, np.ndarray):
        for start in range(0, len(labels) if labels.ndim == 3 else 1, block):
            add(labels[start : start + block] if labels.ndim == 3 else labels)
    else:
        for image in labels:
            add(image)
    counts = np.concatenate(per_image) if per_image else np.zeros((0, num_classes), dtype=np.int64)
    pooled = counts.sum(axis=0)
    total = int(pooled.sum())
    median_weights, mean_weights = [], []
    for c in range(num_classes):
        present = counts[:, c] > 0
        if not present.any():
            median_weights.append(1.0)
            mean_weights.append(1.0)
            continue
        ratios = counts[present, 0] / counts[present, c]
        median_weights.append(float(np.median(ratios)))
        mean_weights.append(float(np.mean(ratios)))
    nonzero = pooled[pooled > 0]
    rarest = int(nonzero.min()) if len(nonzero) else 1
    return {
        "n_images": int(counts.shape[0]),
        "num_classes": int(num_classes),
        "pixel_counts": [int(x) for x in pooled],
        "pixel_fractions": [float(x) / total if total else 0.0 for x in pooled],
        "median_weights": median_weights,
        "mean_weights": mean_weights,
        "ratio": [float(x) / rarest for x in pooled],
        "images_with_class": [int(x) for x in (counts > 0).sum(axis=0)],
        "absent": [c for c in range(num_classes) if pooled[c] == 0],
    }


def format_class_balance(balance: dict[str, Any], class_names: Sequence[str]) -> str:
    """A table of the class balance and the 2018-style "1 : x : y" line."""
    lines = [f"{balance['n_images']} images"]
    width = max(len(n) for n in class_names)
    lines.append(f"{'class':<{width}}  {'pixels':>12}  {'fraction':>9}  {'median bg/class':>15}  {'images':>6}")
    for c, name in enumerate(class_names):
        weight = "absent" if c in balance["absent"] else f"{balance['median_weights'][c]:.2f}"
        lines.append(
            f"{name:<{width}}  {balance['pixel_counts'][c]:>12d}  {balance['pixel_fractions'][c]:>9.5f}  "
            f"{weight:>15}  {balance['images_with_class'][c]:>6d}"
        )
    order = [c for c in np.argsort(balance["pixel_counts"]) if balance["pixel_counts"][c] > 0]
    if order:
        ratio = " : ".join(f"{balance['ratio'][c]:.1f}" if balance["ratio"][c] != 1 else "1" for c in order)
        lines.append(f"pixels {' : '.join(class_names[c] for c in order)} = {ratio}")
    return "\n".join(lines)
