"""Is one hit-level model's beam-hit IoU really above another's? A paired bootstrap over events.

Two predictions files of the same events (``protoseg predict A events.h5 -o a.h5``, the same for B, each at
its own working point) give each event's beam-hit counts under rule ``all``: true positives, false
positives, false negatives. Resampling the events with replacement (the same draw for both models, since
they saw the same events) and pooling the counts gives the spread of the difference in beam-hit IoU
TP / (TP + FP + FN), of efficiency and of purity, that another sample of events of the same kind would
show. Several seeds' files pool into one sample (``--pair EVENTS A B`` repeated). ::

    python benchmarks/paired_bootstrap.py --pair e-2718.h5 a-2718.h5 b-2718.h5 --pair e-6262.h5 a-6262.h5 b-6262.h5 \\
        --seed 1 --results paired.json

The difference is B − A; the interval is the 2.5% and 97.5% quantiles of the resampled differences.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from protoseg.errors import InputError
from protoseg.events import open_events
from protoseg.fileio import open_h5_checked, write_json
from protoseg.predictions import PREDICTIONS_FORMAT, PREDICTIONS_VERSION

BEAM = 1


def read_hit_predictions(predictions_path: Path, dataset: str) -> tuple[np.ndarray, np.ndarray, float]:
    """``/hits/<dataset>`` ("pred" or "prob"), ``/hits/offsets`` and the working point (-1: argmax) of a
    predictions file of a beam3 hit-level model trained under beam-label rule ``all`` (InputError otherwise)."""
    with open_h5_checked(predictions_path, PREDICTIONS_FORMAT, (PREDICTIONS_VERSION,)) as pred:
        if "hits" not in pred or dataset not in pred["hits"]:
            raise InputError(f"is not a predictions file of a hit-level model (no /hits/{dataset})", predictions_path)
        classes = json.loads(pred.attrs["class_names"])
        card = json.loads(pred.attrs.get("model_card", "{}"))
        rule = card.get("input", {}).get("image", {}).get("beam_label_rule") or "all"
        if len(classes) <= BEAM or classes[BEAM] != "beam" or rule != "all":
            raise InputError(f"needs a beam3 model of beam-label rule 'all' (classes {classes}, rule {rule})", predictions_path)
        return pred["hits"][dataset][:], pred["hits/offsets"][:], float(pred.attrs.get("beam_threshold", -1.0))


def event_counts(events_path: Path, predictions_path: Path) -> np.ndarray:
    """[n_events, 3] beam-hit TP, FP, FN of each event of a hit-level predictions file (rule ``all``)."""
    hit_class, offsets, _ = read_hit_predictions(predictions_path, "pred")
    tagged_beam = hit_class == BEAM
    with open_events(events_path) as events:
        if len(events) != len(offsets) - 1 or events.n_hits != len(tagged_beam):
            raise InputError(f"does not match {predictions_path} ({len(events)} events, {events.n_hits} hits)", events_path)
        is_beam = np.concatenate([event.hits["label"] == BEAM for event in events.iter_events()])
    event_of_hit = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    n = len(offsets) - 1
    return np.stack([np.bincount(event_of_hit, weights=tagged_beam & is_beam, minlength=n),
                     np.bincount(event_of_hit, weights=tagged_beam & ~is_beam, minlength=n),
                     np.bincount(event_of_hit, weights=~tagged_beam & is_beam, minlength=n)], axis=1)


def scores(counts: np.ndarray) -> np.ndarray:
    """[..., 3] pooled TP, FP, FN -> [..., 3] beam IoU, efficiency, purity."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return np.stack([tp / (tp + fp + fn), tp / (tp + fn), tp / (tp + fp)], axis=-1)


def paired_bootstrap(counts_a: np.ndarray, counts_b: np.ndarray, resamples: int, seed: int) -> dict:
    if counts_a.shape != counts_b.shape:
        raise ValueError("the two models must be scored on the same events")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(counts_a), size=(resamples, len(counts_a)))
    a = scores(counts_a[draws].sum(axis=1))
    b = scores(counts_b[draws].sum(axis=1))
    difference = b - a
    observed = scores(counts_b.sum(axis=0)) - scores(counts_a.sum(axis=0))
    result = {}
    for k, name in enumerate(("beam_iou", "beam_efficiency", "beam_purity")):
        low, high = np.quantile(difference[:, k], [0.025, 0.975])
        result[name] = {"a": float(scores(counts_a.sum(axis=0))[k]), "b": float(scores(counts_b.sum(axis=0))[k]),
                        "difference": float(observed[k]), "interval_95": [float(low), float(high)],
                        "share_of_resamples_b_above_a": float(np.mean(difference[:, k] > 0))}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", nargs=3, action="append", metavar=("EVENTS", "PRED_A", "PRED_B"), required=True,
                        help="an events file and the predictions of models A and B on it (repeat to pool seeds)")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, required=True, help="seed of the resampling")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")
    try:
        counts = [(event_counts(Path(e), Path(a)), event_counts(Path(e), Path(b))) for e, a, b in args.pair]
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts_a = np.concatenate([a for a, _ in counts])
    counts_b = np.concatenate([b for _, b in counts])
    result = {"pairs": [list(p) for p in args.pair], "events": int(len(counts_a)), "resamples": args.resamples,
              "seed": args.seed, "scores": paired_bootstrap(counts_a, counts_b, args.resamples, args.seed)}
    for name, r in result["scores"].items():
        print(f"{name}: A {r['a']:.4f}  B {r['b']:.4f}  B - A {r['difference']:+.4f}  95% [{r['interval_95'][0]:+.4f}, "
              f"{r['interval_95'][1]:+.4f}]  B above A in {100 * r['share_of_resamples_b_above_a']:.1f}% of resamples")
    if args.results:
        write_json(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
