"""`protoseg evaluate`: per-class IoU, mIoU and confusion matrix of a model on one split of an image file."""
from __future__ import annotations

import argparse

HELP = "per-class IoU, mIoU and confusion matrix of a model on an image file (metrics.json + plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="run folder, checkpoint, weights file or shipped model name (default)")
    parser.add_argument("images", metavar="IMAGES.h5", help="image file with labels (an events file with truth for a hit-level model)")
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


def _versions(model) -> dict:
    """The protoseg version that evaluated and the version of the model card evaluated (None: not a shipped card)."""
    from protoseg.version import __version__

    return {"protoseg_version": __version__, "model_version": getattr(model, "card", {}).get("model_version")}


def write_evaluation(model, model_name: str, images: str, split: str, out: str, batch_size: int = 4, device: str = "cpu", displays: bool = True,
                     beam_threshold: float | str | None = None) -> dict:
    """Evaluate, write DIR/metrics.json and the plots; return the metrics dict.

    Everything is written into a temporary folder and moved into DIR at the end, so a failure (bad
    input found half-way, an interrupt) leaves DIR as it was.
    """
    import json

    import numpy as np

    from protoseg.display import plot_confusion, plot_event, plot_iou
    from protoseg.evaluation import evaluate
    from protoseg.fileio import atomic_folder
    from protoseg.images.imagefile import open_images
    from protoseg.predictor import Predictor

    result = evaluate(model, images, split=split, batch_size=batch_size, device=device, beam_threshold=beam_threshold)
    metrics = {**result.metrics(model_name, str(images), split), **_versions(model)}
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


def hit_table(metrics: dict) -> str:
    """The printed table of a hit-level model: efficiency / purity / IoU per class over hits, then the 2018 grid's IoU."""
    def cell(value) -> str:
        return f"{value:.4f}" if value is not None else "n/a"

    lines = []
    for rule, scores in metrics["hits"].items():
        if scores is None:
            continue
        lines.append(f"hits, beam label rule {rule}:")
        lines.append(f"{'class':<14}{'hits':>10}{'efficiency':>12}{'purity':>9}{'IoU':>9}")
        for k, name in enumerate(scores["classes"]):
            lines.append(f"{name:<14}{scores['n_hits'][k]:>10}{cell(scores['efficiency'][k]):>12}{cell(scores['purity'][k]):>9}{cell(scores['iou'][k]):>9}")
    pixels = metrics["pixels"]
    lines.append(f"pixels of the 320x320 grid, {pixels['n_images']} events passing the 2018 selection:")
    lines.append("  ".join(f"{name} {cell(v)}" for name, v in zip(metrics["classes"], pixels["iou"])) + f"  mIoU {cell(pixels['miou'])}")
    return "\n".join(lines)


def write_hit_evaluation(model, model_name: str, events: str, out: str, device: str = "cpu", displays: bool = True,
                         beam_threshold: float | str | None = None, min_beam_hits: int = 2000, min_notbeam_hits: int = 2000) -> dict:
    """Evaluate a hit-level model on an events file: DIR/metrics.json, confusion.png (hits, rule all), iou.png, displays."""
    import json

    import numpy as np

    from protoseg.display import plot_confusion, plot_event, plot_iou
    from protoseg.events import open_events
    from protoseg.fileio import atomic_folder
    from protoseg.hits.inference import HitPredictor, evaluate_events, project_to_image
    from protoseg.images.pooling import event_to_image

    metrics = evaluate_events(model, events, device=device, beam_threshold=beam_threshold, min_beam_hits=min_beam_hits,
                              min_notbeam_hits=min_notbeam_hits)
    # the image networks' top-level keys, from the 2018 grid: metrics.json reads the same for both kinds
    metrics.update({"model": model_name, "data": str(events), "iou": metrics["pixels"]["iou"], "miou": metrics["pixels"]["miou"],
                    "n_images": metrics["pixels"]["n_images"],
                    **_versions(model)})
    scores = metrics["hits"]["all"]
    with atomic_folder(out) as out_dir:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
        plot_confusion(np.asarray(scores["confusion"]), metrics["classes"], out_dir / "confusion.png",
                       title=f"Confusion matrix of the hits ({metrics['n_events']} events)")
        plot_iou(np.array([np.nan if v is None else v for v in scores["iou"]]), metrics["classes"], out_dir / "iou.png", title="IoU per class (hits)")
        ranked = [r for r in metrics["per_event"] if r["selected"]]
        if displays and ranked:
            ranked.sort(key=lambda r: r["pixel_miou"])
            picks = {"best": ranked[-1], "median": ranked[len(ranked) // 2], "worst": ranked[0]}
            predictor = HitPredictor(model, device=device, beam_threshold=metrics["beam_threshold"] or "argmax")
            with open_events(events) as handle:
                for tag, record in picks.items():
                    hits = handle.read(record["position"]).hits
                    klass, prob = predictor.predict(hits)
                    adc, label = event_to_image(hits, (320, 320), "max", predictor.label_scheme)
                    pred, _ = project_to_image(hits, klass, prob)
                    plot_event(adc, label, pred, metrics["classes"], out_dir / f"event_{tag}.png", title=f"{tag}: event {record['event_id']}")
    return metrics


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from protoseg.errors import InputError
    from protoseg.loading import load_model

    from protoseg.predictor import parse_beam_threshold

    threshold = parse_beam_threshold(args.beam_threshold) if args.beam_threshold is not None else None
    model = load_model(args.model, map_location=args.device)
    from protoseg.hits.inference import is_hit_card

    if is_hit_card(getattr(model, "card", {})):
        from protoseg.fileio import hdf5_format

        fmt = hdf5_format(Path(args.images))
        if fmt != "protoseg-events":
            raise InputError(f"is a '{fmt}' file; the hit-level model {args.model} is evaluated on an events file with truth", args.images)
        metrics = write_hit_evaluation(model, args.model, args.images, args.out, args.device, not args.no_displays, beam_threshold=threshold)
        point = "argmax" if metrics["beam_threshold"] is None else f"beam when P(beam) >= {metrics['beam_threshold']:g}"
        print(f"{metrics['n_events']} events of {args.images}, model {args.model} ({point}); "
              f"network {1000 * metrics['network_seconds_per_event']:.0f} ms per event")
        print(hit_table(metrics))
        print(f"wrote {args.out}/metrics.json, confusion.png, iou.png" + ("" if args.no_displays else ", event_{best,median,worst}.png"))
        return 0
    metrics = write_evaluation(model, args.model, args.images, args.split, args.out, args.batch_size, args.device, not args.no_displays,
                               beam_threshold=threshold)
    point = "argmax" if metrics["beam_threshold"] is None else f"beam when P(beam) >= {metrics['beam_threshold']:g}"
    print(f"{metrics['n_images']} {args.split} images of {args.images}, model {args.model} ({point})")
    print(iou_table(metrics))
    print(f"wrote {args.out}/metrics.json, confusion.png, iou.png" + ("" if args.no_displays else ", event_{best,median,worst}.png"))
    return 0
