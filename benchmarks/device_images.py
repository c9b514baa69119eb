"""Pack protoseg image files small enough to travel to a leased GPU machine, and unpack them there.

A leased machine receives at most 64 MiB with the working tree, and a protoseg image file stores every
one of its 320x320 pixels: 56 kB an image with lzf (2400 training images: 134 MB). About 6% of the
pixels carry a hit, so ``pack`` keeps only those: a bit mask of the pixels with charge or a label, their values / 64 as
float16 (relative rounding <= 4.9e-4, far below the hit-charge resolution; the network sees
log(1 + q) or q / max) and their labels, xz-compressed, plus every other dataset and attribute of the
file unchanged. ``unpack`` writes a normal protoseg image file from that (float32 values rounded to
float16 precision; labels, splits, attributes bit for bit). About 18 kB an image.

    python benchmarks/device_images.py pack train4-images.h5 .device/train4 [--max-images 2000]
    python benchmarks/device_images.py unpack .device/train4 /tmp/train4-images.h5
"""
from __future__ import annotations

import argparse
import contextlib
import lzma
import sys
from pathlib import Path

import h5py
import numpy as np

from protoseg.errors import InputError
from protoseg.fileio import atomic_output

_PIXEL_DATASETS = ("adc", "label")
# Hit integrals reach a few 1e5 ADC x tick, beyond float16's 65504: stored divided by this power of two
# (exact both ways), which keeps them between float16's smallest normal number and its largest.
_VALUE_SCALE = 64.0


def pack(images: Path, out_stem: Path, max_images: int | None = None) -> tuple[int, int]:
    """Write ``out_stem``.h5 (all but the pixel arrays) and ``out_stem``.xz (the hit pixels); returns (images, bytes).

    Both files appear only when both are complete (written under temporary names, then renamed)."""
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    masks, values, labels = [], [], []
    with h5py.File(images, "r") as source, contextlib.ExitStack() as outputs:
        n = source["adc"].shape[0] if max_images is None else min(max_images, source["adc"].shape[0])
        for index in range(n):
            adc = source["adc"][index]
            label = source["label"][index]
            hit = (adc != 0) | (label != 0)  # a hit can have an integral of 0 and still a label
            masks.append(np.packbits(hit.ravel()))
            scaled = adc[hit] / _VALUE_SCALE
            nonzero = np.abs(scaled[scaled != 0])
            if nonzero.size and (nonzero.max() > np.finfo(np.float16).max or nonzero.min() < np.finfo(np.float16).tiny):
                raise ValueError(f"{images}: image {index} has a hit value outside float16's range after the scale 1/{_VALUE_SCALE:g}")
            values.append(scaled.astype(np.float16))
            labels.append(label[hit].astype(np.uint8))
        skeleton_tmp = outputs.enter_context(atomic_output(out_stem.with_suffix(".h5"), suffix=".h5"))
        blob_tmp = outputs.enter_context(atomic_output(out_stem.with_suffix(".xz"), suffix=".xz"))
        with h5py.File(skeleton_tmp, "w") as skeleton:
            for key, value in source.attrs.items():
                skeleton.attrs[key] = value
            skeleton.attrs["packed_shape"] = np.asarray(source["adc"].shape[1:], dtype=np.int64)
            for name, dataset in source.items():
                if name in _PIXEL_DATASETS:
                    continue
                data = dataset[:n] if dataset.shape and dataset.shape[0] == source["adc"].shape[0] else dataset[()]
                skeleton.create_dataset(name, data=data)
        counts = np.asarray([v.size for v in values], dtype=np.int64)
        blob = b"".join([counts.tobytes(), np.concatenate(masks).tobytes(), np.concatenate(values).tobytes(),
                         np.concatenate(labels).tobytes()])
        blob_tmp.write_bytes(lzma.compress(blob, preset=6))
    return n, out_stem.with_suffix(".h5").stat().st_size + out_stem.with_suffix(".xz").stat().st_size


def unpack(stem: Path, images: Path) -> int:
    """Write the protoseg image file ``images`` from a packed ``stem``; returns the number of images."""
    with h5py.File(stem.with_suffix(".h5"), "r") as skeleton:
        height, width = (int(v) for v in skeleton.attrs["packed_shape"])
        n = skeleton["event_id"].shape[0]
        blob = lzma.decompress(stem.with_suffix(".xz").read_bytes())
        counts = np.frombuffer(blob, dtype=np.int64, count=n)
        offset = counts.nbytes
        mask_bytes = (height * width + 7) // 8
        masks = np.frombuffer(blob, dtype=np.uint8, count=n * mask_bytes, offset=offset).reshape(n, mask_bytes)
        offset += masks.nbytes
        total = int(counts.sum())
        values = np.frombuffer(blob, dtype=np.float16, count=total, offset=offset)
        offset += values.nbytes
        labels = np.frombuffer(blob, dtype=np.uint8, count=total, offset=offset)
        starts = np.concatenate([[0], np.cumsum(counts)])
        with atomic_output(images, suffix=".h5") as tmp, h5py.File(tmp, "w") as out:
            for key, value in skeleton.attrs.items():
                if key != "packed_shape":
                    out.attrs[key] = value
            for name, dataset in skeleton.items():
                out.create_dataset(name, data=dataset[()])
            adc_out = out.create_dataset("adc", (n, height, width), dtype=np.float32, chunks=(1, height, width), compression="lzf")
            label_out = out.create_dataset("label", (n, height, width), dtype=np.uint8, chunks=(1, height, width), compression="lzf")
            for index in range(n):
                hit = np.unpackbits(masks[index], count=height * width).astype(bool).reshape(height, width)
                adc = np.zeros((height, width), np.float32)
                label = np.zeros((height, width), np.uint8)
                adc[hit] = values[starts[index]:starts[index + 1]].astype(np.float32) * _VALUE_SCALE
                label[hit] = labels[starts[index]:starts[index + 1]]
                adc_out[index] = adc
                label_out[index] = label
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="image file -> STEM.h5 + STEM.xz")
    p.add_argument("images", type=Path)
    p.add_argument("stem", type=Path)
    p.add_argument("--max-images", type=int, default=None, help="only the first N images")
    u = sub.add_parser("unpack", help="STEM.h5 + STEM.xz -> image file")
    u.add_argument("stem", type=Path)
    u.add_argument("images", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            n, size = pack(args.images, args.stem, args.max_images)
            print(f"{args.images}: {n} images packed into {size / 1e6:.1f} MB ({size / max(n, 1) / 1e3:.1f} kB an image)")
        else:
            n = unpack(args.stem, args.images)
            print(f"{args.images}: {n} images unpacked")
    except (InputError, OSError, ValueError, KeyError, lzma.LZMAError) as exc:
        print(f"device_images: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
