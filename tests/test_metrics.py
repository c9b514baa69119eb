"""Confusion matrix, IoU and the Lightning metric against hand counts and torchmetrics."""
from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from protoseg.errors import InputError
from protoseg.metrics import SegmentationMetrics, confusion_matrix, iou, summarize

PRED = torch.tensor([[[0, 0, 1], [2, 2, 0]]])
TRUTH = torch.tensor([[[0, 1, 1], [2, 0, 0]]])
# truth 0 at (0,0)->0, (1,1)->2, (1,2)->0 ; truth 1: (0,1)->0, (0,2)->1 ; truth 2: (1,0)->2
HAND = [[2, 0, 1], [1, 1, 0], [0, 0, 1]]


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix(PRED, TRUTH, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == HAND


def test_confusion_matrix_ignores_and_takes_logits():
    truth = TRUTH.clone()
    truth[0, 0, 0] = 255
    assert confusion_matrix(PRED, truth, 3, ignore_index=255).tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 1]]
    logits = torch.nn.functional.one_hot(PRED, 3).permute(0, 3, 1, 2).float()
    assert confusion_matrix(logits, TRUTH, 3).tolist() == HAND


def test_iou_by_hand_and_nan_for_absent_class():
    # class 0: TP 2, FP 1, FN 1 → 2/4; class 1: 1/(1+0+1) = 1/2; class 2: 1/(1+1+0) = 1/2; class 3 absent
    cm = torch.zeros(4, 4, dtype=torch.int64)
    cm[:3, :3] = torch.tensor(HAND)
    values = iou(cm)
    assert values[:3].tolist() == [0.5, 0.5, 0.5]
    assert math.isnan(values[3])


def test_summary_accuracy_precision_recall():
    s = summarize(torch.tensor(HAND), ["background", "beam", "not-beam"])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx([2 / 3, 1.0, 1 / 2])
    assert s["recall"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert s["miou"] == pytest.approx(0.5)
    assert s["classes"] == ["background", "beam", "not-beam"]
    assert s["confusion"] == HAND


def test_iou_agrees_with_torchmetrics_jaccard():
    generator = torch.Generator().manual_seed(7)
    target = torch.randint(0, 4, (3, 16, 12), generator=generator)
    pred = torch.where(torch.rand(3, 16, 12, generator=generator) < 0.6, target,
                       torch.randint(0, 4, (3, 16, 12), generator=generator))
    ours = iou(confusion_matrix(pred, target, 4))
    reference = MulticlassJaccardIndex(num_classes=4, average="none")(pred, target)
    torch.testing.assert_close(ours.float(), reference, rtol=1e-6, atol=1e-7)


def test_segmentation_metric_pooled_and_per_image():
    metric = SegmentationMetrics(3)
    image_a = (torch.tensor([[[0, 0], [1, 1]]]), torch.tensor([[[0, 0], [1, 0]]]))  # IoU 2/3, 1/2, NaN → 7/12
    image_b = (torch.tensor([[[2, 2], [2, 0]]]), torch.tensor([[[2, 2], [2, 2]]]))  # IoU 0, NaN, 3/4 → 3/8
    metric.update(*image_a)
    metric.update(*image_b)
    out = metric.compute()
    pooled = confusion_matrix(torch.cat([image_a[0], image_b[0]]), torch.cat([image_a[1], image_b[1]]), 3)
    torch.testing.assert_close(out["confusion"], pooled)
    torch.testing.assert_close(out["iou"], iou(pooled))
    assert float(out["miou_per_image"]) == pytest.approx((7 / 12 + 3 / 8) / 2)
    assert float(out["accuracy"]) == pytest.approx(6 / 8)


def test_bad_labels_are_refused():
    with pytest.raises(InputError, match="outside 0..2"):
        confusion_matrix(torch.tensor([[3]]), torch.tensor([[0]]), 3)
    with pytest.raises(InputError, match="differs"):
        confusion_matrix(torch.tensor([[0, 1]]), torch.tensor([[0]]), 3)
