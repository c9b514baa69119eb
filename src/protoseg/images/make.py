"""Events file(s) → image file: ``make_image_file``, what ``protoseg images`` runs."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.detector import READOUT
from protoseg.errors import InputError
from protoseg.fileio import atomic_output
from protoseg.images.grid import DEFAULT_SIZE, check_hit_values, check_size
from protoseg.images.imagefile import create_image_datasets, write_attrs
from protoseg.images.labels import BEAM_LABEL_RULES, LABEL_SCHEMES, apply_beam_label_rule
from protoseg.images.pooling import POOLINGS, event_to_image
from protoseg.progress import progress_bar
from protoseg.images.selection import (
    check_compatible_events,
    hit_class_counts,
    hit_class_counts_relabelled,
    parse_split,
)

__all__ = ["make_image_file"]


def _events_charge_scale(events) -> str:
    # "hit_scale" is what `protoseg simulate` records; "charge_scale" any other producer.
    for source in (events.config, events.attrs):
        for key in ("charge_scale", "hit_scale"):
            value = source.get(key) if isinstance(source, dict) else None
            if value:
                return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "hit integral in ADC x tick, as stored in the events file (no rescaling)"


def make_image_file(
    events_path: str | Path | Sequence[str | Path],
    out_path: str | Path,
    *,
    size: Sequence[int] = DEFAULT_SIZE,
    pooling: str = "max",
    label_scheme: str = "beam3",
    min_beam_hits: int = 2000,
    min_notbeam_hits: int = 2000,
    split: Sequence[float] | None = None,
    seed: int = 0,
    spread_rms: bool = False,
    drop_noise: bool = False,
    beam_label_rule: str = "all",
    chunk_events: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """Events file(s) → image file (format ``protoseg-images`` v1). Returns a summary dict.

    Events pass the selection with at least ``min_beam_hits`` beam and ``min_notbeam_hits``
    not-beam hits at full resolution; ``split`` (counts, or fractions summing to 1; default
    0.8 0.1 0.1) picks the train / validation / test images among them at random with ``seed``.
    Images are written in the order of the events file. Data files (no truth) give images without
    labels and need both minimums to be 0. ``beam_label_rule`` (``all`` or ``2018``, module
    docstring) is applied before the selection, so the minimums count the relabelled hits.

    Several events files (a list) are read as one sample, in the order given: they must be
    compatible (``check_compatible_events``); ``/source_file`` says which file each image comes from
    and ``/event_index`` its position in that file. The split is drawn over the events of all files
    in that order, so the pieces of a simulation run, given in order, make the same images and the
    same split as the single file of the whole run.
    """
    import contextlib

    import h5py

    from protoseg.events import open_events

    paths = [Path(events_path)] if isinstance(events_path, (str, Path)) else [Path(p) for p in events_path]
    if not paths:
        raise InputError("no events file given")
    out_path = Path(out_path)
    height, width = check_size(size)
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling '{pooling}' (choose from {', '.join(POOLINGS)})")
    if label_scheme not in LABEL_SCHEMES:
        raise InputError(f"unknown label scheme '{label_scheme}' (choose from {', '.join(LABEL_SCHEMES)})")
    if beam_label_rule not in BEAM_LABEL_RULES:
        raise InputError(f"unknown beam label rule '{beam_label_rule}' (choose from {', '.join(BEAM_LABEL_RULES)})")
    if min_beam_hits < 0 or min_notbeam_hits < 0:
        raise InputError("--min-beam-hits and --min-notbeam-hits must be >= 0")
    for k, path in enumerate(paths):
        if out_path.exists() and path.exists() and out_path.resolve() == path.resolve():
            raise InputError("output would overwrite the input file", out_path)
        if path.exists() and any(path.resolve() == q.resolve() for q in paths[:k] if q.exists()):
            raise InputError("events file given twice", path)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open_events(path)) for path in paths]
        check_compatible_events(files)
        counts_per_file = np.array([len(events) for events in files], dtype=np.int64)
        n_events = int(counts_per_file.sum())
        if n_events == 0:
            raise InputError("events file holds no events" if len(files) == 1 else "the events files hold no events",
                             paths[0] if len(files) == 1 else None)
        is_mc = all(events.is_mc and "label" in events.hit_columns for events in files)
        if not is_mc and (min_beam_hits > 0 or min_notbeam_hits > 0):
            raise InputError(
                "events have no truth labels (data), so there are no beam / not-beam hits to select on: "
                "use --min-beam-hits 0 --min-notbeam-hits 0",
                next(e.path for e in files if not (e.is_mc and "label" in e.hit_columns)),
            )
        relabel = is_mc and beam_label_rule != "all"
        n_beam_parts, n_not_beam_parts = [], []
        for events in files:
            truth_columns = events.config.get("truth_columns")
            if is_mc and label_scheme == "species" and (
                "pdg" not in events.hit_columns or (truth_columns is not None and "pdg" not in truth_columns)
            ):
                raise InputError("species labels need the per-hit truth pdg, which this events file does not record", events.path)
            if relabel and ("track_id" not in events.hit_columns or not events.has_particles
                            or (truth_columns is not None and "track_id" not in truth_columns)):
                raise InputError(
                    f"the {beam_label_rule} beam label rule needs per-hit track ids and the particle table, "
                    "which this events file does not have", events.path)
            if spread_rms and "rms" not in events.hit_columns:
                raise InputError("--spread-rms needs the per-hit rms, which this events file does not have", events.path)
            try:
                if relabel:
                    n_beam, n_not_beam = hit_class_counts_relabelled(events, beam_label_rule)
                elif is_mc:
                    n_beam, n_not_beam = hit_class_counts(events)
                else:
                    n_beam = n_not_beam = np.zeros(len(events), dtype=np.int64)
            except OSError as exc:
                raise InputError(f"hit data cannot be read, the file is corrupt ({exc})", events.path) from None
            n_beam_parts.append(n_beam)
            n_not_beam_parts.append(n_not_beam)
        n_beam, n_not_beam = np.concatenate(n_beam_parts), np.concatenate(n_not_beam_parts)
        # Events are numbered over all files in the order given (file k starts at file_start[k]).
        file_start = np.concatenate([[0], np.cumsum(counts_per_file)])
        where = paths[0] if len(paths) == 1 else None
        passing = np.flatnonzero((n_beam >= min_beam_hits) & (n_not_beam >= min_notbeam_hits))
        if len(passing) == 0:
            raise InputError(
                f"no event of {n_events} has >= {min_beam_hits} beam and >= {min_notbeam_hits} not-beam hits", where)
        n_train, n_val, n_test = parse_split(split, len(passing), where)
        rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
        chosen = rng.permutation(passing)[: n_train + n_val + n_test]
        split_of = np.concatenate([np.zeros(n_train), np.ones(n_val), np.full(n_test, 2)]).astype(np.uint8)
        order = np.argsort(chosen, kind="stable")
        chosen, split_codes = chosen[order], split_of[order]
        file_of = np.searchsorted(file_start, chosen, side="right") - 1
        positions = chosen - file_start[file_of]
        n_images = len(chosen)
        event_ids = np.empty(n_images, dtype=np.int64)
        for k, events in enumerate(files):
            mine = file_of == k
            event_ids[mine] = events.event_ids[positions[mine]]
        class_names = LABEL_SCHEMES[label_scheme]
        columns = ["wire", "tick", "integral"] + (["rms"] if spread_rms else [])
        if is_mc:
            columns += ["label"] + (["pdg"] if label_scheme == "species" else [])
        selection = {
            "min_beam_hits": int(min_beam_hits),
            "min_notbeam_hits": int(min_notbeam_hits),
            "n_events_read": int(n_events),
            "n_events_passing": int(len(passing)),
            "n_images": int(n_images),
            "split_requested": None if split is None else [float(v) for v in split],
            "split_counts": {"train": n_train, "validation": n_val, "test": n_test},
            "seed": int(seed),
        }
        source = str(paths[0]) if len(paths) == 1 else f"{len(paths)} events files (/source_files), the first {paths[0]}"
        attrs = {
            "size": [height, width],
            "pooling": pooling,
            "label_scheme": label_scheme,
            "class_names": class_names,
            "source": source,
            "source_format": "protoseg-events",
            "n_source_files": len(paths),
            "selection": selection,
            "spread_rms": bool(spread_rms),
            "drop_noise": bool(drop_noise),
            "beam_label_rule": beam_label_rule if is_mc else "none (no truth)",
            "charge_scale": _events_charge_scale(files[0]),
            "pixel_value": f"{pooling} of hit integrals (ADC x tick); not normalised",
            "grid": f"row = floor(tick * {height} / {READOUT.n_ticks}), column = floor(wire * {width} / {READOUT.n_wires})",
            "events_config": json.dumps(files[0].config, sort_keys=True),
        }
        with atomic_output(out_path) as tmp:
            with h5py.File(tmp, "w") as h5:
                write_attrs(h5, attrs)
                adc_ds, label_ds = create_image_datasets(h5, n_images, height, width, with_labels=is_mc)
                h5.create_dataset("event_id", data=event_ids)
                h5.create_dataset("event_index", data=positions.astype(np.int64))
                h5.create_dataset("source_file", data=file_of.astype(np.uint32))
                strings = h5py.string_dtype("utf-8")
                h5.create_dataset("source_files", data=[str(p) for p in paths], dtype=strings)
                h5.create_dataset("source_configs", data=[json.dumps(e.config, sort_keys=True) for e in files], dtype=strings)
                h5.create_dataset("split", data=split_codes)
                first_row = 0
                with progress_bar(n_images, "images", enabled=progress, unit="image") as bar:
                    for k, events in enumerate(files):
                        mine = positions[file_of == k]
                        _fill_images(events, mine, columns, adc_ds, label_ds, (height, width), pooling,
                                     label_scheme if is_mc else None, spread_rms, drop_noise, chunk_events, bar,
                                     beam_label_rule if relabel else "all", first_row=first_row)
                        first_row += len(mine)
    return {
        "input": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
        "output": str(out_path),
        "n_events_read": int(n_events),
        "n_events_passing": int(len(passing)),
        "n_images": int(n_images),
        "split_counts": selection["split_counts"],
        "size": [height, width],
        "pooling": pooling,
        "label_scheme": label_scheme,
        "beam_label_rule": beam_label_rule,
        "class_names": class_names,
        "has_labels": bool(is_mc),
    }


def _relabelled_hits(events, columns, start: int, stop: int, chunk_events: int, rule: str):
    """``iter_hit_columns`` for a beam label rule other than ``all``: hits relabelled with the particle table."""
    for offset, event in enumerate(events.iter_events(start, stop, chunk_events)):
        hits = apply_beam_label_rule(event.hits, event.particles, rule)
        yield start + offset, {name: hits[name] for name in columns}


def _fill_images(events, positions, columns, adc_ds, label_ds, size, pooling, label_scheme, spread_rms,
                 drop_noise, chunk_events, bar, beam_label_rule: str = "all", first_row: int = 0) -> None:
    """Images of the events at ``positions`` (increasing) into rows ``first_row...`` of the datasets; ``bar``
    (a progress bar) advances by each block written."""
    n_images = len(positions)
    if n_images == 0:
        return
    height, width = size
    block = max(1, chunk_events)
    adc_block = np.zeros((block, height, width), dtype=np.float32)
    label_block = np.zeros((block, height, width), dtype=np.uint8)
    wanted = np.zeros(len(events), dtype=bool)
    wanted[positions] = True
    written = first_row
    filled = 0
    # Read contiguous runs of events in blocks; skip the events that were not chosen.
    start, stop = int(positions[0]), int(positions[-1]) + 1
    if beam_label_rule == "all":
        blocks = events.iter_hit_columns(columns, start, stop, chunk_events)
    else:
        blocks = _relabelled_hits(events, columns, start, stop, chunk_events, beam_label_rule)
    for i, hits in blocks:
        if not wanted[i]:
            continue
        check_hit_values(hits, int(events.event_ids[i]), events.path)
        event_to_image(hits, size, pooling, label_scheme, spread_rms, drop_noise,
                       out=(adc_block[filled], label_block[filled]))
        filled += 1
        if filled == block:
            adc_ds[written : written + filled] = adc_block[:filled]
            if label_ds is not None:
                label_ds[written : written + filled] = label_block[:filled]
            written += filled
            bar.update(filled)
            filled = 0
    if filled:
        adc_ds[written : written + filled] = adc_block[:filled]
        if label_ds is not None:
            label_ds[written : written + filled] = label_block[:filled]
        bar.update(filled)
