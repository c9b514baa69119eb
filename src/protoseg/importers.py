"""ROOT hit dumps written by LArSoft users → events file, read with uproot, chunk by chunk.

Two layouts are understood (both described in the README):

``2018``  The 2018 study's ``DataProcessing/tHitsTree``: one entry per event, branch ``vHitsStruct``
          (``std::vector<ProtoDuneDL::HitsStruct>``) split by ROOT into member branches
          ``vHitsStruct.adc`` (hit integral, ADC·tick), ``.tdc`` (peak tick, unsigned int),
          ``.tpc_index``, ``.plane_index``, ``.wire_index``, ``.origin`` (0 none, 1 beam, 2 not-beam:
          it is the 2018 *label*). Only the collection plane (plane 2) is kept, and the global wire
          is ``wire + 480 * (tpc // 4)``, which overlays both drift volumes as that study did.

``flat``  One entry per event with jagged (per-hit) branches: ``wire`` (global collection wire)
          or ``tpc`` + ``plane`` + ``wire``, ``peak_time`` (ticks), ``integral`` (ADC·tick), and
          optionally ``rms`` (ticks), ``peak_amplitude`` (ADC), ``label`` (0/1/2) or ``origin``
          (protoseg codes 0 noise, 1 beam, 2 cosmic, 3 halo), ``track_id``, ``pdg``; optional
          per-event scalars ``event``, ``run``, ``trigger``.

Branch names can be remapped (``--map tick=hit_peak_time``). Files are read with
``TTree.iterate(step_size=...)`` so that memory does not grow with the file, and written through
:class:`protoseg.events.EventsWriter`, which only renames its temporary file on success.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.detector import READOUT
from protoseg.errors import InputError
from protoseg.events import LABEL_BEAM, LABEL_NOT_BEAM, ORIGIN_BEAM, ORIGIN_COSMIC, PARTICLE_COLUMNS, Event, EventsWriter
from protoseg.fileio import check_readable

__all__ = ["LAYOUTS", "DEFAULT_TREES", "BRANCH_DEFAULTS", "import_root", "parse_branch_map"]

LAYOUTS = ("auto", "2018", "flat")
DEFAULT_TREES = ("DataProcessing/tHitsTree",)
COLLECTION_PLANE = 2

# Logical column -> branch name, per layout. Per-hit columns are jagged; "event", "run", "trigger"
# are per-entry scalars. Every logical name can be remapped with --map.
BRANCH_DEFAULTS: dict[str, dict[str, str]] = {
    "2018": {
        "integral": "vHitsStruct.adc",
        "tick": "vHitsStruct.tdc",
        "tpc": "vHitsStruct.tpc_index",
        "plane": "vHitsStruct.plane_index",
        "wire": "vHitsStruct.wire_index",
        "label": "vHitsStruct.origin",  # the 2018 "origin" is the label: 0 none, 1 beam, 2 not-beam
    },
    "flat": {
        "wire": "wire",
        "tpc": "tpc",
        "plane": "plane",
        "tick": "peak_time",
        "integral": "integral",
        "rms": "rms",
        "peak": "peak_amplitude",
        "label": "label",
        "origin": "origin",
        "track_id": "track_id",
        "pdg": "pdg",
        "event": "event",
        "run": "run",
        "trigger": "trigger",
    },
}
_REQUIRED = ("wire", "tick", "integral")
_SCALARS = ("event", "run", "trigger")
_LOGICAL_NAMES = tuple(BRANCH_DEFAULTS["flat"])

# origin code -> label (beam3): halo and cosmic are both not-beam, noise has no label.
_ORIGIN_TO_LABEL = np.array([0, LABEL_BEAM, LABEL_NOT_BEAM, LABEL_NOT_BEAM], dtype=np.uint8)
# label -> origin, when the file has labels only: not-beam is recorded as "cosmic" (2), and the
# events file's config says that origin was derived (cosmic and halo are not told apart).
_LABEL_TO_ORIGIN = np.array([0, ORIGIN_BEAM, ORIGIN_COSMIC], dtype=np.uint8)


def parse_branch_map(items: list[str] | None) -> dict[str, str]:
    """``["tick=hit_time", ...]`` → ``{"tick": "hit_time"}``; InputError on unknown names or bad syntax."""
    out: dict[str, str] = {}
    for item in items or []:
        ours, sep, theirs = item.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not ours or not theirs:
            raise InputError(f"--map expects OURS=THEIRS, got '{item}'")
        if ours not in _LOGICAL_NAMES:
            raise InputError(f"--map: unknown column '{ours}' (known: {', '.join(_LOGICAL_NAMES)})")
        out[ours] = theirs
    return out


@dataclass
class _Plan:
    """What to read from the tree: layout, logical name -> full branch key, truth handling."""

    layout: str
    branches: dict[str, str]
    is_mc: bool

    @property
    def hit_names(self) -> list[str]:
        return [n for n in self.branches if n not in _SCALARS]


def _open_tree(path: Path, tree_name: str | None):
    import uproot

    try:
        root_file = uproot.open(path)
    except Exception as exc:  # uproot raises ValueError/OSError/DeserializationError for garbage
        with open(path, "rb") as raw:
            is_root = raw.read(4) == b"root"
        what = "ROOT file is truncated or corrupt" if is_root else "not a ROOT file"
        raise InputError(f"{what} ({_short(exc)})", path) from None
    # The header records where the file ends; a shorter file was cut off (copy or job killed).
    expected_bytes = int(getattr(root_file.file, "fEND", 0) or 0)
    actual_bytes = path.stat().st_size
    if expected_bytes and actual_bytes < expected_bytes:
        root_file.close()
        raise InputError(f"ROOT file is truncated ({actual_bytes} of {expected_bytes} bytes)", path)
    try:
        classnames = root_file.classnames(recursive=True)
    except Exception as exc:
        root_file.close()
        raise InputError(f"ROOT file is truncated or corrupt ({_short(exc)})", path) from None
    trees = sorted({k.split(";")[0] for k, v in classnames.items() if v in ("TTree", "TNtuple")})
    others = sorted({f"{k.split(';')[0]} ({v})" for k, v in classnames.items() if v == "ROOT::RNTuple"})
    if not trees and others:
        root_file.close()
        raise InputError(f"no TTree in the file, only RNTuples, which import-root does not read yet: {', '.join(others)}", path)
    if tree_name is None:
        known = [t for t in DEFAULT_TREES if t in trees]
        if known:
            tree_name = known[0]
        elif len(trees) == 1:
            tree_name = trees[0]
        else:
            root_file.close()
            what = ", ".join(trees) if trees else "none"
            raise InputError(f"cannot choose a tree, give --tree NAME (trees in the file: {what})", path)
    elif tree_name not in trees:
        root_file.close()
        raise InputError(f"no tree '{tree_name}' (trees in the file: {', '.join(trees) or 'none'})", path)
    try:
        tree = root_file[tree_name]
    except Exception as exc:
        root_file.close()
        raise InputError(f"ROOT file is truncated or corrupt: cannot read tree '{tree_name}' ({_short(exc)})", path) from None
    return root_file, tree, tree_name


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text[:160]
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _find_branch(keys: list[str], name: str) -> str | None:
    """The full key of the branch called ``name`` (exact path, or last path component)."""
    if name in keys:
        return name
    matches = [k for k in keys if k.split("/")[-1] == name]
    if len(matches) > 1:
        raise InputError(f"branch name '{name}' is ambiguous: {', '.join(matches)}")
    return matches[0] if matches else None


def _make_plan(keys: list[str], layout: str, branch_map: Mapping[str, str], truth: bool) -> _Plan:
    if layout == "auto":
        layout = "2018" if _find_branch(keys, branch_map.get("integral", BRANCH_DEFAULTS["2018"]["integral"])) else "flat"
    names = dict(BRANCH_DEFAULTS[layout], **branch_map)
    found: dict[str, str] = {}
    for logical, branch_name in names.items():
        key = _find_branch(keys, branch_name)
        if key is not None:
            found[logical] = key
    missing = [f"{n} ('{names[n]}')" for n in _REQUIRED if n not in found]
    if missing:
        raise InputError(f"{layout} layout: required branches missing: {', '.join(missing)}")
    geometry = [n for n in ("tpc", "plane") if n in found]
    if len(geometry) == 1:
        raise InputError(f"{layout} layout: branch '{names[geometry[0]]}' found without its partner "
                         f"'{names[({'tpc', 'plane'} - set(geometry)).pop()]}' (wire numbering needs both)")
    is_mc = truth and ("label" in found or "origin" in found)
    if not is_mc:
        for name in ("label", "origin", "track_id", "pdg"):
            found.pop(name, None)
    return _Plan(layout=layout, branches=found, is_mc=is_mc)


def _entry_of(hit_index: int, offsets: np.ndarray) -> int:
    return int(np.searchsorted(offsets, hit_index, side="right") - 1)


def _chunk_to_columns(
    chunk: Any, plan: _Plan, entry_start: int, where: Callable[[int], str]
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Flatten one uproot chunk into events-file hit columns, per-entry hit counts and scalars.

    The columns include ``source_index`` (each kept hit's position among all hits of its entry) and
    the scalars ``source_hits`` (hits per entry, every plane). Every check is vectorised over the
    chunk; a failure names the entry (event) that holds it.
    """
    import awkward as ak

    n_entries = len(chunk)
    flat: dict[str, np.ndarray] = {}
    counts = None
    for name in plan.hit_names:
        column = chunk[plan.branches[name]]
        if column.ndim != 2:
            raise InputError(f"branch '{plan.branches[name]}' is not a per-hit (jagged) array, type {ak.type(column)}")
        these = ak.to_numpy(ak.num(column, axis=1))
        if counts is None:
            counts = these
        elif not np.array_equal(counts, these):
            bad = int(np.flatnonzero(counts != these)[0])
            raise InputError(f"{where(entry_start + bad)}: branch '{plan.branches[name]}' has {these[bad]} hits "
                             f"but '{plan.branches[plan.hit_names[0]]}' has {counts[bad]}")
        try:
            flat[name] = ak.to_numpy(ak.flatten(column, axis=1))
        except (ValueError, TypeError):
            raise InputError(f"branch '{plan.branches[name]}' does not hold numbers, type {ak.type(column)}") from None
        if flat[name].dtype.kind not in "iufb":
            raise InputError(f"branch '{plan.branches[name]}' does not hold numbers (dtype {flat[name].dtype})")
    assert counts is not None
    scalars: dict[str, np.ndarray] = {}
    for name in _SCALARS:
        if name in plan.branches:
            values = chunk[plan.branches[name]]
            if values.ndim != 1:
                raise InputError(f"branch '{plan.branches[name]}' should hold one number per event, type {ak.type(values)}")
            scalars[name] = ak.to_numpy(values)
    offsets = np.zeros(n_entries + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # Where each hit sits in its entry, before any hit is dropped: predictions go back to these places.
    scalars["source_hits"] = counts.astype(np.int64)
    source_index = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)

    def fail_at(mask: np.ndarray, message: Callable[[int], str]) -> None:
        if mask.any():
            index = int(np.flatnonzero(mask)[0])
            raise InputError(f"{where(entry_start + _entry_of(index, offsets))}: {message(index)}")

    # Integer columns must be integers: a float wire or tpc number is a mapping mistake.
    for name in ("wire", "tpc", "plane", "label", "origin", "track_id", "pdg"):
        if name in flat and flat[name].dtype.kind == "f":
            raise InputError(f"branch '{plan.branches[name]}' ({name}) holds floating-point numbers, expected integers")
    wire = flat["wire"].astype(np.int64)
    fail_at(wire < 0, lambda i: f"negative wire number {wire[i]}")
    if "plane" in flat:
        keep = flat["plane"] == COLLECTION_PLANE
        tpc = flat["tpc"].astype(np.int64)[keep]
        local_wire = wire[keep]
        kept_offsets = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[offsets]
        per_apa = READOUT.n_wires_per_apa
        bad = local_wire >= per_apa
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{where(entry_start + _entry_of(i, kept_offsets))}: collection wire {local_wire[i]} "
                             f"outside the {per_apa} wires of an APA face")
        if (tpc < 0).any():
            i = int(np.flatnonzero(tpc < 0)[0])
            raise InputError(f"{where(entry_start + _entry_of(i, kept_offsets))}: negative TPC number {tpc[i]}")
        wire = local_wire + per_apa * (tpc // READOUT.global_wire_tpc_divisor)
        flat = {name: values[keep] for name, values in flat.items()}
        source_index = source_index[keep]
        counts = np.diff(kept_offsets)
        offsets = kept_offsets
        flat.pop("tpc")
        flat.pop("plane")
    n_wires, n_ticks = READOUT.n_wires, READOUT.n_ticks
    fail_at(wire >= n_wires, lambda i: f"hit wire {wire[i]} outside the {n_wires} collection wires (0..{n_wires - 1})")
    # Checked on the stored values (no float64 copies): a float32 tick of 5999.9995 is inside the window.
    tick = flat["tick"].astype(np.float32, copy=False)
    fail_at(~((tick >= 0) & (tick < n_ticks)), lambda i: f"hit tick {float(tick[i]):g} outside the readout window [0, {n_ticks})")
    integral = flat["integral"].astype(np.float32, copy=False)
    fail_at(~(np.isfinite(integral) & (integral >= 0)), lambda i: f"hit integral {float(integral[i]):g} is not a finite non-negative number")
    n_hits = len(wire)
    columns: dict[str, np.ndarray] = {
        "wire": wire.astype(np.uint16),
        "tick": tick,
        "integral": integral,
        "rms": flat["rms"].astype(np.float32) if "rms" in flat else np.full(n_hits, np.nan, np.float32),
        "peak": flat["peak"].astype(np.float32) if "peak" in flat else np.full(n_hits, np.nan, np.float32),
        "source_index": source_index.astype(np.uint32),
    }
    if "rms" in flat:
        rms = columns["rms"]
        fail_at(~(np.isfinite(rms) & (rms >= 0)), lambda i: f"hit rms {rms[i]:g} is not a finite non-negative number")
    if plan.is_mc:
        if "label" in flat:
            label = flat["label"].astype(np.int64)
            fail_at((label < 0) | (label > 2), lambda i: f"hit label {label[i]} is not 0 (none), 1 (beam) or 2 (not-beam)")
        if "origin" in flat:
            origin = flat["origin"].astype(np.int64)
            fail_at((origin < 0) | (origin > 3), lambda i: f"hit origin {origin[i]} is not 0..3 (noise, beam, cosmic, halo)")
            columns["origin"] = origin.astype(np.uint8)
            columns["label"] = label.astype(np.uint8) if "label" in flat else _ORIGIN_TO_LABEL[origin]
        else:
            columns["label"] = label.astype(np.uint8)
            columns["origin"] = _LABEL_TO_ORIGIN[label]
        columns["track_id"] = flat["track_id"].astype(np.int32) if "track_id" in flat else np.full(n_hits, -1, np.int32)
        columns["pdg"] = flat["pdg"].astype(np.int32) if "pdg" in flat else np.zeros(n_hits, np.int32)
    return columns, counts, scalars


def _check_step_size(step_size: str | int) -> None:
    """uproot's step_size: a positive number of entries, or a memory size such as "20 MB"."""
    import re

    if isinstance(step_size, (int, np.integer)) and not isinstance(step_size, bool):
        if step_size > 0:
            return
    elif isinstance(step_size, str) and re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)\s*", step_size):
        return
    raise InputError(f"step size must be a positive number of entries or a size such as '20 MB', got {step_size!r}")


