"""Training with Lightning: the LightningModule over the model and loss registries, and the Trainer set-up.

One function, :func:`train`, takes a resolved configuration (``protoseg.config``) and runs it in a run
folder::

    RUN/config.yaml                 the resolved configuration of the latest start
    RUN/checkpoints/best.ckpt       best validation mIoU      RUN/checkpoints/last.ckpt   latest state
    RUN/tensorboard/                TensorBoard event files   RUN/csv/version_K/metrics.csv  one per start
    RUN/model.safetensors           weights of the best checkpoint, and RUN/model.json its model card

Starting ``train`` again on a run folder that holds ``checkpoints/last.ckpt`` resumes from it exactly:
Lightning restores the optimiser, scheduler and loop state, and :class:`SegmentationModule` restores the
random-number generators it saved, so the continued run takes the same steps as an uninterrupted one.
Checkpoints are always read with ``weights_only=True``: they hold tensors and plain types only.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from protoseg.config import dump_config, validate
from protoseg.errors import InputError
from protoseg.fileio import atomic_output
from protoseg.modelcards import (  # architecture_of, model_card, write_weights: also importable from here
    CHECKPOINT_VAL_KEY,
    architecture_of,
    build_model_from_card,
    builder_options,
    model_card,
    write_weights,
)

__all__ = ["SegmentationModule", "HitSegmentationModule", "RunClock", "TrainResult", "train", "training_machine", "build_model_from_card", "architecture_of", "model_card", "write_weights"]

_RNG_KEY = "protoseg_rng_states"


class SegmentationModule(pl.LightningModule):
    """A segmentation network and its loss, trained with the optimiser and schedule of ``config['optim']``.

    Hyper-parameters (saved in every checkpoint) are plain: the resolved config, the class names and the
    image settings of the training data, so a checkpoint can be rebuilt without unpickling any object.
    """

    def __init__(self, config: dict[str, Any], class_names: list[str], data_info: dict[str, Any] | None = None) -> None:
        super().__init__()
        from protoseg.losses import build_loss

        self.save_hyperparameters({"config": config, "class_names": list(class_names), "data_info": dict(data_info or {})})
        self.config = config
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.architecture = architecture_of(config, self.num_classes)
        self.model = build_model_from_card(self.architecture)
        try:
            self.loss = build_loss(config["loss"]["name"], **builder_options(config["loss"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"cannot build the loss {config['loss']['name']!r}: {exc}") from None
        self.channels_last = bool(config["trainer"].get("channels_last", False))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        from protoseg.metrics import SegmentationMetrics

        self.val_metrics = SegmentationMetrics(self.num_classes)
        self.last_val_metrics: dict[str, Any] = {}

    # -- steps ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        # Losses whose weights follow the epoch (epoch_weighted_ce) are told which epoch this is.
        set_epoch = getattr(self.loss, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits.float(), y)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        self.val_metrics.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        # compute() sums the confusion matrices of all DDP ranks: the IoUs are those of the whole split.
        result = self.val_metrics.compute()
        self.val_metrics.reset()
        per_class = result["iou"].double().cpu()
        miou = float(torch.nanmean(per_class))
        self.log("val_miou", miou, prog_bar=True, sync_dist=False)
        for name, value in zip(self.class_names, per_class.tolist()):
            self.log(f"val_iou_{name}", value, sync_dist=False)
        self.last_val_metrics = {
            "epoch": int(self.current_epoch),
            "step": int(self.global_step),
            "miou": miou,
            "iou": {name: float(v) for name, v in zip(self.class_names, per_class.tolist())},
            "miou_per_image": float(result["miou_per_image"]),
            "confusion": result["confusion"].cpu().tolist(),
            **getattr(self, "run_clock", {}),
        }

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(1)


    # -- optimiser -------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optim = self.config["optim"]
        params = self.model.parameters()
        if optim["name"] == "adam":
            optimizer = torch.optim.Adam(params, lr=optim["lr"], weight_decay=optim["weight_decay"])
        elif optim["name"] == "adamw":
            optimizer = torch.optim.AdamW(params, lr=optim["lr"], weight_decay=optim["weight_decay"])
        else:
            optimizer = torch.optim.SGD(params, lr=optim["lr"], momentum=optim["momentum"], weight_decay=optim["weight_decay"], nesterov=optim["momentum"] > 0)
        schedule = optim["schedule"]
        if schedule == "none":
            return optimizer
        if schedule == "plateau":
            monitor = optim["plateau_monitor"]
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min" if monitor == "val_loss" else "max",
                factor=optim["plateau_factor"],
                patience=optim["plateau_patience"],
                min_lr=optim["min_lr"],
            )
            every = int(self.config["trainer"]["check_val_every_n_epoch"])
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": "epoch", "frequency": every}}
        clock = next((cb for cb in self.trainer.callbacks if isinstance(cb, RunClock)), None)
        if schedule == "onecycle" and clock is not None and clock.has_budget:
            # A run bounded by CPU or wall time has no known step count: the cycle follows the budget instead.
            scheduler = BudgetOneCycle(optimizer, max_lr=optim["lr"], warmup_fraction=optim["warmup_fraction"], clock=clock)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        total_steps = int(self.trainer.estimated_stepping_batches)
        if schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1), eta_min=optim["min_lr"])
        else:  # onecycle
            # OneCycleLR needs more than one step in each phase: short runs (a few steps) stretch the warm-up.
            total_steps = max(total_steps, 3)
            warmup = min(max(optim["warmup_fraction"], 1.5 / total_steps), 0.9)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optim["lr"], total_steps=total_steps, pct_start=warmup)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- exact resume ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning does not save the global generators; without them a resumed run would shuffle and
        # drop out differently from an uninterrupted one. Stored as tensors / plain types (weights_only).
        np_state = np.random.get_state()
        states: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "numpy_rest": [str(np_state[0]), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint[_RNG_KEY] = states
        checkpoint[CHECKPOINT_VAL_KEY] = dict(self.last_val_metrics)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(_RNG_KEY)
        if states:
            torch.set_rng_state(states["torch"])
            name, pos, has_gauss, cached = states["numpy_rest"]
            np.random.set_state((name, states["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
            version, internal, gauss = states["python"]
            random.setstate((version, tuple(internal), gauss))
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
        self.last_val_metrics = dict(checkpoint.get(CHECKPOINT_VAL_KEY) or {})



class HitSegmentationModule(SegmentationModule):
    """A hit-level network (sparse, over the sites of events: ``protoseg.hits``) and its loss.

    Batches are ``(coords [S, 3], features [S, F], labels [S])`` (``protoseg.hits.data.collate_sites``).
    The image losses and metrics serve unchanged: the S sites are presented as one image of S × 1 pixels.
    """

    def __init__(self, config: dict[str, Any], class_names: list[str], data_info: dict[str, Any] | None = None) -> None:
        super().__init__(config, class_names, data_info)
        from protoseg.hits.data import IGNORE_LABEL
        from protoseg.metrics import SegmentationMetrics

        # sites the beam label rule drops (data.beam_label_rule 2018) count in neither loss nor metrics
        self.val_metrics = SegmentationMetrics(self.num_classes, ignore_index=IGNORE_LABEL)

    def forward(self, coords: torch.Tensor, features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.model(coords, features)

    @staticmethod
    def _as_image(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits.t()[None, :, :, None], labels[None, :, None]

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        coords, features, labels = batch
        logits, target = self._as_image(self(coords, features), labels)
        loss = self.loss(logits, target)
        n_events = int(coords[-1, 0]) + 1 if len(coords) else 0
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n_events, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        coords, features, labels = batch
        logits, target = self._as_image(self(coords, features), labels)
        n_events = int(coords[-1, 0]) + 1 if len(coords) else 0
        self.log("val_loss", self.loss(logits.float(), target), on_epoch=True, prog_bar=True, batch_size=n_events, sync_dist=True)
        self.val_metrics.update(logits, target)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        coords, features = batch[0], batch[1]
        return self(coords, features).softmax(1)


class RunClock(pl.Callback):
    """Wall-clock and CPU time of a training run, summed over resumes; stops at a CPU-time budget.

    CPU time is ``time.process_time()``: every thread of this process (PyTorch's intra-op threads
    included), so it measures the work done whatever else the machine runs. Both clocks are logged at
    every validation (``wall_time_s``, ``cpu_time_s``: the training curves against time) and saved in
    checkpoints, so a resumed run continues its clocks and its budget.
    """

    def __init__(self, cpu_budget_s: float = 0.0, wall_budget_s: float = 0.0) -> None:
        self.cpu_budget_s = float(cpu_budget_s)
        self.wall_budget_s = float(wall_budget_s)
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self._marks: tuple[float, float] | None = None

    def _tick(self) -> None:
        now = (time.perf_counter(), time.process_time())
        if self._marks is not None:
            self.wall_s += now[0] - self._marks[0]
            self.cpu_s += now[1] - self._marks[1]
        self._marks = now

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._marks = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._tick()
        if self.has_budget and self.budget_fraction() >= 1.0:
            trainer.should_stop = True

    @property
    def has_budget(self) -> bool:
        return self.cpu_budget_s > 0 or self.wall_budget_s > 0

    def budget_fraction(self) -> float:
        """The fraction of the budget spent: of the CPU or the wall-clock one, whichever is further along."""
        fractions = [0.0]
        if self.cpu_budget_s > 0:
            fractions.append(self.cpu_s / self.cpu_budget_s)
        if self.wall_budget_s > 0:
            fractions.append(self.wall_s / self.wall_budget_s)
        return max(fractions)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._tick()
        pl_module.log("wall_time_s", self.wall_s, sync_dist=False)
        pl_module.log("cpu_time_s", self.cpu_s, sync_dist=False)
        # Whichever of this hook and the module's runs first, the validation record gets the clocks.
        pl_module.run_clock = {"wall_time_s": round(self.wall_s, 1), "cpu_time_s": round(self.cpu_s, 1)}
        if isinstance(getattr(pl_module, "last_val_metrics", None), dict):
            pl_module.last_val_metrics.update(pl_module.run_clock)

    def state_dict(self) -> dict[str, float]:
        self._tick()
        return {"wall_s": self.wall_s, "cpu_s": self.cpu_s}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.wall_s = float(state_dict.get("wall_s", 0.0))
        self.cpu_s = float(state_dict.get("cpu_s", 0.0))


class BudgetOneCycle(torch.optim.lr_scheduler.LRScheduler):
    """One-cycle learning rate over a CPU- or wall-time budget instead of a step count.

    The shape is torch's OneCycleLR with its defaults (cosine warm-up from max_lr / 25 over
    ``warmup_fraction`` of the budget, cosine decay to max_lr / 25e4), evaluated at the fraction of its
    budget that the run's :class:`RunClock` has used (:meth:`RunClock.budget_fraction`). Variants of
    different speed given the same budget thus all warm up and anneal completely. (OneCycleLR also
    cycles Adam's beta1; this does not.)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float, warmup_fraction: float, clock: RunClock,
                 div_factor: float = 25.0, final_div_factor: float = 1.0e4) -> None:
        self.max_lr = float(max_lr)
        self.warmup_fraction = float(warmup_fraction)
        self.initial_lr = self.max_lr / div_factor
        self.final_lr = self.initial_lr / final_div_factor
        self.clock = clock
        super().__init__(optimizer)

    def lr_at(self, fraction: float) -> float:
        """The learning rate after ``fraction`` (0 to 1) of the budget."""
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction < self.warmup_fraction:
            start, end, pct = self.initial_lr, self.max_lr, fraction / self.warmup_fraction
        else:
            start, end, pct = self.max_lr, self.final_lr, (fraction - self.warmup_fraction) / (1.0 - self.warmup_fraction)
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)

    def get_lr(self) -> list[float]:
        lr = self.lr_at(self.clock.budget_fraction())
        return [lr for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "clock"}  # the clock saves itself


