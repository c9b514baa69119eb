"""Data module: normalisations by formula, seeded flips and crops, lazy per-worker files, split handling."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from protoseg.data import EpochSeededSampler, ImageDataModule, ImageDataset, normalise
from protoseg.errors import InputError
from protoseg.images import write_images


@pytest.fixture()
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 7
    adc = np.zeros((n, 32, 24), np.float32)
    label = np.zeros((n, 32, 24), np.uint8)
    for k in range(n):
        rows, cols = rng.integers(0, 32, 40), rng.integers(0, 24, 40)
        adc[k, rows, cols] = rng.uniform(1, 100 * (k + 1), 40)
        label[k, rows, cols] = rng.integers(1, 3, 40)
    adc[6] = 0.0  # an empty image
    label[6] = 0
    split = [0, 0, 0, 0, 1, 1, 2]
    write_images(tmp_path / "images.h5", adc, label, np.arange(100, 100 + n), split)
    return tmp_path / "images.h5", adc, label


def test_normalise_numpy_and_torch_agree_with_the_formulas():
    adc = np.array([[[0.0, 2.0], [4.0, 8.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    assert np.array_equal(normalise(adc, "max"), [[[0, 0.25], [0.5, 1.0]], [[0, 0], [0, 0]]])
    expected_log = np.log1p(adc[0]) / np.log1p(8.0)
    assert np.allclose(normalise(adc, "log")[0], expected_log) and np.all(normalise(adc, "log")[1] == 0)
    assert normalise(adc, "none") is adc
    for method in ("max", "log"):
        torch_result = normalise(torch.from_numpy(adc), method)
        assert isinstance(torch_result, torch.Tensor)
        assert np.allclose(torch_result.numpy(), normalise(adc, method), atol=1e-7)
    with pytest.raises(InputError, match="unknown normalisation 'zscore'"):
        normalise(adc, "zscore")


def test_dataset_items(image_file):
    path, adc, label = image_file
    train = ImageDataset(path, "train", normalisation="max")
    assert len(train) == 4 and train.class_names == ["background", "beam", "not-beam"]
    x, y = train[2]
    assert x.shape == (1, 32, 24) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert np.allclose(x[0].numpy(), adc[2] / adc[2].max()) and np.array_equal(y.numpy(), label[2])
    test = ImageDataset(path, "test", normalisation="none")
    x, y = test[0]
    assert torch.all(x == 0) and torch.all(y == 0)  # the empty image stays 0, no division by zero
    assert list(ImageDataset(path, None).event_id) == list(range(100, 107))
    assert len(ImageDataset(path, "val")) == 2


def test_flips_and_crops_are_seeded(image_file):
    path, adc, label = image_file
    a = ImageDataset(path, "train", augment=True, crop_size=(16, 20), seed=3)
    b = ImageDataset(path, "train", augment=True, crop_size=(16, 20), seed=3)
    c = ImageDataset(path, "train", augment=True, crop_size=(16, 20), seed=4)
    items_a = [a[(i, epoch)] for i in range(4) for epoch in range(3)]
    items_b = [b[(i, epoch)] for i in range(4) for epoch in range(3)]
    items_c = [c[(i, epoch)] for i in range(4) for epoch in range(3)]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(items_a, items_b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(items_a, items_c))
    # each item is a flipped crop of the stored image, normalised after cropping
    x, y = items_a[0]
    assert x.shape == (1, 16, 20) and y.shape == (16, 20)
    found = False
    for flipped_adc, flipped_label in (
        (adc[0], label[0]), (adc[0][::-1], label[0][::-1]), (adc[0][:, ::-1], label[0][:, ::-1]), (adc[0][::-1, ::-1], label[0][::-1, ::-1])
    ):
        for top in range(32 - 16 + 1):
            for left in range(24 - 20 + 1):
                window = flipped_label[top : top + 16, left : left + 20]
                crop = flipped_adc[top : top + 16, left : left + 20]
                if np.array_equal(window, y.numpy()) and np.allclose(crop / max(crop.max(), 1e-30), x[0].numpy()):
                    found = True
    assert found
    with pytest.raises(InputError, match="does not fit"):
        ImageDataset(path, "train", crop_size=(64, 8))


def test_sampler_is_deterministic_and_follows_set_epoch():
    s1, s2 = EpochSeededSampler(10, seed=1), EpochSeededSampler(10, seed=1)
    first, second = list(s1), list(s1)  # without set_epoch the epoch advances per pass
    assert first == list(s2) and [e for _, e in first] == [0] * 10 and [e for _, e in second] == [1] * 10
    assert sorted(i for i, _ in first) == list(range(10)) and [i for i, _ in first] != [i for i, _ in second]
    s2.set_epoch(1)
    assert list(s2) == second
    assert [i for i, _ in EpochSeededSampler(5, shuffle=False)] == [0, 1, 2, 3, 4]


def test_dataset_pickles_without_an_open_file(image_file):
    path, _, _ = image_file
    dataset = ImageDataset(path, "train")
    dataset[0]
    assert dataset._h5 is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._h5 is None
    assert torch.equal(clone[1][0], dataset[1][0])
    dataset.close()


def test_datamodule_loaders_with_workers(image_file):
    path, adc, _ = image_file
    dm = ImageDataModule(path, batch_size=2, num_workers=2, augment=True, seed=5)
    assert dm.num_classes == 3 and dm.class_names[2] == "not-beam"
    dm.setup("fit")
    batches = [(x.clone(), y.clone()) for x, y in dm.train_dataloader()]
    assert [x.shape[0] for x, _ in batches] == [2, 2]
    dm0 = ImageDataModule(path, batch_size=2, num_workers=0, augment=True, seed=5)
    dm0.setup("fit")
    same = list(dm0.train_dataloader())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, same))  # workers don't change data
    val = list(dm.val_dataloader())
    assert len(val) == 1 and np.allclose(val[0][0][0, 0].numpy(), adc[4] / adc[4].max())
    dm.setup("predict")
    assert sum(x.shape[0] for x, _ in dm.predict_dataloader()) == 7
    dm.teardown("fit")


def test_empty_split_and_bad_options(tmp_path):
    path = write_images(tmp_path / "i.h5", np.ones((2, 8, 8)), np.zeros((2, 8, 8)), [1, 2], [0, 0])
    with pytest.raises(InputError, match=f"{path}: the validation split is empty"):
        ImageDataset(path, "validation")
    with pytest.raises(InputError, match="unknown split 'dev'"):
        ImageDataset(path, "dev")
    dm = ImageDataModule(path)
    with pytest.raises(InputError, match="the validation split is empty"):
        dm.setup("fit")
    with pytest.raises(InputError, match="unknown normalisation"):
        ImageDataModule(path, normalisation="unit")
    with pytest.raises(InputError, match="no such file"):
        ImageDataModule(tmp_path / "missing.h5")
