"""The best hit-level beam efficiency and purity any pixel classifier can reach, per pooling and image size.

``protoseg predict`` gives every hit the class of the pixel that holds it. A pixel holds several hits
(4.5 wires × 18.75 ticks at 320×320), and its truth label is that of one of them (max pooling: the
largest hit's). So even a network that predicts every pixel's truth label exactly (the *oracle*) tags
the beam hits of a pixel that a cosmic hit dominates as not-beam, and the cosmic hits of a beam pixel as
beam. This script measures that ceiling: for each event, the truth image of the chosen pooling and size,
every hit tagged with its pixel's truth class, and the pooled efficiency (beam hits tagged beam / beam
hits) and purity (beam hits tagged beam / hits tagged beam), over all events and over those passing the
2018 selection (≥ 2000 beam and ≥ 2000 not-beam hits). Labels are the hits' own (beam label rule all).

    python benchmarks/hit_ceiling.py heldout-events.h5 --sizes 320 640 --poolings max beam-priority charge-majority
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from protoseg.events import open_events
from protoseg.images import POOLINGS, event_to_image, hit_labels, pixel_indices

BEAM, NOT_BEAM = 1, 2
COLUMNS = ["wire", "tick", "integral", "label"]  # what an oracle image needs of each event's hits (+ rms to spread)


class Ceiling:
    """The oracle counts of one pooling and square image size, accumulated event by event (``add``)."""

    def __init__(self, size: int, pooling: str, spread_rms: bool = False, min_beam_hits: int = 2000,
                 min_notbeam_hits: int = 2000) -> None:
        self.size, self.pooling, self.spread_rms = size, pooling, bool(spread_rms)
        self.min_beam_hits, self.min_notbeam_hits = min_beam_hits, min_notbeam_hits
        self.counts = {"all": np.zeros(3, np.int64), "selected": np.zeros(3, np.int64)}  # beam hits, tagged, both
        self.n_events = self.n_selected = 0

    def add(self, hits: dict[str, np.ndarray]) -> tuple[np.ndarray, bool]:
        """Count one event; returns its truth label image and whether it passes the selection.

        Every hit is tagged with the truth class of the pixel that holds its peak, as ``protoseg predict``
        maps pixels back to hits (with ``spread_rms`` too: the image spreads the charge, the hit keeps its pixel).
        """
        size = (self.size, self.size)
        truth = hit_labels(hits, "beam3")
        _, label_image = event_to_image(hits, size, pooling=self.pooling, label_scheme="beam3", spread_rms=self.spread_rms)
        rows, cols = pixel_indices(np.asarray(hits["tick"]), np.asarray(hits["wire"]), size)
        tagged = label_image[rows, cols] == BEAM
        is_beam = truth == BEAM
        numbers = np.array([is_beam.sum(), tagged.sum(), (is_beam & tagged).sum()], np.int64)
        selected = bool(numbers[0] >= self.min_beam_hits and (truth == NOT_BEAM).sum() >= self.min_notbeam_hits)
        self.n_events += 1
        self.counts["all"] += numbers
        if selected:
            self.counts["selected"] += numbers
            self.n_selected += 1
        return label_image, selected

    def result(self) -> dict:
        out = {"size": self.size, "pooling": self.pooling, "spread_rms": self.spread_rms, "events": self.n_events,
               "selected_events": self.n_selected}
        for key, (beam, tagged, both) in self.counts.items():
            out[f"efficiency_{key}"] = round(float(both / beam), 4) if beam else None
            out[f"purity_{key}"] = round(float(both / tagged), 4) if tagged else None
        return out


def ceiling(path: Path, size: int, pooling: str, min_beam_hits: int = 2000, min_notbeam_hits: int = 2000,
            spread_rms: bool = False) -> dict:
    """Oracle hit-level beam efficiency and purity for one pooling and square image size."""
    oracle = Ceiling(size, pooling, spread_rms, min_beam_hits, min_notbeam_hits)
    with open_events(path) as events:
        for _, hits in events.iter_hit_columns(COLUMNS + ["rms"] * bool(spread_rms)):
            oracle.add(hits)
    return oracle.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", help="events file with truth")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--poolings", nargs="+", default=["max", "beam-priority", "charge-majority"], choices=POOLINGS)
    parser.add_argument("--spread-rms", action="store_true", help="images made as `protoseg images --spread-rms` makes them")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results" / "hit_ceiling.json"))
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        for pooling in args.poolings:
            row = ceiling(Path(args.events), size, pooling, spread_rms=args.spread_rms)
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.results).write_text(json.dumps({"events_file": str(args.events), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
