"""Downsampling study (issue 12): what each pooling, and 640×640 instead of 320×320, keeps of the beam and what it costs.

For an events file with truth, for each pooling variant (max, sum, mean, beam-priority, charge-majority, and max
with ``--spread-rms``) and each square image size:

* the oracle (``hit_ceiling.ceiling``): every hit given the truth class of the pixel that holds its peak, as
  ``protoseg predict`` maps pixels back to hits. Its beam efficiency is the fraction of beam hits that fall
  in a beam-labelled pixel; with its purity, over all events and over the 2018 selection (≥ 2000 beam and
  ≥ 2000 not-beam hits);
* the class balance of the truth images (beam : not-beam : background pixels) and beam pixels per image;
* the cost: CPU time of ``event_to_image`` per event (events already in memory), CPU and wall time of
  ``make_image_file`` per event (what ``protoseg images`` does: read, pool, compress, write; every event, no
  selection) and the bytes per image of that real file (adc and label datasets, compressed as it writes them).

Then, per size, the inference time per image of the shipped image model ``tiramisu-gpu`` (one thread, batch 1, median
of a few images, as ``protoseg predict`` runs it) and the peak memory of that process (each size in its
own process). Times are CPU times first: on a shared machine the wall clock of a low-priority process
mostly measures its waiting (the wall times are recorded too). Each event is read once for all variants.

    python benchmarks/downsampling.py xcom-events.h5 --sizes 320 640

``--models`` is the trained part (hours of CPU): for each pooling variant, images of ``--train-events``
made with that pooling, a network trained with ``--recipe`` for ``--cpu-budget-s`` CPU seconds
(``protoseg train`` in its own process; resumes), then ``protoseg predict`` on the held-out events (the
positional file; the predictions file is kept and reused) and the hit-level beam efficiency and purity
from the predictions file's ``hit_metrics`` (argmax), and the balance point: where efficiency equals purity
as the working point moves (``working_point.py``), which no choice of working point moves. It adds a
``trained`` section to the results file and keeps the rest:

    python benchmarks/downsampling.py heldout-events.h5 --models --train-events train-events.h5 \\
        --recipe configs/default-stage1.yaml --cpu-budget-s 9000 --work downsampling-runs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from hit_ceiling import COLUMNS, Ceiling  # noqa: E402  (the oracle is hit_ceiling's; this study adds the rest)

# name → (pooling, spread_rms)
VARIANTS: dict[str, tuple[str, bool]] = {
    "max": ("max", False),
    "sum": ("sum", False),
    "mean": ("mean", False),
    "beam-priority": ("beam-priority", False),
    "charge-majority": ("charge-majority", False),
    "max+spread-rms": ("max", True),
}
CLASSES = ("background", "beam", "not-beam")


class PixelStudy:
    """One variant and size: the oracle (``hit_ceiling.Ceiling``), the pixel class balance of the truth images
    and the CPU time of ``event_to_image``, accumulated event by event."""

    def __init__(self, size: int, name: str) -> None:
        pooling, spread_rms = VARIANTS[name]
        self.size, self.name, self.pooling, self.spread_rms = size, name, pooling, spread_rms
        self.oracle = Ceiling(size, pooling, spread_rms)
        self.pixels = {"all": np.zeros(3, np.int64), "selected": np.zeros(3, np.int64)}
        self.beam_pixels: dict[str, list[int]] = {"all": [], "selected": []}
        self.cpu_s: list[float] = []
        self._out = (np.zeros((size, size), np.float32), np.zeros((size, size), np.uint8))

    def add(self, hits: dict[str, np.ndarray]) -> None:
        from protoseg.images import event_to_image

        label_image, selected = self.oracle.add(hits)
        counts = np.bincount(label_image.ravel(), minlength=3)[:3]
        for key in ("all", "selected") if selected else ("all",):
            self.pixels[key] += counts
            self.beam_pixels[key].append(int(counts[1]))
        # What `protoseg images` does per event, into reused buffers as make_image_file does. CPU time, not
        # wall time: on a shared machine the wall clock of a low-priority process mostly measures its waiting.
        start = time.process_time()
        event_to_image(hits, (self.size, self.size), self.pooling, "beam3", self.spread_rms, out=self._out)
        self.cpu_s.append(time.process_time() - start)

    def result(self) -> dict:
        row = {"variant": self.name, **self.oracle.result()}
        for key, counts in self.pixels.items():
            total = counts.sum()
            row[f"pixel_fractions_{key}"] = dict(zip(CLASSES, [float(f"{c / total:.4g}") if total else None for c in counts]))
            row[f"beam_pixels_per_image_{key}"] = round(float(np.mean(self.beam_pixels[key])), 1) if self.beam_pixels[key] else None
            row[f"beam_to_notbeam_pixels_{key}"] = round(float(counts[1] / counts[2]), 4) if counts[2] else None
        row["event_to_image_cpu_ms_per_event"] = round(1e3 * float(np.mean(self.cpu_s)), 3) if self.cpu_s else None
        return row


def pixel_studies(path: Path, sizes: list[int], names: list[str]) -> list[dict]:
    """Every variant and size on each event of ``path``, read once."""
    from protoseg.events import open_events

    studies = [PixelStudy(size, name) for size in sizes for name in names]
    columns = COLUMNS + ["rms"] * any(VARIANTS[name][1] for name in names)
    with open_events(path) as events:
        for _, hits in events.iter_hit_columns(columns):
            for study in studies:
                study.add(hits)
    return [study.result() for study in studies]


def file_cost(path: Path, size: int, name: str, folder: Path) -> dict:
    """``make_image_file`` on every event (no selection): seconds per event and bytes per image of the file."""
    import h5py

    from protoseg.images import make_image_file

    pooling, spread_rms = VARIANTS[name]
    target = folder / f"images-{name}-{size}.h5"
    wall, cpu = time.perf_counter(), time.process_time()
    summary = make_image_file(path, target, size=(size, size), pooling=pooling, spread_rms=spread_rms,
                              min_beam_hits=0, min_notbeam_hits=0, split=(1, 0, 0))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = summary["n_images"]
    with h5py.File(target, "r") as handle:
        adc_bytes = handle["adc"].id.get_storage_size()
        label_bytes = handle["label"].id.get_storage_size() if "label" in handle else 0
    cost = {
        "make_image_file_ms_per_event": round(1e3 * wall / n, 2),
        "make_image_file_cpu_ms_per_event": round(1e3 * cpu / n, 2),
        "file_bytes_per_image": int(target.stat().st_size / n),
        "adc_bytes_per_image": int(adc_bytes / n),
        "label_bytes_per_image": int(label_bytes / n),
        "uncompressed_bytes_per_image": size * size * 5,  # float32 adc + uint8 label
    }
    target.unlink()
    return cost


def inference_child(events_path: str, size: int, n_images: int) -> dict:
    """In a process of its own: the shipped ``tiramisu-gpu`` model on ``n_images`` images of ``size`` (its pooling),
    one thread, batch 1, as ``protoseg predict`` runs it; median CPU and wall ms per image, peak memory (MB)."""
    import resource

    import torch

    from protoseg.events import open_events
    from protoseg.images import event_to_image
    from protoseg.inference import Predictor, load_model
    from protoseg.models import tune_cpu_allocator

    torch.set_num_threads(1)
    tune_cpu_allocator()  # as the protoseg commands that run a network do
    model = load_model("tiramisu-gpu")
    image = model.card["input"]["image"]
    with open_events(events_path) as events:
        adc = [event_to_image(events.read(i).hits, (size, size), image["pooling"], None, bool(image["spread_rms"]))[0]
               for i in range(min(n_images, len(events)))]
    predictor = Predictor(model, batch_size=1)
    rss_loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    predictor.predict(adc[0][None])  # warm-up: the allocator's first large blocks
    wall, cpu = [], []
    for image_adc in adc:
        start, start_cpu = time.perf_counter(), time.process_time()
        predictor.predict(image_adc[None])
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    # One thread: the CPU time is the compute; the wall time adds whatever else the machine ran.
    return {"size": size, "images": len(cpu), "cpu_ms_per_image_median": round(1e3 * statistics.median(cpu), 1),
            "wall_ms_per_image_median": round(1e3 * statistics.median(wall), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_before_inference_mb": round(rss_loaded_mb, 1)}


def inference_cost(events_path: Path, size: int, n_images: int) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import downsampling; "
            f"print(json.dumps(downsampling.inference_child({str(events_path)!r}, {int(size)}, {int(n_images)})))")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- trained part
def train_variant(name: str, args: argparse.Namespace) -> Path:
    """Images of the training events with this variant's pooling, then ``protoseg train`` in its own process."""
    from protoseg.images import make_image_file

    pooling, spread_rms = VARIANTS[name]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    images = work / f"images-{name}.h5"
    if not images.is_file():
        make_image_file(args.train_events, images, size=(args.model_size, args.model_size), pooling=pooling,
                        spread_rms=spread_rms, min_beam_hits=args.train_min_hits[0], min_notbeam_hits=args.train_min_hits[1],
                        split=args.train_split, seed=args.seed)
    run = work / name
    if (run / "done").is_file():
        return run
    cmd = [sys.executable, "-m", "protoseg.cli", "train", "--config", str(args.recipe), "--data", str(images), "--out", str(run),
           "--seed", str(args.seed), "--set", f"trainer.cpu_time_budget_s={args.cpu_budget_s}",
           "--set", "trainer.max_epochs=100000", "--set", "trainer.progress_bar=false",
           *[part for item in args.set for part in ("--set", item)]]
    print(f"[{name}] {' '.join(cmd[2:])}", flush=True)
    with open(work / f"{name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    (run / "done").write_text("trained\n")
    return run


def balance_point(events_path: Path, predictions_path: Path) -> dict:
    """Where hit-level beam efficiency equals purity as the working point P(beam) >= t moves (t on a 0.01 grid,
    linear between the two grid points around the crossing): one number per model that no working point
    choice moves, so that models trained for a short budget (often too shy of the rare class at argmax) compare."""
    from working_point import working_points

    points = working_points(events_path, predictions_path, np.round(np.arange(0.02, 0.985, 0.01), 2))["points"]
    gap = np.array([p["beam_efficiency"] - p["beam_purity"] for p in points])  # falls as t rises
    crossing = np.flatnonzero((gap[:-1] >= 0) & (gap[1:] < 0))
    curve = {"working_points": [[p["beam_threshold"], round(p["beam_efficiency"], 4), round(p["beam_purity"], 4)]
                                for p in points]}  # [threshold, efficiency, purity]: the plot's curves
    if len(crossing) == 0:
        return {"balanced_efficiency_purity": None, "balanced_threshold": None, **curve}
    k = int(crossing[0])
    w = gap[k] / (gap[k] - gap[k + 1])
    lo, hi = points[k], points[k + 1]
    value = (1 - w) * lo["beam_efficiency"] + w * hi["beam_efficiency"]
    return {"balanced_efficiency_purity": round(float(value), 4),
            "balanced_threshold": round(float((1 - w) * lo["beam_threshold"] + w * hi["beam_threshold"]), 3), **curve}


def score_variant(name: str, run: Path, args: argparse.Namespace) -> dict:
    """``protoseg predict`` of the run's model (best validation checkpoint) on the held-out events (kept, and
    reused when the study is run again); its hit metrics at argmax and its balance point."""
    import h5py

    predictions = Path(args.work) / f"predictions-{name}.h5"
    seconds = None
    if not predictions.is_file():
        cmd = [sys.executable, "-m", "protoseg.cli", "predict", str(run), str(args.events), "-o", str(predictions)]
        start = time.perf_counter()
        with open(Path(args.work) / f"{name}.log", "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        seconds = round(time.perf_counter() - start, 1)
    with h5py.File(predictions, "r") as handle:
        metrics = json.loads(handle.attrs["hit_metrics"])
        n_events = int(handle["event_id"].shape[0])
    card = json.loads((run / "model.json").read_text())
    # a model that tags no hit beam has no purity (predict writes NaN, which is not JSON): None
    purity = round(metrics["beam_purity"], 4) if metrics.get("tagged_beam_hits", 0) > 0 else None
    return {"hit_beam_efficiency": round(metrics["beam_efficiency"], 4), "hit_beam_purity": purity,
            **balance_point(args.events, predictions),
            "beam_hits": metrics["beam_hits"], "heldout_events": n_events, "predict_s": seconds,
            "trained_on": card.get("trained_on", {}), "validation": card.get("metrics", {}).get("validation", {})}


def trained_part(args: argparse.Namespace, names: list[str], results: dict) -> None:
    trained = results.setdefault("trained", {})
    trained.update({"recipe": str(args.recipe), "cpu_budget_s": args.cpu_budget_s, "size": args.model_size,
                    "train_events": [str(p) for p in args.train_events], "heldout_events": str(args.events),
                    "train_split": args.train_split, "train_min_hits": args.train_min_hits, "set": args.set,
                    "seed": args.seed})
    variants = trained.setdefault("variants", {})
    for name in names:
        run = train_variant(name, args)
        variants[name] = score_variant(name, run, args)
        keys = ("hit_beam_efficiency", "hit_beam_purity", "balanced_efficiency_purity", "balanced_threshold")
        print(f"[{name}] {json.dumps({k: variants[name][k] for k in keys})}", flush=True)
        write(results, args)


# ------------------------------------------------------------------------------------------ output
def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = results.get("trained", {}).get("variants", {})
    fig, axes = plt.subplots(1, 2 if trained else 1, figsize=(12.4 if trained else 6.4, 4.8), squeeze=False)
    ax = axes[0, 0]
    colours = dict(zip(VARIANTS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    markers = ["o", "s", "^", "D"]
    sizes = sorted({row["size"] for row in results.get("rows", [])})
    # sum, mean and charge-majority label pixels alike (charge majority): nested rings keep all three visible.
    area = {"sum": 170, "mean": 100}
    for row in sorted(results.get("rows", []), key=lambda r: -area.get(r["variant"], 45)):
        marker = markers[sizes.index(row["size"]) % len(markers)]
        ax.scatter(row["purity_all"], row["efficiency_all"], color=colours.get(row["variant"], "k"), marker=marker,
                   s=area.get(row["variant"], 45))
    for name in VARIANTS:  # legend: colour = pooling, marker = size
        if any(row["variant"] == name for row in results.get("rows", [])):
            ax.scatter([], [], color=colours[name], marker="o", label=name)
    for k, size in enumerate(sizes):
        ax.scatter([], [], color="grey", marker=markers[k % len(markers)], label=f"oracle {size}×{size}")
    ax.set_xlabel("hit-level beam purity")
    ax.set_ylabel("hit-level beam efficiency")
    ax.set_title(f"Every hit given its pixel's truth class ({results.get('n_events', '?')} events)", fontsize=10)
    ax.grid(alpha=0.3)
    if results.get("rows"):
        ax.legend(fontsize=8, loc="lower left")
    if trained:
        ax = axes[0, 1]
        for name, entry in trained.items():
            curve = np.array(entry.get("working_points") or [], dtype=float).reshape(-1, 3)
            ax.plot(curve[:, 2], curve[:, 1], color=colours.get(name, "k"), lw=1.2,
                    label=f"{name}: {entry.get('balanced_efficiency_purity')}")
            if entry["hit_beam_purity"] is not None:
                ax.scatter(entry["hit_beam_purity"], entry["hit_beam_efficiency"], color=colours.get(name, "k"), marker="x", s=40)
        lims = [0.5, 1.0]
        ax.plot(lims, lims, color="grey", lw=0.6, ls=":")  # efficiency = purity: the balance points
        ax.set_xlim(*lims)
        ax.set_ylim(*lims)
        ax.set_xlabel("hit-level beam purity")
        ax.set_ylabel("hit-level beam efficiency")
        info = results["trained"]
        ax.set_title(f"A model per pooling, {info['size']}×{info['size']}, {info['cpu_budget_s']:.0f} CPU-s each: "
                     f"P(beam) ≥ t over t (× argmax)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left", title="efficiency = purity at", title_fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict, args: argparse.Namespace) -> None:
    from protoseg.fileio import write_json

    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, results)
    if args.plot:
        plot(results, Path(args.plot))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path, help="events file with truth (with --models: the held-out events)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--inference-images", type=int, default=5, help="images timed per size (0: no inference timing)")
    parser.add_argument("--results", default=str(HERE / "results" / "downsampling.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "downsampling.png"), help="'' for none")
    trained = parser.add_argument_group("trained part (--models)")
    trained.add_argument("--models", action="store_true", help="train one model per variant and score it on the held-out events")
    trained.add_argument("--train-events", type=Path, nargs="+", help="events file(s) the training images are made of")
    trained.add_argument("--recipe", type=Path, default=ROOT / "configs" / "default-stage1.yaml")
    trained.add_argument("--cpu-budget-s", type=float, default=9000.0, help="CPU seconds of training per variant")
    trained.add_argument("--model-size", type=int, default=320, help="image size of the trained models")
    trained.add_argument("--train-split", type=float, nargs=3, default=[0.98, 0.02, 0.0], metavar=("TRAIN", "VAL", "TEST"))
    trained.add_argument("--train-min-hits", type=int, nargs=2, default=[0, 0], metavar=("BEAM", "NOTBEAM"),
                         help="selection of the training events (default: all, as the shipped tiramisu-gpu model)")
    trained.add_argument("--set", action="append", default=[], help="extra `protoseg train --set key=value`")
    trained.add_argument("--seed", type=int, default=2018)
    trained.add_argument("--work", default="downsampling-runs", help="folder for the images, runs and predictions")
    args = parser.parse_args(argv)

    results_path = Path(args.results)
    if args.models:
        if not args.train_events:
            parser.error("--models needs --train-events")
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        trained_part(args, args.variants, results)
        return 0

    import torch

    from protoseg.events import open_events

    with open_events(args.events) as events:
        n_events = len(events)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.update({
        "events_file": str(args.events), "n_events": n_events, "sizes": args.sizes, "variants": args.variants,
        "machine": {"cpu_cores": os.cpu_count(), "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
                    "python": platform.python_version(), "torch": torch.__version__,
                    "threads": "1 (OMP_NUM_THREADS=1, torch.set_num_threads(1))"},
    })
    started = time.perf_counter()
    rows = pixel_studies(args.events, args.sizes, args.variants)
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            row.update(file_cost(args.events, row["size"], row["variant"], Path(tmp)))
            print(json.dumps(row), flush=True)
    results["rows"] = rows
    results["inference_default_model"] = [inference_cost(args.events, size, args.inference_images)
                                          for size in args.sizes] if args.inference_images > 0 else []
    for entry in results["inference_default_model"]:
        print(json.dumps(entry), flush=True)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
