"""Speed of the truth generation (sources + transport) on one core: seconds per event, deposits per event.

Run under the shared lock:  flock /tmp/protoseg-heavy.lock python benchmarks/bench_sim_truth.py [--events N]
Also prints what an event is made of (cosmics entering the TPC, particles, deposits), and how
many cosmic muons leave charge inside the 3 ms readout window (the PHYSICS.md figure is ≈ 50).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from protoseg.detector import ARGON, GEOMETRY, READOUT  # noqa: E402
from protoseg.sim.generator import SourceConfig, TransportConfig, generate_truth  # noqa: E402
from protoseg.sim.truth import ORIGIN_COSMIC  # noqa: E402


def cosmics_with_charge_in_window(truth, beam_side_only: bool = False) -> int:
    """Cosmic primaries (and descendants) with at least one deposit that drifts into ticks [0, 6000)."""
    d = truth.deposits
    drift_us = (GEOMETRY.drift_length_cm - np.abs(d.x_cm)) / ARGON.drift_velocity_cm_per_us
    tick = READOUT.trigger_tick + (d.t_us + drift_us) / READOUT.tick_us
    in_window = (tick >= 0) & (tick < READOUT.n_ticks)
    if beam_side_only:
        in_window &= d.x_cm < 0.0
    p = truth.particles
    # map each track to its primary ancestor
    parent = p["parent_id"].astype(np.int64)
    root = np.arange(parent.size)
    for _ in range(64):
        up = parent[root]
        moved = up >= 0
        if not moved.any():
            break
        root = np.where(moved, up, root)
    roots = root[d.track_id[in_window]]
    roots = np.unique(roots)
    return int(np.sum(p["origin"][roots] == ORIGIN_COSMIC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sources, transport = SourceConfig(), TransportConfig()
    generate_truth(rng, sources, transport)  # warm-up: range and Landau tables
    times, deposits, particles, cosmics, visible, visible_beam_side = [], [], [], [], [], []
    for _ in range(args.events):
        t0 = time.perf_counter()
        truth = generate_truth(rng, sources, transport)
        times.append(time.perf_counter() - t0)
        deposits.append(len(truth.deposits))
        particles.append(truth.info["n_particles"])
        cosmics.append(truth.info["n_cosmics"])
        visible.append(cosmics_with_charge_in_window(truth))
        visible_beam_side.append(cosmics_with_charge_in_window(truth, beam_side_only=True))
    times = np.array(times)
    print(f"events: {args.events}  seconds/event: mean {times.mean():.3f}  median {np.median(times):.3f}  "
          f"max {times.max():.3f}")
    print(f"deposits/event: mean {np.mean(deposits):.0f}  max {np.max(deposits)}   particles/event: mean {np.mean(particles):.0f}")
    print(f"cosmic muons entering the TPC/event: {np.mean(cosmics):.1f}   with charge in the 3 ms window: {np.mean(visible):.1f} "
          f"(beam side {np.mean(visible_beam_side):.1f})")


if __name__ == "__main__":
    main()
