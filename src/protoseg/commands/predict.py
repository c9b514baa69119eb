"""`protoseg predict`: per-pixel classes and probabilities, and the class of every hit, for images or events."""
from __future__ import annotations

import argparse

HELP = "per-pixel classes and probabilities (and per-hit classes for events files), with or without truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="run folder, checkpoint, weights file or shipped model name (default)")
    parser.add_argument("input", metavar="INPUT", help="events file (protoseg events) or image file (protoseg images)")
    parser.add_argument("-o", "--out", required=True, metavar="PREDICTIONS.h5", help="predictions file to write")
    parser.add_argument("--split", choices=["train", "validation", "test"], help="image files: only this split")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--displays", metavar="DIR", help="also write PNG event displays here")
    parser.add_argument("--max-displays", type=int, default=10, help="how many displays at most (default 10)")
    parser.add_argument("--beam-threshold", metavar="P|argmax", default=None,
                        help="beam working point: a pixel (and its hits) is beam when P(beam) >= P (default: the model "
                             "card's decision.beam_threshold, else argmax); 'argmax' takes the most probable class")
    parser.add_argument("--root", metavar="FILE.root",
                        help="events imported from ROOT (import-root): also write a tree 'protoseg' aligned entry by entry "
                             "and hit by hit with the input tree, to read as its friend: hit_class (-1 for hits not "
                             "imported, e.g. induction planes) and hit_prob_<class>")


def run(args: argparse.Namespace) -> int:
    from protoseg.inference import predict_file
    from protoseg.loading import load_model

    from protoseg.predictor import parse_beam_threshold

    threshold = parse_beam_threshold(args.beam_threshold) if args.beam_threshold is not None else None
    model = load_model(args.model, map_location=args.device)
    summary = predict_file(model, args.input, args.out, batch_size=args.batch_size, device=args.device, split=args.split,
                           displays_dir=args.displays, max_displays=args.max_displays, root_path=args.root,
                           beam_threshold=threshold)
    point = "argmax" if summary.beam_threshold is None else f"beam when P(beam) >= {summary.beam_threshold:g}"
    print(f"wrote {summary.output}: {summary.n_events} {'events' if summary.input_format == 'protoseg-events' else 'images'} ({point})")
    if summary.root_output is not None:
        print(f"wrote {summary.root_output}: tree 'protoseg', one entry per input tree entry (a friend of that tree)")
    if summary.hit_metrics:
        m = summary.hit_metrics
        print(f"hits: {m['n_hits']} scored (beam label rule {m.get('beam_label_rule', 'all')}), truth beam hits {m['beam_hits']}, "
              f"tagged beam {m['tagged_beam_hits']}")
        print(f"beam hits tagged beam (efficiency): {m['beam_efficiency']:.4f}   purity of the hits tagged beam: {m['beam_purity']:.4f}")
    if summary.displays:
        print(f"displays: {len(summary.displays)} PNGs in {args.displays}")
    return 0
