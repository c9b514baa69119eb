"""The README's performance table in one command: a quick measurement of every stage, one table.

    python benchmarks/run_all.py            # about 3 min on the 2-core machine when it is idle
    python benchmarks/run_all.py --quick    # under 1 min: a smoke test, not numbers to quote

Measures simulation (events/s on one core and on all cores), images (events/s, one core, max
pooling), training (images/s of the CPU recipe of the shipped ``default-cpu``, configs/default-stage1.yaml (its from-scratch stage), on 320×320 with
synthetic event-like images, through Lightning), evaluation (images/s through ``Predictor``), and
inference of the shipped image network ``tiramisu-gpu`` on one 320×320 image in PyTorch and in ONNX Runtime
(ms per image; the ONNX file is made by ``protoseg export`` in a temporary folder). Every measurement
runs in a fresh process, so the peak resident memory (VmHWM) given for it is its own; each one
reuses the stage's own benchmark script (bench_simulate, bench_images, bench_train_eval). Prints one
Markdown table and writes it, with the machine and every raw number, to benchmarks/results/summary.json
(``--quick``: summary-quick.json). Quote numbers only from a run on an otherwise idle machine: the
table's first line gives the load average at the start.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZE = 320

# Work per measurement. Full: a few seconds of steady state each; quick: one of everything.
SETTINGS = {
    "full": {"sim_events_one_core": 8, "sim_events_per_worker": 8, "image_events": 400,
             "train_warmup": 1, "train_steps": 4, "eval_images": 8, "inference_repeats": 20},
    "quick": {"sim_events_one_core": 1, "sim_events_per_worker": 1, "image_events": 40,
              "train_warmup": 0, "train_steps": 1, "eval_images": 2, "inference_repeats": 3},
}


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux), so input preparation does not count."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# ---- children: each runs in its own process and returns a dict --------------------------------

def child_images(events: int, folder: str) -> dict:
    """bench_images' synthetic events (not timed), then make_image_file with max pooling, one core."""
    sys.path.insert(0, str(HERE))
    import bench_images  # sets OMP/OPENBLAS/MKL threads to 1 before numpy and torch load
    import numpy as np

    from protoseg.events import EventsWriter
    from protoseg.images import make_image_file

    events_path, out = Path(folder) / "events.h5", Path(folder) / "images.h5"
    rng = np.random.default_rng(2018)
    with EventsWriter(events_path, config={"benchmark": "synthetic tracks"}, is_mc=True, source="run_all") as writer:
        for k in range(events):
            writer.append(bench_images.synthetic_event(rng, k))
    _reset_peak_rss()
    start, cpu = time.perf_counter(), time.process_time()
    make_image_file(events_path, out, size=(SIZE, SIZE), pooling="max", label_scheme="beam3",
                    min_beam_hits=0, min_notbeam_hits=0, split=[1.0, 0.0, 0.0], seed=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds, "events_per_cpu_s": events / cpu,
            "peak_rss_mb": _peak_rss_mb()}


def child_train(warmup: int, steps: int, eval_images: int, folder: str) -> dict:
    """bench_train_eval on default-cpu's CPU recipe at 320×320, synthetic images (its own command line)."""
    sys.path.insert(0, str(HERE))
    import bench_train_eval

    result_path = Path(folder) / "train.json"
    sys.argv = ["bench_train_eval.py", "--config", str(ROOT / "configs" / "default-stage1.yaml"), "--synthetic",
                "--size", str(SIZE), str(SIZE), "--eval-size", str(SIZE), str(SIZE), "--warmup", str(warmup),
                "--steps", str(steps), "--eval-images", str(eval_images), "--json", str(result_path)]
    bench_train_eval.main()
    return {**json.loads(result_path.read_text()), "peak_rss_mb": _peak_rss_mb()}


