"""Model cards: the JSON that says what a network is, what it expects and what it was trained on.

A card travels with every set of weights (``RUN/model.json`` next to ``RUN/model.safetensors``, and in
the safetensors metadata under ``SAFETENSORS_CARD_KEY``). :func:`model_card` writes one from a training
configuration, :func:`build_model_from_card` rebuilds the network it describes, :func:`check_card`
checks what loading and prediction read from it, and :func:`write_weights` writes weights and card.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch

from protoseg.errors import InputError
from protoseg.fileio import atomic_output
from protoseg.version import __version__

__all__ = [
    "CARD_FORMAT",
    "IMAGE_KEYS",
    "SAFETENSORS_CARD_KEY",
    "CHECKPOINT_VAL_KEY",
    "builder_options",
    "build_model_from_card",
    "architecture_of",
    "model_card",
    "check_card",
    "write_weights",
]

CARD_FORMAT = "protoseg-model-card"
# How events become images (protoseg.images.event_to_image settings): predict applies them to events files.
IMAGE_KEYS = ("size", "pooling", "label_scheme", "spread_rms", "drop_noise", "charge_scale", "beam_label_rule")
# Where the card sits in a .safetensors file's metadata.
SAFETENSORS_CARD_KEY = "protoseg_card"
# Where a Lightning checkpoint keeps the validation metrics of its epoch (written by training, read into the card).
CHECKPOINT_VAL_KEY = "protoseg_val_metrics"


def builder_options(section: dict[str, Any]) -> dict[str, Any]:
    """The builder options of a model / loss section: everything but its name."""
    return {k: v for k, v in section.items() if k != "name"}


def build_model_from_card(architecture: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a network from the ``architecture`` entry of a model card (plain dict)."""
    from protoseg.models import build_model

    options = dict(architecture.get("options", {}))
    try:
        return build_model(
            architecture["name"],
            in_channels=int(architecture.get("in_channels", 1)),
            num_classes=int(architecture["num_classes"]),
            **options,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"cannot build the model {architecture.get('name')!r}: {exc}") from None


def architecture_of(config: dict[str, Any], num_classes: int, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """The ``architecture`` entry of a model card: registry name, channels, classes and builder options.

    With a built ``model``, its resolved ``model.config`` (every option, defaults included) is used.
    """
    resolved = dict(getattr(model, "config", None) or {})
    if resolved:
        name = resolved.pop("name")
        in_channels = int(resolved.pop("in_channels", 1))
        resolved.pop("num_classes", None)
        return {"name": name, "in_channels": in_channels, "num_classes": int(num_classes), "options": resolved}
    return {"name": config["model"]["name"], "in_channels": 1, "num_classes": int(num_classes), "options": builder_options(config["model"])}


def model_card(
    config: dict[str, Any],
    class_names: list[str],
    data_info: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    model: torch.nn.Module | None = None,
    trained_on: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON model card: what the network is, what it expects, what it was trained on, how well it does.

    ``trained_on`` describes the training machine and run (see :func:`training_machine`).
    """
    data_info = dict(data_info or {})
    architecture = architecture_of(config, len(class_names), model)
    from protoseg.models import is_hit_model

    if is_hit_model(architecture["name"]):
        from protoseg.models import model_spec

        options = {**model_spec(architecture["name"]).defaults, **architecture["options"]}
        inputs = {
            "kind": "hits",
            "shape": "coords [S, 3] int64 (event in batch, row, wire) and features [S, F] float32: the sites of "
                     "an event's collection hits (protoseg.hits.sites)",
            "grid": {"ticks_per_row": options.get("ticks_per_row", 6)},
            "features": list(options.get("features", [])),
            # the 2018 grid the hit classes are projected onto for pixel metrics and displays
            "image": {"size": [320, 320], "pooling": "max", "label_scheme": data_info.get("label_scheme", "beam3"),
                      **({"beam_label_rule": data_info["beam_label_rule"]} if data_info.get("beam_label_rule", "all") != "all" else {})},
        }
        output = "logits [S, C], one row per site (protoseg.load_model); exported TorchScript gives softmax probabilities"
    else:
        inputs = {
            "shape": "[N, 1, H, W] float32; any H and W (the network pads inside and crops back)",
            "normalisation": config["data"]["normalisation"],
            "image": {k: data_info[k] for k in IMAGE_KEYS if k in data_info},
        }
        output = "logits [N, C, H, W] (protoseg.load_model); exported TorchScript / ONNX give softmax probabilities"
    card = {
        "format": CARD_FORMAT,
        "version": 1,
        "protoseg_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "architecture": architecture,
        "classes": list(class_names),
        "input": inputs,
        "output": output,
        "training_data": {k: v for k, v in data_info.items() if k not in IMAGE_KEYS},
        "recipe": config,
        "metrics": dict(metrics or {}),
    }
    if trained_on:
        card["trained_on"] = dict(trained_on)
    return card


def check_card(card: dict[str, Any], source: Path) -> None:
    """What loading and prediction read from a model card must make sense; InputError naming the file."""
    from protoseg.data import NORMALISATIONS
    from protoseg.images.grid import check_size
    from protoseg.images.labels import LABEL_SCHEMES
    from protoseg.images.pooling import POOLINGS

    architecture, classes = card.get("architecture"), card.get("classes")
    if not isinstance(architecture, dict) or not isinstance(classes, list) or not classes:
        raise InputError("model card has no 'architecture' / 'classes' entries", source)
    if not all(isinstance(c, str) for c in classes) or not isinstance(architecture.get("options", {}), dict):
        raise InputError("model card: 'classes' must be names and 'architecture.options' an object", source)
    num_classes = architecture.get("num_classes")
    if not isinstance(num_classes, int) or num_classes != len(classes):
        raise InputError(f"model card is inconsistent: {num_classes} outputs for {len(classes)} classes", source)
    inputs = card.get("input", {})
    image = inputs.get("image", {}) if isinstance(inputs, dict) else None
    if not isinstance(image, dict):
        raise InputError("model card: 'input' and 'input.image' must be objects", source)
    if inputs.get("normalisation", "max") not in NORMALISATIONS:
        raise InputError(f"model card: unknown normalisation {inputs.get('normalisation')!r} (known: {', '.join(NORMALISATIONS)})", source)
    if image.get("size") is not None:
        check_size(image["size"], source)
    for key, known in (("pooling", POOLINGS), ("label_scheme", tuple(LABEL_SCHEMES))):
        if image.get(key) is not None and image[key] not in known:
            raise InputError(f"model card: unknown {key} {image[key]!r} (known: {', '.join(known)})", source)


def write_weights(module_or_model: torch.nn.Module, card: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (.safetensors, the card JSON in its metadata too) and the card next to it as ``.json``."""
    from safetensors.torch import save_file

    path = Path(path)
    inner = getattr(module_or_model, "model", None)  # a training module (SegmentationModule) holds its network
    model = inner if isinstance(inner, torch.nn.Module) else module_or_model
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    card_text = json.dumps(card, indent=2, sort_keys=False)
    card_path = path.with_suffix(".json")
    with atomic_output(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={SAFETENSORS_CARD_KEY: json.dumps(card)})
    with atomic_output(card_path) as tmp:
        Path(tmp).write_text(card_text + "\n")
    return path, card_path
