"""benchmarks/inference_levers.py: weight averages and shift test-time augmentation, checked against
plain evaluation and against hand-computed averages."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from protoseg.evaluation import evaluate
from protoseg.inference import load_model
from protoseg.predictor import Predictor
from test_inference import tiny_images, tiny_weights

SPEC = importlib.util.spec_from_file_location("inference_levers", Path(__file__).parents[1] / "benchmarks" / "inference_levers.py")
levers = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(levers)


def test_shift_moves_and_moves_back_what_the_image_still_holds():
    x = torch.arange(1, 1 + 2 * 5 * 6, dtype=torch.float32).view(1, 2, 5, 6)
    for dy, dx in [(0, 0), (2, 0), (0, -3), (-1, 2), (3, 1)]:
        moved = levers.shift(x, dy, dx)
        assert moved.shape == x.shape
        if dy >= 0 and dx >= 0:
            assert torch.equal(moved[:, :, dy:, dx:], x[:, :, :5 - dy, :6 - dx])
            assert moved[:, :, :dy].abs().sum() == 0 and moved[:, :, :, :dx].abs().sum() == 0  # zero fill
        back = levers.shift(moved, -dy, -dx)
        held = levers.held_pixels(5, 6, dy, dx)
        assert int(held.sum()) == (5 - abs(dy)) * (6 - abs(dx))
        assert torch.equal(back * held, x * held)
        assert (back * (1 - held)).abs().sum() == 0


def test_no_shift_and_identity_average_reproduce_evaluate(tmp_path):
    weights = tiny_weights(tmp_path / "run")
    images = tiny_images(tmp_path / "images.h5", n=6)
    model = load_model(weights)
    expected = evaluate(model, images, split="test", progress=False, beam_threshold="argmax").confusion
    same = levers.averaged_model([(str(weights), 0.5), (str(weights), 0.5)])
    same.card = model.card
    result = levers.measure(images, "test", {"base": model, "same": same}, {"none": [(0, 0)]})
    rows = {row["variant"]: row for row in result["rows"]}
    assert result["n_images"] == 4
    assert np.array_equal(np.array(rows["base"]["confusion"]), expected)
    assert np.array_equal(np.array(rows["same"]["confusion"]), expected)
    c = expected.astype(float)
    assert rows["base"]["iou"][1] == pytest.approx(c[1, 1] / (c[1].sum() + c[:, 1].sum() - c[1, 1]), abs=1e-5)


def test_average_is_the_weighted_mean_of_every_float_tensor(tmp_path):
    a, b = tiny_weights(tmp_path / "a", seed=0), tiny_weights(tmp_path / "b", seed=1)
    mixed = levers.averaged_model([(str(a), 0.25), (str(b), 0.75)]).state_dict()
    sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
    for key, tensor in mixed.items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, 0.25 * sa[key] + 0.75 * sb[key], atol=1e-6), key
        else:
            assert torch.equal(tensor, sa[key])


def test_shifted_probabilities_are_the_mean_over_the_copies_that_hold_a_pixel(tmp_path):
    predictor = Predictor(load_model(tiny_weights(tmp_path / "run")))
    adc = np.where(np.random.default_rng(3).random((1, 32, 32)) < 0.2, 100.0, 0.0).astype(np.float32)
    adc[0, 5, 5] = 500.0  # the brightest pixel stays in the shifted copy, so max normalisation is the same
    plain = predictor.probabilities(adc)
    moved = np.zeros_like(plain)
    moved[:, :, :28] = predictor.probabilities(np.pad(adc, ((0, 0), (4, 0), (0, 0)))[:, :32])[:, :, 4:]
    averaged = levers.shifted_probabilities(predictor, adc, [(0, 0), (4, 0)])
    assert np.allclose(averaged[:, :, :28], (plain[:, :, :28] + moved[:, :, :28]) / 2, atol=1e-6)
    assert np.allclose(averaged[:, :, 28:], plain[:, :, 28:], atol=1e-6)  # only the unshifted copy holds the last rows
    assert not np.allclose(averaged, plain, atol=1e-4)  # the shifted copy did change the answer


@pytest.mark.parametrize("argument", [["--average", "x=default:0.5"], ["--shifts", "s=1;2"]])
def test_bad_arguments_are_refused_in_one_line(tmp_path, capsys, argument):
    images = tiny_images(tmp_path / "images.h5")
    assert levers.main([str(images), "--model", str(tiny_weights(tmp_path / "run")), *argument]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inference_levers: --")
