"""What makes the network better on a CPU: variants of one baseline recipe, one factor changed at a time,
each trained with the same CPU-time budget and scored on one fixed held-out set.

Baseline: configs/study-baseline.yaml, the recipe of the model shipped before this study (a 4-level Tiramisu of 240 k parameters,
flips along both axes, 160×160 random crops, log normalisation, cross-entropy, one-cycle AdamW).
Every variant gets ``trainer.cpu_time_budget_s`` (the CPU time of the training process, all its
threads: a budget that does not depend on what else the machine runs) and a one-cycle learning rate
that follows that budget (protoseg.training.BudgetOneCycle), so fast and slow variants all warm up
and anneal completely. Each variant trains in its own process; the state at the end of the budget
(``last.ckpt``) is scored on

* the held-out images (``--heldout-images``: events of their own seed with the 2018 selection, rule
  ``all``): IoU per class, mIoU, beam recall and precision at pixel level;
* the held-out events (``--heldout-events``, the first ``--hit-events``): hit-level beam efficiency and
  purity, as ``protoseg predict`` computes them.

Writes ``--results`` (JSON: settings, machine, and per variant the scores, the CPU and wall time and
the validation curve) and ``--plot`` (validation beam IoU against wall time, one line per variant).

    protoseg simulate -o train-events.h5 -n 1800 --seed 9101 --workers 2
    protoseg simulate -o heldout-events.h5 -n 240 --seed 9202 --workers 2
    protoseg images train-events.h5 -o train-images.h5 --min-beam-hits 0 --min-notbeam-hits 0 --split 1776 24 0 --seed 1
    protoseg images heldout-events.h5 -o heldout-images.h5 --split 0 0 1
    python benchmarks/model_study.py --train-images train-images.h5 --heldout-images heldout-images.h5 \\
        --heldout-events heldout-events.h5 --cpu-budget-s 1200 --work study-runs
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from protoseg.training import training_machine

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "configs" / "study-baseline.yaml"

# Whole-image variants use batch 1: the same pixels per step as the baseline's four 160×160 crops.
WHOLE = ["data.crop_size=null", "data.batch_size=1"]
VARIANTS: dict[str, dict] = {
    "baseline": {"what": "as shipped: flips, 160×160 crops, 4 levels", "set": []},
    "no_flips": {"what": "no flips (crops kept)", "set": ["data.augment=false"]},
    "hit_mask": {"what": "hit-mask input plane, empty pixels predicted background (no loss there)",
                 "set": ["model.hit_mask_input=true", "model.empty_is_background=true"]},
    "whole_images": {"what": "whole 320×320 images, no flips, batch 1", "set": [*WHOLE, "data.augment=false"]},
    "position": {"what": "whole images, no flips, tick and wire position planes",
                 "set": [*WHOLE, "data.augment=false", "model.position_input=true"]},
    "deeper": {"what": "5 levels (bottleneck at 1/32) instead of 4", "set": ["model.down_blocks=[3,3,3,3,3]"]},
    "combined": {"what": "whole images, no flips, position + hit mask + empty=background, 5 levels",
                 "set": [*WHOLE, "data.augment=false", "model.position_input=true", "model.hit_mask_input=true",
                         "model.empty_is_background=true", "model.down_blocks=[3,3,3,3,3]"]},
}


def train_variant(name: str, args: argparse.Namespace) -> Path:
    """Train one variant in its own process (fresh allocator, no shared state); resumes if interrupted."""
    out = Path(args.work) / name
    if (out / "checkpoints" / "last.ckpt").is_file() and (out / "done").is_file():
        return out
    cmd = [sys.executable, "-m", "protoseg.cli", "train", "--config", str(BASELINE), "--data", str(args.train_images),
           "--out", str(out), "--seed", str(args.seed),
           "--set", f"trainer.cpu_time_budget_s={args.cpu_budget_s}", "--set", "trainer.max_epochs=100000",
           "--set", f"trainer.limit_train_batches={args.steps_per_epoch}", "--set", "trainer.progress_bar=false",
           *[part for item in VARIANTS[name]["set"] for part in ("--set", item)]]
    print(f"[{name}] {' '.join(cmd[2:])}", flush=True)
    log = Path(args.work) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT)
    (out / "done").write_text("trained\n")
    return out


def validation_curve(run: Path) -> list[dict]:
    """Validation points (wall and CPU seconds, beam IoU, mIoU) from the run's CSV logs, in order."""
    points = []
    for path in sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with open(path) as handle:
            for row in csv.DictReader(handle):
                if row.get("val_iou_beam") and row.get("wall_time_s"):
                    points.append({"wall_time_s": float(row["wall_time_s"]), "cpu_time_s": float(row["cpu_time_s"]),
                                   "val_iou_beam": float(row["val_iou_beam"]), "val_miou": float(row["val_miou"]),
                                   "step": int(row["step"])})
    return points


