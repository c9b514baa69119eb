"""Losses against their formulas, written out by hand with math on tiny cases."""
from __future__ import annotations

import math

import pytest
import torch

from protoseg.errors import InputError
from protoseg.losses import build_loss, list_losses

# Two images of 1×2 pixels, 3 classes; one pixel is ignored (-100) in IGNORED_TARGET.
LOGITS = torch.tensor([[[[2.0, 0.0]], [[1.0, 0.0]], [[0.0, 3.0]]],
                       [[[0.5, -1.0]], [[0.5, 2.0]], [[0.0, 1.0]]]], dtype=torch.float64)
TARGET = torch.tensor([[[0, 2]], [[1, 1]]])
IGNORED_TARGET = torch.tensor([[[0, -100]], [[1, 1]]])


def pixels(target):
    """(probabilities, target class) per pixel, by hand: softmax with math.exp."""
    out = []
    for n in range(LOGITS.shape[0]):
        for w in range(LOGITS.shape[3]):
            z = [float(LOGITS[n, c, 0, w]) for c in range(3)]
            e = [math.exp(v) for v in z]
            out.append(([v / sum(e) for v in e], int(target[n, 0, w])))
    return out


def test_every_design_loss_is_registered():
    assert {"ce", "weighted_ce", "epoch_weighted_ce", "focal", "dice", "fbeta"} <= set(list_losses())