def training_machine(trainer: pl.Trainer | None = None) -> dict[str, Any]:
    """Where a model was trained: processor, cores, accelerator, torch version, number of processes."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if trainer is not None:
        info["accelerator"] = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
        info["processes"] = int(trainer.world_size)
        info["precision"] = str(trainer.precision)
    return info


@dataclass
class TrainResult:
    """Where a training run left its outputs, and its best validation numbers."""

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path
    weights: Path | None
    best_val_miou: float | None
    resumed_from: Path | None


def _data_info(path: Path) -> tuple[list[str], dict[str, Any]]:
    """Class names and image settings of an image file; refuses empty train / validation splits."""
    from protoseg.images.imagefile import SPLIT_NAMES, open_images

    with open_images(path) as images:
        counts = {name: int(np.count_nonzero(images.split == code)) for code, name in enumerate(SPLIT_NAMES)}
        for name in SPLIT_NAMES[:2]:
            if counts[name] == 0:
                raise InputError(f"the {name} split is empty (images per split: {counts})", path)
        if images.label is None:
            raise InputError("image file has no labels: training needs truth", path)
        keys = ("pooling", "label_scheme", "spread_rms", "drop_noise", "charge_scale", "beam_label_rule", "source", "selection")
        info = {key: images.attrs[key] for key in keys if key in images.attrs}
        info["size"] = list(images.size)
        info["file"] = str(path)
        info["n_images"] = counts
        return list(images.class_names), info


def _hit_options(config: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """The site grid and features a hit-level model of ``config`` reads (the registry's defaults filled in)."""
    from protoseg.hits.sites import HitGrid, check_features
    from protoseg.models import model_spec

    options = {**model_spec(config["model"]["name"]).defaults, **config["model"]}
    return HitGrid(int(options["ticks_per_row"])), check_features(options["features"])


def _hit_data_info(path: Path, config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Class names and event settings of the events file(s) a hit-level model trains on."""
    from protoseg.events import open_events
    from protoseg.fileio import hdf5_format
    from protoseg.images.labels import LABEL_SCHEMES

    data_cfg = config["data"]
    for role, candidate in (("data.path", path), ("data.validation_path", data_cfg["validation_path"])):
        if candidate is not None and hdf5_format(Path(candidate)) != "protoseg-events":
            raise InputError(f"{role}: model {config['model']['name']!r} works on hits and trains on an events file "
                             "(protoseg simulate / import-root), not on this file", candidate)
    with open_events(path) as events:
        sim = events.config
    grid, features = _hit_options(config)
    info = {"kind": "events", "file": str(path), "label_scheme": data_cfg["label_scheme"], "beam_label_rule": data_cfg["beam_label_rule"],
            "grid": grid.as_dict(),
            "features": list(features), "seed": (sim.get("run") or {}).get("seed") if isinstance(sim.get("run"), dict) else None}
    if data_cfg["overlay_fraction"] > 0:
        info["overlay_fraction"] = float(data_cfg["overlay_fraction"])
    if data_cfg["validation_path"]:
        info["validation_file"] = str(data_cfg["validation_path"])
    else:
        info["validation_events"] = int(data_cfg["validation_events"])
    return list(LABEL_SCHEMES[data_cfg["label_scheme"]]), info


def _hit_datamodule(path: Path, config: dict[str, Any]):
    from protoseg.hits.data import HitDataModule

    grid, features = _hit_options(config)
    data_cfg = config["data"]
    return HitDataModule(path, validation_events=data_cfg["validation_events"], validation_path=data_cfg["validation_path"],
                         batch_size=data_cfg["batch_size"], num_workers=data_cfg["num_workers"], grid=grid, features=features,
                         label_scheme=data_cfg["label_scheme"], seed=config["seed"], beam_label_rule=data_cfg["beam_label_rule"],
                         overlay_fraction=data_cfg["overlay_fraction"])


def _median_weights(path: Path, num_classes: int, block: int = 64) -> list[float]:
    """Median class-frequency weights of the training split (the 2018 study's weighting)."""
    from protoseg.images.balance import class_balance
    from protoseg.images.imagefile import open_images

    with open_images(path) as images:
        train = images.indices("train")
        blocks = (images.label[train[i : i + block].tolist()] for i in range(0, len(train), block))
        return [float(w) for w in class_balance(blocks, num_classes)["median_weights"]]


def _check_resumable(checkpoint_path: Path, config: dict[str, Any], class_names: list[str]) -> None:
    """Refuse to resume a checkpoint that is corrupt, or of another network or class list than this run."""
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # pickle.UnpicklingError (refused globals), RuntimeError / EOFError (corrupt)
        raise InputError(f"cannot resume: checkpoint is corrupt or not plain data ({exc.__class__.__name__})", checkpoint_path) from None
    saved = (checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
    if "config" not in saved or "class_names" not in saved:
        raise InputError("cannot resume: not a protoseg training checkpoint", checkpoint_path)
    if list(saved["class_names"]) != list(class_names):
        raise InputError(f"cannot resume: trained on classes {saved['class_names']}, the data has {class_names}; choose a new --out", checkpoint_path)
    if saved["config"]["model"] != config["model"]:
        raise InputError(f"cannot resume: trained with model {saved['config']['model']}, asked for {config['model']}; choose a new --out", checkpoint_path)
    saved_rule = (saved["config"].get("data") or {}).get("beam_label_rule", "all")
    if saved_rule != config["data"]["beam_label_rule"]:
        raise InputError(f"cannot resume: trained with beam label rule {saved_rule}, asked for {config['data']['beam_label_rule']}; "
                         "choose a new --out", checkpoint_path)


def _initialise_from(module: SegmentationModule, source: str) -> bool:
    """Copy the weights of ``source`` (any ``load_model`` input) into ``module``; the same network only.

    A hit-level network may read a subset of ``source``'s site features (``model.features``): its input
    layer keeps the columns of the features it reads.

    Same classes: every weight is copied. Other classes (e.g. the species scheme from a beam3 model):
    the network body is copied and the 1x1 classifier, whose shape depends on the classes, starts
    from its fresh initialisation: the body's features (tracks, showers, where the beam enters) serve
    any label scheme. Returns True when the classifier was copied too.
    """
    from protoseg.loading import load_model

    def network(architecture: dict[str, Any]) -> dict[str, Any]:
        # memory_efficient picks a training path and norm_statistics which statistics normalise, not a
        # different network (the same weights); the classes are checked below
        plain = json.loads(json.dumps(architecture))
        plain.get("options", {}).pop("memory_efficient", None)
        plain.get("options", {}).pop("norm_statistics", None)
        plain.pop("num_classes", None)
        return plain

    def without_features(architecture: dict[str, Any]) -> dict[str, Any]:
        plain = network(architecture)
        plain.get("options", {}).pop("features", None)
        plain.pop("in_channels", None)
        return plain

    # attention block kinds of the hit-level network, and the prefix of their weights
    attention_kinds = {"attention_blocks": "attention.", "decoder_attention_blocks": "decoder_attention.",
                       "fine_decoder_attention_blocks": "fine_decoder_attention."}

    def without_attention(architecture: dict[str, Any]) -> dict[str, Any]:
        plain = network(architecture)
        for option in (*attention_kinds, "attention_heads"):
            plain.get("options", {}).pop(option, None)
        return plain

    trained = load_model(source)
    card = getattr(trained, "card", {})
    mine = network(architecture_of(module.config, module.num_classes, module.model))
    state = trained.state_dict()
    theirs_arch = network(card.get("architecture", {}))
    # A hit-level network without (some kind of) attention blocks into the same one with them: new blocks
    # start as the identity (protoseg.models.sparse_unet.GlobalAttention), so the new network starts as the
    # trained one. Blocks it already has must be kept as they are (same number, same heads).
    theirs_options, mine_options = theirs_arch.get("options", {}), mine.get("options", {})
    added = [kind for kind in attention_kinds if not theirs_options.get(kind) and mine_options.get(kind)]
    kept = [kind for kind in attention_kinds if theirs_options.get(kind)]
    adds_attention = (bool(added) and without_attention(theirs_arch) == without_attention(mine)
                      and all(theirs_options.get(kind) == mine_options.get(kind) for kind in kept)
                      and (not kept or theirs_options.get("attention_heads") == mine_options.get("attention_heads")))
    if adds_attention:
        if list(card.get("classes", [])) != module.class_names:
            raise InputError(f"init_from: it predicts {card.get('classes')}, the data has {module.class_names}: attention blocks "
                             "are added to a network of the same classes only", source)
        missing, unexpected = module.model.load_state_dict(state, strict=False)
        new_prefixes = tuple(attention_kinds[kind] for kind in added)
        if unexpected or any(not name.startswith(new_prefixes) for name in missing):
            raise InputError(f"init_from: its weights do not fit the configured network ({(unexpected or missing)[0]})", source)
        print(f"init_from {source}: the same network with fewer attention blocks; its weights copied, "
              + ", ".join(f"{mine_options[kind]} {kind.replace('_blocks', '')} blocks" for kind in added) + " added as the identity",
              flush=True)
        return True
    if theirs_arch != mine:
        old_features = list(theirs_arch.get("options", {}).get("features") or [])
        new_features = list(mine.get("options", {}).get("features") or [])
        # A hit-level network that reads fewer site features (e.g. no rms, for hit dumps without it): the
        # same network but its input layer, whose columns are the features: keep the columns of those it reads.
        if (without_features(theirs_arch) == without_features(mine) and new_features and set(new_features) <= set(old_features)
                and "stem.weight" in state):
            columns = [old_features.index(name) for name in new_features]
            state = {**state, "stem.weight": state["stem.weight"][:, columns]}
            print(f"init_from {source}: it reads the site features {old_features}, this network {new_features}; "
                  "input-layer columns of the features kept copied", flush=True)
        else:
            raise InputError(f"init_from: its network {theirs_arch} is not the one configured ({mine})", source)
    theirs = list(card.get("classes", []))
    if theirs == module.class_names:
        module.model.load_state_dict(state)
        return True
    if not theirs or theirs[0] != module.class_names[0]:
        raise InputError(f"init_from: it predicts {theirs or 'unknown classes'}, the data has {module.class_names}: "
                         f"only the classifier may differ, and class 0 must be the same", source)
    body = {name: value for name, value in state.items() if not name.startswith("classifier.")}
    missing, unexpected = module.model.load_state_dict(body, strict=False)
    if unexpected or any(not name.startswith("classifier.") for name in missing):
        raise InputError(f"init_from: its weights do not fit the configured network ({(unexpected or missing)[0]})", source)
    print(f"init_from {source}: it predicts {theirs}, the data has {module.class_names}; "
          "network body copied, classifier trained from scratch", flush=True)
    return False


def _build_trainer(config: dict[str, Any], run_dir: Path, callbacks: list, resumed: bool) -> pl.Trainer:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    trainer_cfg = config["trainer"]
    loggers = [
        TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False),
        CSVLogger(save_dir=str(run_dir), name="csv"),  # a new version_K per start: Lightning's CSV writer truncates
    ]
    clip = trainer_cfg["gradient_clip_val"] or None
    deterministic = trainer_cfg["deterministic"]
    on_gpu = trainer_cfg["accelerator"] in ("gpu", "cuda") or (trainer_cfg["accelerator"] == "auto" and torch.cuda.is_available())
    if deterministic is True and on_gpu:
        # Some CUDA kernels (weighted nll_loss2d, ...) have no deterministic version: use one where it exists.
        deterministic = "warn"
    try:
        return pl.Trainer(
            default_root_dir=str(run_dir),
            accelerator=trainer_cfg["accelerator"],
            devices=trainer_cfg["devices"],
            num_nodes=trainer_cfg["num_nodes"],
            strategy=trainer_cfg["strategy"],
            precision=trainer_cfg["precision"],
            max_epochs=trainer_cfg["max_epochs"],
            max_steps=trainer_cfg["max_steps"],
            gradient_clip_val=clip,
            gradient_clip_algorithm=trainer_cfg["gradient_clip_algorithm"] if clip else None,
            accumulate_grad_batches=trainer_cfg["accumulate_grad_batches"],
            check_val_every_n_epoch=trainer_cfg["check_val_every_n_epoch"],
            limit_train_batches=trainer_cfg["limit_train_batches"],
            limit_val_batches=trainer_cfg["limit_val_batches"],
            log_every_n_steps=trainer_cfg["log_every_n_steps"],
            deterministic=deterministic,
            benchmark=trainer_cfg["benchmark"],
            enable_progress_bar=trainer_cfg["progress_bar"],
            enable_model_summary=not resumed,
            logger=loggers,
            callbacks=callbacks,
        )
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"cannot set up the trainer: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # lightning's MisconfigurationException and friends
        if type(exc).__name__.endswith("MisconfigurationException"):
            raise InputError(f"cannot set up the trainer: {str(exc).splitlines()[0]}") from None
        raise


def train(config: dict[str, Any], resume: bool = True) -> TrainResult:
    """Train the network of ``config`` in the run folder ``config['out']``; resume there if it holds a last checkpoint."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from protoseg.data import ImageDataModule

    config = validate(config)
    data_cfg = config["data"]
    if not data_cfg["path"]:
        raise InputError("no training data: give --data IMAGES.h5 or set data.path in the configuration")
    data_path = Path(data_cfg["path"])
    from protoseg.models import is_hit_model

    hit_model = is_hit_model(config["model"]["name"])
    if not hit_model and data_cfg["beam_label_rule"] != "all":
        raise InputError("data.beam_label_rule applies to hit-level networks trained on events files; an image file "
                         "carries the rule it was made with (protoseg images --beam-label-rule)", data_path)
    if data_cfg["overlay_fraction"] > 0 and (not hit_model or data_cfg["beam_label_rule"] != "all"):
        raise InputError("data.overlay_fraction swaps the not-beam hits of events: it applies to hit-level networks "
                         "trained on events files under beam label rule 'all'", data_path)
    class_names, data_info = _hit_data_info(data_path, config) if hit_model else _data_info(data_path)
    if config["loss"].get("weights") == "median" and hit_model:
        raise InputError("loss weights 'median' are the image classes' pixel weights; give a hit-level model its weights as a list")
    if config["loss"].get("weights") == "median":
        config["loss"]["weights"] = _median_weights(data_path, len(class_names))
        data_info["class_weights"] = "median class-frequency weights of the training split"

    run_dir = Path(config["out"])
    checkpoints = run_dir / "checkpoints"
    last = checkpoints / "last.ckpt"
    has_checkpoints = checkpoints.is_dir() and any(checkpoints.glob("*.ckpt"))
    if has_checkpoints and not resume:
        raise InputError("run folder already holds checkpoints (a fresh run needs a new --out)", run_dir)
    if has_checkpoints and not last.is_file():
        raise InputError("run folder has checkpoints but no checkpoints/last.ckpt to resume from; choose a new --out", run_dir)
    resume_from = last if has_checkpoints else None
    # Slurm: Lightning saves RUN/hpc_ckpt_K.ckpt on SIGUSR1 before requeueing; resume from it when newer.
    hpc = sorted(run_dir.glob("hpc_ckpt_*.ckpt"), key=lambda p: p.stat().st_mtime)
    if resume and hpc and (resume_from is None or hpc[-1].stat().st_mtime > resume_from.stat().st_mtime):
        resume_from = hpc[-1]

    if resume_from is not None:
        _check_resumable(resume_from, config, class_names)

    pl.seed_everything(config["seed"], workers=True, verbose=False)
    if config["init_from"]:
        data_info["initialised_from"] = str(config["init_from"])
    module = (HitSegmentationModule if hit_model else SegmentationModule)(config, class_names, data_info)
    if config["init_from"] and resume_from is None and not _initialise_from(module, config["init_from"]):
        data_info["initialised_from"] += " (network body; classifier trained from scratch for these classes)"
        module.hparams["data_info"]["initialised_from"] = data_info["initialised_from"]
    datamodule = _hit_datamodule(data_path, config) if hit_model else ImageDataModule(
        str(data_path),
        batch_size=data_cfg["batch_size"],
        num_workers=data_cfg["num_workers"],
        normalisation=data_cfg["normalisation"],
        augment=data_cfg["augment"],
        crop_size=tuple(data_cfg["crop_size"]) if data_cfg["crop_size"] else None,
        seed=config["seed"],
    )
    best_cb = ModelCheckpoint(
        dirpath=str(checkpoints),
        filename="best",
        monitor="val_miou",
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    callbacks: list = [best_cb, LearningRateMonitor(logging_interval="epoch"), RunClock(config["trainer"]["cpu_time_budget_s"], config["trainer"]["wall_time_budget_s"])]
    if config["trainer"]["keep_checkpoints"]:
        callbacks.append(ModelCheckpoint(dirpath=str(checkpoints), filename="step-{step}", monitor="val_loss", mode="min", save_top_k=-1,
                                         auto_insert_metric_name=False, enable_version_counter=False))
    if config["trainer"]["early_stopping_patience"] > 0:
        callbacks.append(EarlyStopping(monitor="val_miou", mode="max", patience=config["trainer"]["early_stopping_patience"]))
    trainer = _build_trainer(config, run_dir, callbacks, resumed=resume_from is not None)

    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(run_dir / "config.yaml") as tmp:
            Path(tmp).write_text(dump_config(config))
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None, weights_only=True)
    # A run stopped by max_steps in the middle of an epoch has not written last.ckpt for its final step.
    if getattr(best_cb, "_last_global_step_saved", -1) != trainer.global_step or not last.is_file():
        trainer.save_checkpoint(str(last), weights_only=False)  # Lightning's flag: the full training state

    best_path = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    weights = None
    best_score = float(best_cb.best_model_score) if best_cb.best_model_score is not None else None
    if trainer.is_global_zero:
        source = best_path if best_path and best_path.is_file() else last
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
        state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        network = build_model_from_card(architecture_of(config, len(class_names)))
        network.load_state_dict(state)
        val_metrics = dict(checkpoint.get(CHECKPOINT_VAL_KEY) or {})
        val_metrics["checkpoint"] = source.name
        clock = next((cb for cb in trainer.callbacks if isinstance(cb, RunClock)), None)
        trained_on = training_machine(trainer)
        if clock is not None:
            trained_on.update({"wall_time_s": round(clock.wall_s, 1), "cpu_time_s": round(clock.cpu_s, 1),
                               "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch)})
        card = model_card(config, class_names, data_info, {"validation": val_metrics}, network, trained_on)
        weights, _ = write_weights(network, card, run_dir / "model.safetensors")
    return TrainResult(run_dir, best_path, last, weights, best_score, resume_from)