def _empty_particles() -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype=dtype) for name, dtype in PARTICLE_COLUMNS.items()}


def import_root(
    root_path: str | Path,
    out_path: str | Path,
    *,
    tree: str | None = None,
    layout: str = "auto",
    branch_map: Mapping[str, str] | None = None,
    truth: bool = True,
    step_size: str | int = "20 MB",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Convert a ROOT hit dump into an events file; returns a summary dict.

    ``truth=False`` imports as data (labels dropped). ``progress(entries_done, entries_total)`` is
    called after every chunk. Raises InputError, naming the file, for anything wrong in the input;
    the output file then does not exist.
    """
    root_path = check_readable(root_path)
    out_path = Path(out_path)
    if out_path.exists() and out_path.resolve() == root_path.resolve():
        raise InputError("output would overwrite the input file", out_path)
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout '{layout}' (choose from {', '.join(LAYOUTS)})")
    branch_map = dict(branch_map or {})
    _check_step_size(step_size)
    root_file, ttree, tree_name = _open_tree(root_path, tree)
    try:
        try:
            keys = list(ttree.keys(recursive=True, full_paths=True))
            plan = _make_plan(keys, layout, branch_map, truth)
        except InputError as exc:
            raise InputError(f"tree '{tree_name}': {exc}", root_path) from None
        n_entries = int(ttree.num_entries)
        config = {
            "command": "import-root",
            "source": str(root_path),
            "tree": tree_name,
            "layout": plan.layout,
            "branches": plan.branches,
            "truth": plan.is_mc,
            # Which truth columns came from the file (the rest are: origin derived from the label,
            # not-beam written as cosmic; track_id -1 and pdg 0 meaning unknown).
            "truth_columns": sorted(n for n in ("label", "origin", "track_id", "pdg") if n in plan.branches),
            "collection_plane_only": "plane" in plan.branches,
            "global_wire": "wire + 480 * (tpc // 4)" if "plane" in plan.branches else "as stored",
            "step_size": step_size,
            # Entries of the input tree (each is one event of the file, with or without kept hits);
            # /events/source_entry, source_hits and /hits/source_index place every hit in it.
            "source_entries": n_entries,
        }

        def where(entry: int) -> str:
            return f"entry {entry} of tree '{tree_name}'"

        n_hits = 0
        done = 0
        with EventsWriter(out_path, config=config, is_mc=plan.is_mc, source=f"import-root {root_path.name}",
                          with_source_index=True) as writer:
            expressions = list(dict.fromkeys(plan.branches.values()))
            chunks = ttree.iterate(expressions=expressions, step_size=step_size, library="ak")
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:  # decompression / deserialisation of damaged baskets
                    raise InputError(f"ROOT file is truncated or corrupt near entry {done} ({_short(exc)})", root_path) from None
                try:
                    columns, counts, scalars = _chunk_to_columns(chunk, plan, done, where)
                except InputError as exc:
                    raise InputError(str(exc), root_path) from None
                bounds = np.zeros(len(counts) + 1, dtype=np.int64)
                np.cumsum(counts, out=bounds[1:])
                for k in range(len(counts)):
                    lo, hi = bounds[k], bounds[k + 1]
                    entry = done + k
                    writer.append(
                        Event(
                            event_id=int(scalars["event"][k]) if "event" in scalars else entry,
                            hits={name: values[lo:hi] for name, values in columns.items()},
                            run=int(scalars["run"][k]) if "run" in scalars else 0,
                            is_mc=plan.is_mc,
                            trigger=int(scalars["trigger"][k]) if "trigger" in scalars else 0xC,
                            particles=_empty_particles() if plan.is_mc else None,
                            source_entry=entry,
                            source_hits=int(scalars["source_hits"][k]),
                        )
                    )
                n_hits += int(bounds[-1])
                done += len(counts)
                if progress is not None:
                    progress(done, n_entries)
            if done != n_entries:
                raise InputError(f"tree '{tree_name}' says it has {n_entries} entries but {done} were read", root_path)
    finally:
        root_file.close()
    return {
        "input": str(root_path),
        "output": str(out_path),
        "tree": tree_name,
        "layout": plan.layout,
        "events": done,
        "hits": n_hits,
        "is_mc": plan.is_mc,
        "branches": plan.branches,
    }
