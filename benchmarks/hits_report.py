"""The hit-level network against an image network, hit by hit, on the same unseen events.

    python benchmarks/hits_report.py --seed 2718 EVENTS.h5 HIT_EVAL_DIR IMAGE_PREDICTIONS.h5 [--seed ...] \
        --image-model NAME --results benchmarks/results/hits_vs_image.json

For each seed: ``HIT_EVAL_DIR/metrics.json`` is ``protoseg evaluate HITMODEL EVENTS.h5 -o HIT_EVAL_DIR`` (per-hit
efficiency, purity and IoU under both beam label rules, and the 2018 grid's pixel IoU); the image network's
``protoseg predict`` output gives every hit the class of its pixel, scored here the same way (rule ``all``:
every hit of the beam interaction is beam; rule ``2018``: hits of hadronic daughters not scored).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from protoseg.events import open_events
from protoseg.fileio import write_json
from protoseg.hits.inference import class_scores, hit_confusion, truth_under_rule


def score_predictions(events_path: Path, predictions_path: Path) -> dict:
    """Per-class hit scores of a predictions file's /hits/pred under both beam label rules."""
    with h5py.File(predictions_path, "r") as handle:
        pred, offsets = handle["hits/pred"][...], handle["hits/offsets"][...]
        classes = json.loads(handle.attrs["class_names"])
        threshold = float(handle.attrs["beam_threshold"])
    confusion = {rule: np.zeros((len(classes), len(classes)), np.int64) for rule in ("all", "2018")}
    with open_events(events_path) as events:
        for i, event in enumerate(events.iter_events(chunk_events=16)):
            klass = pred[offsets[i]:offsets[i + 1]]
            for rule in confusion:
                confusion[rule] += hit_confusion(truth_under_rule(event.hits, event.particles, rule), klass, len(classes))
    return {"beam_threshold": None if threshold < 0 else threshold,
            "hits": {rule: class_scores(c, classes) for rule, c in confusion.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", nargs=4, action="append", metavar=("SEED", "EVENTS", "HIT_EVAL_DIR", "IMAGE_PREDICTIONS"), required=True)
    parser.add_argument("--hit-model", default="default")
    parser.add_argument("--image-model", required=True)
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    seeds = {}
    for seed, events, hit_dir, image_predictions in args.seed:
        hit = json.loads((Path(hit_dir) / "metrics.json").read_text())
        seeds[seed] = {
            "events": events, "n_events": hit["n_events"],
            args.hit_model: {"beam_threshold": hit["beam_threshold"], "hits": hit["hits"], "pixels": hit["pixels"],
                             "network_seconds_per_event": hit["network_seconds_per_event"]},
            args.image_model: score_predictions(Path(events), Path(image_predictions)),
        }
        for name in (args.hit_model, args.image_model):
            s = seeds[seed][name]["hits"]["all"]
            b, nb = s["classes"].index("beam"), s["classes"].index("not-beam")
            print(f"seed {seed} {name:>14}: beam {s['efficiency'][b]:.4f} / {s['purity'][b]:.4f}  "
                  f"not-beam {s['efficiency'][nb]:.4f} / {s['purity'][nb]:.4f}")
    write_json(args.results, {"hit_model": args.hit_model, "image_model": args.image_model, "seeds": seeds})


if __name__ == "__main__":
    main()
