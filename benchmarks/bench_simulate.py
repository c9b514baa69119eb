"""Speed and memory of `protoseg simulate`: seconds per full event per core, peak RSS per worker.

Usage (heavy: run under the lock):
    flock /tmp/protoseg-heavy.lock python benchmarks/bench_simulate.py [--events 10] [--workers 1 2]

For each worker count it runs the whole `simulate` path (beam + halo + cosmics, both drift volumes,
1440 × 6000 samples with noise, signal processing, hits, truth matching, writing the events file)
in a fresh process, and prints wall seconds per event, events per second, CPU seconds per event
(user + system of the main process and its workers: the cost per core, which other jobs on a shared
machine do not inflate), and the peak resident memory of the main process and of the largest worker
(getrusage; workers=1 runs in the main process). It also times the stages of one
event in this process (truth, drift, charge frame, digitize, signal processing, hit finding, truth
matching; best of 3) so the ≤ 1 s per event budget can be read stage by stage.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_CHILD = r"""
import json, resource, sys, time
from protoseg.sim.simulate import simulate_events
n, workers, seed, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
start, cpu_start = time.perf_counter(), cpu()
summary = simulate_events(path, n, seed, workers=workers)
seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "hits": summary["hits"],
                  "self_max_rss_mb": self_kb / 1024, "largest_child_max_rss_mb": children_kb / 1024}))
"""


def stage_times(seed: int) -> dict:
    from protoseg.sim.drift import drift_deposits
    from protoseg.sim.generator import generate_truth
    from protoseg.sim.hitfinding import find_hits, match_truth
    from protoseg.sim.readout import charge_frame
    from protoseg.sim.simulate import EventSimulator, SimulationConfig, _truth_charge

    config = SimulationConfig()
    simulator = EventSimulator(config, seed)
    best: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        best[name] = min(best.get(name, np.inf), time.perf_counter() - start)
        return value

    for repeat in range(3):
        rng = np.random.default_rng(seed + repeat)
        truth = timed("truth (sources + transport)", lambda: generate_truth(rng, config.sources, config.transport))
        charge = timed("drift", lambda: drift_deposits(truth.deposits, config.drift))
        frame = timed("charge frame (diffusion)", lambda: charge_frame(charge))
        adc = timed("digitize (response, noise, ADC)", lambda: simulator.readout_model.digitize(frame, rng))
        deconvolved, sigma = timed("signal processing (CNR, deconvolution)",
                                   lambda: simulator.processor.process(adc, simulator.readout_model.alive))
        hits = timed("hit finding", lambda: find_hits(deconvolved, sigma, config.hits))
        timed("truth matching", lambda: match_truth(hits, _truth_charge(truth, charge), truth.particles))
    best["sum of stages"] = sum(best.values())
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    print(f"cpu cores: {os.cpu_count()}")
    print("stages of one event, best of 3 (s):")
    for name, seconds in stage_times(args.seed).items():
        print(f"  {name:<40} {seconds:6.3f}")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            out = os.path.join(tmp, f"events-{workers}.h5")
            result = subprocess.run([sys.executable, "-c", _CHILD, str(args.events), str(workers), str(args.seed), out],
                                    capture_output=True, text=True, env=env, check=True)
            numbers = json.loads(result.stdout.strip().splitlines()[-1])
            per_event = numbers["seconds"] / args.events
            print(f"workers={workers}: {per_event:.3f} s/event wall ({args.events / numbers['seconds']:.2f} events/s), "
                  f"{numbers['cpu_seconds'] / args.events:.3f} CPU s/event (all processes), "
                  f"{numbers['hits'] / args.events:.0f} hits/event, peak RSS main {numbers['self_max_rss_mb']:.0f} MB, "
                  f"largest worker {numbers['largest_child_max_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
