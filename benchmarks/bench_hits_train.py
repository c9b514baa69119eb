"""Training throughput of hit-level networks: one optimiser step (forward, loss, backward, AdamW) on real events.

    python benchmarks/bench_hits_train.py EVENTS.h5 [--config configs/hits-cpu.yaml configs/hits-cpu-8level.yaml]
        [--batch-sizes 1 4 8] [--steps 20] [--device cuda] [--threads 2] [--results R.json]

For each recipe (its network, features, grid and loss, as ``protoseg train`` builds them) and each batch
size (events per step, concatenated as ``protoseg.hits.data.collate_sites`` does), the batches are read
once, then timed over ``--steps`` steps after 3 warm-up steps (on a GPU, synchronised before each clock
reading). Reported: median seconds per step, events per second, and on a GPU the peak memory allocated.
What it leaves out: reading and site building (a loader worker's job; ~10 ms per event on one core),
validation, checkpoints. On 2 CPU cores the figure is what `protoseg train` logs divided out.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from protoseg.config import load_config, validate
from protoseg.errors import InputError
from protoseg.fileio import write_json


def _batches(events: Path, config: dict, batch_size: int, n_batches: int):
    from protoseg.hits.data import HitEventsDataset, collate_sites
    from protoseg.training import _hit_options

    grid, features = _hit_options(config)
    from protoseg.events import open_events

    with open_events(events) as handle:
        n_events = len(handle)
    if n_events < batch_size:
        raise InputError(f"has {n_events} events, fewer than a batch of {batch_size}", events)
    dataset = HitEventsDataset(events, np.arange(n_events), grid, features, config["data"]["label_scheme"])
    try:
        return [collate_sites([dataset[(b * batch_size + i) % n_events] for i in range(batch_size)]) for b in range(n_batches)]
    finally:
        dataset.close()


def time_steps(config_path: Path, events: Path, batch_size: int, steps: int, device: torch.device) -> dict:
    from protoseg.training import HitSegmentationModule

    config = validate(load_config(config_path))
    torch.manual_seed(0)
    module = HitSegmentationModule(config, ["background", "beam", "not-beam"]).to(device)
    module.train()
    optimiser = torch.optim.AdamW(module.parameters(), lr=config["optim"]["lr"], weight_decay=config["optim"]["weight_decay"])
    batches = [tuple(t.to(device) for t in b) for b in _batches(events, config, batch_size, steps + 3)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, sites = [], []
    for k, (coords, features, labels) in enumerate(batches):
        sync()
        start = time.perf_counter()
        logits, target = module._as_image(module(coords, features), labels)
        loss = module.loss(logits, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        sync()
        if k >= 3:
            seconds.append(time.perf_counter() - start)
            sites.append(len(coords))
    median = statistics.median(seconds)
    return {"config": str(config_path), "channels": config["model"].get("channels"), "batch_size": batch_size, "steps": len(seconds),
            "parameters": int(sum(p.numel() for p in module.parameters())), "sites_per_step_median": int(statistics.median(sites)),
            "seconds_per_step_median": median, "events_per_second": batch_size / median,
            "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path, help="events file with truth")
    parser.add_argument("--config", type=Path, nargs="+", default=[Path("configs/hits-cpu.yaml"), Path("configs/hits-cpu-8level.yaml")])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (on a CPU run)")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    try:
        for config in args.config:
            for batch_size in args.batch_sizes:
                row = time_steps(config, args.events, batch_size, args.steps, device)
                rows.append(row)
                print(f"{config.name} batch {batch_size}: {row['seconds_per_step_median'] * 1000:.1f} ms per step, "
                      f"{row['events_per_second']:.1f} events/s ({row['parameters'] / 1e6:.2f} M parameters)", flush=True)
    except (InputError, OSError, KeyError, ValueError) as exc:
        print(f"bench_hits_train: {exc}", file=sys.stderr)
        return 2
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    if args.results:
        write_json(args.results, {"events": str(args.events), "device": device_name, "torch": torch.__version__, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
