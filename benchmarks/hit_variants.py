"""Hit-level networks compared the way a release is decided: a working point from a decision seed, scores on others.

For every model (a run folder, weights file or shipped name):

1. its hit probabilities on the *decision* events pick its working point: the threshold of the grid
   where hit-level beam efficiency and purity meet (smallest |efficiency − purity|, as the shipped
   cards' working points were chosen; ``benchmarks/working_point.py``), under the beam label rule the
   model was trained for;
2. ``protoseg evaluate``'s scores at that working point on each *reporting* seed's events: beam and
   not-beam hit efficiency / purity, beam-hit IoU (rule ``all``), rule 2018's beam efficiency / purity,
   and the beam IoU / mIoU of the same predictions on the 2018 320×320 grid;
3. what its card says of its training (steps, CPU and wall time, initialised from) and its size.

Each network sees the same events, so differences between rows are the networks'. ::

    python benchmarks/hit_variants.py --decision eval-7117.h5 --seed 2718 eval-2718.h5 --seed 8086 eval-8086.h5 \\
        --model "default 2.1.0" default --model "8 levels" runs/hits-8level-stage2 --results benchmarks/results/hits_8level.json
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from protoseg.errors import InputError
from protoseg.fileio import write_json

_SPEC = importlib.util.spec_from_file_location("working_point", Path(__file__).with_name("working_point.py"))
working_point = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(working_point)

THRESHOLDS = tuple(np.round(np.arange(0.20, 0.801, 0.05), 2))


def balanced_point(points: list[dict]) -> dict:
    """The point of a threshold grid where beam efficiency and purity are closest (the lower threshold on a tie)."""
    usable = [p for p in points if np.isfinite(p["beam_efficiency"]) and np.isfinite(p["beam_purity"])]
    if not usable:
        raise InputError("no threshold tags any beam hit")
    return min(sorted(usable, key=lambda p: p["beam_threshold"]), key=lambda p: abs(p["beam_efficiency"] - p["beam_purity"]))


def seed_scores(metrics: dict) -> dict:
    """The numbers a release compares, from ``evaluate_events``' result."""
    hits = metrics["hits"]["all"]
    names = metrics["classes"]
    beam, notbeam = names.index("beam"), names.index("not-beam")
    rule2018 = metrics["hits"].get("2018")
    pixel_iou = metrics["pixels"]["iou"]
    return {
        "beam_efficiency": hits["efficiency"][beam], "beam_purity": hits["purity"][beam], "beam_iou": hits["iou"][beam],
        "notbeam_efficiency": hits["efficiency"][notbeam], "notbeam_purity": hits["purity"][notbeam],
        "rule2018_beam_efficiency": rule2018["efficiency"][beam] if rule2018 else None,
        "rule2018_beam_purity": rule2018["purity"][beam] if rule2018 else None,
        "pixel_beam_iou": pixel_iou[beam], "pixel_miou": metrics["pixels"]["miou"], "events": metrics["n_events"],
    }


def compare(models: list[tuple[str, str]], decision: Path, seeds: list[tuple[str, Path]], thresholds=THRESHOLDS) -> dict:
    from protoseg import load_model
    from protoseg.hits.inference import evaluate_events, predict_events_file

    out: dict = {"what": __doc__.split("\n\n")[0], "decision_events": str(decision),
                 "seeds": {name: str(path) for name, path in seeds}, "models": {}}
    for label, source in models:
        model = load_model(source)
        with tempfile.TemporaryDirectory() as tmp:
            predict_events_file(model, decision, Path(tmp) / "decision.h5", progress=False)
            points = working_point.working_points(decision, Path(tmp) / "decision.h5", thresholds)["points"]
        chosen = balanced_point(points)
        card = model.card
        entry = {
            "model": str(source), "model_version": card.get("model_version"),
            "beam_label_rule": (card["input"].get("image") or {}).get("beam_label_rule", "all"),
            "architecture": card["architecture"], "parameters": int(sum(p.numel() for p in model.parameters())),
            "trained_on": card.get("trained_on"), "initialised_from": (card.get("training_data") or {}).get("initialised_from"),
            "beam_threshold": chosen["beam_threshold"],
            "decision": {"beam_efficiency": chosen["beam_efficiency"], "beam_purity": chosen["beam_purity"]},
            "seeds": {},
        }
        for name, path in seeds:
            entry["seeds"][name] = seed_scores(evaluate_events(model, path, beam_threshold=chosen["beam_threshold"], progress=False))
            print(f"{label}: seed {name} at {chosen['beam_threshold']:.2f}: beam hits "
                  f"{entry['seeds'][name]['beam_efficiency']:.4f} / {entry['seeds'][name]['beam_purity']:.4f}", flush=True)
        out["models"][label] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decision", type=Path, required=True, help="events file (with truth) that picks each working point")
    parser.add_argument("--seed", nargs=2, action="append", metavar=("NAME", "EVENTS"), required=True,
                        help="a reporting events file and the name its column gets (repeat)")
    parser.add_argument("--model", nargs=2, action="append", metavar=("LABEL", "MODEL"), required=True,
                        help="a hit-level model and its row label (repeat)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--results", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    try:
        result = compare([(a, b) for a, b in args.model], args.decision, [(a, Path(b)) for a, b in args.seed], args.thresholds)
    except (InputError, OSError, KeyError, ValueError) as exc:
        print(f"hit_variants: {exc}", file=sys.stderr)
        return 2
    if args.results:
        write_json(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
