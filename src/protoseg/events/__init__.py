"""The events file (format ``protoseg-events``, version 1): hits, truth and particles at full resolution.

Layout (DESIGN.md). Jagged per-event data is stored flat with offsets: event ``i`` owns the rows
``offsets[i]:offsets[i + 1]`` of every column under ``/hits`` (and ``/particles``)::

    /                 attrs: format, version, detector, config (JSON), protoseg_version, is_mc, source
    /events/id, run, is_mc, trigger            [n_events]
    /events/beam_pdg, beam_momentum            [n_events]   (MC only; GeV/c)
    /hits/offsets                              [n_events + 1]  int64
    /hits/wire, tick, integral, rms, peak      HIT_DTYPES
    /hits/label, origin, track_id, pdg         TRUTH_HIT_DTYPES (MC only)
    /particles/offsets + PARTICLE_COLUMNS      (MC only; strings are variable-length UTF-8)
    /hits/source_index, /events/source_entry, source_hits   (optional: SOURCE_* below; import-root)

Hit columns are chunked, LZF-compressed (of the filters every h5py ships, the fastest to write
and read back: ~3x gzip-1 on hits) and Fletcher-32 checksummed, so that a damaged chunk is an
error on reading rather than silently wrong hits. ``rms`` and ``peak`` may be NaN where the source
did not record them (the 2018 ROOT dumps hold only the integral and the peak tick).

The package: ``format`` (names, dtypes, codes, the ``Event`` record), ``checks`` (what values may be
written), ``writer`` (``EventsWriter``), ``reader`` (``open_events``, ``EventsFile``, ``validate_events_file``).
"""
from __future__ import annotations

from protoseg.events.checks import check_hits
from protoseg.events.format import (
    DETECTOR,
    FORMAT,
    HIT_CHUNK_ROWS,
    HIT_DTYPES,
    LABEL_BEAM,
    LABEL_NONE,
    LABEL_NOT_BEAM,
    MAX_LABEL,
    MAX_ORIGIN,
    ORIGIN_BEAM,
    ORIGIN_COSMIC,
    ORIGIN_HALO,
    ORIGIN_NOISE,
    PARTICLE_CHUNK_ROWS,
    PARTICLE_COLUMNS,
    SOURCE_EVENT_DTYPES,
    SOURCE_HIT_DTYPES,
    TRUTH_HIT_DTYPES,
    VERSION,
    Event,
)
from protoseg.events.reader import EventsFile, open_events, validate_events_file
from protoseg.events.writer import EventsWriter, config_to_json

__all__ = [
    "FORMAT",
    "VERSION",
    "HIT_DTYPES",
    "TRUTH_HIT_DTYPES",
    "SOURCE_HIT_DTYPES",
    "SOURCE_EVENT_DTYPES",
    "LABEL_NONE",
    "LABEL_BEAM",
    "LABEL_NOT_BEAM",
    "ORIGIN_NOISE",
    "ORIGIN_BEAM",
    "ORIGIN_COSMIC",
    "ORIGIN_HALO",
    "PARTICLE_COLUMNS",
    "Event",
    "EventsWriter",
    "EventsFile",
    "open_events",
    "validate_events_file",
    # public in the single events.py this package replaced, so still importable from here
    "DETECTOR",
    "MAX_LABEL",
    "MAX_ORIGIN",
    "HIT_CHUNK_ROWS",
    "PARTICLE_CHUNK_ROWS",
    "check_hits",
    "config_to_json",
]
