"""The image file (format ``protoseg-images``, version 1): write it, open it, read and check its images.

Layout (DESIGN.md)::

    /            attrs: format, version, size, pooling, label_scheme, class_names (JSON list), source, selection
    /adc         float32 [N, H, W]   one image per chunk, LZF-compressed, Fletcher-32
    /label       uint8   [N, H, W]   (files made from data have none)
    /event_id    [N];  /split  uint8 [N]  (0 train, 1 validation, 2 test)
    /event_index, /source_file, /source_files, /source_configs   (where each image's event came from)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.errors import InputError
from protoseg.fileio import atomic_output, closed_if_corrupt, open_h5_checked
from protoseg.images.labels import LABEL_SCHEMES
from protoseg.version import __version__

__all__ = ["FORMAT", "VERSION", "SPLIT_NAMES", "SPLIT_CODES", "create_image_datasets", "write_attrs", "write_images",
           "check_image_values", "ImageFile", "open_images", "validate_images_file"]

FORMAT = "protoseg-images"
VERSION = 1
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
SPLIT_CODES: dict[str, int] = {"train": 0, "validation": 1, "val": 1, "test": 2}


def create_image_datasets(h5, n_images: int, height: int, width: int, with_labels: bool):
    # One image per chunk: a dataset reader touches exactly the images it asks for. LZF: images are
    # mostly empty, compress ~10x, and decompress far faster than gzip for the training loader.
    chunks = (1, height, width) if n_images else None
    # Fletcher-32: a damaged image is a read error, not silently wrong pixels.
    adc = h5.create_dataset("adc", shape=(n_images, height, width), dtype=np.float32, chunks=chunks,
                            compression="lzf" if n_images else None, fletcher32=bool(n_images))
    label = None
    if with_labels:
        label = h5.create_dataset("label", shape=(n_images, height, width), dtype=np.uint8, chunks=chunks,
                                  compression="lzf" if n_images else None, fletcher32=bool(n_images))
    return adc, label


def write_attrs(h5, attrs: dict[str, Any]) -> None:
    h5.attrs["format"] = FORMAT
    h5.attrs["version"] = VERSION
    h5.attrs["protoseg_version"] = __version__
    for key, value in attrs.items():
        if key in ("format", "version"):
            continue
        if isinstance(value, (dict, list, tuple)) and key != "size":
            h5.attrs[key] = json.dumps(value, sort_keys=isinstance(value, dict))
        elif key == "size":
            h5.attrs[key] = np.asarray(value, dtype=np.int64)
        elif value is None:
            h5.attrs[key] = "null"
        else:
            h5.attrs[key] = value


def write_images(
    path: str | Path,
    adc: np.ndarray,
    label: np.ndarray | None,
    event_id: np.ndarray | Sequence[int],
    split: np.ndarray | Sequence[int | str],
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a complete image file from arrays (atomically). ``split``: codes 0/1/2 or names.

    ``attrs`` may set ``class_names`` (default: those of ``label_scheme``, default beam3),
    ``pooling``, ``label_scheme``, ``source``, ``selection``... ``size`` is taken from ``adc``.
    """
    import h5py

    adc = np.asarray(adc, dtype=np.float32)
    if adc.ndim != 3:
        raise InputError(f"adc must be [N, H, W], got shape {adc.shape}", path)
    n_images, height, width = adc.shape
    split_codes = np.array([SPLIT_CODES[s] if isinstance(s, str) else int(s) for s in np.asarray(split).tolist()], dtype=np.uint8)
    event_id = np.asarray(event_id, dtype=np.int64)
    if len(split_codes) != n_images or len(event_id) != n_images:
        raise InputError("adc, event_id and split must have the same length", path)
    if split_codes.size and split_codes.max() > 2:
        raise InputError("split codes must be 0 (train), 1 (validation) or 2 (test)", path)
    attrs = dict(attrs or {})
    scheme = attrs.setdefault("label_scheme", "beam3")
    attrs.setdefault("class_names", LABEL_SCHEMES.get(scheme, LABEL_SCHEMES["beam3"]))
    attrs.setdefault("pooling", "max")
    attrs.setdefault("source", "")
    attrs["size"] = [height, width]
    if label is not None:
        label = np.asarray(label, dtype=np.uint8)
        if label.shape != adc.shape:
            raise InputError(f"label shape {label.shape} differs from adc shape {adc.shape}", path)
        if label.size and int(label.max()) >= len(attrs["class_names"]):
            raise InputError(f"label value {int(label.max())} but only {len(attrs['class_names'])} classes", path)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            write_attrs(h5, attrs)
            adc_ds, label_ds = create_image_datasets(h5, n_images, height, width, with_labels=label is not None)
            adc_ds[...] = adc
            if label_ds is not None:
                label_ds[...] = label
            h5.create_dataset("event_id", data=event_id)
            h5.create_dataset("split", data=split_codes)
    return Path(path)


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_image_values(adc: np.ndarray | None, label: np.ndarray | None, num_classes: int, path: str | Path,
                       rows: Sequence[int]) -> None:
    """Refuse what no image file holds: a NaN, infinite or negative pixel (pooled hit integrals are
    finite and >= 0), a label outside the classes. ``rows`` are the images' positions in the file
    (for the message). Vectorised over the batch."""
    if adc is not None and adc.size:
        bad = ~(np.isfinite(adc) & (adc >= 0))
        if bad.any():
            k, r, c = (int(v) for v in np.argwhere(bad)[0])
            raise InputError(f"image {int(rows[k])}: pixel (row {r}, column {c}) holds {float(adc[k, r, c]):g}, "
                             "not a finite non-negative hit integral", path)
    if label is not None and label.size:
        top = int(label.max())
        if top >= num_classes:
            k = int(np.flatnonzero(label.reshape(len(label), -1).max(axis=1) == top)[0])
            raise InputError(f"image {int(rows[k])}: label {top} outside the {num_classes} classes 0..{num_classes - 1}", path)


