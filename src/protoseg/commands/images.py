"""`protoseg images`: downsample events to labelled images (pooling, label scheme, selection, splits)."""
from __future__ import annotations

import argparse

HELP = "downsample events to labelled images (pooling, label scheme, selection, splits)"
DESCRIPTION = (
    "Turn one or more events files into an image file: hits are binned into H x W pixels (row = tick bin over "
    "6000 ticks, column = wire bin over 1440 wires), pooled, labelled, selected and split into "
    "train / validation / test. Normalisation is not applied here: it is an option of training."
)

_POOLING_HELP = (
    "max: largest hit integral and its label (2018); sum / mean: summed / mean integrals, charge-majority "
    "label; beam-priority: max value, label beam if any beam hit (keeps beam pixels max loses); "
    "charge-majority: max value, label of the class with most charge"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protoseg.images.labels import BEAM_LABEL_RULES, LABEL_SCHEMES  # light: numpy only
    from protoseg.images.pooling import POOLINGS

    parser.add_argument("input", nargs="+", metavar="EVENTS.h5",
                        help="events file(s) (protoseg-events); several files (e.g. the pieces of a Slurm array "
                             "simulation) are read as one sample, in the order given, and must be compatible")
    parser.add_argument("-o", "--output", required=True, help="image file to write (HDF5)")
    parser.add_argument("--size", nargs=2, type=int, default=[320, 320], metavar=("H", "W"),
                        help="image rows (tick bins) and columns (wire bins); default 320 320")
    parser.add_argument("--pooling", choices=POOLINGS, default="max", help=_POOLING_HELP)
    parser.add_argument("--labels", choices=tuple(LABEL_SCHEMES), default="beam3",
                        help="beam3: background, beam, not-beam; species: beam split by particle type")
    parser.add_argument("--min-beam-hits", type=int, default=2000, help="keep events with at least this many beam hits (default 2000)")
    parser.add_argument("--min-notbeam-hits", type=int, default=2000, help="... and this many not-beam hits (default 2000)")
    parser.add_argument("--split", nargs=3, type=float, default=None, metavar=("TRAIN", "VAL", "TEST"),
                        help="image counts per split, or fractions when they sum to 1 (default 0.8 0.1 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    parser.add_argument("--spread-rms", action="store_true", help="spread each hit's charge over its pulse (peak +- 3 rms) instead of one tick")
    parser.add_argument("--drop-noise", action="store_true", help="leave out noise hits (no particle), as the 2018 study did")
    parser.add_argument("--beam-label-rule", choices=BEAM_LABEL_RULES, default="all",
                        help="all: every hit of the beam interaction (secondary hadrons, pi0 showers, decays) is beam "
                             "(default); 2018: as the 2018 study, EM daughters count for their parent and hits of "
                             "particles that are not generator primaries are dropped (selection counts the kept hits)")
    parser.add_argument("--stats", action="store_true", help="print the class balance of the training split afterwards")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from protoseg.images.balance import class_balance, format_class_balance
    from protoseg.images.imagefile import open_images
    from protoseg.images.make import make_image_file

    summary = make_image_file(
        args.input if len(args.input) > 1 else args.input[0], args.output, size=args.size, pooling=args.pooling, label_scheme=args.labels,
        min_beam_hits=args.min_beam_hits, min_notbeam_hits=args.min_notbeam_hits, split=args.split,
        seed=args.seed, spread_rms=args.spread_rms, drop_noise=args.drop_noise,
        beam_label_rule=args.beam_label_rule, progress=True,
    )
    counts = summary["split_counts"]
    print(
        f"{summary['output']}: {summary['n_images']} images {summary['size'][0]}x{summary['size'][1]} "
        f"({counts['train']} train, {counts['validation']} validation, {counts['test']} test) from "
        f"{summary['n_events_passing']} of {summary['n_events_read']} events passing the selection; "
        f"pooling {summary['pooling']}, labels {summary['label_scheme']}, beam label rule {summary['beam_label_rule']}"
    )
    if args.stats and summary["has_labels"]:
        with open_images(args.output) as images:
            # The training split is what class weights come from; a file without one (all test) shows every image.
            chosen, what = images.indices("train"), "the training split"
            if len(chosen) == 0:
                chosen, what = range(len(images)), "all images"
            chosen = np.asarray(chosen)
            labels = (images.read(chosen[k : k + 64], adc=False)[1] for k in range(0, len(chosen), 64))
            print(f"class balance of {what}:")
            print(format_class_balance(class_balance(labels, images.num_classes), images.class_names))
    return 0
