"""The site grid of the hit-level networks, chosen by the oracle: every site its own truth.

    python benchmarks/hit_grid.py EVENTS.h5 [--events 100]

A network on sites can at best give every hit the label of its site (its largest hit's). This script
measures what that costs for each grid: rows of 1 to 19 ticks (1 wire per column), whether a hit
paints the rows of its ±1 rms extent (then a site takes the largest hit painting it, and a hit is
read at the site of its peak), and the 2018 study's 320×320 grid (18.75 ticks × 4.5 wires per pixel,
max pooling) for reference. For each: hit efficiency and purity of beam and of not-beam (rule
``all``), the share of hits that share their site with another hit, and the sites per event (what the
network's cost scales with). Results: ``benchmarks/results/hit_grid.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from protoseg.detector import READOUT
from protoseg.events import open_events
from protoseg.fileio import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "hit_grid.json"
TICKS_PER_ROW = (1, 2, 3, 4, 6, 8, 12, 19)


def _lead_label(site: np.ndarray, integral: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label of the largest hit of each site, per site (unique site keys, labels)."""
    order = np.lexsort((integral, site))
    last = np.r_[np.diff(site[order]) != 0, True]
    return site[order][last], label[order][last]


def oracle(hits: dict[str, np.ndarray], ticks_per_row: float, wires_per_column: float = 1.0, paint_rms: float = 0.0) -> tuple[np.ndarray, int, float]:
    """(class each hit gets from its site, sites, share of hits sharing their site)."""
    tick = np.asarray(hits["tick"], np.float64)
    column = np.floor(np.asarray(hits["wire"], np.float64) / wires_per_column).astype(np.int64)
    label = np.asarray(hits["label"]).astype(np.int64)
    integral = np.asarray(hits["integral"], np.float64)
    n_columns = int(np.ceil(READOUT.n_wires / wires_per_column))
    row = np.floor(tick / ticks_per_row).astype(np.int64)
    peak_site = row * n_columns + column
    if paint_rms > 0:
        rms = np.nan_to_num(np.asarray(hits["rms"], np.float64), nan=0.0)
        low = np.floor(np.maximum(tick - paint_rms * rms, 0) / ticks_per_row).astype(np.int64)
        high = np.floor(np.minimum(tick + paint_rms * rms, READOUT.n_ticks - 1e-3) / ticks_per_row).astype(np.int64)
        span = high - low + 1
        owner = np.repeat(np.arange(len(tick)), span)
        painted_row = np.repeat(low, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
        painted = painted_row * n_columns + column[owner]
        keys, lead = _lead_label(painted, integral[owner], label[owner])
        users = np.bincount(np.searchsorted(keys, painted), minlength=len(keys))
        shared = float((users[np.searchsorted(keys, peak_site)] > 1).mean())
    else:
        keys, lead = _lead_label(peak_site, integral, label)
        users = np.bincount(np.searchsorted(keys, peak_site), minlength=len(keys))
        shared = float((users[np.searchsorted(keys, peak_site)] > 1).mean())
    return lead[np.searchsorted(keys, peak_site)], len(keys), shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--events", dest="n_events", type=int, default=100)
    args = parser.parse_args()
    grids = [(f"{t} ticks x 1 wire", t, 1.0, 0.0) for t in TICKS_PER_ROW]
    grids.append(("6 ticks x 1 wire, hits paint +-1 rms", 6, 1.0, 1.0))
    grids.append(("320x320 (2018: 18.75 ticks x 4.5 wires, max pooling)", READOUT.n_ticks / 320, READOUT.n_wires / 320, 0.0))
    counts = {name: np.zeros(6) for name, *_ in grids}  # beam: truth, tagged, both; not-beam: truth, tagged, both
    sites = {name: [] for name, *_ in grids}
    shared = {name: [] for name, *_ in grids}
    with open_events(args.events) as events:
        n = min(args.n_events, len(events))
        for event in events.iter_events(stop=n):
            hits = event.hits
            truth = np.asarray(hits["label"])
            for name, ticks, wires, paint in grids:
                got, n_sites, share = oracle(hits, ticks, wires, paint)
                for k, cls in enumerate((1, 2)):
                    counts[name][3 * k:3 * k + 3] += [(truth == cls).sum(), (got == cls).sum(), ((truth == cls) & (got == cls)).sum()]
                sites[name].append(n_sites)
                shared[name].append(share)
    rows = []
    for name, ticks, wires, paint in grids:
        c = counts[name]
        rows.append({"grid": name, "ticks_per_row": ticks, "wires_per_column": wires, "paint_rms": paint,
                     "beam_efficiency": c[2] / c[0], "beam_purity": c[2] / c[1],
                     "notbeam_efficiency": c[5] / c[3], "notbeam_purity": c[5] / c[4],
                     "hits_sharing_a_site": float(np.mean(shared[name])), "sites_per_event": float(np.mean(sites[name]))})
    result = {"events": str(args.events), "n_events": n, "rule": "all", "grids": rows}
    write_json(RESULTS, result)
    print(f"{'grid':<56}{'beam eff':>9}{'pur':>7}{'not-beam eff':>13}{'pur':>7}{'shared':>8}{'sites':>8}")
    for r in rows:
        print(f"{r['grid']:<56}{r['beam_efficiency']:>9.4f}{r['beam_purity']:>7.4f}{r['notbeam_efficiency']:>13.4f}"
              f"{r['notbeam_purity']:>7.4f}{r['hits_sharing_a_site']:>8.4f}{r['sites_per_event']:>8.0f}")
    print(json.dumps({"written": str(RESULTS)}))


if __name__ == "__main__":
    main()
