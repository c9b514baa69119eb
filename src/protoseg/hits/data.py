"""Torch Dataset and Lightning DataModule over events files, for the hit-level networks.

Training reads events files directly (no image file): each item is one event on the site grid
(``protoseg.hits.sites``), and a batch concatenates events, the first coordinate saying which event a
site belongs to. Validation holds out the last ``validation_events`` events of the training file, or
reads a file of its own. Shuffling follows ``(seed, epoch)`` (``protoseg.data.EpochSeededSampler``),
so a resumed run sees the same events in the same order as an uninterrupted one.

With ``beam_label_rule`` ``2018`` the sites whose largest hit the 2018 rule drops (hits of the beam's
hadronic descendants, of any particle that is not a generator primary: ``protoseg.images.labels``) keep
their place in the input, so the network sees the whole event as it will on data, but carry the label
``IGNORE_LABEL``: the loss and the validation metrics do not count them.

With ``overlay_fraction`` f > 0 (training only, rule ``all``), a fraction f of the training events are
*overlays*: the event's beam hits with the not-beam and noise hits of another training event, drawn from
``(seed, epoch, event)``. Beam, halo and cosmic rays are independent in the detector and share the
trigger's clock, so an overlay is an event that could have happened: each epoch the same beam
interactions meet other cosmic rays, against a network that memorises its few thousand events. Hits
that overlapped in the source events stay as the simulation labelled them (a beam hit merged into a
larger cosmic one is missing from the overlay, as it is from the truth of the event it came from).

Workers open the HDF5 file lazily, on their first read: no open handle is ever pickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from protoseg.data import EpochSeededSampler
from protoseg.errors import InputError
from protoseg.events.format import LABEL_BEAM
from protoseg.hits.sites import DEFAULT_FEATURES, HitGrid, event_sites
from protoseg.images.grid import check_hit_values
from protoseg.images.labels import BEAM_LABEL_RULES, LABEL_SCHEMES, apply_beam_label_rule, hit_labels
from protoseg.losses import DEFAULT_IGNORE_INDEX

__all__ = ["HitEventsDataset", "HitDataModule", "collate_sites", "HIT_COLUMNS", "IGNORE_LABEL"]

HIT_COLUMNS = ("wire", "tick", "integral", "rms", "label", "pdg")
IGNORE_LABEL = DEFAULT_IGNORE_INDEX  # a site the beam label rule drops: no loss, no metric
_OVERLAY_STREAM = 0x0E7E  # keeps the overlay draws apart from the sampler's shuffle of the same (seed, epoch)


class HitEventsDataset(Dataset):
    """Events ``indices`` of an events file as sites: ``(coords int64 [S, 2], features float32 [S, F], label int64 [S])``."""

    def __init__(self, path: str | Path, indices: np.ndarray, grid: HitGrid = HitGrid(),
                 features: tuple[str, ...] = DEFAULT_FEATURES, label_scheme: str = "beam3", beam_label_rule: str = "all",
                 overlay_fraction: float = 0.0, seed: int = 0) -> None:
        self.path = Path(path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.grid = grid
        self.features = tuple(features)
        if label_scheme not in LABEL_SCHEMES:
            raise InputError(f"unknown label scheme '{label_scheme}' (choose from {', '.join(LABEL_SCHEMES)})")
        self.label_scheme = label_scheme
        if beam_label_rule not in BEAM_LABEL_RULES:
            raise InputError(f"unknown beam label rule '{beam_label_rule}' (choose from {', '.join(BEAM_LABEL_RULES)})")
        self.beam_label_rule = beam_label_rule
        if not 0.0 <= float(overlay_fraction) <= 1.0:
            raise InputError(f"overlay fraction must be in [0, 1], got {overlay_fraction}")
        if overlay_fraction > 0 and beam_label_rule != "all":
            raise InputError(f"overlays need beam label rule 'all' (rule {beam_label_rule} reads each event's particle table)")
        self.overlay_fraction, self.seed = float(overlay_fraction), int(seed)
        self._events = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_events"] = None
        return state

    def _file(self):
        if self._events is None:
            from protoseg.events import open_events

            self._events = open_events(self.path)
        return self._events

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        events = self._file()
        index = int(self.indices[position])
        if self.beam_label_rule == "all":
            hits = self._hits_or_overlay(events, int(position), int(epoch))
            particles = None
        else:
            event = events.read(index)
            hits, particles = event.hits, event.particles
        check_hit_values(hits, int(events.event_ids[index]), self.path)
        label = hit_labels(hits, self.label_scheme)
        if label is None:
            raise InputError("events file has no hit labels: training needs truth", self.path)
        label = label.astype(np.int64)
        if self.beam_label_rule != "all":
            if particles is None or "track_id" not in hits:
                raise InputError(f"beam label rule {self.beam_label_rule} needs the per-hit track_id and the particle table, "
                                 "which this events file does not hold", self.path)
            kept = apply_beam_label_rule({**hits, "hit_index": np.arange(len(label))}, particles, self.beam_label_rule)["hit_index"]
            ruled = np.full(len(label), IGNORE_LABEL, np.int64)
            ruled[kept] = label[kept]
            label = ruled
        sites = event_sites(hits, self.grid, self.features, label, self.path)
        return (torch.from_numpy(sites.coords), torch.from_numpy(sites.features),
                torch.from_numpy(sites.label.astype(np.int64)))

    def overlay_partner(self, position: int, epoch: int) -> int | None:
        """The position whose not-beam hits join event ``position``'s beam hits in ``epoch``, or None (the event as simulated)."""
        if self.overlay_fraction <= 0.0 or len(self.indices) < 2:
            return None
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, position, _OVERLAY_STREAM]))
        if rng.random() >= self.overlay_fraction:
            return None
        partner = int(rng.integers(len(self.indices) - 1))
        return partner + (partner >= position)  # any event but this one

    def _hits_or_overlay(self, events, position: int, epoch: int) -> dict[str, np.ndarray]:
        columns = [n for n in HIT_COLUMNS if n in events.hit_columns]
        index = int(self.indices[position])
        hits = events.read_hit_columns(index, columns)
        partner = self.overlay_partner(position, epoch)
        if partner is None:
            return hits
        if "label" not in hits:
            raise InputError("events file has no hit labels: overlays need truth", self.path)
        # the partner's hits are checked here, where its event can be named; __getitem__ checks the overlay
        partner_index = int(self.indices[partner])
        other = events.read_hit_columns(partner_index, columns)
        check_hit_values(other, int(events.event_ids[partner_index]), self.path)
        beam = np.asarray(hits["label"]) == LABEL_BEAM
        not_beam = np.asarray(other["label"]) != LABEL_BEAM
        return {name: np.concatenate([np.asarray(hits[name])[beam], np.asarray(other[name])[not_beam]]) for name in columns}


