"""Torch Dataset and Lightning DataModule over image files, with normalisation chosen at load time.

Normalisations (per image, over its last two axes; an empty image stays 0):

``max``   adc / max(adc): the 2018 study's choice; values in [0, 1].
``log``   log1p(adc) / log1p(max(adc)): also in [0, 1], but compresses the dynamic range so that
          small hits (a median pixel is ~6% of the maximum) are not squeezed towards 0.
``none``  the pooled hit integrals (ADC·tick) as stored.

Augmentation (training only, ``augment=True``): a flip along the wire axis and one along the tick
axis, each with probability 1/2, and, with ``crop_size``, a random crop. Every random choice is
drawn from ``SeedSequence([seed, epoch, image])``: the same seed gives the same batches and the
same flips whatever the number of workers, and a resumed run continues the sequence (Lightning
calls the sampler's ``set_epoch``).

Workers open the HDF5 file lazily, on their first read: no open handle is ever pickled.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from protoseg.errors import InputError
from protoseg.images.imagefile import SPLIT_CODES, SPLIT_NAMES, open_images

__all__ = ["NORMALISATIONS", "normalise", "ImageDataset", "EpochSeededSampler", "ImageDataModule"]

NORMALISATIONS = ("max", "log", "none")


def normalise(adc: np.ndarray | torch.Tensor, method: str) -> np.ndarray | torch.Tensor:
    """Normalise each image of ``adc`` ([..., H, W], numpy or torch) by ``method`` (see module doc)."""
    if method not in NORMALISATIONS:
        raise InputError(f"unknown normalisation '{method}' (choose from {', '.join(NORMALISATIONS)})")
    if method == "none":
        return adc
    if isinstance(adc, torch.Tensor):
        x = adc.float()
        if x.ndim < 2:
            raise InputError(f"normalise expects images [..., H, W], got shape {tuple(x.shape)}")
        if method == "log":
            x = torch.log1p(x)
        peak = x.amax(dim=(-2, -1), keepdim=True)
        return torch.where(peak > 0, x / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(x))
    x = np.asarray(adc, dtype=np.float32)
    if x.ndim < 2:
        raise InputError(f"normalise expects images [..., H, W], got shape {x.shape}")
    if method == "log":
        x = np.log1p(x)
    peak = x.max(axis=(-2, -1), keepdims=True) if x.size else np.zeros(x.shape[:-2] + (1, 1), np.float32)
    safe = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return np.where(peak > 0, x / safe, 0.0).astype(np.float32)


def _split_code(split: str | None, path: Path) -> int | None:
    if split is None:
        return None
    if split not in SPLIT_CODES:
        raise InputError(f"unknown split '{split}' (train, validation or val, test)", path)
    return SPLIT_CODES[split]


class ImageDataset(Dataset):
    """Images of one split: item -> (x float32 [1, H, W], y int64 [H, W]).

    ``y`` is -1 everywhere for image files without labels (made from data). Keys are image
    positions within the split, or ``(position, epoch)`` pairs from :class:`EpochSeededSampler`.
    """

    def __init__(
        self,
        path: str | Path,
        split: str | None = "train",
        normalisation: str = "max",
        augment: bool = False,
        crop_size: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        self.path = Path(path)
        if normalisation not in NORMALISATIONS:
            raise InputError(f"unknown normalisation '{normalisation}' (choose from {', '.join(NORMALISATIONS)})")
        code = _split_code(split, self.path)
        with open_images(self.path) as images:
            self.indices = images.indices(code) if code is not None else np.arange(len(images))
            self.size = images.size
            self.class_names = list(images.class_names)
            self.has_labels = images.label is not None
            self.event_id = images.event_id[self.indices]
        if len(self.indices) == 0:
            what = f"the {SPLIT_NAMES[code]} split is empty" if code is not None else "the file holds no images"
            raise InputError(what, self.path)
        self.split = split
        self.normalisation = normalisation
        self.augment = bool(augment)
        self.crop_size = None if crop_size is None else tuple(int(c) for c in crop_size)
        if self.crop_size is not None:
            if len(self.crop_size) != 2 or not (0 < self.crop_size[0] <= self.size[0] and 0 < self.crop_size[1] <= self.size[1]):
                raise InputError(f"crop size {self.crop_size} does not fit in the {self.size[0]}x{self.size[1]} images", self.path)
        self.seed = int(seed)
        self._h5 = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None  # never pickle an open HDF5 handle into a worker
        state["_pid"] = None
        return state

    def _file(self):
        if self._h5 is None or self._pid != os.getpid():
            import h5py

            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as exc:
                raise InputError(f"cannot read image file ({exc.__class__.__name__})", self.path) from None
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None:
            try:
                self._h5.close()
            finally:
                self._h5 = None

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        position, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)
        index = int(self.indices[position])
        h5 = self._file()
        try:
            adc = np.asarray(h5["adc"][index], dtype=np.float32)
            if self.has_labels:
                label = np.asarray(h5["label"][index]).astype(np.int64)
            else:
                label = np.full(adc.shape, -1, dtype=np.int64)
        except OSError as exc:
            raise InputError(f"image {index} cannot be read, the file is corrupt ({str(exc).strip()})", self.path) from None
        if self.augment or self.crop_size is not None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))
            if self.crop_size is not None:
                top = int(rng.integers(0, adc.shape[0] - self.crop_size[0] + 1))
                left = int(rng.integers(0, adc.shape[1] - self.crop_size[1] + 1))
                window = (slice(top, top + self.crop_size[0]), slice(left, left + self.crop_size[1]))
                adc, label = adc[window], label[window]
            if self.augment:
                flip_tick, flip_wire = rng.random(2) < 0.5
                if flip_tick:
                    adc, label = adc[::-1], label[::-1]
                if flip_wire:
                    adc, label = adc[:, ::-1], label[:, ::-1]
        # Normalise after cropping: a crop is a smaller image with its own maximum.
        x = normalise(np.ascontiguousarray(adc), self.normalisation)
        return torch.from_numpy(np.ascontiguousarray(x))[None], torch.from_numpy(np.ascontiguousarray(label))


class EpochSeededSampler(Sampler):
    """Yields ``(position, epoch)`` keys, shuffled from ``(seed, epoch)`` when ``shuffle``.

    Lightning calls ``set_epoch`` before every epoch (also after a resume); without it the epoch
    advances by one per pass.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._epoch_set = True

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        if not self._epoch_set:
            self.epoch += 1
        self._epoch_set = False
        if self.shuffle:
            order = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 0x5EED])).permutation(self.n)
        else:
            order = np.arange(self.n)
        return iter([(int(i), epoch) for i in order])


