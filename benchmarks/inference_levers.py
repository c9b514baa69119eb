"""Two levers that need no training, measured on one split of an image file: weight averages and shifts.

- **Weight average** ("model soup"): the floating-point tensors of several trained networks of the
  same architecture averaged with given weights (BN running statistics included), e.g. `tiramisu-gpu` with
  a continuation of it. It costs nothing at inference.
- **Shift test-time augmentation**: the image moved by a few pixels (zero fill; what leaves the image is
  dropped), the network run on each copy, the softmax moved back and averaged over the copies that
  still hold the pixel. It costs one forward pass per shift. A 5-level network pools by 32, so a shift
  that is not a multiple of 32 shows it a different grid. The position planes are computed from the
  pixel grid, so a shift of d pixels moves them by d/320 of the image: negligible.

Each variant is scored at argmax and at the base model's working point (its card's
``decision.beam_threshold``) from the same probabilities: pooled IoU per class, mIoU, beam recall and
precision, as ``protoseg evaluate`` reports them.

    python benchmarks/inference_levers.py images.h5 --split val --model tiramisu-gpu \\
        --average half=tiramisu-gpu:0.5,run/checkpoints/last.ckpt:0.5 \\
        --shifts none=0,0 --shifts five=0,0/3,0/-3,0/0,3/0,-3 --results levers.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from protoseg.errors import InputError
from protoseg.fileio import write_json
from protoseg.images.imagefile import open_images
from protoseg.loading import load_model
from protoseg.metrics import confusion_matrix, summarize
from protoseg.predictor import Predictor, batch_slices, check_classes


def parse_average(text: str) -> tuple[str, list[tuple[str, float]]]:
    """``NAME=MODEL:W,MODEL:W,...`` -> (NAME, [(MODEL, W), ...]); the weights must sum to 1."""
    name, _, spec = text.partition("=")
    parts = []
    for item in spec.split(","):
        model, _, weight = item.rpartition(":")
        if not model:
            raise InputError(f"--average {text!r}: each part is MODEL:WEIGHT")
        parts.append((model, float(weight)))
    if not name or not parts or abs(sum(w for _, w in parts) - 1.0) > 1e-6:
        raise InputError(f"--average {text!r}: needs NAME=MODEL:W,... with weights summing to 1")
    return name, parts


def parse_shifts(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``NAME=DY,DX/DY,DX/...`` (pixels) -> (NAME, [(DY, DX), ...])."""
    name, _, spec = text.partition("=")
    try:
        shifts = [tuple(int(v) for v in pair.split(",")) for pair in spec.split("/")]
    except ValueError:
        raise InputError(f"--shifts {text!r}: needs NAME=DY,DX/DY,DX/... in pixels") from None
    if not name or any(len(s) != 2 for s in shifts):
        raise InputError(f"--shifts {text!r}: needs NAME=DY,DX/DY,DX/... in pixels")
    return name, shifts


