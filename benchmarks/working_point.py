"""Hit-level beam efficiency and purity against the beam working point, from one predictions file.

``protoseg predict MODEL events.h5 -o p.h5`` stores every pixel's class probabilities (float16), and for a
hit-level model every hit's (``/hits/prob``). A hit is tagged beam at working point t when its P(beam)
(an image model's: that of the pixel that holds it) is at least t (what
``--beam-threshold t`` decides). This script scores every t of a grid from the stored probabilities,
without running the network again, so that a physicist can pick the working point an analysis needs:

    protoseg predict default events.h5 -o p.h5
    python benchmarks/working_point.py events.h5 p.h5 --results wp.json

Truth: the events file's hit labels, as ``predict`` scores them: under beam-label rule ``all``, or for a
hit-level model trained with rule 2018 under that rule (the hits it drops are not scored). An image model
trained with rule 2018 is refused (one line, exit 2).
The float16 probabilities can put a pixel whose P(beam) lies within 1e-3 of t on the other side of t than
``predict`` did: counts agree with ``predict``'s to that.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

from protoseg.errors import InputError
from protoseg.events import open_events
from protoseg.fileio import write_json
from protoseg.hits.inference import truth_under_rule
from protoseg.images import pixel_indices
from protoseg.predictions import NO_TRUTH

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.30, 0.801, 0.05), 2))


def working_points(events_path: Path, predictions_path: Path, thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Beam hits, tagged hits and tagged beam hits at each threshold; efficiency and purity."""
    thresholds = np.asarray(sorted(float(t) for t in thresholds))
    if len(thresholds) == 0 or np.any((thresholds <= 0) | (thresholds >= 1)):
        raise InputError("thresholds must lie between 0 and 1 (exclusive)")
    with h5py.File(predictions_path, "r") as pred:
        if pred.attrs.get("format") != "protoseg-predictions" or "prob" not in pred:
            raise InputError("is not a protoseg predictions file", predictions_path)
        classes = json.loads(pred.attrs["class_names"])
        if "beam" not in classes:
            raise InputError(f"the model has no 'beam' class ({', '.join(classes)})", predictions_path)
        card = json.loads(pred.attrs.get("model_card", "{}"))
        rule = card.get("input", {}).get("image", {}).get("beam_label_rule") or "all"
        if rule != "all" and "hits/prob" not in pred:
            raise InputError(f"the image model was trained with beam-label rule '{rule}'; this script scores image models "
                             "under rule 'all' only", predictions_path)
        beam = classes.index("beam")
        size = tuple(int(v) for v in pred.attrs["size"])
        prob = pred["prob"]
        events = open_events(events_path)
        try:
            if not events.is_mc:
                raise InputError("has no truth", events_path)
            if len(events) != prob.shape[0]:
                raise InputError(f"has {len(events)} events, the predictions {prob.shape[0]}", events_path)
            n_beam = 0
            tagged = np.zeros(len(thresholds), np.int64)
            tagged_beam = np.zeros(len(thresholds), np.int64)
            hit_prob = pred["hits/prob"] if "hits/prob" in pred else None  # a hit-level model: each hit's own
            offsets = pred["hits/offsets"][...] if hit_prob is not None else None
            for index, event in enumerate(events.iter_events(chunk_events=16)):
                if hit_prob is not None:
                    p_beam = hit_prob[offsets[index]:offsets[index + 1], beam].astype(np.float32)
                else:
                    rows, cols = pixel_indices(event.hits["tick"], event.hits["wire"], size)
                    p_beam = prob[index, beam].astype(np.float32)[rows, cols]
                if rule == "all":
                    is_beam = np.asarray(event.hits["label"]) == 1
                else:  # a hit-level model trained under another rule: scored under it, the hits it drops left out
                    truth = truth_under_rule(event.hits, event.particles, rule)
                    p_beam, is_beam = p_beam[truth != NO_TRUTH], truth[truth != NO_TRUTH] == 1
                n_beam += int(is_beam.sum())
                # tagged at t <=> p >= t: count with one sort instead of one pass per threshold
                order = np.sort(p_beam)
                tagged += len(order) - np.searchsorted(order, thresholds, side="left")
                beam_sorted = np.sort(p_beam[is_beam])
                tagged_beam += len(beam_sorted) - np.searchsorted(beam_sorted, thresholds, side="left")
        finally:
            events.close()
    rows_out = []
    for t, n_tag, n_tag_beam in zip(thresholds, tagged, tagged_beam):
        rows_out.append({"beam_threshold": float(t), "tagged_beam_hits": int(n_tag), "tagged_true_beam_hits": int(n_tag_beam),
                         "beam_efficiency": n_tag_beam / n_beam if n_beam else float("nan"),
                         "beam_purity": n_tag_beam / n_tag if n_tag else float("nan")})
    return {"events": str(events_path), "predictions": str(predictions_path), "beam_label_rule": rule, "beam_hits": n_beam,
            "card_beam_threshold": (card.get("decision") or {}).get("beam_threshold"), "points": rows_out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path, help="events file with truth")
    parser.add_argument("predictions", type=Path, help="protoseg predict's output for those events")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--results", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    try:
        result = working_points(args.events, args.predictions, args.thresholds)
    except (InputError, OSError, KeyError, ValueError) as exc:
        print(f"working_point: {exc}", file=sys.stderr)
        return 2
    print(f"{result['beam_hits']} beam hits; the model card's working point: {result['card_beam_threshold']}")
    print(f"{'P(beam) >=':>11} {'efficiency':>11} {'purity':>8}")
    for point in result["points"]:
        print(f"{point['beam_threshold']:>11.2f} {point['beam_efficiency']:>11.4f} {point['beam_purity']:>8.4f}")
    if args.results:
        write_json(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