def child_torch_inference(repeats: int, folder: str) -> dict:
    """The shipped tiramisu-gpu network + softmax (what export writes), batch 1, as protoseg's commands run it."""
    import numpy as np
    import torch

    from protoseg.export import Probabilities, export_model, sample_input
    from protoseg.inference import load_model
    from protoseg.models import tune_cpu_allocator

    tune_cpu_allocator()
    model = load_model("tiramisu-gpu")
    module = Probabilities(model).eval()
    x = sample_input(32, SIZE, SIZE, batch=1, seed=0)
    times = []
    with torch.inference_mode():
        module(x)  # warm-up: first-call allocations
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    result = {"ms_per_image_median": 1e3 * float(np.median(times)), "ms_per_image_min": 1e3 * min(times),
              "repeats": repeats, "peak_rss_mb": _peak_rss_mb(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}
    # The ONNX file for the next child, made as users make it (checked against PyTorch at two sizes).
    start = time.perf_counter()
    exported = export_model(model, "onnx", Path(folder) / "tiramisu-gpu.onnx")
    result["onnx_export_s"] = time.perf_counter() - start
    result["onnx_max_abs_diff"] = max(exported.max_abs_diff.values())
    np.save(Path(folder) / "input.npy", x.numpy())
    return result


def child_onnx_inference(repeats: int, folder: str) -> dict:
    """ONNX Runtime (CPU provider, all cores) on the same image; this process never imports torch."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = onnxruntime.InferenceSession(str(Path(folder) / "tiramisu-gpu.onnx"), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.load(Path(folder) / "input.npy")}
    session.run(None, feed)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return {"ms_per_image_median": 1e3 * float(np.median(times)), "ms_per_image_min": 1e3 * min(times),
            "repeats": repeats, "threads": options.intra_op_num_threads, "onnxruntime": onnxruntime.__version__,
            "peak_rss_mb": _peak_rss_mb()}


CHILDREN = {"images": child_images, "train": child_train, "torch_inference": child_torch_inference,
            "onnx_inference": child_onnx_inference}


# ---- parent ----------------------------------------------------------------------------------------

def _run_child(name: str, *args) -> dict:
    command = [sys.executable, __file__, "--child", name, json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"{name} failed (exit {done.returncode}): {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def simulate(events: int, workers: int, folder: str) -> dict:
    """`protoseg simulate`'s whole path in a fresh process: bench_simulate's measuring child."""
    sys.path.insert(0, str(HERE))
    import bench_simulate

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = Path(folder) / f"events-{workers}.h5"
    done = subprocess.run([sys.executable, "-c", bench_simulate._CHILD, str(events), str(workers), "7", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"simulate failed (exit {done.returncode}): {lines[-1]}")
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return {**numbers, "events": events, "workers": workers, "events_per_s": events / numbers["seconds"]}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):  # no /proc (macOS) or no model name (some ARM kernels)
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    memory_gib = None
    with contextlib.suppress(OSError, StopIteration):
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
        memory_gib = kib / 2**20
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib, "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()[0]}


def measure(mode: str, report) -> dict:
    """Every measurement in turn; a failed one is recorded and the others still run."""
    s = SETTINGS[mode]
    cores = os.cpu_count() or 1
    steps = {
        "simulate_one_core": lambda tmp: simulate(s["sim_events_one_core"], 1, tmp),
        "simulate_all_cores": lambda tmp: simulate(s["sim_events_per_worker"] * cores, cores, tmp),
        "images": lambda tmp: _run_child("images", s["image_events"], tmp),
        "train": lambda tmp: _run_child("train", s["train_warmup"], s["train_steps"], s["eval_images"], tmp),
        "torch_inference": lambda tmp: _run_child("torch_inference", s["inference_repeats"], tmp),
        "onnx_inference": lambda tmp: _run_child("onnx_inference", s["inference_repeats"], tmp),
    }
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="protoseg-bench-") as tmp:  # torch and onnx children share it
        for name, step in steps.items():
            start = time.perf_counter()
            try:
                results[name] = step(tmp)
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as error:
                results[name] = {"error": str(error)}
            results[name]["wall_s"] = time.perf_counter() - start
            report(f"{name}: {results[name]['wall_s']:.0f} s" + (f"  ({results[name]['error']})" if "error" in results[name] else ""))
    return results


def table(results: dict, info: dict, mode: str) -> list[str]:
    def row(what: str, key: str, value, memory) -> str:
        r = results[key]
        if "error" in r:
            return f"| {what} | failed: {r['error']} | |"
        return f"| {what} | {value(r)} | {memory(r)} |"

    mb = lambda r: f"{r['peak_rss_mb']:.0f} MB"  # noqa: E731
    events = lambda n: f"{n} event{'s' * (n != 1)}"  # noqa: E731
    settings = info["mode_settings"]
    workers = info["cores"]
    rows = [
        row(f"simulate, one core ({events(settings['sim_events_one_core'])})", "simulate_one_core",
            lambda r: f"**{r['events_per_s']:.2f} events/s** ({r['seconds'] / r['events']:.2f} s/event)",
            lambda r: f"{r['self_max_rss_mb']:.0f} MB"),
        row(f"simulate, {workers} workers ({events(settings['sim_events_per_worker'] * workers)})", "simulate_all_cores",
            lambda r: f"**{r['events_per_s']:.2f} events/s**",
            lambda r: f"main {r['self_max_rss_mb']:.0f} MB, largest worker {r['largest_child_max_rss_mb']:.0f} MB"),
        row(f"images {SIZE}×{SIZE}, max pooling, one core ({settings['image_events']} synthetic events)", "images",
            lambda r: f"**{r['events_per_s']:.0f} events/s** ({r['events_per_cpu_s']:.0f} per CPU-s)", mb),
        row(f"training, `default-cpu` recipe (stage 1), {SIZE}×{SIZE}, {settings['train_steps']} timed steps", "train",
            lambda r: (f"**{r['train_images_per_s']:.2f} images/s** (batch {r['batch_size']}, {r['parameters'] / 1e3:.0f} k parameters); "
                       f"evaluation {r['eval_images_per_s']:.2f} images/s"), mb),
        row(f"inference `tiramisu-gpu`, {SIZE}×{SIZE}, batch 1, PyTorch", "torch_inference",
            lambda r: f"**{r['ms_per_image_median']:.0f} ms/image** (min {r['ms_per_image_min']:.0f})", mb),
        row(f"inference `tiramisu-gpu`, {SIZE}×{SIZE}, batch 1, ONNX Runtime", "onnx_inference",
            lambda r: f"**{r['ms_per_image_median']:.0f} ms/image** (min {r['ms_per_image_min']:.0f})", mb),
    ]
    torch_r, onnx_r = results["torch_inference"], results["onnx_inference"]
    load = info["load_average_at_start"]
    memory = f"{info['memory_gib']:.1f} GiB" if info["memory_gib"] else "memory unknown"
    head = (f"{info['cpu']}, {info['cores']} cores, {memory}; torch {torch_r.get('torch', '?')} ({torch_r.get('threads', '?')} threads), "
            f"onnxruntime {onnx_r.get('onnxruntime', '?')} ({onnx_r.get('threads', '?')} threads), Python {info['python']}; "
            f"load average at start {load:.2f}" + (" (BUSY: numbers not representative)" if load > 0.25 * info["cores"] else "")
            + f"; mode {mode}")
    return [head, "", "| what | result | peak memory (RSS) |", "|---|---|---|", *rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one of everything (< 1 min): a smoke test, not numbers to quote")
    parser.add_argument("--out", type=Path, help="summary JSON (default benchmarks/results/summary.json; --quick: summary-quick.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("child_args", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with contextlib.redirect_stdout(sys.stderr):  # the reused scripts print; only the JSON goes to stdout
            result = CHILDREN[args.child](*json.loads(args.child_args))
        print(json.dumps(result))
        return 0

    mode = "quick" if args.quick else "full"
    out = args.out or HERE / "results" / ("summary-quick.json" if args.quick else "summary.json")
    info = {**machine(), "mode_settings": SETTINGS[mode]}
    start = time.perf_counter()
    results = measure(mode, lambda line: print(line, file=sys.stderr, flush=True))
    info["total_s"] = time.perf_counter() - start
    info["load_average_at_end"] = os.getloadavg()[0]
    lines = table(results, info, mode)
    print("\n".join(lines))
    print(f"\n{info['total_s']:.0f} s in all", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"mode": mode, "machine": info, "results": results, "table": lines}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
