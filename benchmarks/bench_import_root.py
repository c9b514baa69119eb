"""Benchmark: `protoseg import-root` (ROOT hit dump → events file) on one CPU core.

Makes its own input with uproot: a flat per-event TTree (jagged branches wire, peak_time, integral,
rms, label, track_id, pdg; 250 events × ~20k hits = 5M hits) and a 2018-layout tree
(DataProcessing/tHitsTree with split vHitsStruct members, three planes of which one is kept).
Writing the input is not timed; reading it with uproot, checking and writing the events file is.

    flock /tmp/protoseg-heavy.lock python benchmarks/bench_import_root.py [--events 250] [--keep DIR]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import awkward as ak  # noqa: E402
import numpy as np  # noqa: E402
import uproot  # noqa: E402

from protoseg.importers import import_root  # noqa: E402


def write_flat(path: Path, n_events: int, rng: np.random.Generator, block: int = 50) -> int:
    """Flat layout, written in blocks of events (as an analyzer's TTree fills); returns the hit count."""
    types = {"event": "int32", "run": "int32", "wire": "var * int32", "peak_time": "var * float32",
             "integral": "var * float32", "rms": "var * float32", "label": "var * int32",
             "track_id": "var * int32", "pdg": "var * int32"}
    total = 0
    with uproot.recreate(path) as f:
        tree = f.mktree("hits", types)
        for start in range(0, n_events, block):
            stop = min(n_events, start + block)
            counts = rng.integers(15_000, 25_000, stop - start)
            n = int(counts.sum())
            total += n
            columns = {
                "wire": rng.integers(0, 1440, n).astype(np.int32),
                "peak_time": rng.uniform(0, 6000, n).astype(np.float32),
                "integral": rng.gamma(6.0, 40.0, n).astype(np.float32),
                "rms": rng.uniform(2, 6, n).astype(np.float32),
                "label": rng.integers(0, 3, n).astype(np.int32),
                "track_id": rng.integers(-1, 200, n).astype(np.int32),
                "pdg": rng.choice(np.array([211, 13, -13, 2212, 11, 22], np.int32), n),
            }
            tree.extend({"event": np.arange(start, stop, dtype=np.int32), "run": np.full(stop - start, 5387, np.int32)}
                        | {name: ak.unflatten(values, counts) for name, values in columns.items()})
    return total


def write_2018(path: Path, n_events: int, rng: np.random.Generator, block: int = 50) -> tuple[int, int]:
    """2018 layout: split vHitsStruct members, hits on all three planes (collection = plane 2)."""
    members = "adc: float64, tdc: uint32, tpc_index: uint32, plane_index: uint32, wire_index: uint32, origin: uint32"
    total = kept = 0
    with uproot.recreate(path) as f:
        tree = f.mktree("DataProcessing/tHitsTree",
                        {"vHitsStruct": ak.types.from_datashape("var * {" + members + "}", highlevel=False)},
                        field_name=lambda outer, inner: f"{outer}.{inner}", counter_name=lambda counted: f"{counted}_")
        for start in range(0, n_events, block):
            stop = min(n_events, start + block)
            counts = rng.integers(45_000, 75_000, stop - start)
            n = int(counts.sum())
            plane = rng.integers(0, 3, n).astype(np.uint32)
            total += n
            kept += int(np.count_nonzero(plane == 2))
            hits = {"adc": rng.gamma(6.0, 40.0, n), "tdc": rng.integers(0, 6000, n).astype(np.uint32),
                    "tpc_index": rng.integers(0, 12, n).astype(np.uint32), "plane_index": plane,
                    "wire_index": rng.integers(0, 480, n).astype(np.uint32), "origin": rng.integers(0, 3, n).astype(np.uint32)}
            tree.extend({"vHitsStruct": ak.zip({k: ak.unflatten(v, counts) for k, v in hits.items()})})
    return total, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=250, help="flat-layout events (~20k hits each)")
    parser.add_argument("--keep", default=None, help="folder to keep the ROOT files in")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="protoseg-bench-"))
    rng = np.random.default_rng(1)
    flat = folder / f"bench-flat-{args.events}.root"
    if not flat.exists():
        write_flat(flat, args.events, rng)
    old = folder / f"bench-2018-{args.events // 3}.root"
    if not old.exists():
        write_2018(old, max(1, args.events // 3), rng)
    for name, path in (("flat", flat), ("2018", old)):
        out = folder / f"bench-{name}.h5"
        t0, c0 = time.perf_counter(), time.process_time()
        summary = import_root(path, out)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        read_hits = summary["hits"]
        if name == "2018":
            with uproot.open(path) as f:
                read_hits = int(f["DataProcessing/tHitsTree"]["vHitsStruct_"].array(library="np").sum())
        print(f"import-root {name:4s} layout: {summary['events']} events, {read_hits / 1e6:.2f} M hits read, "
              f"{summary['hits'] / 1e6:.2f} M written: {read_hits / elapsed / 1e6:5.2f} M hits/s wall, "
              f"{read_hits / cpu / 1e6:5.2f} M hits/s per CPU-s ({elapsed:.2f} s wall, {cpu:.2f} s CPU; "
              f"ROOT {path.stat().st_size / 1e6:.0f} MB -> events {out.stat().st_size / 1e6:.0f} MB)")
        out.unlink()
    import resource

    # Streaming: the peak memory stays near a few times the step size (20 MB of arrays), not the file size.
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if not args.keep:
        flat.unlink()
        old.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
