"""`protoseg simulate`: simulate ProtoDUNE-SP events (7 GeV beam, halo, cosmics, noise) or a particle gun, with truth."""
from __future__ import annotations

import argparse

HELP = "simulate ProtoDUNE-SP events (7 GeV beam, halo, cosmics, noise) or a particle gun, with truth"
DESCRIPTION = (
    "Simulate ProtoDUNE-SP collection-plane events into an events file: the 7 GeV/c H4 beam (composition, "
    "momentum spread), beam-halo muons and cosmic rays, transported in liquid argon, drifted to both "
    "collection planes, read out with the experiment's response and noise, deconvolved and hit-found, each "
    "hit matched to its truth particle. --gun shoots single particles instead (no cosmics, halo, noise or bad "
    "channels unless asked). Every other setting is --set section.key=value (sections: sources, transport, "
    "drift, readout, hits, detector); the resolved configuration is stored in the file. The same --seed "
    "gives the same file whatever --workers."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="EVENTS.h5", help="events file to write")
    parser.add_argument("-n", "--events", type=int, required=True, metavar="N", help="number of events")
    parser.add_argument("--first-event", type=int, default=0, metavar="K",
                        help="simulate events K..K+N-1 of the run (default 0): pieces of a big run, e.g. one per "
                             "Slurm array task, hold exactly its events")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); every random choice follows from it")
    parser.add_argument("--workers", type=int, default=1, metavar="K", help="worker processes (default 1)")
    gun = parser.add_argument_group("particle gun (replaces the beam)")
    gun.add_argument("--gun", type=int, metavar="PDG", help="PDG code of the particle to shoot (e.g. 13, 2212, 211, 11)")
    gun.add_argument("--momentum", type=float, metavar="P", help="gun momentum, GeV/c")
    gun.add_argument("--position", type=float, nargs=3, metavar=("X", "Y", "Z"), help="gun start, cm (default: the beam entry point)")
    gun.add_argument("--direction", type=float, nargs=3, metavar=("DX", "DY", "DZ"), help="gun direction (default: the beam's)")
    gun.add_argument("--with-cosmics", action="store_true", help="add cosmic rays to gun events")
    gun.add_argument("--with-halo", action="store_true", help="add beam-halo muons to gun events")
    gun.add_argument("--with-noise", action="store_true", help="add electronics noise and bad channels to gun events")
    common = parser.add_argument_group("common settings")
    common.add_argument("--beam-momentum", type=float, metavar="P", help="beam momentum, GeV/c (default 7)")
    common.add_argument("--beam-side-only", action="store_true", help="read only the beam-side drift volume (x < 0)")
    common.add_argument("--no-space-charge", action="store_true", help="switch the space-charge distortion off")
    common.add_argument("--no-noise", action="store_true", help="no electronics noise")
    common.add_argument("--electron-lifetime-ms", type=float, metavar="MS", help="electron lifetime, ms (default 35)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="any other setting, e.g. --set drift.recombination_model=birks (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def build_config(args: argparse.Namespace):
    """The SimulationConfig of the command line: defaults, then the named options, then --set."""
    import dataclasses

    from protoseg.errors import InputError
    from protoseg.sim.simulate import SimulationConfig, apply_overrides

    config = SimulationConfig()
    sources, readout = config.sources, config.readout
    gun_only = [name for name, value in (("--momentum", args.momentum), ("--position", args.position),
                                         ("--direction", args.direction)) if value is not None]
    gun_only += [name for name, flag in (("--with-cosmics", args.with_cosmics), ("--with-halo", args.with_halo),
                                         ("--with-noise", args.with_noise)) if flag]
    if args.gun is None and gun_only:
        raise InputError(f"{gun_only[0]} needs --gun PDG")
    if args.gun is not None:
        if args.momentum is None:
            raise InputError("--gun needs --momentum P (GeV/c)")
        sources = dataclasses.replace(
            sources,
            beam=False,
            cosmics=args.with_cosmics,
            halo=args.with_halo,
            gun_pdg=args.gun,
            gun_momentum_gev=args.momentum,
            gun_position_cm=tuple(args.position) if args.position is not None else None,
            gun_direction=tuple(args.direction) if args.direction is not None else None,
        )
        if not args.with_noise:
            readout = dataclasses.replace(readout, noise=False, n_dead_channels=0, n_noisy_channels=0)
    if args.beam_momentum is not None:
        sources = dataclasses.replace(sources, beam_momentum_gev=args.beam_momentum)
    if args.no_noise:
        readout = dataclasses.replace(readout, noise=False)
    drift = config.drift
    if args.no_space_charge:
        drift = dataclasses.replace(drift, space_charge=False)
    if args.electron_lifetime_ms is not None:
        drift = dataclasses.replace(drift, electron_lifetime_ms=args.electron_lifetime_ms)
    detector = dataclasses.replace(config.detector, beam_side_only=bool(args.beam_side_only))
    config = dataclasses.replace(config, sources=sources, readout=readout, drift=drift, detector=detector)
    return apply_overrides(config, args.overrides)


def run(args: argparse.Namespace) -> int:
    from protoseg.sim.simulate import simulate_events

    config = build_config(args)
    summary = simulate_events(args.output, args.events, args.seed, config, workers=args.workers, progress=not args.quiet,
                              first_event=args.first_event)
    span = f" (events {args.first_event}..{args.first_event + args.events - 1})" if args.first_event else ""
    print(f"wrote {summary['events']} events{span}, {summary['hits']} hits to {args.output} in {summary['seconds']:.1f} s")
    return 0
