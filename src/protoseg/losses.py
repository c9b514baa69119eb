"""Segmentation losses, built by name: ``build_loss(name, **options)``.

Every loss is an ``nn.Module`` called as ``loss(logits, target)`` with logits [N, C, H, W] (any
number of classes C) and integer targets [N, H, W]; it returns a scalar. Pixels whose target equals
``ignore_index`` (default -100, as in torch) count for nothing. Class weights are given as a list
(one per class); the 2018 study's median-frequency weights come from
``protoseg.images.class_balance``.

Names and formulas (p = softmax(logits), y = one-hot target, t = the target class, sums over the
pixels that are not ignored, M their number):

* ``ce``: (1/M) Σ −log p_t.
* ``weighted_ce`` (weights w): Σ w_t·(−log p_t) / Σ w_t (torch's convention); with
  ``normalize="pixels"``: (1/M) Σ w_t·(−log p_t) (the 2018 Keras loss).
* ``epoch_weighted_ce``: weighted CE whose weights go from 1 to w as training proceeds;
  the training loop calls ``set_epoch(epoch)``. ``schedule="linear"``: w_e = 1 + (w − 1)·r,
  ``"geometric"``: w_e = w**r, with r = min(epoch / ramp_epochs, 1).
* ``focal`` (alpha α per class or None, gamma γ): (1/M) Σ −α_t (1 − p_t)**γ log p_t
  (Lin et al. 2017); γ = 0 and α = None give ``ce``.
* ``dice``: 1 − (1/C) Σ_c (2 Σ p_c y_c + s) / (Σ p_c + Σ y_c + s), sums over the whole batch, s = ``smooth``.
* ``fbeta`` (beta β, Tversky form): 1 − (1/C) Σ_c ((1+β²) TP_c + s) / ((1+β²) TP_c + β² FN_c + FP_c + s)
  with soft TP_c = Σ p_c y_c, FP_c = Σ p_c (1 − y_c), FN_c = Σ (1 − p_c) y_c; β = 1 is ``dice``.
* ``lovasz`` (Lovász-softmax, Berman, Rannen Triki & Blaschko, CVPR 2018): per image and class c, the
  errors e_i = |y_ic − p_ic| sorted decreasingly, Σ_i e_(i) (J_c({1..i}) − J_c({1..i−1})), where J_c(M)
  = |M| / |{y = c} ∪ M| is the Jaccard loss (1 − IoU) of the set M of pixels taken as mispredicted; the
  mean over the classes present in the image (``classes="present"``) or all classes (``"all"``), then
  over the images. It is the convex (Lovász) extension of 1 − IoU: on one-hot predictions it equals the
  mean of 1 − IoU_c, so it optimises the IoU of each image directly.
* ``weighted_ce_lovasz`` (weights w, normalize, lovasz_weight λ, classes): ``weighted_ce`` + λ · ``lovasz``,
  the combination used by LiDAR segmentation networks (the cross-entropy keeps the gradient informative
  where the Lovász term is flat).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from protoseg.errors import InputError

__all__ = ["CrossEntropyLoss", "DiceLoss", "EpochWeightedCrossEntropyLoss", "FBetaLoss", "FocalLoss",
           "LovaszSoftmaxLoss", "WeightedCrossEntropyLoss", "WeightedCELovaszLoss", "build_loss", "list_losses"]

DEFAULT_IGNORE_INDEX = -100


def _check_shapes(logits: torch.Tensor, target: torch.Tensor, n_weights: int | None = None) -> None:
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise InputError(f"loss expects logits [N, C, H, W] and target [N, H, W]; got {list(logits.shape)} and {list(target.shape)}")
    if n_weights is not None and n_weights != logits.shape[1]:
        raise InputError(f"loss has {n_weights} class weights but the logits have {logits.shape[1]} classes")


def _weights_tensor(weights: Sequence[float] | None, what: str) -> torch.Tensor | None:
    if weights is None:
        return None
    values = torch.as_tensor([float(w) for w in weights], dtype=torch.float32)
    if values.dim() != 1 or len(values) == 0 or not torch.isfinite(values).all() or (values < 0).any():
        raise InputError(f"{what} must be a non-empty list of finite non-negative numbers, got {list(weights)}")
    return values


class CrossEntropyLoss(nn.Module):
    """Categorical cross-entropy, mean over the pixels that are not ignored."""

    def __init__(self, ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_shapes(logits, target)
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)


class WeightedCrossEntropyLoss(nn.Module):
    """Class-weighted cross-entropy; ``normalize`` "weights" (Σ w_t) or "pixels" (M), see module doc."""

    def __init__(self, weights: Sequence[float], ignore_index: int = DEFAULT_IGNORE_INDEX,
                 normalize: str = "weights") -> None:
        super().__init__()
        if normalize not in ("weights", "pixels"):
            raise InputError(f"normalize must be 'weights' or 'pixels', got {normalize!r}")
        self.register_buffer("weights", _weights_tensor(weights, "weights"))
        self.ignore_index = ignore_index
        self.normalize = normalize

    def class_weights(self) -> torch.Tensor:
        return self.weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = self.class_weights()
        _check_shapes(logits, target, len(weights))
        weights = weights.to(device=logits.device, dtype=logits.dtype)
        if self.normalize == "weights":
            return F.cross_entropy(logits, target, weight=weights, ignore_index=self.ignore_index)
        per_pixel = F.cross_entropy(logits, target, weight=weights, ignore_index=self.ignore_index, reduction="none")
        return per_pixel.sum() / (target != self.ignore_index).sum().clamp_min(1)


class EpochWeightedCrossEntropyLoss(WeightedCrossEntropyLoss):
    """Weighted CE whose weights ramp from 1 to the full weights over ``ramp_epochs`` epochs.

    Call ``set_epoch(epoch)`` (0-based) at the start of each epoch; epoch 0 is plain CE.
    """

    SCHEDULES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
        "linear": lambda w, r: 1.0 + (w - 1.0) * r,
        "geometric": lambda w, r: w.clamp_min(1e-12) ** r,
    }

    def __init__(self, weights: Sequence[float], ramp_epochs: int = 10, schedule: str = "linear",
                 ignore_index: int = DEFAULT_IGNORE_INDEX, normalize: str = "weights") -> None:
        super().__init__(weights, ignore_index=ignore_index, normalize=normalize)
        if schedule not in self.SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(self.SCHEDULES)}, got {schedule!r}")
        if not isinstance(ramp_epochs, int) or ramp_epochs < 1:
            raise InputError(f"ramp_epochs must be a positive integer, got {ramp_epochs!r}")
        self.ramp_epochs = ramp_epochs
        self.schedule = schedule
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise InputError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def class_weights(self) -> torch.Tensor:
        ramp = min(self.epoch / self.ramp_epochs, 1.0)
        return self.SCHEDULES[self.schedule](self.weights, ramp)


class FocalLoss(nn.Module):
    """Focal loss −α_t (1 − p_t)**γ log p_t, mean over the pixels that are not ignored."""

    def __init__(self, alpha: Sequence[float] | None = None, gamma: float = 2.0,
                 ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        super().__init__()
        if gamma < 0:
            raise InputError(f"gamma must be >= 0, got {gamma}")
        self.register_buffer("alpha", _weights_tensor(alpha, "alpha"))
        self.gamma = float(gamma)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_shapes(logits, target, None if self.alpha is None else len(self.alpha))
        valid = target != self.ignore_index
        safe_target = torch.where(valid, target, 0).unsqueeze(1)
        log_p = F.log_softmax(logits, dim=1).gather(1, safe_target).squeeze(1)
        loss = -log_p
        if self.gamma != 0:
            loss = loss * (1 - log_p.exp()).clamp_min(0) ** self.gamma
        if self.alpha is not None:
            loss = loss * self.alpha.to(device=logits.device, dtype=logits.dtype)[safe_target.squeeze(1)]
        return (loss * valid).sum() / valid.sum().clamp_min(1)


def _soft_counts(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, ...]:
    """Per-class soft TP, Σp and Σy over the batch, ignoring ``ignore_index`` pixels."""
    _check_shapes(logits, target)
    n_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    prob = logits.softmax(dim=1) * valid
    one_hot = F.one_hot(torch.where(target == ignore_index, 0, target), n_classes).permute(0, 3, 1, 2).to(logits.dtype) * valid
    dims = (0, 2, 3)
    return (prob * one_hot).sum(dims), prob.sum(dims), one_hot.sum(dims)


class DiceLoss(nn.Module):
    """Soft Dice loss: 1 − mean over classes of the soft Dice coefficient (see module doc)."""

    def __init__(self, smooth: float = 1.0, ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        super().__init__()
        self.smooth = float(smooth)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, sum_p, sum_y = _soft_counts(logits, target, self.ignore_index)
        dice = (2 * tp + self.smooth) / (sum_p + sum_y + self.smooth)
        return 1 - dice.mean()


class FBetaLoss(nn.Module):
    """Soft F-β loss in Tversky form: 1 − mean over classes of F_β (see module doc)."""

    def __init__(self, beta: float = 1.0, smooth: float = 1.0, ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        super().__init__()
        if beta <= 0:
            raise InputError(f"beta must be > 0, got {beta}")
        self.beta = float(beta)
        self.smooth = float(smooth)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, sum_p, sum_y = _soft_counts(logits, target, self.ignore_index)
        fp, fn = sum_p - tp, sum_y - tp
        b2 = self.beta ** 2
        score = ((1 + b2) * tp + self.smooth) / ((1 + b2) * tp + b2 * fn + fp + self.smooth)
        return 1 - score.mean()


def _lovasz_jaccard_steps(truth_sorted: torch.Tensor) -> torch.Tensor:
    """J({1..i}) − J({1..i−1}) for the Jaccard loss J of the i pixels with the largest errors, given their
    truth (1 in the class, 0 not) in that order: the weights of the Lovász extension."""
    n_true = truth_sorted.sum()
    intersection = n_true - truth_sorted.cumsum(0)
    union = n_true + (1 - truth_sorted).cumsum(0)  # >= 1 from the first pixel on
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax: the convex extension of 1 − IoU per image and class (see module doc)."""

    def __init__(self, classes: str = "present", ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        super().__init__()
        if classes not in ("present", "all"):
            raise InputError(f"classes must be 'present' or 'all', got {classes!r}")
        self.classes = classes
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_shapes(logits, target)
        n_classes = logits.shape[1]
        prob = logits.softmax(dim=1)
        per_image = []
        for image_prob, image_target in zip(prob, target):
            valid = image_target != self.ignore_index
            p = image_prob.reshape(n_classes, -1)[:, valid.reshape(-1)]
            t = image_target.reshape(-1)[valid.reshape(-1)]
            per_class = []
            for c in range(n_classes):
                truth = (t == c).to(p.dtype)
                if self.classes == "present" and not bool(truth.any()):
                    continue
                errors, order = torch.sort((truth - p[c]).abs(), descending=True)
                per_class.append(torch.dot(errors, _lovasz_jaccard_steps(truth[order])))
            if per_class:
                per_image.append(torch.stack(per_class).mean())
        if not per_image:  # nothing to score: a zero that still carries the graph
            return logits.sum() * 0.0
        return torch.stack(per_image).mean()


class WeightedCELovaszLoss(nn.Module):
    """``weighted_ce`` + ``lovasz_weight`` × ``lovasz`` (see module doc)."""

    def __init__(self, weights: Sequence[float], lovasz_weight: float = 1.0, normalize: str = "weights",
                 classes: str = "present", ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        super().__init__()
        try:
            weight = float(lovasz_weight)
        except (TypeError, ValueError):
            weight = float("nan")
        if not 0 <= weight < float("inf"):
            raise InputError(f"lovasz_weight must be a finite number >= 0, got {lovasz_weight!r}")
        self.cross_entropy = WeightedCrossEntropyLoss(weights, ignore_index=ignore_index, normalize=normalize)
        self.lovasz = LovaszSoftmaxLoss(classes=classes, ignore_index=ignore_index)
        self.lovasz_weight = weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(logits, target) + self.lovasz_weight * self.lovasz(logits, target)


_LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "weighted_ce": WeightedCrossEntropyLoss,
    "epoch_weighted_ce": EpochWeightedCrossEntropyLoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "fbeta": FBetaLoss,
    "lovasz": LovaszSoftmaxLoss,
    "weighted_ce_lovasz": WeightedCELovaszLoss,
}


def list_losses() -> list[str]:
    """Names accepted by ``build_loss``."""
    return list(_LOSSES)


def build_loss(name: str, **options: Any) -> nn.Module:
    """Build a loss by name (see the module docstring for names, options and formulas).

    Options: ignore_index (all); weights (weighted_ce, epoch_weighted_ce, weighted_ce_lovasz; required);
    normalize ("weights" or "pixels"); ramp_epochs, schedule (epoch_weighted_ce); alpha, gamma (focal);
    smooth (dice, fbeta); beta (fbeta); classes (lovasz, weighted_ce_lovasz); lovasz_weight
    (weighted_ce_lovasz). Unknown names or options raise InputError.
    """
    try:
        cls = _LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}; known losses: {', '.join(_LOSSES)}") from None
    try:
        return cls(**options)
    except TypeError as error:
        raise InputError(f"loss {name!r}: bad options {sorted(options)}: {error}") from None
