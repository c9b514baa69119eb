"""Pooling: what a pixel holds when several hits fall into it, and one event's hits → (adc, label) image.

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
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from protoseg.detector import READOUT
from protoseg.errors import InputError
from protoseg.images.grid import DEFAULT_SIZE, check_size, pixel_indices
from protoseg.images.labels import CLASS_RANK, hit_labels

__all__ = ["POOLINGS", "event_to_image"]

POOLINGS: tuple[str, ...] = ("max", "sum", "mean", "beam-priority", "charge-majority")
# A spread hit covers peak ± 3 rms (99.7% of a Gaussian pulse); the pieces are renormalised to the
# hit integral, so spreading never changes an image's total charge.
_SPREAD_SIGMAS = 3.0


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
               label, pooling, CLASS_RANK[label_scheme] if label is not None else None)
    return adc_image, label_image
