"""Training, evaluation and prediction throughput (images/s) of a protoseg recipe.

Training goes through the real path (``protoseg.training.SegmentationModule`` in a Lightning Trainer
with the recipe's optimiser, loss and precision); the clock starts after ``--warmup`` steps and stops
after ``--steps`` more. Evaluation / prediction time ``protoseg.inference.Predictor`` (normalise,
forward, softmax, argmax, copy back to host) on the same images.

``--synthetic`` needs no data file: event-like images (~6% lit pixels, log-uniform values) with
labels derived from them, so it runs anywhere torch, lightning and protoseg are installed.

Examples::

    python benchmarks/bench_train_eval.py --config configs/cpu.yaml --synthetic            # CPU recipe
    python benchmarks/bench_train_eval.py --device cuda --precision bf16-mixed --channels-last \\
        --model fcdensenet103 --synthetic --batch-size 2 --size 320 320                         # seed2018 on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch


def synthetic_batch(n: int, height: int, width: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Event-like raw images [n, H, W] and labels: lit pixels split between classes 1.. by value."""
    rng = np.random.default_rng(seed)
    lit = rng.random((n, height, width)) < 0.06
    adc = np.where(lit, np.exp(rng.uniform(np.log(20.0), np.log(3000.0), size=lit.shape)), 0.0).astype(np.float32)
    label = np.zeros(lit.shape, dtype=np.int64)
    if num_classes > 1:
        label[lit] = 1 + (adc[lit] > 300.0).astype(np.int64) % (num_classes - 1)
    return torch.from_numpy(adc), torch.from_numpy(label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="recipe YAML (model, loss, optimiser, batch size); default: built-in defaults")
    parser.add_argument("--model", help="override the recipe's model name (e.g. fcdensenet103)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config key")
    parser.add_argument("--synthetic", action="store_true", help="synthetic event-like images (no data file)")
    parser.add_argument("--data", help="image file instead of --synthetic (its training split is used)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default=None, help="32, bf16-mixed, 16-mixed (default: the recipe's)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="image size (default: the recipe's crop, else 320 320)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--eval-images", type=int, default=16)
    parser.add_argument("--eval-size", type=int, nargs=2, default=(320, 320), metavar=("H", "W"), help="evaluation image size (synthetic; default 320 320)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not args.synthetic and not args.data:
        parser.error("give --synthetic or --data IMAGES.h5")
    if args.threads:
        torch.set_num_threads(args.threads)

    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from protoseg.config import apply_overrides, load_config, set_value, validate
    from protoseg.data import normalise
    from protoseg.inference import Predictor
    from protoseg.training import SegmentationModule, architecture_of, model_card

    config = load_config(args.config)
    if args.model:
        config["model"] = {"name": args.model, "memory_efficient": config["model"].get("memory_efficient", False)}
    if args.precision:
        set_value(config, "trainer.precision", args.precision)
    if args.batch_size:
        set_value(config, "data.batch_size", args.batch_size)
    if args.channels_last:
        set_value(config, "trainer.channels_last", True)
    apply_overrides(config, args.set)
    # No validation runs here, so nothing for ReduceLROnPlateau to watch; a schedule costs nothing measurable.
    config["optim"]["schedule"] = "none"
    config = validate(config)
    batch_size = config["data"]["batch_size"]
    height, width = args.size or config["data"]["crop_size"] or (320, 320)
    class_names = ["background", "beam", "not-beam"]

    n_train = batch_size * (args.steps + args.warmup)
    if args.synthetic:
        adc, label = synthetic_batch(max(n_train, args.eval_images), height, width, len(class_names), seed=0)
    else:
        from protoseg.images import open_images

        images = open_images(args.data)
        rows = np.flatnonzero(np.asarray(images.split[:]) == 0)[: max(n_train, args.eval_images)]
        adc = torch.from_numpy(np.asarray(images.adc[rows.tolist()], dtype=np.float32))
        label = torch.from_numpy(np.asarray(images.label[rows.tolist()]).astype(np.int64))
        class_names = list(images.class_names)
        height, width = adc.shape[-2:]
    if config["loss"].get("weights") == "median":
        from protoseg.images import class_balance

        config["loss"]["weights"] = class_balance(label.numpy().astype(np.uint8), len(class_names))["median_weights"]
    x = torch.from_numpy(normalise(adc.numpy(), config["data"]["normalisation"]).astype(np.float32))[:, None]
    reps = -(-n_train // len(x))
    train_set = TensorDataset(x.repeat(reps, 1, 1, 1)[:n_train], label.repeat(reps, 1, 1)[:n_train])

    pl.seed_everything(0, verbose=False)
    module = SegmentationModule(config, class_names, {"size": [height, width]})
    n_params = sum(p.numel() for p in module.model.parameters())

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.start = self.stop = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == args.warmup:
                if args.device == "cuda":
                    torch.cuda.synchronize()
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module) -> None:
            if args.device == "cuda":
                torch.cuda.synchronize()
            self.stop = time.perf_counter()

    clock = Clock()
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=config["trainer"]["precision"],
        max_steps=args.steps + args.warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        benchmark=args.device == "cuda",
        callbacks=[clock],
    )
    trainer.fit(module, train_dataloaders=DataLoader(train_set, batch_size=batch_size, shuffle=False))
    train_ips = args.steps * batch_size / (clock.stop - clock.start)

    network = module.model.to(args.device).eval()
    network.card = model_card(config, class_names, {"size": [height, width]}, model=network)
    predictor = Predictor(network, device=args.device, batch_size=batch_size)
    if args.synthetic:  # evaluation sees whole images even when training used crops
        raw = synthetic_batch(args.eval_images, *args.eval_size, len(class_names), seed=1)[0].numpy()
    else:
        raw = adc[: args.eval_images].numpy()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (args.device == "cuda" and "bf16" in config["trainer"]["precision"]) else torch.autocast("cpu", enabled=False)
    if args.channels_last:
        network.to(memory_format=torch.channels_last)
    with autocast:
        predictor.predict(raw[:batch_size])  # warm-up
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(raw), batch_size):
            predictor.predict(raw[i : i + batch_size])
        if args.device == "cuda":
            torch.cuda.synchronize()
        eval_ips = len(raw) / (time.perf_counter() - start)

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads ({os.cpu_count()} cores)"
    result = {
        "model": config["model"]["name"],
        "architecture": architecture_of(config, len(class_names), module.model),
        "parameters": n_params,
        "device": device_name,
        "precision": config["trainer"]["precision"],
        "channels_last": bool(args.channels_last),
        "memory_efficient": bool(config["model"].get("memory_efficient", False)),
        "batch_size": batch_size,
        "image_size": [int(height), int(width)],
        "eval_image_size": list(raw.shape[-2:]),
        "train_images_per_s": round(train_ips, 3),
        "eval_images_per_s": round(eval_ips, 3),
        "torch": torch.__version__,
        "data": "synthetic" if args.synthetic else args.data,
    }
    print(json.dumps(result, indent=2))
    print(f"training: {train_ips:.2f} images/s   evaluation/prediction: {eval_ips:.2f} images/s   ({device_name})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