def averaged_model(parts: list[tuple[str, float]]) -> torch.nn.Module:
    """The first model of ``parts`` with every floating-point tensor replaced by the weighted average."""
    models = [load_model(source) for source, _ in parts]
    base = models[0]
    states = [m.state_dict() for m in models]
    for source, state in zip(parts, states):
        if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
            raise InputError(f"its architecture differs from {parts[0][0]}'s: cannot be averaged with it", Path(source[0]))
    merged = {}
    for key, tensor in states[0].items():
        if tensor.is_floating_point():
            merged[key] = sum(w * state[key] for (_, w), state in zip(parts, states))
        else:
            merged[key] = tensor  # counters (num_batches_tracked)
    base.load_state_dict(merged)
    return base.eval()


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` [N, C, H, W] moved by (dy, dx) pixels, zero-filled; what moves past the edge is dropped."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[2], x.shape[3]
    padded = F.pad(x, [max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)])
    return padded[:, :, max(-dy, 0):max(-dy, 0) + h, max(-dx, 0):max(-dx, 0) + w]


def held_pixels(h: int, w: int, dy: int, dx: int) -> torch.Tensor:
    """1 where the image moved by (dy, dx) and moved back still holds the pixel, else 0 ([1, 1, H, W])."""
    held = torch.zeros(1, 1, h, w)
    held[:, :, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)] = 1.0
    return held


def shifted_probabilities(predictor: Predictor, adc: np.ndarray, shifts: list[tuple[int, int]]) -> np.ndarray:
    """Softmax [N, C, H, W] of raw images ``adc`` [N, H, W], averaged over the shifted copies that hold each pixel.

    The raw image is shifted, so the network sees what ``predict`` would give it for that image (with
    ``max`` normalisation a shift can drop the brightest pixel and rescale the rest; ``log`` is per pixel).
    """
    raw = torch.from_numpy(np.ascontiguousarray(adc, np.float32))[:, None]
    total, count = 0.0, 0.0
    for dy, dx in shifts:
        prob = torch.from_numpy(predictor.probabilities(shift(raw, dy, dx)[:, 0].numpy()))
        held = held_pixels(raw.shape[2], raw.shape[3], dy, dx)
        total, count = total + shift(prob, -dy, -dx) * held, count + held
    return (total / count).numpy()


def scores(confusion: torch.Tensor, classes: list[str]) -> dict:
    """IoU per class, mIoU, beam recall and precision of a pooled confusion matrix (``protoseg.metrics.summarize``)."""
    summary = summarize(confusion, classes)
    beam = classes.index("beam")
    return {"iou": [round(v, 5) for v in summary["iou"]], "miou": round(summary["miou"], 5),
            "beam_recall": round(summary["recall"][beam], 5), "beam_precision": round(summary["precision"][beam], 5),
            "confusion": summary["confusion"]}


def measure(images_path: Path, split: str, variants: dict[str, torch.nn.Module], shift_sets: dict[str, list],
            batch_size: int = 4) -> dict:
    """Every variant × shift set, decided at argmax and at the first variant's card working point."""
    card = next(iter(variants.values())).card
    classes = list(card["classes"])
    threshold = (card.get("decision") or {}).get("beam_threshold")
    points = {"argmax": "argmax"} | ({f"P(beam)>={threshold}": float(threshold)} if threshold is not None else {})
    predictors = {(v, p): Predictor(model, batch_size=batch_size, beam_threshold=t)
                  for v, model in variants.items() for p, t in points.items()}
    images = open_images(images_path)
    try:
        check_classes(classes, list(images.class_names), images_path)
        if images.label is None:
            raise InputError("has no labels", images_path)
        index = images.indices(split)
        if len(index) == 0:
            raise InputError(f"the {split} split is empty", images_path)
        n = len(classes)
        confusion = {(v, s, p): torch.zeros((n, n), dtype=torch.int64) for v in variants for s in shift_sets for p in points}
        seconds = {(v, s): 0.0 for v in variants for s in shift_sets}
        for part in batch_slices(len(index), batch_size):
            adc, label = images.read(index[part])
            truth = torch.from_numpy(label.astype(np.int64))
            for v in variants:
                for s, shifts in shift_sets.items():
                    start = time.perf_counter()
                    prob = shifted_probabilities(predictors[(v, "argmax")], adc, shifts)
                    seconds[(v, s)] += time.perf_counter() - start
                    for p in points:  # every working point decided from the same probabilities
                        pred = torch.from_numpy(predictors[(v, p)].decide(prob).astype(np.int64))
                        confusion[(v, s, p)] += confusion_matrix(pred, truth, n)
    finally:
        images.close()
    rows = [{"variant": v, "shifts": s, "shift_pixels": shift_sets[s], "decision": p,
             "seconds_per_image": round(seconds[(v, s)] / len(index), 3), **scores(confusion[(v, s, p)], classes)}
            for v in variants for s in shift_sets for p in points]
    return {"images": str(images_path), "split": split, "n_images": int(len(index)), "classes": classes,
            "torch_threads": torch.get_num_threads(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="image file with labels")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default="tiramisu-gpu",
                        help="the base model, an image network (shipped name, run folder, checkpoint, weights)")
    parser.add_argument("--average", action="append", default=[], metavar="NAME=MODEL:W,...",
                        help="a weight average to score beside the base model (repeatable)")
    parser.add_argument("--shifts", action="append", default=[], metavar="NAME=DY,DX/...",
                        help="a set of shifts in pixels (repeatable; default: none=0,0)")
    parser.add_argument("--results", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)
    try:
        variants = {"base": load_model(args.model)}
        for text in args.average:
            name, parts = parse_average(text)
            variants[name] = averaged_model(parts)
            variants[name].card = variants["base"].card
        shift_sets = dict(parse_shifts(t) for t in (args.shifts or ["none=0,0"]))
        result = measure(args.images, args.split, variants, shift_sets)
    except (InputError, OSError, KeyError, ValueError) as exc:
        print(f"inference_levers: {exc}", file=sys.stderr)
        return 2
    result["model"] = args.model
    result["averages"] = args.average
    for row in result["rows"]:
        print(f"{row['variant']:>10} {row['shifts']:>8} {row['decision']:>16}  beam IoU {row['iou'][1]:.4f}  mIoU {row['miou']:.4f}  "
              f"recall {row['beam_recall']:.4f}  precision {row['beam_precision']:.4f}  {row['seconds_per_image']:.2f} s/image")
    if args.results:
        write_json(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
