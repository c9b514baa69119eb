"""Predictions back into ROOT: a tree aligned entry by entry and hit by hit with an imported hit tree.

``protoseg predict MODEL events.h5 --root predictions.root`` on events made by ``import-root`` writes,
with uproot, a tree ``protoseg`` with one entry per entry of the input tree and, per entry, one value
per hit of that entry in the input tree's hit order (every plane):

``hit_class``            int32, the class of the pixel that holds the hit; -1 for hits protoseg did not
                         import (induction-plane hits, which import-root drops)
``hit_prob_<class>``     float32, that pixel's probability of the class (as stored, float16, in the
                         predictions file); -1 for hits not imported. Class names are made into branch
                         names: every run of characters other than letters, digits and ``_`` becomes ``_``
                         (``not-beam`` → ``hit_prob_not_beam``)
``protoseg_n_hits``      int32, the hits of the entry (the length of the arrays above)
``protoseg_event_id``    int64, the event id protoseg gave the entry

An analysis reads it as a friend of the input tree (``tree->AddFriend("protoseg", "predictions.root")``,
then ``protoseg.hit_class[i]`` is the class of hit ``i``). The file also holds ``protoseg_classes`` (a
TObjString: the class names as JSON, in class-number order), ``protoseg_version`` (TObjString: the protoseg
version that wrote it) and, when the caller names it, ``protoseg_model_version`` (TObjString: the
``model_version`` of the model card of the network that made the predictions).
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from protoseg.errors import InputError
from protoseg.version import __version__

__all__ = ["TREE_NAME", "NOT_IMPORTED", "probability_branch_names", "FriendTreeWriter"]

TREE_NAME = "protoseg"
NOT_IMPORTED = -1
# Entries are written to the tree in baskets of about this many hits (uproot writes one basket per extend).
_FLUSH_HITS = 1 << 20
_FLUSH_ENTRIES = 4096


def probability_branch_names(class_names: Sequence[str]) -> list[str]:
    """``hit_prob_<class>`` for each class, sanitised into distinct valid C++ identifiers."""
    names: list[str] = []
    for k, class_name in enumerate(class_names):
        stem = re.sub(r"[^A-Za-z0-9_]+", "_", str(class_name)).strip("_") or f"class{k}"
        name = f"hit_prob_{stem}"
        if name in names:  # two names that differ only in punctuation: keep both, numbered
            name = f"{name}_{k}"
        names.append(name)
    return names


class FriendTreeWriter:
    """Write the ``protoseg`` tree into ``path`` (an open temporary file: the caller renames it on success).

    ``append`` takes the events in the order of the input tree's entries, each with the predictions of
    its imported hits and where those hits sit in the entry. ``model_version`` (the model card's
    ``model_version``, if it has one) is written as the TObjString ``protoseg_model_version``.
    """

    def __init__(self, path: str | Path, class_names: Sequence[str], n_entries: int, source: Path,
                 model_version: str | None = None) -> None:
        import awkward as ak
        import uproot

        self.class_names = [str(c) for c in class_names]
        self.n_entries = int(n_entries)
        self.source = source
        self._fields = ["class"] + [name.removeprefix("hit_") for name in probability_branch_names(self.class_names)]
        shape = ", ".join([f'"{self._fields[0]}": int32'] + [f'"{f}": float32' for f in self._fields[1:]])
        self._file = uproot.recreate(path)
        self._file["protoseg_classes"] = json.dumps(self.class_names)
        self._file["protoseg_version"] = __version__
        if model_version is not None:
            self._file["protoseg_model_version"] = str(model_version)
        self._tree = self._file.mktree(
            TREE_NAME,
            {"protoseg_event_id": np.int64, "hit": ak.types.from_datashape(f"var * {{{shape}}}", highlevel=False)},
            field_name=lambda outer, inner: f"{outer}_{inner}",
            counter_name=lambda counted: "protoseg_n_hits",
        )
        self._entries = 0
        self._buffer: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._buffered_hits = 0

    def append(self, event_id: int, source_entry: int, source_hits: int, source_index: np.ndarray,
               hit_class: np.ndarray, hit_prob: np.ndarray) -> None:
        """One entry: ``hit_class`` [n] and ``hit_prob`` [C, n] of the imported hits at ``source_index`` [n]."""
        if source_entry != self._entries:
            raise InputError(
                f"event {event_id} comes from entry {source_entry} of the input tree where entry {self._entries} "
                "was expected: --root needs the events of a whole import-root run, in order", self.source)
        klass = np.full(source_hits, NOT_IMPORTED, dtype=np.int32)
        prob = np.full((len(self.class_names), source_hits), NOT_IMPORTED, dtype=np.float32)
        klass[source_index] = hit_class
        prob[:, source_index] = hit_prob
        self._buffer.append((int(event_id), klass, prob))
        self._buffered_hits += source_hits
        self._entries += 1
        if self._buffered_hits >= _FLUSH_HITS or len(self._buffer) >= _FLUSH_ENTRIES:
            self._flush()

    def _flush(self) -> None:
        import awkward as ak

        if not self._buffer:
            return
        counts = np.array([len(klass) for _, klass, _ in self._buffer], dtype=np.int64)
        columns = {"class": np.concatenate([klass for _, klass, _ in self._buffer])}
        prob = np.concatenate([p for _, _, p in self._buffer], axis=1)
        for k, field in enumerate(self._fields[1:]):
            columns[field] = prob[k]
        hits = ak.zip({name: ak.unflatten(values, counts) for name, values in columns.items()})
        self._tree.extend({"protoseg_event_id": np.array([e for e, _, _ in self._buffer], dtype=np.int64), "hit": hits})
        self._buffer.clear()
        self._buffered_hits = 0

    def close(self) -> None:
        """Write what is buffered and check that every entry of the input tree got its entry."""
        try:
            self._flush()
            if self._entries != self.n_entries:
                raise InputError(
                    f"holds {self._entries} events but its input tree had {self.n_entries} entries: --root needs the "
                    "events of a whole import-root run", self.source)
        finally:
            self._file.close()

    def abort(self) -> None:
        self._file.close()
