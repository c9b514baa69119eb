"""The network at work on raw images: :class:`Predictor` (class and probabilities per pixel), shared by
prediction (``protoseg.inference``) and evaluation (``protoseg.evaluation``)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from protoseg.errors import InputError

__all__ = ["Predictor", "check_classes", "batch_slices", "parse_beam_threshold", "ARGMAX"]


ARGMAX = "argmax"


def parse_beam_threshold(text: str) -> float | str:
    """A ``--beam-threshold`` value: a probability in (0, 1), or ``argmax`` (the most probable class)."""
    if text.strip().lower() == ARGMAX:
        return ARGMAX
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--beam-threshold must be a probability between 0 and 1 or 'argmax', got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise InputError(f"--beam-threshold must be a probability between 0 and 1 (exclusive) or 'argmax', got {text!r}")
    return value


class Predictor:
    """Run a loaded network on batches of raw (pooled, un-normalised) images: class and probabilities per pixel.

    The networks take any image size (they pad to their downsampling multiple and crop back).

    The class of a pixel is the most probable one, unless a beam working point is set: then a pixel is
    beam when P(beam) >= ``beam_threshold`` and otherwise the most probable of the other classes. The
    working point comes from the argument, else from the model card (``decision.beam_threshold``, chosen
    when the model was shipped), else there is none. ``beam_threshold="argmax"`` ignores the card's.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", batch_size: int = 4,
                 beam_threshold: float | str | None = None) -> None:
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.card = getattr(model, "card", {})
        self.class_names: list[str] = list(self.card.get("classes", []))
        self.normalisation: str = self.card.get("input", {}).get("normalisation", "max")
        if beam_threshold is None:
            beam_threshold = (self.card.get("decision") or {}).get("beam_threshold")
        if beam_threshold == ARGMAX:
            beam_threshold = None
        if beam_threshold is not None:
            beam_threshold = float(beam_threshold)
            if not 0.0 < beam_threshold < 1.0:
                raise InputError(f"beam threshold must be a probability between 0 and 1 (exclusive), got {beam_threshold}")
            if "beam" not in self.class_names:
                raise InputError(f"a beam threshold needs a model with a 'beam' class; this one predicts {', '.join(self.class_names)}")
        self.beam_threshold: float | None = beam_threshold

    @torch.inference_mode()
    def probabilities(self, adc: np.ndarray) -> np.ndarray:
        """Softmax probabilities float32 [B, C, H, W] for raw images ``adc`` [B, H, W]."""
        from protoseg.data import normalise  # lazy: data imports Lightning

        x = torch.from_numpy(np.ascontiguousarray(normalise(np.asarray(adc, dtype=np.float32), self.normalisation), dtype=np.float32))
        logits = self.model(x[:, None].to(self.device))
        return logits.float().softmax(1).cpu().numpy()

    def predict(self, adc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pred uint8 [B, H, W], prob float32 [B, C, H, W]) for raw images [B, H, W]."""
        prob = self.probabilities(adc)
        return self.decide(prob), prob

    def decide(self, prob: np.ndarray) -> np.ndarray:
        """Class per pixel, uint8 [B, H, W], from probabilities [B, C, H, W] at this predictor's working point."""
        if self.beam_threshold is None:
            return prob.argmax(1).astype(np.uint8)
        beam = self.class_names.index("beam")
        others = prob.copy()
        others[:, beam] = -1.0
        pred = np.where(prob[:, beam] >= self.beam_threshold, beam, others.argmax(1))
        return pred.astype(np.uint8)


def check_classes(model_classes: list[str], data_classes: list[str], source: Path) -> None:
    if list(model_classes) != list(data_classes):
        raise InputError(
            f"the model predicts {len(model_classes)} classes ({', '.join(model_classes)}) but the file is labelled with "
            f"{len(data_classes)} ({', '.join(data_classes)})",
            source,
        )


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``batch_size`` items, in order."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
