"""protoseg: pixel-level beam / not-beam segmentation of ProtoDUNE-SP events with FC-DenseNet."""
from __future__ import annotations

from protoseg.version import __version__

__all__ = ["__version__", "load_model"]


def load_model(model: str, **kwargs):
    """Load a trained network from a run folder, a checkpoint, a weights file, or a shipped name.

    Never unpickles code: weights are safetensors and checkpoints are read with weights_only=True.
    """
    from protoseg.loading import load_model as _load_model

    return _load_model(model, **kwargs)
