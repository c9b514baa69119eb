"""Event orchestration: truth (sources, transport) → drift → readout → hits → the events file.

Every random choice flows from one user seed through ``numpy.random.SeedSequence``:

* the run's dead and noisy channels from ``SeedSequence(seed, spawn_key=(0,))``;
* event ``i`` from ``SeedSequence(seed, spawn_key=(1, i))``, split into one stream for the truth
  and one for the detector (noise), so the truth of an event does not depend on detector settings.

Events are simulated in any order by any number of worker processes and written in index order by
the main process, so the same seed gives the same file whatever ``workers`` is. A run can be cut into
pieces (``first_event``): the piece holding events K..K+N-1 holds exactly those events of one big
run with the same seed (event ids are the indices), which is how a Slurm array job makes a large sample.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.detector import GEOMETRY, READOUT
from protoseg.errors import InputError
from protoseg.progress import progress_bar
from protoseg.sim.drift import DriftConfig, drift_deposits, validate_drift_config
from protoseg.sim.generator import SourceConfig, TransportConfig, generate_truth, validate_config
from protoseg.sim.hitfinding import (
    HitFindingConfig,
    SignalProcessor,
    TruthCharge,
    find_hits,
    match_truth,
    validate_hitfinding_config,
)
from protoseg.sim.readout import (
    ChannelStatus,
    ReadoutConfig,
    ReadoutModel,
    charge_frame,
    choose_bad_channels,
    truth_rows,
    validate_readout_config,
)
from protoseg.sim.truth import EventTruth

__all__ = [
    "SimulationConfig",
    "DetectorOptions",
    "SECTIONS",
    "apply_overrides",
    "validate_simulation_config",
    "EventSimulator",
    "simulate_events",
    "resolved_config",
    "HIT_SCALE_NOTE",
]

SECTIONS = ("sources", "transport", "drift", "readout", "hits", "detector")
BEAM_TRIGGER = 0xC  # ProtoDUNETriggerFilter.fcl: beam trigger flag
HIT_SCALE_NOTE = (
    "hit integral in ADC*tick of the deconvolved signal, pulser-calibrated: hits.integral_adc_tick_per_ke "
    "per 1000 electrons (the collection response area), so a MIP is about 1050 per wire; the 2018 hits "
    "were on a scale about 4-5 times lower"
)


@dataclass(frozen=True)
class DetectorOptions:
    """Which collection planes are read into the global-wire frame."""

    beam_side_only: bool = False  # drop the x > 0 drift volume (the 2018 images overlaid both)


@dataclass(frozen=True)
class SimulationConfig:
    """Every setting of a simulation, by section (the ``--set section.key=value`` names)."""

    sources: SourceConfig = field(default_factory=SourceConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    hits: HitFindingConfig = field(default_factory=HitFindingConfig)
    detector: DetectorOptions = field(default_factory=DetectorOptions)


def _parse_value(text: str, current: Any, name: str) -> Any:
    """Convert ``text`` to the type of the setting's current value."""
    try:
        if isinstance(current, bool):
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, (tuple, list)):
            value = json.loads(text) if text.strip().startswith("[") else [float(v) for v in text.split(",")]

            def to_tuple(v: Any) -> Any:
                return tuple(to_tuple(x) for x in v) if isinstance(v, list) else v

            return to_tuple(value)
        if current is None:  # an unset optional setting: a number, a JSON list, or text
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return text
            return tuple(value) if isinstance(value, list) else value
        if isinstance(current, str):
            return text
    except (ValueError, json.JSONDecodeError):
        pass
    raise InputError(f"--set {name}: cannot read {text!r} as a {type(current).__name__}")


def apply_overrides(config: SimulationConfig, assignments: list[str]) -> SimulationConfig:
    """Apply ``section.key=value`` assignments (the ``--set`` option) to a configuration."""
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise InputError(f"--set expects section.key=value, got {assignment!r}")
        if section not in SECTIONS:
            raise InputError(f"--set {name}: unknown section {section!r} (one of {', '.join(SECTIONS)})")
        part = getattr(config, section)
        names = [f.name for f in dataclasses.fields(part)]
        if key not in names:
            raise InputError(f"--set {name}: unknown setting {key!r} of {section} (one of {', '.join(names)})")
        value = _parse_value(text, getattr(part, key), name)
        config = dataclasses.replace(config, **{section: dataclasses.replace(part, **{key: value})})
    return config


def validate_simulation_config(config: SimulationConfig) -> None:
    """Raise InputError (one line) for any impossible setting."""
    validate_config(config.sources, config.transport)
    validate_drift_config(config.drift)
    validate_readout_config(config.readout)
    validate_hitfinding_config(config.hits)


def resolved_config(config: SimulationConfig, *, seed: int, n_events: int, status: ChannelStatus, first_event: int = 0) -> dict:
    """The JSON-able record of everything that made a file (stored in its ``config`` attribute)."""
    record = {section: dataclasses.asdict(getattr(config, section)) for section in SECTIONS}
    record["run"] = {
        "seed": int(seed),
        "n_events": int(n_events),
        "first_event": int(first_event),
        "dead_channels": list(status.dead),
        "noisy_channels": list(status.noisy),
        "seeding": "SeedSequence(seed, spawn_key=(0,)) channel status; SeedSequence(seed, spawn_key=(1, event)) per event",
    }
    record["constants"] = {"readout": dataclasses.asdict(READOUT), "geometry": dataclasses.asdict(GEOMETRY)}
    record["hit_scale"] = {"integral_adc_tick_per_ke": config.hits.integral_adc_tick_per_ke, "note": HIT_SCALE_NOTE}
    record["labels"] = (
        "label 1 (beam): the matched particle descends from the beam primary (its whole interaction, "
        "hadronic daughters included); 2 (not-beam): cosmic or halo; 0: noise hit"
    )
    return record