def test_ce_is_mean_negative_log_probability():
    expected = sum(-math.log(p[t]) for p, t in pixels(TARGET)) / 4
    assert float(build_loss("ce")(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-12)


def test_ce_skips_ignored_pixels():
    kept = [(p, t) for p, t in pixels(IGNORED_TARGET) if t != -100]
    expected = sum(-math.log(p[t]) for p, t in kept) / 3
    assert float(build_loss("ce")(LOGITS, IGNORED_TARGET)) == pytest.approx(expected, rel=1e-12)


def test_weighted_ce_both_normalisations():
    w = [0.5, 2.0, 7.0]
    terms = [(w[t], -math.log(p[t])) for p, t in pixels(TARGET)]
    by_weight = sum(a * b for a, b in terms) / sum(a for a, _ in terms)
    by_pixel = sum(a * b for a, b in terms) / len(terms)
    assert float(build_loss("weighted_ce", weights=w)(LOGITS, TARGET)) == pytest.approx(by_weight, rel=1e-12)
    assert float(build_loss("weighted_ce", weights=w, normalize="pixels")(LOGITS, TARGET)) == pytest.approx(by_pixel, rel=1e-12)


def test_weighted_ce_ignores_pixels_and_rejects_wrong_weight_count():
    w = [1.0, 3.0, 5.0]
    kept = [(w[t], -math.log(p[t])) for p, t in pixels(IGNORED_TARGET) if t != -100]
    expected = sum(a * b for a, b in kept) / sum(a for a, _ in kept)
    assert float(build_loss("weighted_ce", weights=w)(LOGITS, IGNORED_TARGET)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(InputError, match="2 class weights"):
        build_loss("weighted_ce", weights=[1.0, 2.0])(LOGITS, TARGET)


def test_epoch_weighted_ce_ramps_from_ce_to_weighted():
    w = [1.0, 9.0, 3.0]
    loss = build_loss("epoch_weighted_ce", weights=w, ramp_epochs=4)
    ce = float(build_loss("ce")(LOGITS, TARGET))
    full = float(build_loss("weighted_ce", weights=w)(LOGITS, TARGET))
    assert float(loss(LOGITS, TARGET)) == pytest.approx(ce, rel=1e-12)
    loss.set_epoch(2)  # halfway: linear weights 1, 5, 2
    half = float(build_loss("weighted_ce", weights=[1.0, 5.0, 2.0])(LOGITS, TARGET))
    assert float(loss(LOGITS, TARGET)) == pytest.approx(half, rel=1e-12)
    loss.set_epoch(40)
    assert float(loss(LOGITS, TARGET)) == pytest.approx(full, rel=1e-12)
    geometric = build_loss("epoch_weighted_ce", weights=w, ramp_epochs=4, schedule="geometric")
    geometric.set_epoch(2)  # w ** 0.5 = 1, 3, sqrt(3)
    expected = float(build_loss("weighted_ce", weights=[1.0, 3.0, math.sqrt(3.0)])(LOGITS, TARGET))
    assert float(geometric(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-12)


def test_focal_formula_with_alpha_and_gamma():
    alpha, gamma = [0.25, 0.5, 1.0], 2.0
    kept = [(p, t) for p, t in pixels(IGNORED_TARGET) if t != -100]
    expected = sum(-alpha[t] * (1 - p[t]) ** gamma * math.log(p[t]) for p, t in kept) / len(kept)
    loss = build_loss("focal", alpha=alpha, gamma=gamma)
    assert float(loss(LOGITS, IGNORED_TARGET)) == pytest.approx(expected, rel=1e-12)


def test_focal_with_gamma_zero_is_ce():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 7, 9, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 5, (2, 7, 9), generator=generator)
    target[0, 0, :4] = -100
    focal = build_loss("focal", gamma=0.0)(logits, target)
    ce = build_loss("ce")(logits, target)
    assert float(focal) == pytest.approx(float(ce), rel=1e-12)


def soft_counts(target):
    tp, sp, sy = [0.0] * 3, [0.0] * 3, [0.0] * 3
    for p, t in pixels(target):
        if t == -100:
            continue
        for c in range(3):
            y = 1.0 if t == c else 0.0
            tp[c] += p[c] * y
            sp[c] += p[c]
            sy[c] += y
    return tp, sp, sy


def test_dice_formula():
    tp, sp, sy = soft_counts(IGNORED_TARGET)
    expected = 1 - sum((2 * tp[c] + 1.0) / (sp[c] + sy[c] + 1.0) for c in range(3)) / 3
    assert float(build_loss("dice")(LOGITS, IGNORED_TARGET)) == pytest.approx(expected, rel=1e-12)
    tp, sp, sy = soft_counts(TARGET)
    no_smooth = 1 - sum(2 * tp[c] / (sp[c] + sy[c]) for c in range(3)) / 3
    assert float(build_loss("dice", smooth=0.0)(LOGITS, TARGET)) == pytest.approx(no_smooth, rel=1e-12)


def test_fbeta_tversky_formula_and_beta_one_is_dice():
    tp, sp, sy = soft_counts(TARGET)
    b2 = 4.0
    expected = 1 - sum(((1 + b2) * tp[c] + 1) / ((1 + b2) * tp[c] + b2 * (sy[c] - tp[c]) + (sp[c] - tp[c]) + 1)
                       for c in range(3)) / 3
    assert float(build_loss("fbeta", beta=2.0)(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-12)
    assert float(build_loss("fbeta", beta=1.0)(LOGITS, TARGET)) == pytest.approx(float(build_loss("dice")(LOGITS, TARGET)), rel=1e-12)


@pytest.mark.parametrize("name,options", [("ce", {}), ("weighted_ce", {"weights": [1, 2, 3, 4, 5, 6]}),
                                          ("epoch_weighted_ce", {"weights": [1, 2, 3, 4, 5, 6]}),
                                          ("focal", {"alpha": [1, 1, 1, 2, 2, 2]}), ("dice", {}), ("fbeta", {"beta": 0.5}),
                                          ("lovasz", {}), ("weighted_ce_lovasz", {"weights": [1, 2, 3, 4, 5, 6]})])
def test_any_class_count_and_gradients_flow(name, options):
    logits = torch.randn(2, 6, 5, 4, requires_grad=True)
    target = torch.randint(0, 6, (2, 5, 4))
    target[1] = 255
    loss = build_loss(name, ignore_index=255, **options)(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad[1].abs().max() == 0  # the ignored image gets no gradient
    assert logits.grad[0].abs().max() > 0


def jaccard_loss(mispredicted: set, in_class: set) -> float:
    """1 − IoU when the pixels of ``mispredicted`` are the errors: |M| / |class ∪ M|."""
    return len(mispredicted) / len(in_class | mispredicted) if in_class | mispredicted else 0.0


def lovasz_by_definition(probabilities, target, n_classes, classes="present"):
    """Lovász-softmax of one image written out: errors sorted, weights from the Jaccard loss of prefixes."""
    per_class = []
    for c in range(n_classes):
        in_class = {i for i, t in enumerate(target) if t == c}
        if classes == "present" and not in_class:
            continue
        errors = [abs((1.0 if t == c else 0.0) - p[c]) for p, t in zip(probabilities, target)]
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        total = 0.0
        for k in range(len(order)):
            total += errors[order[k]] * (jaccard_loss(set(order[:k + 1]), in_class) - jaccard_loss(set(order[:k]), in_class))
        per_class.append(total)
    return sum(per_class) / len(per_class)


def test_lovasz_on_one_hot_predictions_is_one_minus_iou():
    # one image of 1×6 pixels; predicted classes 0 0 1 1 2 1 against truth 0 1 1 1 2 2
    predicted, truth = [0, 0, 1, 1, 2, 1], [0, 1, 1, 1, 2, 2]
    logits = torch.full((1, 3, 1, 6), -30.0, dtype=torch.float64)
    for w, c in enumerate(predicted):
        logits[0, c, 0, w] = 30.0
    target = torch.tensor([[truth]])
    iou = [1 / 2, 2 / 4, 1 / 2]  # class 0: {0} / {0, 1}; class 1: {2, 3} / {1, 2, 3, 5}; class 2: {4} / {4, 5}
    expected = sum(1 - v for v in iou) / 3
    assert float(build_loss("lovasz")(logits, target)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_soft_predictions_against_its_definition(classes):
    # TARGET has class 2 only in the first image, IGNORED_TARGET none: "present" skips it there
    for target in (TARGET, IGNORED_TARGET):
        expected = []
        for n in range(2):
            kept = [(pixel, t) for pixel, t in pixels(target)[2 * n:2 * n + 2] if t != -100]
            expected.append(lovasz_by_definition([p for p, _ in kept], [t for _, t in kept], 3, classes))
        loss = build_loss("lovasz", classes=classes)(LOGITS, target)
        assert float(loss) == pytest.approx(sum(expected) / 2, rel=1e-12)


def test_weighted_ce_lovasz_is_the_sum_of_its_terms():
    weights = [1.0, 2.0, 0.5]
    combined = build_loss("weighted_ce_lovasz", weights=weights, normalize="pixels", lovasz_weight=0.7)(LOGITS, TARGET)
    parts = build_loss("weighted_ce", weights=weights, normalize="pixels")(LOGITS, TARGET) + 0.7 * build_loss("lovasz")(LOGITS, TARGET)
    assert float(combined) == pytest.approx(float(parts), rel=1e-12)
    for bad in (-1, "heavy", float("nan")):
        with pytest.raises(InputError, match="lovasz_weight"):
            build_loss("weighted_ce_lovasz", weights=weights, lovasz_weight=bad)
    with pytest.raises(InputError, match="classes"):
        build_loss("lovasz", classes="some")


def test_bad_names_and_options_are_refused():
    with pytest.raises(InputError, match="unknown loss"):
        build_loss("hinge")
    with pytest.raises(InputError, match="bad options"):
        build_loss("ce", weights=[1, 2, 3])
    with pytest.raises(InputError, match="non-negative"):
        build_loss("weighted_ce", weights=[1, -2, 3])
    with pytest.raises(InputError, match="target"):
        build_loss("ce")(LOGITS, TARGET[0])
