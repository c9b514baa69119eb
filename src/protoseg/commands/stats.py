"""`protoseg stats`: print the class balance of an image file (2018-style median class weights)."""
from __future__ import annotations

import argparse

HELP = "print the class balance of an image file (2018-style median class weights)"
DESCRIPTION = (
    "Pixel counts and fractions per class, pooled over the images of a split, and the 2018 study's "
    "class weights: per class, the median over images of background pixels / class pixels."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="image file (protoseg-images)")
    parser.add_argument("--split", choices=("train", "validation", "test", "all"), default="train",
                        help="which images to count (default train: what weighted losses use)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from protoseg.errors import InputError
    from protoseg.images.balance import class_balance, format_class_balance
    from protoseg.images.imagefile import open_images

    with open_images(args.input) as images:
        if images.label is None:
            raise InputError("image file has no labels (made from data), so there is no class balance", args.input)
        index = images.indices(None if args.split == "all" else args.split)
        if len(index) == 0:
            raise InputError(f"the {args.split} split is empty", args.input)
        # Checked reads, a block at a time: a damaged chunk or a label outside the classes names the file.
        labels = (images.read(index[k : k + 64], adc=False)[1] for k in range(0, len(index), 64))
        balance = class_balance(labels, images.num_classes)
        if args.json:
            print(json.dumps({"file": str(args.input), "split": args.split, "class_names": images.class_names, **balance}, indent=2))
        else:
            print(f"{args.input} ({args.split} split):")
            print(format_class_balance(balance, images.class_names))
    return 0
