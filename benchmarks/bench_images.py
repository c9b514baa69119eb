"""Benchmark: events file → images (the `protoseg images` code path) on one CPU core.

Makes its own input: a 1000-event events file whose events look like ProtoDUNE-SP readouts at the
hit level (about 25 straight tracks crossing hundreds of wires each, a beam track with a shower,
noise hits; 15k-30k hits per event), then times ``make_image_file`` for each pooling. The time to
write the input is not counted; reading the events file and writing the image file are.

    flock /tmp/protoseg-heavy.lock python benchmarks/bench_images.py [--events 1000] [--keep DIR]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from protoseg.events import Event, EventsWriter  # noqa: E402
from protoseg.images import POOLINGS, make_image_file  # noqa: E402
from protoseg.sim.truth import PARTICLE_COLUMNS  # noqa: E402


def synthetic_event(rng: np.random.Generator, event_id: int) -> Event:
    """Hits of straight tracks (one hit per wire crossed), a beam track, and noise: label/origin/pdg set."""
    target = int(rng.integers(15_000, 30_000))
    starts_w, ends_w, starts_t, ends_t, labels, pdgs = [], [], [], [], [], []
    # beam: enters at wire 0 near tick 4700 and runs to lower ticks (PHYSICS.md), 300-700 wires long
    beam_len = int(rng.integers(300, 700))
    starts_w.append(0), ends_w.append(beam_len), starts_t.append(4700.0), ends_t.append(4700.0 - rng.uniform(200, 1500))
    labels.append(1), pdgs.append(211)
    n = beam_len + 1
    while n < target * 0.93:
        w0, w1 = np.sort(rng.integers(0, 1440, 2))
        if w1 - w0 < 20:
            continue
        starts_w.append(int(w0)), ends_w.append(int(w1))
        starts_t.append(rng.uniform(0, 6000)), ends_t.append(rng.uniform(0, 6000))
        labels.append(2), pdgs.append(13)
        n += int(w1 - w0) + 1
    starts_w, ends_w = np.array(starts_w), np.array(ends_w)
    lengths = ends_w - starts_w + 1
    track = np.repeat(np.arange(len(lengths)), lengths)
    step = np.arange(len(track)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    frac = step / np.maximum(lengths[track] - 1, 1)
    wire = starts_w[track] + step
    tick = np.asarray(starts_t)[track] + frac * (np.asarray(ends_t)[track] - np.asarray(starts_t)[track])
    tick += rng.normal(0, 2.0, len(tick))
    n_noise = max(target - len(wire), 0)
    wire = np.concatenate([wire, rng.integers(0, 1440, n_noise)])
    tick = np.concatenate([tick, rng.uniform(0, 6000, n_noise)])
    tick = np.clip(tick, 0, 5999.9)
    n_hits = len(wire)
    label = np.concatenate([np.asarray(labels)[track], np.zeros(n_noise, np.int64)]).astype(np.uint8)
    pdg = np.concatenate([np.asarray(pdgs)[track], np.zeros(n_noise, np.int64)]).astype(np.int32)
    hits = {
        "wire": wire.astype(np.uint16),
        "tick": tick.astype(np.float32),
        "integral": np.where(label > 0, rng.gamma(6.0, 40.0, n_hits), rng.exponential(15.0, n_hits)).astype(np.float32),
        "rms": rng.uniform(2.0, 6.0, n_hits).astype(np.float32),
        "peak": rng.uniform(5, 200, n_hits).astype(np.float32),
        "label": label,
        "origin": label,
        "track_id": np.concatenate([track, np.full(n_noise, -1)]).astype(np.int32),
        "pdg": pdg,
    }
    particles = {name: np.zeros(1, dtype=dtype) if dtype.kind != "O" else np.array(["primary"], dtype=object)
                 for name, dtype in PARTICLE_COLUMNS.items()}
    return Event(event_id=event_id, hits=hits, beam_pdg=211, beam_momentum_gev=7.0, particles=particles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--poolings", nargs="+", default=list(POOLINGS))
    parser.add_argument("--keep", default=None, help="folder to keep the synthetic events file in (default: a temporary folder)")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="protoseg-bench-"))
    events_path = folder / f"bench-events-{args.events}.h5"
    if not events_path.exists():
        rng = np.random.default_rng(2018)
        t0 = time.perf_counter()
        with EventsWriter(events_path, config={"benchmark": "synthetic tracks"}, is_mc=True, source="bench_images") as writer:
            for k in range(args.events):
                writer.append(synthetic_event(rng, k))
        print(f"wrote {events_path} ({events_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    from protoseg.events import open_events

    with open_events(events_path) as events:
        n_hits = events.n_hits
        n_events = len(events)
    print(f"input: {n_events} events, {n_hits} hits ({n_hits / n_events:.0f} per event)")
    for pooling in args.poolings:
        out = folder / f"bench-images-{pooling}.h5"
        t0, c0 = time.perf_counter(), time.process_time()
        summary = make_image_file(events_path, out, size=(320, 320), pooling=pooling, label_scheme="beam3",
                                  min_beam_hits=0, min_notbeam_hits=0, split=[1.0, 0.0, 0.0], seed=0)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert summary["n_images"] == n_events
        # Wall time is what a user waits; CPU time is what one dedicated core needs (the two differ
        # when other jobs share the machine).
        print(f"images 320x320 pooling={pooling:<16} {n_events / elapsed:6.0f} events/s wall, {n_events / cpu:6.0f} events/s per CPU-s  "
              f"{n_hits / elapsed / 1e6:5.2f} M hits/s wall  ({elapsed:.2f} s wall, {cpu:.2f} s CPU, image file {out.stat().st_size / 1e6:.0f} MB)")
        out.unlink()
    if not args.keep:
        events_path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
