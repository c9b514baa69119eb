"""The predictions file (``protoseg-predictions``): its format name and version, and its writer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PREDICTIONS_FORMAT", "PREDICTIONS_VERSION", "NO_TRUTH", "PredictionSummary", "PredictionsWriter"]

PREDICTIONS_FORMAT = "protoseg-predictions"
PREDICTIONS_VERSION = 1
# Per-hit truth of hits a beam label rule drops (predict gives them a class but does not score them).
NO_TRUTH = 255


@dataclass
class PredictionSummary:
    """What ``predict_file`` wrote: counts, and the hit-level beam numbers when the input had truth."""

    output: Path
    n_events: int
    input_format: str
    hit_metrics: dict[str, float] = field(default_factory=dict)
    displays: list[Path] = field(default_factory=list)
    root_output: Path | None = None
    beam_threshold: float | None = None  # the beam working point the classes were decided with (None: argmax)


class PredictionsWriter:
    """Grows /pred, /prob, /adc, /event_id (and /label, /hits/*) batch by batch in an open HDF5 file."""

    def __init__(self, handle, n_classes: int, height: int, width: int, with_label: bool) -> None:
        self.handle = handle
        # LZF: several times faster to write than gzip. Fletcher-32: a damaged chunk is a read error, not wrong classes.
        opts = {"compression": "lzf", "shuffle": True, "fletcher32": True}
        handle.create_dataset("pred", (0, height, width), np.uint8, maxshape=(None, height, width), chunks=(1, height, width), **opts)
        handle.create_dataset("prob", (0, n_classes, height, width), np.float16, maxshape=(None, n_classes, height, width), chunks=(1, n_classes, height, width), **opts)
        handle.create_dataset("adc", (0, height, width), np.float32, maxshape=(None, height, width), chunks=(1, height, width), **opts)
        handle.create_dataset("event_id", (0,), np.int64, maxshape=(None,), chunks=(1024,))
        if with_label:
            handle.create_dataset("label", (0, height, width), np.uint8, maxshape=(None, height, width), chunks=(1, height, width), **opts)
        self.n = 0

    def append(self, pred: np.ndarray, prob: np.ndarray, adc: np.ndarray, event_id: np.ndarray, label: np.ndarray | None) -> None:
        start, stop = self.n, self.n + len(pred)
        for name, values in (("pred", pred), ("prob", prob.astype(np.float16)), ("adc", adc), ("event_id", event_id), ("label", label)):
            if values is None or name not in self.handle:
                continue
            dataset = self.handle[name]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values
        self.n = stop
