"""Segmentation metrics from a confusion matrix (rows = truth, columns = prediction).

* ``confusion_matrix(pred, target, num_classes, ignore_index=None)``: int64 [C, C] pixel counts.
* ``iou(confusion)``: per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both truth
  and prediction (0/0: no evidence either way). Mean IoU is ``torch.nanmean(iou(confusion))``.
* ``summarize(confusion, class_names)``: IoU, mean IoU, pixel accuracy, precision, recall.
* ``SegmentationMetrics(num_classes)``: a torchmetrics ``Metric`` accumulating the dataset's
  confusion matrix (pooled IoU, as the 2018 analysis computed it) and the mean over images of each
  image's mIoU; its states are summed across processes, so it works under DDP.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from protoseg.errors import InputError

__all__ = ["SegmentationMetrics", "confusion_matrix", "iou", "per_image_confusion", "per_image_miou", "summarize"]


def _labels(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
            ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated integer predictions and targets, with pred given as labels or as [N, C, ...] scores."""
    if pred.is_floating_point() and pred.dim() == target.dim() + 1:
        if pred.shape[1] != num_classes:
            raise InputError(f"scores have {pred.shape[1]} classes, expected {num_classes}")
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape:
        raise InputError(f"prediction shape {list(pred.shape)} differs from target shape {list(target.shape)}")
    pred, target = pred.long(), target.long()
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    for name, values in (("prediction", pred), ("target", target[valid])):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise InputError(f"{name} holds class {int(values.min()) if values.min() < 0 else int(values.max())} "
                             f"outside 0..{num_classes - 1}")
    return pred, torch.where(valid, target, -1)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Pixel counts [C, C] (int64): row = true class, column = predicted class.

    ``pred`` is class labels shaped like ``target``, or scores/logits [N, C, ...] (argmax taken).
    Pixels whose target is ``ignore_index`` are not counted.
    """
    pred, target = _labels(pred, target, num_classes, ignore_index)
    valid = target >= 0
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_image_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_index: int | None = None) -> torch.Tensor:
    """One confusion matrix per image: int64 [N, C, C] (first dimension of ``target`` = images)."""
    pred, target = _labels(pred, target, num_classes, ignore_index)
    n = target.shape[0]
    image = torch.arange(n, device=target.device).view(-1, *([1] * (target.dim() - 1))).expand_as(target)
    valid = target >= 0
    index = (image[valid] * num_classes + target[valid]) * num_classes + pred[valid]
    return torch.bincount(index, minlength=n * num_classes * num_classes).reshape(n, num_classes, num_classes)


def iou(confusion: torch.Tensor) -> torch.Tensor:
    """Per-class IoU TP / (TP + FP + FN) of a [..., C, C] confusion matrix; NaN where 0/0."""
    confusion = confusion.to(torch.float64)
    tp = confusion.diagonal(dim1=-2, dim2=-1)
    union = confusion.sum(-1) + confusion.sum(-2) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.nan)


def per_image_miou(confusions: np.ndarray) -> np.ndarray:
    """Mean IoU of each image from its confusion matrix [N, C, C]; classes absent from truth and prediction are skipped."""
    return torch.nanmean(iou(torch.as_tensor(np.asarray(confusions))), dim=-1).numpy()


def summarize(confusion: torch.Tensor, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Plain-Python summary of a [C, C] confusion matrix (JSON-ready; NaN where undefined).

    Keys: classes, iou (per class), miou (mean over classes with a defined IoU), accuracy (pixel
    accuracy), precision and recall (per class), confusion (rows truth), n_pixels.
    """
    confusion = torch.as_tensor(confusion)
    n_classes = confusion.shape[0]
    if confusion.shape != (n_classes, n_classes):
        raise InputError(f"confusion matrix must be square, got shape {list(confusion.shape)}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise InputError(f"{len(names)} class names for a {n_classes}-class confusion matrix")
    c = confusion.to(torch.float64)
    tp = c.diagonal()
    predicted, actual, total = c.sum(0), c.sum(1), c.sum()
    per_class_iou = iou(confusion)
    return {
        "classes": names,
        "iou": per_class_iou.tolist(),
        "miou": float(torch.nanmean(per_class_iou)),
        "accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "precision": torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.nan).tolist(),
        "recall": torch.where(actual > 0, tp / actual.clamp_min(1), torch.nan).tolist(),
        "confusion": confusion.to(torch.int64).tolist(),
        "n_pixels": int(total),
    }


class SegmentationMetrics(Metric):
    """Dataset-level segmentation metrics for training/validation loops (DDP-safe).

    ``update(preds, target)``: preds are logits/probabilities [N, C, H, W] or labels [N, H, W];
    target labels [N, H, W]. ``compute()`` returns tensors: ``iou`` [C] pooled over all pixels,
    ``miou``, ``miou_per_image`` (mean over images of each image's mean IoU over the classes
    defined in it), ``accuracy``, ``precision`` [C], ``recall`` [C], ``confusion`` [C, C].
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise InputError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confusion", default=torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("image_miou_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        per_image = per_image_confusion(preds.detach(), target, self.num_classes, self.ignore_index)
        self.confusion += per_image.sum(0)
        image_miou = torch.nanmean(iou(per_image), dim=-1)
        defined = ~torch.isnan(image_miou)  # an image whose pixels are all ignored has no mIoU
        self.image_miou_sum += image_miou[defined].sum()
        self.n_images += defined.sum()

    def compute(self) -> dict[str, torch.Tensor]:
        c = self.confusion.to(torch.float64)
        tp = c.diagonal()
        per_class = iou(self.confusion)
        predicted, actual = c.sum(0), c.sum(1)
        return {
            "iou": per_class,
            "miou": torch.nanmean(per_class),
            "miou_per_image": self.image_miou_sum / self.n_images if self.n_images > 0 else torch.tensor(torch.nan, dtype=torch.float64),
            "accuracy": tp.sum() / c.sum().clamp_min(1),
            "precision": torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.nan),
            "recall": torch.where(actual > 0, tp / actual.clamp_min(1), torch.nan),
            "confusion": self.confusion.clone(),
        }
