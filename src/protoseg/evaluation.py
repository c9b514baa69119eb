"""Evaluation: confusion matrices, IoU and mIoU of a network on one split of an image file."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoseg.errors import InputError
from protoseg.images.imagefile import open_images
from protoseg.metrics import iou, per_image_confusion, per_image_miou
from protoseg.predictor import Predictor, batch_slices, check_classes
from protoseg.progress import progress_bar

__all__ = ["Evaluation", "evaluate"]


@dataclass
class Evaluation:
    """Pooled and per-image numbers of one evaluation."""

    class_names: list[str]
    confusion: np.ndarray  # [C, C] int64, rows truth, columns prediction
    image_confusions: np.ndarray  # [N, C, C]
    event_ids: np.ndarray
    indices: np.ndarray  # rows of the image file
    beam_threshold: float | None = None  # the beam working point the classes were decided with (None: argmax)

    @property
    def iou(self) -> np.ndarray:
        return iou(torch.from_numpy(self.confusion)).double().numpy()

    @property
    def miou(self) -> float:
        return float(np.nanmean(self.iou))

    @property
    def miou_per_image(self) -> np.ndarray:
        return per_image_miou(self.image_confusions)

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def metrics(self, model: str, data: str, split: str) -> dict[str, Any]:
        def clean(value: float) -> float | None:
            return None if not math.isfinite(value) else float(value)

        per_image = self.miou_per_image
        return {
            "classes": self.class_names,
            "iou": [clean(v) for v in self.iou.tolist()],
            "miou": clean(self.miou),
            "miou_per_image": clean(float(np.nanmean(per_image))) if np.isfinite(per_image).any() else None,
            "accuracy": clean(self.accuracy),
            "confusion": self.confusion.tolist(),
            "n_images": int(len(self.event_ids)),
            "model": model,
            "data": data,
            "split": split,
            "beam_threshold": self.beam_threshold,
            "per_image": [{"event_id": int(e), "miou": clean(float(m))} for e, m in zip(self.event_ids, per_image)],
        }


def evaluate(model: torch.nn.Module, images_path: str | Path, split: str = "test", batch_size: int = 4, device: str = "cpu",
             progress: bool = True, beam_threshold: float | str | None = None) -> Evaluation:
    """Confusion matrices (pooled and per image) of ``model`` on one split of an image file.

    ``beam_threshold``: the beam working point (see :class:`~protoseg.predictor.Predictor`); None takes the
    model card's, ``"argmax"`` the most probable class.
    """
    path = Path(images_path)
    predictor = Predictor(model, device=device, batch_size=batch_size, beam_threshold=beam_threshold)
    images = open_images(path)
    try:
        check_classes(predictor.class_names, list(images.class_names), path)
        if images.label is None:
            raise InputError("has no labels: evaluate needs truth (use predict for data)", path)
        index = images.indices(split)
        if len(index) == 0:
            raise InputError(f"the {split} split is empty", path)
        n_classes = len(predictor.class_names)
        confusions = np.zeros((len(index), n_classes, n_classes), dtype=np.int64)
        with progress_bar(len(index), "evaluated", enabled=progress, stream=sys.stdout, unit="image") as bar:
            for part in batch_slices(len(index), predictor.batch_size):
                adc, label = images.read(index[part])
                pred, _ = predictor.predict(adc)
                label = torch.from_numpy(label.astype(np.int64))
                confusions[part] = per_image_confusion(torch.from_numpy(pred.astype(np.int64)), label, n_classes).numpy()
                bar.update(part.stop - part.start)
        event_ids = images.event_id[index]
    finally:
        images.close()
    return Evaluation(predictor.class_names, confusions.sum(axis=0), confusions, event_ids, index, predictor.beam_threshold)
