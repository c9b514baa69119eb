"""`protoseg evaluate`: per-class IoU, mIoU and confusion matrix of a model on one split of an image file."""
from __future__ import annotations

import argparse

HELP = "per-class IoU, mIoU and confusion matrix of a model on an image file (metrics.json + plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="run folder, checkpoint, weights file or shipped model name (default)")
    parser.add_argument("images", metavar="IMAGES.h5", help="image file with labels")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"], help="which split (default test)")
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder: metrics.json and PNG plots")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-displays", action="store_true", help="skip the best / median / worst event displays")
    parser.add_argument("--beam-threshold", metavar="P|argmax", default=None,
                        help="beam working point: a pixel is beam when P(beam) >= P (default: the model card's "
                             "decision.beam_threshold, else argmax); 'argmax' takes the most probable class")


def iou_table(metrics: dict) -> str:
    """The printed IoU table: one row per class, then the mean."""
    lines = [f"{'class':<14}{'IoU':>8}", "-" * 22]
    for name, value in zip(metrics["classes"], metrics["iou"]):
        lines.append(f"{name:<14}{('n/a' if value is None else f'{value:.4f}'):>8}")
    lines.append("-" * 22)
    lines.append(f"{'mIoU':<14}{metrics['miou']:>8.4f}" if metrics["miou"] is not None else f"{'mIoU':<14}{'n/a':>8}")
    if metrics.get("miou_per_image") is not None:
        lines.append(f"{'mIoU/image':<14}{metrics['miou_per_image']:>8.4f}")
    lines.append(f"{'accuracy':<14}{metrics['accuracy']:>8.4f}")
    return "\n".join(lines)


def write_evaluation(model, model_name: str, images: str, split: str, out: str, batch_size: int = 4, device: str = "cpu", displays: bool = True,
                     beam_threshold: float | str | None = None) -> dict:
    """Evaluate, write DIR/metrics.json and the plots; return the metrics dict.

    Everything is written into a temporary folder and moved into DIR at the end, so a failure (bad
    input found half-way, an interrupt) leaves DIR as it was.
    """
    import json
    from pathlib import Path

    import numpy as np

    from protoseg.display import plot_confusion, plot_event, plot_iou
    from protoseg.evaluation import evaluate
    from protoseg.fileio import atomic_folder
    from protoseg.images.imagefile import open_images
    from protoseg.predictor import Predictor

    result = evaluate(model, images, split=split, batch_size=batch_size, device=device, beam_threshold=beam_threshold)
    metrics = result.metrics(model_name, str(images), split)
    with atomic_folder(out) as out_dir:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
        plot_confusion(result.confusion, result.class_names, out_dir / "confusion.png", title=f"Confusion matrix ({split}, {len(result.event_ids)} images)")
        plot_iou(result.iou, result.class_names, out_dir / "iou.png", title=f"IoU per class ({split})")
        if displays:
            per_image = np.nan_to_num(result.miou_per_image, nan=-1.0)
            order = np.argsort(per_image, kind="stable")
            picks = {"best": order[-1], "median": order[len(order) // 2], "worst": order[0]}
            predictor = Predictor(model, device=device, batch_size=1, beam_threshold=result.beam_threshold or "argmax")
            with open_images(images) as handle:
                for tag, k in picks.items():
                    row = int(result.indices[k])
                    adc, label = handle.read([row])
                    pred, _ = predictor.predict(adc)
                    plot_event(adc[0], label[0], pred[0], result.class_names, out_dir / f"event_{tag}.png",
                               title=f"{tag}: event {int(result.event_ids[k])}")
    return metrics


def run(args: argparse.Namespace) -> int:
    from protoseg.loading import load_model

    from protoseg.predictor import parse_beam_threshold

    threshold = parse_beam_threshold(args.beam_threshold) if args.beam_threshold is not None else None
    model = load_model(args.model, map_location=args.device)
    metrics = write_evaluation(model, args.model, args.images, args.split, args.out, args.batch_size, args.device, not args.no_displays,
                               beam_threshold=threshold)
    point = "argmax" if metrics["beam_threshold"] is None else f"beam when P(beam) >= {metrics['beam_threshold']:g}"
    print(f"{metrics['n_images']} {args.split} images of {args.images}, model {args.model} ({point})")
    print(iou_table(metrics))
    print(f"wrote {args.out}/metrics.json, confusion.png, iou.png" + ("" if args.no_displays else ", event_{best,median,worst}.png"))
    return 0
