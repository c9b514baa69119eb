"""Which events become images: hit counts per event, compatible events files, the train / validation / test split."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.errors import InputError
from protoseg.images.labels import apply_beam_label_rule

__all__ = ["parse_split", "hit_class_counts", "hit_class_counts_relabelled", "check_compatible_events"]


def parse_split(split: Sequence[float] | None, n_available: int, where: str | Path | None = None) -> tuple[int, int, int]:
    """Numbers of (train, validation, test) images: three counts, or three fractions summing to 1.

    Fractions are turned into counts of ``n_available`` by largest remainder (they add up to it).
    Counts that need more events than ``n_available`` raise InputError.
    """
    if split is None:
        split = (0.8, 0.1, 0.1)
    values = [float(v) for v in split]
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values):
        raise InputError(f"--split needs three non-negative numbers TRAIN VAL TEST, got {list(split)}", where)
    if sum(values) <= 0:
        raise InputError("--split asks for no images at all", where)
    if abs(sum(values) - 1.0) < 1e-9:  # numbers that sum to 1 are fractions (DESIGN.md)
        exact = np.array(values) * n_available
        counts = np.floor(exact).astype(np.int64)
        remainder = n_available - int(counts.sum())
        for k in np.argsort(-(exact - counts), kind="stable")[:remainder]:
            counts[k] += 1
        return int(counts[0]), int(counts[1]), int(counts[2])
    if any(v != int(v) for v in values):
        raise InputError(f"--split: counts must be whole numbers, or fractions must sum to 1 (got {values})", where)
    counts = tuple(int(v) for v in values)
    if sum(counts) > n_available:
        raise InputError(
            f"--split asks for {sum(counts)} images ({counts[0]} + {counts[1]} + {counts[2]}) "
            f"but only {n_available} events pass the selection",
            where,
        )
    return counts


def hit_class_counts(events, chunk_events: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per event: number of full-resolution beam (label 1) and not-beam (label 2) hits."""
    n_events = len(events)
    n_beam = np.zeros(n_events, dtype=np.int64)
    n_not_beam = np.zeros(n_events, dtype=np.int64)
    offsets = events.hit_offsets
    for start in range(0, n_events, chunk_events):
        stop = min(n_events, start + chunk_events)
        lo = int(offsets[start])
        label = events.read_hit_block(("label",), start, stop)["label"]
        starts = offsets[start:stop] - lo
        counts = np.diff(offsets[start : stop + 1])
        has_hits = counts > 0
        if not has_hits.any():
            continue
        for code, out in ((1, n_beam), (2, n_not_beam)):
            # reduceat over 1-byte flags: no hit-sized integer temporaries. Empty events are skipped
            # (reduceat would return the next event's first element for them).
            flags = (label == code).view(np.uint8)
            out[start:stop][has_hits] = np.add.reduceat(flags, starts[has_hits], dtype=np.int64)
    return n_beam, n_not_beam


def hit_class_counts_relabelled(events, rule: str, chunk_events: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per event: beam and not-beam hits after ``apply_beam_label_rule`` (reads the particle table)."""
    n_beam = np.zeros(len(events), dtype=np.int64)
    n_not_beam = np.zeros(len(events), dtype=np.int64)
    for i, event in enumerate(events.iter_events(0, len(events), chunk_events)):
        try:
            label = apply_beam_label_rule(event.hits, event.particles, rule)["label"]
        except InputError as exc:
            raise InputError(f"event {event.event_id}: {exc}", events.path) from None
        n_beam[i] = np.count_nonzero(label == 1)
        n_not_beam[i] = np.count_nonzero(label == 2)
    return n_beam, n_not_beam


# Settings that may differ between events files made into one image file: what identifies a piece of a
# sample (its seed, its event range, its bad channels, which follow from the seed; the dump it was imported
# from), not how events were made. Everything else in the files' configs must be equal.
_PER_PIECE_SETTINGS = frozenset({
    "run.seed", "run.n_events", "run.first_event", "run.dead_channels", "run.noisy_channels",  # simulate
    "source", "tree", "step_size", "source_entries",  # import-root
})
# Of those, what only says which events of a sample a file holds: files equal in everything else are
# pieces of one sample, and must not hold the same events twice.
_RANGE_SETTINGS = frozenset({"run.n_events", "run.first_event", "step_size"})


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {"": config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


def _producer(config: dict) -> str:
    if "command" in config:
        return str(config["command"])
    return "simulate" if "run" in config and "sources" in config else "an unknown producer"


def check_compatible_events(files: Sequence[Any]) -> None:
    """Refuse events files that cannot make one image file; InputError names the file and the setting.

    Files must agree on MC / data and on every setting of their configs except those of
    ``_PER_PIECE_SETTINGS`` (seed, event range, bad channels, imported dump); files that are pieces
    of one sample (equal but for their event range) must not share an event.
    """
    if len(files) < 2:
        return
    first = files[0]
    reference = _flatten(first.config)
    for other in files[1:]:
        if bool(other.is_mc) != bool(first.is_mc):
            kinds = {True: "MC (with truth)", False: "data (no truth)"}
            raise InputError(f"is {kinds[bool(other.is_mc)]} but {first.path} is {kinds[bool(first.is_mc)]}: "
                             "they cannot make one image file", other.path)
        if _producer(other.config) != _producer(first.config):
            raise InputError(f"was made by {_producer(other.config)} but {first.path} by {_producer(first.config)}: "
                             "their hits are not on one footing (charge scale, truth)", other.path)
        settings = _flatten(other.config)
        differing = sorted(
            key for key in set(reference) | set(settings)
            if key not in _PER_PIECE_SETTINGS and reference.get(key, "(not set)") != settings.get(key, "(not set)")
        )
        if differing:
            shown = ", ".join(f"{key} ({settings.get(key, '(not set)')!r} vs {reference.get(key, '(not set)')!r})"
                              for key in differing[:3])
            more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
            raise InputError(f"was made with other settings than {first.path}: {shown}{more}", other.path)
    samples: dict[str, list[Any]] = {}
    for events in files:
        identity = json.dumps({k: v for k, v in _flatten(events.config).items() if k not in _RANGE_SETTINGS},
                              sort_keys=True, default=str)
        samples.setdefault(identity, []).append(events)
    for pieces in samples.values():
        if len(pieces) < 2:
            continue
        ids = np.concatenate([np.asarray(events.event_ids, dtype=np.int64) for events in pieces])
        owner = np.repeat(np.arange(len(pieces)), [len(events) for events in pieces])
        order = np.argsort(ids, kind="stable")
        ids, owner = ids[order], owner[order]
        repeated = np.flatnonzero((ids[1:] == ids[:-1]) & (owner[1:] != owner[:-1]))
        if repeated.size:
            k = int(repeated[0])
            raise InputError(
                f"holds event {int(ids[k])} of {pieces[owner[k]].path} again (same sample: same seed or the same "
                "imported dump); an event must not be in two files", pieces[owner[k + 1]].path)