class ImageDataModule(pl.LightningDataModule):
    """Train / validation / test / predict loaders over one image file.

    ``predict_dataloader`` covers every image of the file in file order. ``class_names`` and
    ``num_classes`` come from the file.
    """

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 2,
        num_workers: int = 0,
        normalisation: str = "max",
        augment: bool = True,
        crop_size: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        if normalisation not in NORMALISATIONS:
            raise InputError(f"unknown normalisation '{normalisation}' (choose from {', '.join(NORMALISATIONS)})")
        if int(batch_size) < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise InputError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.normalisation = normalisation
        self.augment = bool(augment)
        self.crop_size = None if crop_size is None else tuple(int(c) for c in crop_size)
        self.seed = int(seed)
        with open_images(self.path) as images:
            self.class_names: list[str] = list(images.class_names)
            self.size = images.size
            self.split_counts = {name: int(np.count_nonzero(images.split == code)) for code, name in enumerate(SPLIT_NAMES)}
        self.num_classes = len(self.class_names)
        self._datasets: dict[str, ImageDataset] = {}

    def _dataset(self, split: str | None) -> ImageDataset:
        key = split or "all"
        if key not in self._datasets:
            training = split == "train"
            self._datasets[key] = ImageDataset(
                self.path, split, self.normalisation, augment=self.augment and training,
                crop_size=self.crop_size if training else None, seed=self.seed,
            )
        return self._datasets[key]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
            self._dataset("validation")
        if stage == "validate":
            self._dataset("validation")
        if stage in (None, "test"):
            if stage == "test" or self.split_counts["test"]:
                self._dataset("test")
        if stage == "predict":
            self._dataset(None)

    def _loader(self, dataset: ImageDataset, shuffle: bool, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler if sampler is not None else EpochSeededSampler(len(dataset), self.seed, shuffle=shuffle),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("validation"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(None), shuffle=False)

    def teardown(self, stage: str | None = None) -> None:
        for dataset in self._datasets.values():
            dataset.close()
