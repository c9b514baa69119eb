"""Class balance of label images: pixel counts and the 2018 study's class weights."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from protoseg.errors import InputError
from protoseg.images.imagefile import ImageFile

__all__ = ["class_balance", "format_class_balance"]


def class_balance(labels: Iterable[np.ndarray] | ImageFile | np.ndarray, num_classes: int, block: int = 64) -> dict[str, Any]:
    """Pixel statistics of label images, as the 2018 study computed its class weights.

    Returns a dict with ``pixel_counts`` and ``pixel_fractions`` (pooled over all images),
    ``median_weights`` (per class, the median over images that contain the class of
    background pixels / class pixels; background is 1 by construction), ``mean_weights``, the
    ``ratio`` of pooled counts to the rarest present class (the "1 : x : y" of 2018),
    ``images_with_class``, ``absent`` (classes in no image; their weights are set to 1.0, they never
    enter a loss) and ``n_images``.
    """
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1")
    per_image: list[np.ndarray] = []

    def add(batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        if batch.ndim == 2:
            batch = batch[None]
        if batch.size and int(batch.max()) >= num_classes:
            raise InputError(f"label value {int(batch.max())} is not below num_classes={num_classes}")
        flat = batch.reshape(batch.shape[0], -1).astype(np.int64)
        offsets = (np.arange(batch.shape[0]) * num_classes)[:, None]
        counts = np.bincount((flat + offsets).ravel(), minlength=batch.shape[0] * num_classes)
        per_image.append(counts.reshape(batch.shape[0], num_classes))

    if isinstance(labels, ImageFile):
        if labels.label is None:
            raise InputError("image file has no labels", labels.path)
        for start in range(0, len(labels), block):
            add(labels.label[start : start + block])
    elif isinstance(labels, np.ndarray):
        for start in range(0, len(labels) if labels.ndim == 3 else 1, block):
            add(labels[start : start + block] if labels.ndim == 3 else labels)
    else:
        for image in labels:
            add(image)
    counts = np.concatenate(per_image) if per_image else np.zeros((0, num_classes), dtype=np.int64)
    pooled = counts.sum(axis=0)
    total = int(pooled.sum())
    median_weights, mean_weights = [], []
    for c in range(num_classes):
        present = counts[:, c] > 0
        if not present.any():
            median_weights.append(1.0)
            mean_weights.append(1.0)
            continue
        ratios = counts[present, 0] / counts[present, c]
        median_weights.append(float(np.median(ratios)))
        mean_weights.append(float(np.mean(ratios)))
    nonzero = pooled[pooled > 0]
    rarest = int(nonzero.min()) if len(nonzero) else 1
    return {
        "n_images": int(counts.shape[0]),
        "num_classes": int(num_classes),
        "pixel_counts": [int(x) for x in pooled],
        "pixel_fractions": [float(x) / total if total else 0.0 for x in pooled],
        "median_weights": median_weights,
        "mean_weights": mean_weights,
        "ratio": [float(x) / rarest for x in pooled],
        "images_with_class": [int(x) for x in (counts > 0).sum(axis=0)],
        "absent": [c for c in range(num_classes) if pooled[c] == 0],
    }


def format_class_balance(balance: dict[str, Any], class_names: Sequence[str]) -> str:
    """A table of the class balance and the 2018-style "1 : x : y" line."""
    lines = [f"{balance['n_images']} images"]
    width = max(len(n) for n in class_names)
    lines.append(f"{'class':<{width}}  {'pixels':>12}  {'fraction':>9}  {'median bg/class':>15}  {'images':>6}")
    for c, name in enumerate(class_names):
        weight = "absent" if c in balance["absent"] else f"{balance['median_weights'][c]:.2f}"
        lines.append(
            f"{name:<{width}}  {balance['pixel_counts'][c]:>12d}  {balance['pixel_fractions'][c]:>9.5f}  "
            f"{weight:>15}  {balance['images_with_class'][c]:>6d}"
        )
    order = [c for c in np.argsort(balance["pixel_counts"]) if balance["pixel_counts"][c] > 0]
    if order:
        ratio = " : ".join(f"{balance['ratio'][c]:.1f}" if balance["ratio"][c] != 1 else "1" for c in order)
        lines.append(f"pixels {' : '.join(class_names[c] for c in order)} = {ratio}")
    return "\n".join(lines)