def collate_sites(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Events → one batch: coords [ΣS, 3] (event in batch, row, wire), features [ΣS, F], labels [ΣS]."""
    coords = torch.cat([torch.cat([torch.full((len(c), 1), i, dtype=torch.long), c], dim=1) for i, (c, _, _) in enumerate(items)])
    return coords, torch.cat([f for _, f, _ in items]), torch.cat([y for _, _, y in items])


class HitDataModule(pl.LightningDataModule):
    """Train and validation loaders over an events file (the last ``validation_events`` events validate),
    or over two files (``validation_path``: all of its events validate)."""

    def __init__(self, path: str | Path, validation_events: int = 100, validation_path: str | Path | None = None,
                 batch_size: int = 1, num_workers: int = 0, grid: HitGrid = HitGrid(),
                 features: tuple[str, ...] = DEFAULT_FEATURES, label_scheme: str = "beam3", seed: int = 0,
                 beam_label_rule: str = "all", overlay_fraction: float = 0.0) -> None:
        super().__init__()
        from protoseg.events import open_events

        self.path = Path(path)
        self.validation_path = Path(validation_path) if validation_path else None
        if int(batch_size) < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.grid, self.features, self.label_scheme = grid, tuple(features), label_scheme
        if beam_label_rule not in BEAM_LABEL_RULES:
            raise InputError(f"unknown beam label rule '{beam_label_rule}' (choose from {', '.join(BEAM_LABEL_RULES)})")
        self.beam_label_rule = beam_label_rule
        self.overlay_fraction = float(overlay_fraction)
        with open_events(self.path) as events:
            n_events, is_mc = len(events), events.is_mc
        if not is_mc:
            raise InputError("events file holds data (no truth): training needs simulated events", self.path)
        if self.validation_path is not None:
            with open_events(self.validation_path) as events:
                n_val, val_mc = len(events), events.is_mc
            if not val_mc or n_val == 0:
                raise InputError("validation events file is empty or holds no truth", self.validation_path)
            self.train_indices, self.val_indices = np.arange(n_events), np.arange(n_val)
        else:
            n_val = int(validation_events)
            if not 1 <= n_val < n_events:
                raise InputError(f"cannot hold out {n_val} validation events of {n_events}: "
                                 "need 1 <= data.validation_events < the number of events", self.path)
            self.train_indices, self.val_indices = np.arange(n_events - n_val), np.arange(n_events - n_val, n_events)
        self.class_names = list(LABEL_SCHEMES[label_scheme])
        self.num_classes = len(self.class_names)
        self._datasets: dict[str, HitEventsDataset] = {}

    def _dataset(self, split: str) -> HitEventsDataset:
        if split not in self._datasets:
            path = self.validation_path if split == "validation" and self.validation_path else self.path
            indices = self.train_indices if split == "train" else self.val_indices
            # Overlays are a training augmentation: validation scores the events as simulated.
            overlay = self.overlay_fraction if split == "train" else 0.0
            self._datasets[split] = HitEventsDataset(path, indices, self.grid, self.features, self.label_scheme, self.beam_label_rule,
                                                     overlay_fraction=overlay, seed=self.seed)
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self._dataset(split)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=EpochSeededSampler(len(dataset), self.seed, shuffle=shuffle),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0, collate_fn=collate_sites)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def teardown(self, stage: str | None = None) -> None:
        for dataset in self._datasets.values():
            dataset.close()
