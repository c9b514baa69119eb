"""Inference cost of a hit-level model: per event in Python and in its TorchScript export, and `protoseg
predict` end to end, with peak memory.

    python benchmarks/bench_hits.py MODEL EVENTS.h5 [--events 240] [--threads 2]

1. Network per event: ``HitPredictor.hit_probabilities`` (sites, features, network, softmax, back to
   hits) on each event, after one warm-up event; median and mean over the events.
2. The exported TorchScript graph (hits [n, 4] → probabilities [n, C], what LArSoft runs) on the same events.
3. ``protoseg predict MODEL EVENTS.h5 -o P.h5`` as a user runs it, in its own process: wall time for all
   the events (reading, sites, network, the 320×320 projections, writing) and that process's peak RSS.
Run it on an otherwise idle machine. Results: ``benchmarks/results/hits_inference.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from protoseg.events import open_events
from protoseg.export import export_model
from protoseg.fileio import write_json
from protoseg.hits.inference import HitPredictor
from protoseg.loading import load_model
from protoseg.models import tune_cpu_allocator
from protoseg.training import training_machine

RESULTS = Path(__file__).resolve().parent / "results" / "hits_inference.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("events", type=Path)
    parser.add_argument("--events", dest="n_events", type=int, default=240)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS.name} in benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    model = load_model(args.model)
    predictor = HitPredictor(model, beam_threshold="argmax")
    with open_events(args.events) as events:
        n = min(args.n_events, len(events))
        hits = [events.read(i).hits for i in range(n)]
    predictor.hit_probabilities(hits[0])  # warm-up
    python_s, n_hits = [], []
    for h in hits:
        start = time.perf_counter()
        predictor.hit_probabilities(h)
        python_s.append(time.perf_counter() - start)
        n_hits.append(len(h["wire"]))
    with tempfile.TemporaryDirectory() as tmp:
        export_model(model, "torchscript", Path(tmp) / "model.pt")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.load(str(Path(tmp) / "model.pt"))
        tables = [torch.from_numpy(np.stack([h["wire"], h["tick"], h["integral"], h["rms"]], 1).astype(np.float32)) for h in hits]
        torchscript_s = []
        with torch.inference_mode():
            scripted(tables[0])
            for table in tables:
                start = time.perf_counter()
                scripted(table)
                torchscript_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        done = subprocess.run([sys.executable, "-m", "protoseg", "predict", args.model, str(args.events), "-o", str(Path(tmp) / "p.h5")],
                              capture_output=True, text=True, env=env)
        predict_wall_s = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        predict_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with open_events(args.events) as events:
        n_predicted = len(events)
    result = {
        "model": args.model, "model_version": model.card.get("model_version"), "cpu": training_machine()["cpu"],  # timings depend on the processor: say which gave them
        "events": str(args.events), "n_events_timed": n, "threads": args.threads,
        "hits_per_event_median": int(statistics.median(n_hits)),
        "python_s_per_event": {"median": statistics.median(python_s), "mean": statistics.mean(python_s), "max": max(python_s)},
        "torchscript_s_per_event": {"median": statistics.median(torchscript_s), "mean": statistics.mean(torchscript_s)},
        "predict_end_to_end": {"events": n_predicted, "wall_s": predict_wall_s, "peak_rss_mb": predict_rss_mb,
                               "last_line": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""},
        "benchmark_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average_at_end": list(os.getloadavg()),
    }
    write_json(args.results, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