def score(run: Path, args: argparse.Namespace) -> dict:
    """Held-out pixel and hit scores of the state at the end of the budget (last.ckpt)."""
    from protoseg.events import open_events
    from protoseg.inference import evaluate, load_model, predict_file

    model = load_model(run / "checkpoints" / "last.ckpt")
    start = time.perf_counter()
    result = evaluate(model, args.heldout_images, split="test", progress=False)
    infer_s = time.perf_counter() - start
    confusion = result.confusion.astype(np.float64)
    beam = result.class_names.index("beam")
    out = {
        "iou": dict(zip(result.class_names, [round(float(v), 4) for v in result.iou])),
        "miou": round(result.miou, 4),
        "beam_recall": round(float(confusion[beam, beam] / confusion[beam].sum()), 4),
        "beam_precision": round(float(confusion[beam, beam] / confusion[:, beam].sum()), 4),
        "n_images": int(len(result.event_ids)),
        "inference_s_per_image": round(infer_s / len(result.event_ids), 4),
    }
    with open_events(args.heldout_events) as events:
        n_events = len(events)
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "events.h5"
        _first_events(Path(args.heldout_events), subset, min(args.hit_events, n_events))
        summary = predict_file(model, subset, Path(tmp) / "pred.h5", progress=False)
    out["hit_beam_efficiency"] = round(summary.hit_metrics["beam_efficiency"], 4)
    out["hit_beam_purity"] = round(summary.hit_metrics["beam_purity"], 4)
    out["hit_events"] = min(args.hit_events, n_events)
    return out


def _first_events(source: Path, target: Path, n: int) -> None:
    """Copy the first ``n`` events of an events file (all of them when n covers the file)."""
    from protoseg.events import EventsWriter, open_events

    with open_events(source) as events:
        config = events.config
        with EventsWriter(target, config=config, is_mc=True) as writer:
            for i in range(n):
                writer.append(events.read(i))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Wall time is what a user waits; CPU time is the budget (wall time also counts what else ran).
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    for name, entry in results["variants"].items():
        curve = entry.get("curve") or []
        if curve:
            for ax, key in zip(axes, ("wall_time_s", "cpu_time_s")):
                ax.plot([p[key] / 60 for p in curve], [p["val_iou_beam"] for p in curve], marker=".", label=name)
    axes[0].set_xlabel("wall time of training (min, this machine)")
    axes[1].set_xlabel("CPU time of training (min, all threads)")
    axes[0].set_ylabel("validation beam IoU")
    fig.suptitle(f"protoseg model study: {results['cpu_budget_s'] / 60:.0f} CPU-minutes per variant")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", required=True)
    parser.add_argument("--heldout-images", required=True, help="held-out images, all in the test split")
    parser.add_argument("--heldout-events", required=True)
    parser.add_argument("--hit-events", type=int, default=120, help="held-out events scored at hit level")
    parser.add_argument("--cpu-budget-s", type=float, default=1200.0, help="CPU seconds of training per variant")
    parser.add_argument("--steps-per-epoch", type=int, default=60, help="training steps between validations")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--work", default="study-runs", help="folder for the variants' run folders")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "model_study.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "model-study.png"))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}")

    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.update({"baseline": str(BASELINE.relative_to(ROOT)), "cpu_budget_s": args.cpu_budget_s,
                    "steps_per_epoch": args.steps_per_epoch, "train_images": str(args.train_images),
                    "heldout_images": str(args.heldout_images), "heldout_events": str(args.heldout_events),
                    "machine": training_machine()})
    results.setdefault("variants", {})
    for name in names:
        run = train_variant(name, args)
        entry = {"what": VARIANTS[name]["what"], "set": VARIANTS[name]["set"], "curve": validation_curve(run)}
        if entry["curve"]:
            entry["cpu_time_s"] = entry["curve"][-1]["cpu_time_s"]
            entry["wall_time_s"] = entry["curve"][-1]["wall_time_s"]
            entry["steps"] = entry["curve"][-1]["step"]
        entry["heldout"] = score(run, args)
        results["variants"][name] = entry
        print(f"[{name}] {json.dumps(entry['heldout'])}", flush=True)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        plot(results, Path(args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
