"""Draw simulated events as the 2018 study drew its events (shared/reference/original-2018-feature-label-event.png).

Usage: python docs/make_event_pictures.py EVENTS.h5 [-o docs/simulated-events.png] [--events I J ...]

Each row is one event: the hit integrals max-pooled onto 320 × 320 pixels with a log colour scale
("Feature"), and the labels, background white, beam red, not-beam black ("Label", protoseg's default
beam label rule "all": everything the beam particle made is beam), then the labels under the 2018
study's rule ("Label, 2018 rule": hits of particles that are not generator primaries dropped, EM
daughters credited to their parent); axes "Global wire no." (wire bin) and "TDC" (tick bin), as in
the reference. Without --events the first events that pass the 2018 selection (≥ 2000 beam and
≥ 2000 not-beam hits) under ``--select-rule`` are drawn.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="events file (protoseg-events)")
    parser.add_argument("-o", "--output", default=str(Path(__file__).with_name("simulated-events.png")))
    parser.add_argument("--events", dest="indices", type=int, nargs="+", help="event positions to draw (default: first two selected)")
    parser.add_argument("--count", type=int, default=2, help="how many selected events to draw without --events")
    parser.add_argument("--select-rule", choices=("all", "2018"), default="all",
                        help="beam label rule under which events must pass the selection (default all)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, LogNorm

    from protoseg.events import open_events
    from protoseg.images import apply_beam_label_rule, event_to_image

    with open_events(args.events) as events:
        if args.indices:
            chosen = args.indices
        else:
            chosen = []
            for i in range(len(events)):
                event = events.read(i)
                label = apply_beam_label_rule(event.hits, event.particles, args.select_rule)["label"]
                if (label == 1).sum() >= 2000 and (label == 2).sum() >= 2000:
                    chosen.append(i)
                if len(chosen) == args.count:
                    break
            if not chosen:
                print(f"no event passes the 2018 selection under the {args.select_rule} rule", file=sys.stderr)
                return 1
        images = []
        for i in chosen:
            event = events.read(i)
            adc, label = event_to_image(event.hits, size=(320, 320), pooling="max", label_scheme="beam3")
            hits_2018 = apply_beam_label_rule(event.hits, event.particles, "2018")
            _, label_2018 = event_to_image(hits_2018, size=(320, 320), pooling="max", label_scheme="beam3")
            images.append((event, adc, label, label_2018))

    label_colours = ListedColormap(["white", "#c00000", "black"])
    fig, axes = plt.subplots(len(images), 3, figsize=(19, 5.2 * len(images)), squeeze=False)
    for row, (event, adc, label, label_2018) in enumerate(images):
        feature = np.ma.masked_less_equal(adc, 0.0)
        ax = axes[row, 0]
        shown = ax.imshow(feature, origin="lower", cmap="winter_r", norm=LogNorm(vmin=1.0, vmax=max(float(adc.max()), 10.0)),
                          interpolation="none", aspect="auto")
        ax.set_title(f"Feature (event {event.event_id}, beam PDG {event.beam_pdg}, {event.beam_momentum_gev:.2f} GeV/c)",
                     fontweight="bold")
        fig.colorbar(shown, ax=ax, label="hit integral (ADC·tick, pulser scale)")
        for column, (labels, title) in enumerate(((label, "Label (rule all)"), (label_2018, "Label (2018 rule)")), start=1):
            ax = axes[row, column]
            shown = ax.imshow(labels, origin="lower", cmap=label_colours, vmin=-0.5, vmax=2.5, interpolation="none",
                              aspect="auto")
            ax.set_title(f"{title}: {int((labels == 1).sum())} beam pixels", fontweight="bold")
            bar = fig.colorbar(shown, ax=ax, ticks=[0, 1, 2])
            bar.ax.set_yticklabels(["Background", "Beam", "Not-Beam"])
        for ax in axes[row]:
            ax.set_xlabel("Global wire no.", fontweight="bold")
            ax.set_ylabel("TDC", fontweight="bold")
    fig.suptitle("protoseg simulation: 7 GeV/c beam + halo + cosmics, both drift volumes overlaid, 320 × 320 max-pooled hits")
    fig.tight_layout()
    fig.savefig(args.output, dpi=80)
    print(f"wrote {args.output} (events {', '.join(str(i) for i in chosen)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
