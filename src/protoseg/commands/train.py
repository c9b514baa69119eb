"""`protoseg train`: train a Tiramisu network (Lightning: CPU, GPU, DDP, Slurm)."""
from __future__ import annotations

import argparse

HELP = "train a Tiramisu network (Lightning: CPU, GPU, DDP, Slurm); resumes a killed run"
DESCRIPTION = (
    "Train on an image file with a YAML recipe (configs/*.yaml). Common options have flags; any other "
    "configuration key is set with --set section.key=value (e.g. --set model.growth_rate=12). Started again "
    "on the same --out folder, a run resumes exactly from its checkpoints/last.ckpt."
)

# flag destination -> configuration key
FLAG_KEYS = {
    "data": "data.path",
    "out": "out",
    "model": "model.name",
    "loss": "loss.name",
    "lr": "optim.lr",
    "batch_size": "data.batch_size",
    "max_epochs": "trainer.max_epochs",
    "max_steps": "trainer.max_steps",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "strategy": "trainer.strategy",
    "precision": "trainer.precision",
    "seed": "seed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="training recipe (default: the built-in defaults of protoseg/config.py: FC-DenseNet103, Adam, cross-entropy)")
    parser.add_argument("--data", metavar="IMAGES.h5", help="image file (protoseg images)")
    parser.add_argument("--out", metavar="RUN", help="run folder (checkpoints, logs, config, weights)")
    parser.add_argument("--model", help="model name (protoseg.models.list_models())")
    parser.add_argument("--loss", help="loss name: ce, weighted_ce, epoch_weighted_ce, focal, dice, fbeta")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--batch-size", type=int, help="images per batch and per device")
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (-1: no limit)")
    parser.add_argument("--accelerator", help="cpu, gpu, cuda, mps or auto")
    parser.add_argument("--devices", help="device count, list of ids (0,1) or auto")
    parser.add_argument("--num-nodes", type=int)
    parser.add_argument("--strategy", help="auto, ddp, ddp_spawn, ... (Lightning strategies)")
    parser.add_argument("--precision", help="32, bf16-mixed or 16-mixed")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set any configuration key (repeatable)")
    parser.add_argument("--fresh", action="store_true", help="refuse to resume: fail if the run folder already holds checkpoints")


def resolve_config(args: argparse.Namespace) -> dict:
    """Defaults, then the recipe, then the flags, then --set (later wins)."""
    import yaml

    from protoseg.config import apply_overrides, load_config, set_value, validate

    config = load_config(args.config)
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "devices":
            value = yaml.safe_load(value) if "," not in value else [int(v) for v in value.split(",") if v.strip()]
        set_value(config, key, value)
    apply_overrides(config, args.set)
    return validate(config)


def run(args: argparse.Namespace) -> int:
    from protoseg.training import train

    from lightning.pytorch.utilities import rank_zero_only

    config = resolve_config(args)
    data = (config.get("data") or {}).get("path")
    if data:
        from protoseg.models import is_hit_model

        # The data loader cannot name a bad file; one pass over it first turns a NaN pixel or hit, a label
        # outside the classes or a damaged chunk into one line instead of a run that dies or learns NaN.
        if is_hit_model(config["model"]["name"]):
            from protoseg.events import validate_events_file

            for path in (data, config["data"]["validation_path"]):
                if path:
                    validate_events_file(path)
        else:
            from protoseg.images.imagefile import validate_images_file

            validate_images_file(data)
    result = train(config, resume=not args.fresh)
    if rank_zero_only.rank != 0:  # under DDP every process returns here; one report is enough
        return 0
    if result.resumed_from:
        print(f"resumed from {result.resumed_from}")
    best = f"{result.best_val_miou:.4f}" if result.best_val_miou is not None else "n/a"
    print(f"run folder: {result.run_dir}  best validation mIoU: {best}")
    if result.weights:
        print(f"weights: {result.weights} (+ {result.weights.with_suffix('.json').name})")
    return 0
