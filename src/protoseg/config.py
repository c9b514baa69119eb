"""Training configuration: defaults, YAML recipes, and ``--set key=value`` overrides with checks.

A configuration is a nested dict of plain types (it is saved as YAML in the run folder and as the
hyper-parameters of every checkpoint, so it must never hold objects). Sections, SPINE-style:

- ``data``: the image file and how it is fed (normalisation, augmentation, crop, batch size).
- ``model``: ``name`` (a ``protoseg.models`` registry name) and any builder option, e.g.
  ``model.growth_rate=12``; options are checked by the builder itself.
- ``loss``: ``name`` (a ``protoseg.losses`` registry name) and its options; ``weights: median``
  means the median class-frequency weights of the training split (``protoseg.images.class_balance``).
- ``optim``: optimiser and learning-rate schedule.
- ``trainer``: Lightning Trainer settings (epochs or steps, precision, devices, DDP, clipping, ...).
- ``seed``, ``out``: the seed every random choice flows from, and the run folder.
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

from protoseg.errors import InputError

__all__ = ["DEFAULTS", "default_config", "load_config", "apply_overrides", "set_value", "validate", "dump_config"]

_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")

# Sections whose keys are free (checked by the model / loss builders); every other key must exist in DEFAULTS.
OPEN_SECTIONS = ("model", "loss")

DEFAULTS: dict[str, Any] = {
    "seed": 2018,
    "out": "runs/protoseg",
    # Start from the weights of another model (run folder, weights file or shipped name) of the same
    # architecture and classes, instead of a random initialisation; null = random. (Fine-tuning.)
    "init_from": None,
    "data": {
        "path": None,  # image file (protoseg-images), or events file (protoseg-events) for a hit-level model
        "normalisation": "max",  # see protoseg.data.normalise
        "augment": False,
        "crop_size": None,  # [H, W] random crops for training, or null for whole images
        "batch_size": 2,
        "num_workers": 0,
        # Hit-level networks (events files): the last N events of data.path validate, unless
        # data.validation_path names an events file of its own; label_scheme as for images.
        "validation_events": 100,
        "validation_path": None,
        "label_scheme": "beam3",
        # Hit-level networks: which hits of the beam interaction are beam (protoseg.images.labels). "2018"
        # leaves the hits the 2018 rule drops in the input but out of the loss and the validation metrics.
        # An image file carries the rule it was made with (protoseg images --beam-label-rule).
        "beam_label_rule": "all",
        # Hit-level networks, rule all: the fraction of training events whose not-beam and noise hits are
        # swapped for those of another training event (chosen from the seed, the epoch and the event), so
        # that the same beam interactions meet other cosmic rays each epoch. 0 = the events as simulated.
        "overlay_fraction": 0.0,
    },
    "model": {"name": "fcdensenet103", "memory_efficient": False},
    "loss": {"name": "ce"},
    "optim": {
        "name": "adam",  # adam | adamw | sgd
        "lr": 1.0e-4,
        "weight_decay": 1.0e-4,
        "momentum": 0.9,  # sgd only
        "schedule": "plateau",  # none | plateau | cosine | onecycle
        # ReduceLROnPlateau as in the 2018 study (Keras: factor 0.75, patience 3 on the validation loss)
        "plateau_factor": 0.75,
        "plateau_patience": 3,
        "plateau_monitor": "val_loss",
        "min_lr": 1.0e-7,
        "warmup_fraction": 0.3,  # onecycle: fraction of the steps spent raising the learning rate
    },
    "trainer": {
        "max_epochs": 390,
        "max_steps": -1,  # > 0 stops after this many optimiser steps (overrides max_epochs)
        "precision": "32",  # 32 | bf16-mixed | 16-mixed
        "accelerator": "auto",  # cpu | gpu | cuda | mps | auto
        "devices": "auto",  # an int, a list of ids, or "auto"
        "num_nodes": 1,
        "strategy": "auto",  # auto | ddp | ddp_spawn | ddp_find_unused_parameters_true | fsdp ...
        "gradient_clip_val": 0.0,  # 0 = off
        "gradient_clip_algorithm": "norm",
        "accumulate_grad_batches": 1,
        "early_stopping_patience": 0,  # epochs without val mIoU improvement before stopping; 0 = off
        "check_val_every_n_epoch": 1,
        "limit_train_batches": 1.0,
        "limit_val_batches": 1.0,
        "log_every_n_steps": 10,
        "deterministic": True,  # true (on GPUs: "warn", as some CUDA kernels have none) | false | "warn"
        "channels_last": False,
        "progress_bar": True,
        "benchmark": False,  # cudnn.benchmark; non-deterministic, faster on GPUs
        # Stop once the training process has used this much CPU time (all its threads, summed over
        # resumes), in seconds; 0 = no limit. A budget that does not depend on what else the machine
        # runs: benchmarks/model_study.py gives every variant the same one.
        "cpu_time_budget_s": 0.0,
        # Stop once this much wall-clock time has passed in training (summed over resumes), in seconds;
        # 0 = no limit. For a GPU lease or a Slurm slot, where the clock, not the CPU, is what is bounded.
        # A run with both budgets stops at whichever is spent first; a one-cycle schedule follows it.
        "wall_time_budget_s": 0.0,
        # Also keep the checkpoint of every validation as checkpoints/step-K.ckpt (a time-to-quality
        # curve: each can be evaluated afterwards on events no decision saw).
        "keep_checkpoints": False,
    },
}

_CHOICES: dict[str, tuple] = {
    "optim.name": ("adam", "adamw", "sgd"),
    "data.label_scheme": ("beam3", "species"),
    "data.beam_label_rule": ("all", "2018"),
    "optim.schedule": ("none", "plateau", "cosine", "onecycle"),
    "optim.plateau_monitor": ("val_loss", "val_miou"),
    "trainer.precision": ("32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64"),
    "trainer.gradient_clip_algorithm": ("norm", "value"),
    "trainer.deterministic": (True, False, "warn"),
}

# (low, high, low inclusive) for numeric keys; high None = unbounded.
_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "seed": (0, 2**32 - 1, True),
    "data.batch_size": (1, None, True),
    "data.num_workers": (0, None, True),
    "data.validation_events": (1, None, True),
    "data.overlay_fraction": (0.0, 1.0, True),
    "optim.lr": (0.0, 10.0, False),
    "optim.weight_decay": (0.0, 1.0, True),
    "optim.momentum": (0.0, 1.0, True),
    "optim.plateau_factor": (0.0, 1.0, False),
    "optim.plateau_patience": (0, None, True),
    "optim.min_lr": (0.0, 10.0, True),
    "optim.warmup_fraction": (0.0, 1.0, False),
    "trainer.max_epochs": (1, None, True),
    "trainer.num_nodes": (1, None, True),
    "trainer.gradient_clip_val": (0.0, None, True),
    "trainer.accumulate_grad_batches": (1, None, True),
    "trainer.early_stopping_patience": (0, None, True),
    "trainer.check_val_every_n_epoch": (1, None, True),
    "trainer.log_every_n_steps": (1, None, True),
    "trainer.cpu_time_budget_s": (0.0, None, True),
    "trainer.wall_time_budget_s": (0.0, None, True),
}


def default_config() -> dict[str, Any]:
    """A fresh deep copy of DEFAULTS."""
    return copy.deepcopy(DEFAULTS)


def _merge(base: dict, update: dict, where: str, source: str) -> None:
    for key, value in update.items():
        dotted = f"{where}.{key}" if where else str(key)
        if isinstance(base.get(key), dict):
            if not isinstance(value, dict):
                raise InputError(f"'{dotted}' must be a section (a mapping), got {value!r}", source)
            if key in OPEN_SECTIONS and "name" in value and value["name"] != base[key].get("name"):
                # A recipe naming another model / loss must not inherit the previous one's options.
                base[key] = {}
            _merge(base[key], value, dotted, source)
        elif key in base or where.split(".")[0] in OPEN_SECTIONS:
            base[key] = value
        else:
            raise InputError(f"unknown configuration key '{dotted}' (known: {', '.join(sorted(base))})", source)


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """DEFAULTS updated with a YAML recipe (if given). Unknown keys outside model/loss are refused."""
    import yaml

    config = default_config()
    if path is None:
        return config
    path = Path(path)
    if not path.is_file():
        raise InputError("no such configuration file", path)
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"not valid YAML{where}", path) from None
    if recipe is None:
        return config
    if not isinstance(recipe, dict):
        raise InputError("a configuration file must be a YAML mapping of sections", path)
    _merge(config, _numbers_in(recipe), "", str(path))
    return config


def _numbers_in(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _numbers_in(v) for k, v in node.items()}
    return _yaml_number(node)


def set_value(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set ``config[a][b] = value`` for ``dotted_key`` 'a.b'; unknown keys outside model/loss are refused."""
    parts = dotted_key.split(".")
    if not all(parts):
        raise InputError(f"--set: malformed key '{dotted_key}'")
    node = config
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise InputError(f"--set: unknown configuration key '{dotted_key}' ('{'.'.join(parts[: depth + 1])}' is not a section)")
        node = node[part]
    leaf = parts[-1]
    if leaf not in node and parts[0] not in OPEN_SECTIONS:
        raise InputError(f"--set: unknown configuration key '{dotted_key}' (known in this section: {', '.join(sorted(node))})")
    if isinstance(node.get(leaf), dict):
        raise InputError(f"--set: '{dotted_key}' is a section; set one of its keys")
    if len(parts) == 2 and parts[0] in OPEN_SECTIONS and leaf == "name" and node.get("name") != value:
        # Another model / loss: the options of the previous one do not apply to it.
        node.clear()
    node[leaf] = value


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings; values are parsed as YAML scalars/lists (``1e-3``, ``[2, 2]``, ``true``)."""
    import yaml

    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise InputError(f"--set expects key=value, got '{item}'")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise InputError(f"--set {key}: cannot parse value '{text}'") from None
        set_value(config, key.strip(), _numbers_in(value))
    return config


def _yaml_number(value: Any) -> Any:
    """YAML 1.1 reads '1e-3' (no dot) as a string; read it as the number users mean."""
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_yaml_number(v) for v in value]
    return value


def _get(config: dict, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check types and ranges of every known key; return the config (normalised: precision and beam_label_rule as str).

    Raises InputError with one line naming the key, the value and what is allowed.
    """
    trainer = config["trainer"]
    if isinstance(trainer.get("precision"), int):
        trainer["precision"] = str(trainer["precision"])
    data = config.get("data")
    if isinstance(data, dict) and isinstance(data.get("beam_label_rule"), int) and not isinstance(data["beam_label_rule"], bool):
        data["beam_label_rule"] = str(data["beam_label_rule"])  # YAML reads 2018 as a number
    # Types follow DEFAULTS: an int default accepts ints, a float default accepts ints and floats.
    for section, keys in DEFAULTS.items():
        if section in OPEN_SECTIONS:
            continue
        items = [(section, keys)] if not isinstance(keys, dict) else [(f"{section}.{k}", v) for k, v in keys.items()]
        for dotted, default in items:
            value = _get(config, dotted)
            if dotted in _CHOICES:
                if value not in _CHOICES[dotted]:
                    allowed = ", ".join(str(c) for c in _CHOICES[dotted])
                    raise InputError(f"configuration '{dotted}' = {value!r} is not one of: {allowed}")
                continue
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise InputError(f"configuration '{dotted}' = {value!r} must be true or false")
            elif isinstance(default, float):
                if not _is_number(value) or not math.isfinite(value):
                    raise InputError(f"configuration '{dotted}' = {value!r} must be a number")
            elif isinstance(default, int) and dotted not in ("trainer.devices",):
                if not (isinstance(value, int) and not isinstance(value, bool)):
                    raise InputError(f"configuration '{dotted}' = {value!r} must be an integer")
            if dotted in _RANGES and _is_number(value):
                low, high, low_inclusive = _RANGES[dotted]
                below = value < low if low_inclusive else value <= low
                if below or (high is not None and value > high):
                    bound = f"{'>=' if low_inclusive else '>'} {low}" + (f" and <= {high}" if high is not None else "")
                    raise InputError(f"configuration '{dotted}' = {value!r} is out of range (must be {bound})")
    if config["trainer"]["max_steps"] != -1 and config["trainer"]["max_steps"] < 1:
        raise InputError(f"configuration 'trainer.max_steps' = {config['trainer']['max_steps']} must be >= 1, or -1 for no limit")
    for key in ("limit_train_batches", "limit_val_batches"):
        value = trainer[key]
        if not _is_number(value) or value <= 0 or (isinstance(value, float) and value > 1.0):
            raise InputError(f"configuration 'trainer.{key}' = {value!r} must be a fraction in (0, 1] or a batch count >= 1")
    devices = trainer["devices"]
    ok_devices = (
        devices == "auto"
        or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= -1 and devices != 0)
        or (isinstance(devices, list) and devices and all(isinstance(d, int) and d >= 0 for d in devices))
    )
    if not ok_devices:
        raise InputError(f"configuration 'trainer.devices' = {devices!r} must be 'auto', a positive count, -1 (all), or a list of ids")
    for key in ("accelerator", "strategy"):
        if not isinstance(trainer[key], str) or not trainer[key]:
            raise InputError(f"configuration 'trainer.{key}' = {trainer[key]!r} must be a name")
    crop = config["data"]["crop_size"]
    if crop is not None:
        if isinstance(crop, int) and not isinstance(crop, bool):
            crop = config["data"]["crop_size"] = [crop, crop]
        if not (isinstance(crop, list) and len(crop) == 2 and all(isinstance(c, int) and c > 0 for c in crop)):
            raise InputError(f"configuration 'data.crop_size' = {crop!r} must be null or [height, width] in pixels")
    if config["init_from"] is not None and (not isinstance(config["init_from"], str) or not config["init_from"]):
        raise InputError(f"configuration 'init_from' = {config['init_from']!r} must be a model (run folder, weights file or shipped name) or null")
    for key in ("path", "validation_path"):
        value = config["data"][key]
        if value is not None and not isinstance(value, str):
            raise InputError(f"configuration 'data.{key}' = {value!r} must be a file name")
    for section in OPEN_SECTIONS:
        name = config[section].get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"configuration '{section}.name' = {name!r} must be a registry name")
    if not isinstance(config["out"], str) or not config["out"]:
        raise InputError(f"configuration 'out' = {config['out']!r} must be a folder name")
    return config


def dump_config(config: dict[str, Any]) -> str:
    """The config as YAML text (key order kept), for the run folder."""
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