def _truth_charge(truth: EventTruth, charge) -> TruthCharge:
    """Per-cloud truth rows keyed by the particle's row in the event's particle table."""
    track_ids = np.asarray(truth.particles["track_id"])
    order = np.argsort(track_ids, kind="stable")
    position = np.searchsorted(track_ids[order], charge.track_id)
    position = np.minimum(position, max(track_ids.size - 1, 0))
    if charge.track_id.size and (track_ids.size == 0 or not np.array_equal(track_ids[order][position], charge.track_id)):
        raise RuntimeError("a deposit refers to a track_id missing from the particle table")
    wire, tick, cloud, electrons = truth_rows(charge)
    return TruthCharge(wire=wire, tick=tick, particle_row=order[position][cloud].astype(np.int64), electrons=electrons)


class EventSimulator:
    """Simulates events of one run; holds what is built once (response, filters, channel status)."""

    def __init__(self, config: SimulationConfig, seed: int) -> None:
        self.config = config
        self.seed = int(seed)
        self.status = choose_bad_channels(np.random.SeedSequence(self.seed, spawn_key=(0,)), config.readout, READOUT.n_wires)
        self.readout_model = ReadoutModel(config.readout, self.status)
        self.processor = SignalProcessor(config.hits, config.readout.channels_per_board)

    def detector_response(self, truth: EventTruth, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Hits (with truth columns) of one event's deposits."""
        charge = drift_deposits(truth.deposits, self.config.drift, beam_side_only=self.config.detector.beam_side_only)
        adc = self.readout_model.digitize(charge_frame(charge), rng)
        deconvolved, sigma = self.processor.process(adc, self.readout_model.alive)
        del adc
        hits = find_hits(deconvolved, sigma, self.config.hits)
        del deconvolved
        matched = match_truth(hits, _truth_charge(truth, charge), truth.particles)
        return {
            "wire": hits["wire"],
            "tick": hits["tick"],
            "integral": hits["integral"],
            "rms": hits["rms"],
            "peak": hits["peak"],
            **matched,
        }

    def simulate(self, index: int):
        """Event ``index`` of the run (an ``protoseg.events.Event``)."""
        from protoseg.events import Event

        truth_seed, detector_seed = np.random.SeedSequence(self.seed, spawn_key=(1, int(index))).spawn(2)
        truth = generate_truth(np.random.default_rng(truth_seed), self.config.sources, self.config.transport)
        hits = self.detector_response(truth, np.random.default_rng(detector_seed))
        return Event(
            event_id=int(index),
            hits=hits,
            run=0,
            is_mc=True,
            trigger=BEAM_TRIGGER,
            beam_pdg=int(truth.beam_pdg),
            beam_momentum_gev=float(truth.beam_momentum_gev),
            particles=truth.particles,
        )


_WORKER_SIMULATOR: EventSimulator | None = None


def _init_worker(config: SimulationConfig, seed: int) -> None:
    global _WORKER_SIMULATOR
    _WORKER_SIMULATOR = EventSimulator(config, seed)


def _simulate_in_worker(index: int):
    assert _WORKER_SIMULATOR is not None
    return _WORKER_SIMULATOR.simulate(index)


def simulate_events(
    path: str | Path,
    n_events: int,
    seed: int,
    config: SimulationConfig | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
    first_event: int = 0,
) -> dict:
    """Simulate events ``first_event .. first_event + n_events - 1`` into the events file ``path`` (atomically).

    Event ``i`` depends only on ``seed`` and ``i``, so pieces of a run (``first_event``) hold exactly
    the events of one big run. Returns a summary: events, hits, seconds, and the resolved configuration.
    """
    from protoseg.events import EventsWriter

    config = config or SimulationConfig()
    if not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise InputError(f"the number of events must be at least 1, got {n_events}")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if not 0 <= int(seed) < 2**63:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    if not isinstance(first_event, (int, np.integer)) or not 0 <= first_event <= 2**62 - n_events:
        raise InputError(f"--first-event must be a non-negative integer (at most 2^62 - N), got {first_event}")
    indices = range(int(first_event), int(first_event) + int(n_events))
    validate_simulation_config(config)

    start = time.perf_counter()
    simulator = EventSimulator(config, seed) if workers == 1 else None
    status = simulator.status if simulator else choose_bad_channels(
        np.random.SeedSequence(int(seed), spawn_key=(0,)), config.readout, READOUT.n_wires
    )
    record = resolved_config(config, seed=seed, n_events=n_events, status=status, first_event=first_event)
    n_hits = 0
    with (EventsWriter(path, config=record, is_mc=True, source="protoseg simulate") as writer,
          progress_bar(n_events, "simulate", enabled=progress, unit="event") as bar):
        if simulator is not None:
            events = (simulator.simulate(i) for i in indices)
            pool = None
        else:
            context = multiprocessing.get_context("spawn")
            pool = context.Pool(min(workers, n_events), initializer=_init_worker, initargs=(config, int(seed)))
            events = pool.imap(_simulate_in_worker, indices, chunksize=1)
        try:
            for event in events:
                writer.append(event)
                n_hits += event.n_hits
                bar.set_postfix_str(f"{n_hits} hits", refresh=False)  # on a terminal; a log gets "simulate: done/total"
                bar.update(1)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return {"events": n_events, "hits": n_hits, "seconds": time.perf_counter() - start, "config": record}