class ImageFile:
    """An open image file: ``adc`` / ``label`` are h5py datasets [N, H, W] (``label`` None without truth).

    ``split`` (uint8 codes 0 train, 1 validation, 2 test) and ``event_id`` are numpy arrays;
    ``class_names`` is a list; ``attrs`` a dict with JSON attributes decoded.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._h5 = open_h5_checked(self.path, FORMAT, (VERSION,))
        with closed_if_corrupt(self._h5, self.path, "image file"):
            self._load()

    def _load(self) -> None:
        h5 = self._h5
        for name in ("adc", "event_id", "split"):
            if name not in h5:
                raise InputError(f"image file has no /{name} dataset", self.path)
        self.adc = h5["adc"]
        if self.adc.ndim != 3:
            raise InputError(f"/adc must be [N, H, W], found shape {self.adc.shape}", self.path)
        self.label = h5["label"] if "label" in h5 else None
        if self.label is not None and self.label.shape != self.adc.shape:
            raise InputError(f"/label shape {self.label.shape} differs from /adc {self.adc.shape}", self.path)
        if self.adc.dtype.kind != "f" or (self.label is not None and self.label.dtype != np.uint8):
            raise InputError(f"/adc must hold floats and /label uint8, found {self.adc.dtype} and "
                             f"{None if self.label is None else self.label.dtype}", self.path)
        self.split = np.asarray(h5["split"][...], dtype=np.uint8)
        self.event_id = np.asarray(h5["event_id"][...], dtype=np.int64)
        n = self.adc.shape[0]
        if len(self.split) != n or len(self.event_id) != n:
            raise InputError(f"/split or /event_id length differs from the {n} images", self.path)
        if n and self.split.max() > 2:
            raise InputError("/split holds codes other than 0 (train), 1 (validation), 2 (test)", self.path)
        self.event_index = np.asarray(h5["event_index"][...], dtype=np.int64) if "event_index" in h5 else None
        # Files made from one events file (all before several could be given) have no /source_file: all 0.
        self.source_file = (np.asarray(h5["source_file"][...], dtype=np.int64) if "source_file" in h5
                            else np.zeros(len(self.event_id), dtype=np.int64))
        if len(self.source_file) != n:
            raise InputError(f"/source_file length differs from the {n} images", self.path)
        self.attrs: dict[str, Any] = {key: _attr_value(value) for key, value in h5.attrs.items()}
        names = self.attrs.get("class_names")
        if not isinstance(names, list) or not names:
            raise InputError("image file has no class_names attribute", self.path)
        self.class_names: list[str] = [str(c) for c in names]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.adc.shape[1]), int(self.adc.shape[2])

    @property
    def source_files(self) -> list[str]:
        """The events files the images were made from, in order (``source_file`` indexes this list)."""
        if "source_files" in self._h5:
            return [str(name) for name in self._h5["source_files"].asstr()[...]]
        source = self.attrs.get("source")
        return [str(source)] if source else []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def read(self, rows: Sequence[int], adc: bool = True, label: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(adc float32 [n, H, W], label uint8 [n, H, W] or None)`` of images ``rows`` (increasing), checked.

        A damaged chunk (checksum, decompression) or a value no image holds (``check_image_values``)
        is an InputError naming the file.
        """
        rows = [int(r) for r in rows]
        try:
            pixels = np.asarray(self.adc[rows], dtype=np.float32) if adc else None
            labels = np.asarray(self.label[rows], dtype=np.uint8) if label and self.label is not None else None
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"images cannot be read, the file is corrupt ({' '.join(str(exc).split())[:160]})", self.path) from None
        check_image_values(pixels, labels, self.num_classes, self.path, rows)
        return pixels, labels

    def indices(self, split: str | int | None) -> np.ndarray:
        """Image indices of a split ("train", "validation"/"val", "test", a code, or None for all)."""
        if split is None:
            return np.arange(len(self))
        code = SPLIT_CODES.get(split) if isinstance(split, str) else int(split)
        if code is None or code not in (0, 1, 2):
            raise InputError(f"unknown split '{split}' (train, validation, test)", self.path)
        return np.flatnonzero(self.split == code)

    def __len__(self) -> int:
        return int(self.adc.shape[0])

    def __enter__(self) -> ImageFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._h5.close()
        except Exception:  # already closed
            pass


def open_images(path: str | Path) -> ImageFile:
    """Open an image file (InputError when missing, truncated, or of another format/version)."""
    try:
        return ImageFile(path)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read image file ({exc.__class__.__name__}: {exc})", path) from None


def validate_images_file(path: str | Path, block: int = 64) -> None:
    """Read every image of an image file and check it (``ImageFile.read``); InputError on the first problem.

    Training reads images through a torch DataLoader that cannot say which file was bad; checking the
    file once first turns a NaN pixel or a damaged chunk into one line instead of a dead run.
    """
    with open_images(path) as images:
        for start in range(0, len(images), block):
            images.read(range(start, min(start + block, len(images))))
