"""Hits at the detector's full resolution: every collection hit on a site of a (row, wire) grid.

The hit-level networks see an event as a sparse set of *sites*: one column per collection wire
(4.79 mm pitch) and one row per ``ticks_per_row`` ticks of peak time. At the default 6 ticks per
row (3 µs × 0.1565 cm/µs = 4.7 mm of drift) a site is about as tall as it is wide, so a track looks
the same whatever its angle, and ~98% of the hits of an event have a site of their own
(``benchmarks/hit_grid.py`` measures that choice with the oracle: every site its own truth). Hits
that share a site (two peaks on one wire within ``ticks_per_row`` ticks) share its class, as hits
that share a pixel share its class in the 2018 images; the site takes the label of its largest hit.

Features of a site (``FEATURES``; a model card lists the ones its network reads):

* ``log_charge``: log(1 + Σ integral / 100 ADC·tick) over the site's hits (a MIP gives ≈ 1000 per wire);
* ``rms``: the largest hit's width, in units of 5 ticks (NaN in the 2018 dumps: a model reading it
  refuses such files);
* ``tick_in_row``: where the largest hit's peak lies inside its row, in [−0.5, 0.5);
* ``wire`` and ``tick``: the site's position over the 1440 wires and 6000 ticks, in [0, 1): where the
  beam enters is part of what makes a hit beam.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protoseg.detector import READOUT
from protoseg.errors import InputError

__all__ = ["FEATURES", "DEFAULT_FEATURES", "HitGrid", "EventSites", "event_sites", "check_features"]

# Scales that bring each feature to order one (see the module docstring).
_CHARGE_SCALE_ADC_TICK = 100.0
_RMS_SCALE_TICKS = 5.0
FEATURES: tuple[str, ...] = ("log_charge", "rms", "tick_in_row", "wire", "tick")
DEFAULT_FEATURES: tuple[str, ...] = FEATURES


def check_features(features: list[str] | tuple[str, ...], where: str | Path | None = None) -> tuple[str, ...]:
    """``features`` as a tuple, or InputError naming the unknown ones."""
    features = tuple(str(f) for f in features)
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features or len(set(features)) != len(features):
        raise InputError(f"site features must be distinct names from {', '.join(FEATURES)}; got {list(features)}", where)
    return features


@dataclass(frozen=True)
class HitGrid:
    """The site grid: ``ticks_per_row`` ticks per row, one column per collection wire."""

    ticks_per_row: int = 6

    def __post_init__(self) -> None:
        if not isinstance(self.ticks_per_row, (int, np.integer)) or not 1 <= int(self.ticks_per_row) <= READOUT.n_ticks:
            raise InputError(f"ticks_per_row must be an integer from 1 to {READOUT.n_ticks}, got {self.ticks_per_row!r}")

    @property
    def n_rows(self) -> int:
        return -(-READOUT.n_ticks // int(self.ticks_per_row))

    @property
    def n_wires(self) -> int:
        return READOUT.n_wires

    def as_dict(self) -> dict[str, int]:
        return {"ticks_per_row": int(self.ticks_per_row)}


@dataclass
class EventSites:
    """One event on the site grid.

    ``coords`` int64 [S, 2] (row, wire), sorted by row then wire; ``features`` float32 [S, F];
    ``label`` [S] (the largest hit's class, in the dtype of the hit labels given: uint8 classes, or int64
    where some hits carry an ignore label) or None without truth; ``site_of_hit`` int64 [n_hits],
    the site of each hit of the event, in the event's hit order.
    """

    coords: np.ndarray
    features: np.ndarray
    label: np.ndarray | None
    site_of_hit: np.ndarray

    @property
    def n_sites(self) -> int:
        return int(len(self.coords))


def event_sites(hits: dict[str, np.ndarray], grid: HitGrid = HitGrid(), features: tuple[str, ...] = DEFAULT_FEATURES,
                hit_label: np.ndarray | None = None, where: str | Path | None = None) -> EventSites:
    """The sites of one event's hits (validated hits: wire < 1440, 0 <= tick < 6000, finite integrals).

    ``hit_label``: the class of each hit (e.g. ``protoseg.images.labels.hit_labels``); the site takes its
    largest hit's (in the labels' own dtype, so a negative ignore label survives). Vectorised: one sort
    of the hits, no loop over hits or sites.
    """
    wire = np.asarray(hits["wire"]).astype(np.int64)
    tick = np.asarray(hits["tick"], dtype=np.float64)
    integral = np.asarray(hits["integral"], dtype=np.float64)
    row = np.minimum(np.floor(tick / grid.ticks_per_row).astype(np.int64), grid.n_rows - 1)
    key = row * READOUT.n_wires + wire
    keys, site_of_hit = np.unique(key, return_inverse=True)
    site_of_hit = site_of_hit.reshape(-1).astype(np.int64)
    n_sites = len(keys)
    # The largest hit of each site: sort by (site, integral); the last of each run of a site.
    order = np.lexsort((integral, site_of_hit))
    last_of_site = np.flatnonzero(np.r_[np.diff(site_of_hit[order]) != 0, True]) if n_sites else np.zeros(0, np.int64)
    lead = order[last_of_site]
    coords = np.stack([keys // READOUT.n_wires, keys % READOUT.n_wires], axis=1).astype(np.int64)

    columns = []
    for name in features:
        if name == "log_charge":
            charge = np.bincount(site_of_hit, weights=integral, minlength=n_sites)
            columns.append(np.log1p(charge / _CHARGE_SCALE_ADC_TICK))
        elif name == "rms":
            rms = np.asarray(hits["rms"], dtype=np.float64)[lead] if "rms" in hits else np.full(n_sites, np.nan)
            if not np.isfinite(rms).all():
                raise InputError("the model reads the hit width (rms), which these hits do not record (NaN); "
                                 "use a model without the 'rms' feature (default-no-rms)", where)
            columns.append(rms / _RMS_SCALE_TICKS)
        elif name == "tick_in_row":
            columns.append(tick[lead] / grid.ticks_per_row - coords[:, 0] - 0.5)
        elif name == "wire":
            columns.append(coords[:, 1] / READOUT.n_wires)
        elif name == "tick":
            columns.append(tick[lead] / READOUT.n_ticks)
        else:
            raise InputError(f"unknown site feature {name!r} (known: {', '.join(FEATURES)})", where)
    feature_array = np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((n_sites, 0), np.float32)
    label = None
    if hit_label is not None:
        hit_label = np.asarray(hit_label)
        label = (hit_label if hit_label.dtype.kind in "iu" else hit_label.astype(np.uint8))[lead]
    return EventSites(coords, feature_array, label, site_of_hit)
