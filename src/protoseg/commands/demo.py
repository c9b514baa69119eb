"""`protoseg demo`: the whole chain on a built-in default, with the shipped pretrained model."""
from __future__ import annotations

import argparse

HELP = "the whole chain on a built-in default with the shipped model: simulate → predict → evaluate → displays"
DESCRIPTION = (
    "Simulates a few ProtoDUNE-SP events with a fixed seed, runs the model on them, evaluates against the "
    "truth, and draws event displays. With the shipped 'default' (a hit-level network) it classifies every "
    "hit directly, scores the hits (beam efficiency and purity, IoU per class) and the hit classes projected "
    "onto the 2018 320x320 pixel grid (IoU, mIoU), and shows the events on that grid; no image file is made. "
    "With an image network (--model tiramisu-gpu, default-cpu, ...) it first makes images with the settings "
    "the model was trained with, then predicts every pixel and every hit and scores the pixels. "
    "Finishes in minutes on a laptop CPU."
)

DEMO_SEED = 20180901
DEMO_EVENTS = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", default="protoseg-demo", metavar="DIR", help="output folder (default protoseg-demo)")
    parser.add_argument("-n", "--events", type=int, default=DEMO_EVENTS, help=f"events to simulate (default {DEMO_EVENTS})")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help=f"simulation seed (default {DEMO_SEED})")
    parser.add_argument("--model", default="default", help="model to run (default: the shipped 'default', the hit-level network)")
    parser.add_argument("--workers", type=int, default=1, help="simulation worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from protoseg.commands.evaluate import iou_table, write_evaluation
    from protoseg.errors import InputError
    from protoseg.images.make import make_image_file
    from protoseg.inference import predict_file
    from protoseg.loading import PRETRAINED_DIR, load_model
    from protoseg.sim.simulate import simulate_events

    if args.events < 1:
        raise InputError(f"--events must be at least 1, got {args.events}")
    if args.model == "default" and not (PRETRAINED_DIR / "default.safetensors").is_file():
        raise InputError(
            "the shipped model 'default' is not in this installation (no protoseg/pretrained/default.safetensors); "
            "the demo needs it: train one (protoseg train --config configs/hits-cpu.yaml --data EVENTS.h5 --out RUN) "
            "and run the demo with --model RUN"
        )
    model = load_model(args.model)  # before minutes of simulation: a bad model fails now
    image = model.card.get("input", {}).get("image", {})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from protoseg.hits.inference import is_hit_card

    if is_hit_card(model.card):
        return _hit_demo(args, model, out)

    events = out / "events.h5"
    print(f"[1/5] simulating {args.events} events (seed {args.seed}) → {events}")
    simulate_events(events, args.events, args.seed, workers=args.workers, progress=True)

    images = out / "images.h5"
    print(f"[2/5] images {image.get('size', [320, 320])} ({image.get('pooling', 'max')} pooling) → {images}")
    make_image_file(
        events,
        images,
        size=image.get("size", (320, 320)),
        pooling=image.get("pooling", "max"),
        label_scheme=image.get("label_scheme", "beam3"),
        spread_rms=bool(image.get("spread_rms", False)),
        drop_noise=bool(image.get("drop_noise", False)),
        beam_label_rule=image.get("beam_label_rule", "all"),  # truth as the model was taught it
        min_beam_hits=0,
        min_notbeam_hits=0,
        split=(0, 0, args.events),  # every event is a test image
        seed=args.seed,
    )

    predictions = out / "predictions.h5"
    displays = out / "displays"
    print(f"[3/5] predicting every pixel and hit with model '{args.model}' → {predictions}")
    summary = predict_file(model, events, predictions, batch_size=2, displays_dir=displays, max_displays=args.events)

    evaluation = out / "evaluation"
    print(f"[4/5] evaluating against the truth → {evaluation}")
    metrics = write_evaluation(model, args.model, str(images), "test", str(evaluation), batch_size=2)

    _report("[5/5]", [
        (events, "simulated events (hits + truth)"),
        (images, "images"),
        (predictions, "per-pixel classes and probabilities, per-hit classes"),
        (displays, "event displays: input | truth | prediction"),
        (evaluation / "metrics.json", "IoU, mIoU, confusion matrix"),
        (evaluation, "confusion.png, iou.png, event_{best,median,worst}.png"),
    ], f"{metrics['n_images']} events, model '{args.model}'", iou_table(metrics), summary)
    return 0


def _report(step: str, outputs: list, heading: str, table: str, summary) -> None:
    """The demo's last words: where each output is, the scores, and the hit-level beam numbers."""
    print(f"{step} done. Outputs:")
    for path, what in outputs:
        print(f"  {str(path):<40} {what}")
    print(f"\n{heading}")
    print(table)
    if summary.hit_metrics:
        m = summary.hit_metrics
        print(f"hits (beam label rule {m.get('beam_label_rule', 'all')}): beam hits tagged beam {m['beam_efficiency']:.3f}, "
              f"purity of hits tagged beam {m['beam_purity']:.3f}")


def _hit_demo(args: argparse.Namespace, model, out) -> int:
    """The demo of a hit-level model: no images; every hit is classified and scored, and shown on the 2018 grid."""
    from protoseg.commands.evaluate import hit_table, write_hit_evaluation
    from protoseg.inference import predict_file
    from protoseg.sim.simulate import simulate_events

    events = out / "events.h5"
    print(f"[1/4] simulating {args.events} events (seed {args.seed}) → {events}")
    simulate_events(events, args.events, args.seed, workers=args.workers, progress=True)

    predictions = out / "predictions.h5"
    displays = out / "displays"
    print(f"[2/4] classifying every hit with model '{args.model}' (hit level, full resolution) → {predictions}")
    summary = predict_file(model, events, predictions, displays_dir=displays, max_displays=args.events)

    evaluation = out / "evaluation"
    print(f"[3/4] evaluating against the truth, per hit and on the 2018 320x320 grid → {evaluation}")
    metrics = write_hit_evaluation(model, args.model, str(events), str(evaluation), min_beam_hits=0, min_notbeam_hits=0)

    _report("[4/4]", [
        (events, "simulated events (hits + truth)"),
        (predictions, "per-hit classes and probabilities; the same on the 320x320 grid"),
        (displays, "event displays: input | truth | prediction (320x320 grid)"),
        (evaluation / "metrics.json", "per-hit efficiency, purity, IoU; pixel IoU and mIoU"),
        (evaluation, "confusion.png, iou.png, event_{best,median,worst}.png"),
    ], f"{metrics['n_events']} events, model '{args.model}'", hit_table(metrics), summary)
    return 0
