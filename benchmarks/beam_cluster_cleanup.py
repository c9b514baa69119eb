"""Would a physics clean-up after the network help? Beam-tagged pieces far from the beam's main cluster, relabelled.

The image network ``tiramisu-gpu`` (shipped as ``default`` until model 2.0.0) misses its beam targets by a few
points (README, "The shipped models"). One of its
visible mistakes is a piece of a cosmic-ray track far from the beam called beam. A post-processing step a
physicist would try first: group the beam-tagged pixels into clusters (8-connected after each grows by
``--link`` pixels, so gaps of up to twice that join), call the cluster with the largest summed P(beam) the beam, and give every other
cluster whose nearest pixel lies more than D pixels from it the more probable of the other classes. This
script measures that on one predictions file, for several D, without running the network again:

    protoseg predict tiramisu-gpu events.h5 -o p.h5
    python benchmarks/beam_cluster_cleanup.py events.h5 p.h5 --results cleanup.json

For each D: pixel beam IoU over all the events' images (truth: the predictions file's labels, pixels with
a hit), and the hit-level beam efficiency and purity (each hit takes its pixel's class, as ``predict``
maps them; truth: the events' hit labels, rule ``all``). D = none is the network as shipped (the model
card's working point, or argmax).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from protoseg.errors import InputError
from protoseg.events import open_events
from protoseg.fileio import write_json
from protoseg.images import pixel_indices

DEFAULT_DISTANCES_PX = (10, 20, 40, 80, 120)


def far_clusters(beam_tagged: np.ndarray, p_beam: np.ndarray, link_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster index per pixel, 0 outside; distance in pixels of each pixel to the main cluster)."""
    joined = ndimage.binary_dilation(beam_tagged, iterations=link_px) if link_px > 0 else beam_tagged
    clusters, n = ndimage.label(joined, structure=np.ones((3, 3), bool))
    clusters = np.where(beam_tagged, clusters, 0)
    weight = ndimage.sum(p_beam * beam_tagged, clusters, index=np.arange(1, n + 1))
    main = 1 + int(np.argmax(weight))
    return clusters, ndimage.distance_transform_edt(clusters != main)


def cleanup_scan(events_path: Path, predictions_path: Path, distances_px=DEFAULT_DISTANCES_PX, link_px: int = 3) -> dict:
    distances = [None, *sorted(float(d) for d in distances_px)]
    counts = {d: dict(pixel_tp=0, pixel_fp=0, pixel_fn=0, hits_tagged=0, hits_tagged_beam=0) for d in distances}
    n_beam_hits = 0
    with h5py.File(predictions_path, "r") as pred:
        if pred.attrs.get("format") != "protoseg-predictions" or "prob" not in pred or "label" not in pred:
            raise InputError("is not a protoseg predictions file with probabilities and truth labels", predictions_path)
        classes = json.loads(pred.attrs["class_names"])
        card = json.loads(pred.attrs.get("model_card", "{}"))
        rule = card.get("input", {}).get("image", {}).get("beam_label_rule") or "all"
        if "beam" not in classes or rule != "all":
            raise InputError(f"needs a model with a 'beam' class trained with beam-label rule 'all' (classes {classes}, rule {rule})", predictions_path)
        beam = classes.index("beam")
        threshold = pred.attrs.get("beam_threshold")
        threshold = None if threshold is None or str(threshold) == "argmax" else float(threshold)
        size = tuple(int(v) for v in pred.attrs["size"])
        with open_events(events_path) as events:
            if not events.is_mc:
                raise InputError("has no truth", events_path)
            if len(events) != pred["prob"].shape[0]:
                raise InputError(f"has {len(events)} events, the predictions {pred['prob'].shape[0]}", events_path)
            for index, event in enumerate(events.iter_events(chunk_events=16)):
                prob = pred["prob"][index].astype(np.float32)
                shipped = pred["pred"][index]
                truth_beam = pred["label"][index] == beam
                others = prob.copy()
                others[beam] = -1.0
                other_class = others.argmax(0)
                beam_tagged = shipped == beam
                if beam_tagged.any():
                    clusters, distance = far_clusters(beam_tagged, prob[beam], link_px)
                rows, cols = pixel_indices(event.hits["tick"], event.hits["wire"], size)
                hit_is_beam = np.asarray(event.hits["label"]) == 1
                n_beam_hits += int(hit_is_beam.sum())
                for d in distances:
                    tagged = beam_tagged if d is None or not beam_tagged.any() else beam_tagged & (distance <= d)
                    labelled = np.where(beam_tagged & ~tagged, other_class, shipped)
                    is_beam_px = labelled == beam
                    c = counts[d]
                    c["pixel_tp"] += int((is_beam_px & truth_beam).sum())
                    c["pixel_fp"] += int((is_beam_px & ~truth_beam).sum())
                    c["pixel_fn"] += int((~is_beam_px & truth_beam).sum())
                    hit_tagged = is_beam_px[rows, cols]
                    c["hits_tagged"] += int(hit_tagged.sum())
                    c["hits_tagged_beam"] += int((hit_tagged & hit_is_beam).sum())
    points = []
    for d in distances:
        c = counts[d]
        points.append({"max_distance_px": d, **c,
                       "pixel_beam_iou": c["pixel_tp"] / max(1, c["pixel_tp"] + c["pixel_fp"] + c["pixel_fn"]),
                       "hit_beam_efficiency": c["hits_tagged_beam"] / max(1, n_beam_hits),
                       "hit_beam_purity": c["hits_tagged_beam"] / max(1, c["hits_tagged"])})
    return {"events": str(events_path), "predictions": str(predictions_path), "beam_threshold": threshold,
            "link_px": link_px, "beam_hits": n_beam_hits, "points": points}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path, help="events file with truth")
    parser.add_argument("predictions", type=Path, help="protoseg predict's output for those events")
    parser.add_argument("--distances", type=float, nargs="+", default=list(DEFAULT_DISTANCES_PX),
                        help="largest distance (pixels) from the main beam cluster a beam-tagged cluster may have")
    parser.add_argument("--link", type=int, default=3, help="each beam-tagged pixel grows by this many pixels before clustering (gaps up to twice that join)")
    parser.add_argument("--results", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    try:
        result = cleanup_scan(args.events, args.predictions, args.distances, args.link)
    except (InputError, OSError, KeyError, ValueError) as exc:
        print(f"beam_cluster_cleanup: {exc}", file=sys.stderr)
        return 2
    print(f"{result['beam_hits']} beam hits; working point {result['beam_threshold']}; gaps up to {2 * args.link} px joined")
    print(f"{'max distance':>12} {'pixel beam IoU':>15} {'hit efficiency':>15} {'hit purity':>11}")
    for point in result["points"]:
        d = "none" if point["max_distance_px"] is None else f"{point['max_distance_px']:.0f} px"
        print(f"{d:>12} {point['pixel_beam_iou']:>15.4f} {point['hit_beam_efficiency']:>15.4f} {point['hit_beam_purity']:>11.4f}")
    if args.results:
        write_json(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
