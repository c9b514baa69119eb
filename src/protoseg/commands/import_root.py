"""`protoseg import-root`: import LArSoft hit dumps (ROOT) into an events file."""
from __future__ import annotations

import argparse

HELP = "import LArSoft hit dumps (ROOT) into an events file"
DESCRIPTION = (
    "Read a ROOT hit dump with uproot and write a protoseg events file. Two layouts are understood: "
    "the 2018 study's DataProcessing/tHitsTree (split vHitsStruct members; collection plane only, "
    "global wire = wire + 480*(tpc//4)) and a flat layout with one entry per event and per-hit arrays "
    "wire (or tpc, plane, wire), peak_time, integral, [rms, peak_amplitude, label or origin, track_id, pdg]. "
    "See the README for both."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="ROOT file with the hit tree")
    parser.add_argument("-o", "--output", required=True, help="events file to write (HDF5)")
    parser.add_argument("--tree", default=None, help="tree path in the file (default: DataProcessing/tHitsTree, or the only tree)")
    parser.add_argument("--layout", choices=("auto", "2018", "flat"), default="auto", help="branch layout (default: detect)")
    parser.add_argument(
        "--map", nargs="+", default=[], metavar="OURS=THEIRS",
        help="branch names: e.g. --map tick=hit_peak_time integral=hit_integral "
        "(names: wire tpc plane tick integral rms peak label origin track_id pdg event run trigger)",
    )
    parser.add_argument("--no-truth", action="store_true", help="import as data: ignore label/origin/track_id/pdg branches")
    parser.add_argument("--step-size", default="20 MB", help="how much of the tree to read at once (uproot step_size, e.g. \"20 MB\" or a number of entries; default 20 MB)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")


def run(args: argparse.Namespace) -> int:
    from protoseg.importers import import_root, parse_branch_map
    from protoseg.progress import progress_bar

    step_size = int(args.step_size) if str(args.step_size).isdigit() else args.step_size

    bars: list = []  # made at the first report, when the number of entries is known

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(progress_bar(total, "import-root", enabled=not args.quiet, unit="event"))
        bars[0].update(done - bars[0].n)

    try:
        summary = import_root(
            args.input, args.output, tree=args.tree, layout=args.layout, branch_map=parse_branch_map(args.map),
            truth=not args.no_truth, step_size=step_size, progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    kind = "MC with truth labels" if summary["is_mc"] else "data (no truth)"
    print(f"{summary['output']}: {summary['events']} events, {summary['hits']} collection hits, "
          f"{summary['layout']} layout from tree '{summary['tree']}', {kind}")
    return 0
