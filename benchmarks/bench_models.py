"""FC-DenseNet103 speed and memory on this machine: protoseg's paths side by side with the
straightforward port (benchmarks/reference_tiramisu.py), in the same run.

Measures, at 320×320 with one input plane and 3 classes:
  * inference latency, batch 1 (min and median of the timed repetitions),
  * one training step, batch 2 (forward, cross-entropy, backward, Adam step),
  * peak resident memory of a training step, each mode in its own fresh subprocess (VmHWM),
  * FLOPs (torch.utils.flop_counter) and the fraction of the compute bound reached,
  * ONNX Runtime CPU inference of the exported model.
Timed runs alternate between implementations, so a busy machine slows both alike. Everything runs
twice, in two fresh processes: with glibc's default allocator, and with
``protoseg.models.tune_cpu_allocator()`` (freed memory stays in the heap), because page faults on
large fresh allocations are much of the straightforward port's training time on this CPU.

Run it alone on the machine:  flock /tmp/protoseg-heavy.lock python benchmarks/bench_models.py
Writes benchmarks/results/models.json.
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

HERE = Path(__file__).resolve().parent
SIZE = 320
CLAIMED_CONV_GFLOPS = 150.0  # the figure for large convolutions on this CPU


def _setup(threads: int):
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(HERE))
    return torch


def build(kind: str, torch):
    from reference_tiramisu import reference_fcdensenet103

    from protoseg.models import build_model

    torch.manual_seed(0)
    if kind == "reference":
        return reference_fcdensenet103(in_channels=1, num_classes=3)
    return build_model("fcdensenet103", in_channels=1, num_classes=3, memory_efficient=kind == "memory_efficient")


def training_step(model, optimizer, x, y, torch):
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()


def peak_rss_child(kind: str, threads: int, allocator: str) -> None:
    """Subprocess body: one training step of ``kind``; prints JSON with VmHWM before and after (MiB)."""
    torch = _setup(threads)
    if allocator == "tuned":
        from protoseg.models import tune_cpu_allocator

        tune_cpu_allocator()
    model = build(kind, torch).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, SIZE, SIZE, generator=generator)
    y = torch.randint(0, 3, (2, SIZE, SIZE), generator=generator)

    def status(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        raise RuntimeError(key)

    before = status("VmRSS")
    training_step(model, optimizer, x, y, torch)
    print(json.dumps({"rss_before_mib": before, "peak_rss_mib": status("VmHWM")}))


def measure_peak(kind: str, threads: int, allocator: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--peak-child", kind, "--threads", str(threads),
                          "--allocator", allocator, "--size", str(SIZE)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["step_peak_mib"] = result["peak_rss_mib"] - result["rss_before_mib"]
    return result


def count_flops(model, x, torch, backward: bool = False) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        if backward:
            out.sum().backward()
    return float(counter.get_total_flops())


def conv_throughput(torch) -> float:
    """GFLOP/s of a large channels-last 3×3 convolution: what this CPU can do at best."""
    x = torch.randn(1, 256, 80, 80).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3).contiguous(memory_format=torch.channels_last)
    flops = 2 * 256 * 256 * 9 * 80 * 80
    with torch.inference_mode():
        torch.nn.functional.conv2d(x, w, padding=1)
        best = min(_timed(lambda: torch.nn.functional.conv2d(x, w, padding=1)) for _ in range(5))
    return flops / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(times: list[float]) -> dict:
    return {"min_s": min(times), "median_s": statistics.median(times), "all_s": times}


def run_configuration(args) -> dict:
    """Timings of one allocator configuration, reference and ours interleaved in this process."""
    torch = _setup(args.threads)
    if args.allocator == "tuned":
        from protoseg.models import tune_cpu_allocator

        tune_cpu_allocator()
    results: dict = {"allocator": args.allocator}
    ours = build("ours", torch)
    reference = build("reference", torch)
    generator = torch.Generator().manual_seed(0)
    x1 = torch.rand(1, 1, SIZE, SIZE, generator=generator)

    if "flops" not in args.skip:
        ours.eval()
        reference.eval()
        with torch.no_grad():
            flops = count_flops(reference, x1, torch)
            flops_ours = count_flops(ours, x1, torch)
        gflops_measured = conv_throughput(torch)
        results["flops"] = {"forward_batch1_gflop": flops / 1e9, "forward_batch1_gflop_ours": flops_ours / 1e9,
                            "conv_gflop_per_s_measured": gflops_measured, "conv_gflop_per_s_claimed": CLAIMED_CONV_GFLOPS,
                            "inference_bound_s_measured": flops / 1e9 / gflops_measured,
                            "inference_bound_s_claimed": flops / 1e9 / CLAIMED_CONV_GFLOPS}
        print(json.dumps(results["flops"]), file=sys.stderr, flush=True)

    if "inference" not in args.skip:
        ours.eval()
        reference.eval()
        runs = {"reference": lambda: reference(x1), "ours": lambda: ours(x1),
                "ours_plain_path": lambda: ours._forward_plain(x1)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.inference_mode():
            for fn in runs.values():
                fn()
            for _ in range(args.repeats):
                for key, fn in runs.items():
                    times[key].append(_timed(fn))
        results["inference_batch1"] = {k: summary(v) for k, v in times.items()}
        print(json.dumps(results["inference_batch1"]), file=sys.stderr, flush=True)

    if args.compile:
        ours.eval()
        compiled = torch.compile(ours, dynamic=False)  # the export/compile-friendly plain path, compiled
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(x1)
            compile_s = time.perf_counter() - start
            times = [_timed(lambda: compiled(x1)) for _ in range(args.repeats)]
            diff = float((compiled(x1) - ours(x1)).abs().max())
        results["torch_compile_batch1"] = {**summary(times), "compile_s": compile_s, "max_abs_diff_vs_eager": diff}
        print(json.dumps(results["torch_compile_batch1"]), file=sys.stderr, flush=True)

    if "onnx" not in args.skip:
        import onnxruntime

        ours.eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fcdensenet103.onnx"
            start = time.perf_counter()
            torch.onnx.export(ours, (x1,), path, dynamo=False, input_names=["adc"], output_names=["logits"],
                              dynamic_axes={"adc": {0: "batch", 2: "height", 3: "width"},
                                            "logits": {0: "batch", 2: "height", 3: "width"}})
            export_s = time.perf_counter() - start
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = {"adc": x1.numpy()}
            out = session.run(None, feed)[0]
            with torch.inference_mode():
                diff = float((torch.from_numpy(out) - ours(x1)).abs().max())
            times = [_timed(lambda: session.run(None, feed)) for _ in range(args.repeats)]
        results["onnxruntime_batch1"] = {**summary(times), "export_s": export_s, "max_abs_diff_vs_torch": diff,
                                         "onnxruntime": onnxruntime.__version__}
        print(json.dumps(results["onnxruntime_batch1"]), file=sys.stderr, flush=True)

    if "training" not in args.skip:
        x2 = torch.rand(2, 1, SIZE, SIZE, generator=generator)
        y2 = torch.randint(0, 3, (2, SIZE, SIZE), generator=generator)
        efficient = build("memory_efficient", torch)
        models = {"reference": reference, "ours_plain": ours, "ours_memory_efficient": efficient}
        optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
        for model in models.values():
            model.train()
        times = {k: [] for k in models}
        for key, model in models.items():
            training_step(model, optimizers[key], x2, y2, torch)
        for _ in range(args.repeats):
            for key, model in models.items():
                times[key].append(_timed(lambda: training_step(model, optimizers[key], x2, y2, torch)))
        results["training_step_batch2"] = {k: summary(v) for k, v in times.items()}
        if "flops" not in args.skip:
            reference.zero_grad()
            results["training_step_batch2_gflop"] = count_flops(reference, x2, torch, backward=True) / 1e9
        print(json.dumps(results["training_step_batch2"]), file=sys.stderr, flush=True)
    return results


def main() -> int:
    global SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=SIZE, help="image height and width (default 320)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "models.json")
    parser.add_argument("--skip", nargs="*", default=[], choices=["inference", "training", "memory", "onnx", "flops"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd inference (compiles ~2 min)")
    parser.add_argument("--allocator", choices=["default", "tuned"], default="default", help=argparse.SUPPRESS)
    parser.add_argument("--peak-child", help=argparse.SUPPRESS)
    parser.add_argument("--configuration-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    SIZE = args.size
    if args.peak_child:
        peak_rss_child(args.peak_child, args.threads, args.allocator)
        return 0
    if args.configuration_child:
        print(json.dumps(run_configuration(args)))
        return 0

    import torch

    results: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average_at_start": os.getloadavg()},
        "image": [SIZE, SIZE], "repeats": args.repeats,
        "note": "min over repeats; each allocator configuration runs reference and ours interleaved in one process",
    }
    for allocator in ("default", "tuned"):
        skip = list(args.skip) + (["flops", "onnx"] if allocator == "tuned" else [])
        command = [sys.executable, __file__, "--configuration-child", "--allocator", allocator,
                   "--threads", str(args.threads), "--repeats", str(args.repeats), "--size", str(args.size)]
        if skip:
            command += ["--skip", *skip]
        if args.compile and allocator == "default":
            command.append("--compile")
        print(f"configuration: allocator {allocator}", flush=True)
        out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        results[f"allocator_{allocator}"] = json.loads(out.stdout.strip().splitlines()[-1])

    if "memory" not in args.skip:
        peaks = {}
        for kind, allocator in [("reference", "default"), ("ours", "default"), ("memory_efficient", "default"),
                                ("reference", "tuned"), ("memory_efficient", "tuned")]:
            peaks[f"{kind}_{allocator}_allocator"] = measure_peak(kind, args.threads, allocator)
            print(kind, allocator, json.dumps(peaks[f"{kind}_{allocator}_allocator"]), flush=True)
        results["training_peak_memory_batch2"] = peaks

    results["summary"] = summarize(results)
    print(json.dumps(results["summary"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def summarize(results: dict) -> dict:
    """Ratios to the reference (min times), fractions of the compute bound, memory ratios."""
    out: dict = {}
    default, tuned = results.get("allocator_default", {}), results.get("allocator_tuned", {})
    flops = default.get("flops")
    for name, config in (("default", default), ("tuned", tuned)):
        inference = config.get("inference_batch1")
        if inference:
            ref = inference["reference"]["min_s"]
            out[f"inference_{name}_allocator"] = {
                k: {"min_s": v["min_s"], "ratio_to_reference": v["min_s"] / ref,
                    **({"fraction_of_compute_bound": flops["inference_bound_s_claimed"] / v["min_s"]} if flops else {})}
                for k, v in inference.items()}
        training = config.get("training_step_batch2")
        if training:
            ref = training["reference"]["min_s"]
            out[f"training_{name}_allocator"] = {k: {"min_s": v["min_s"], "ratio_to_reference": v["min_s"] / ref}
                                                 for k, v in training.items()}
    if default.get("training_step_batch2") and tuned.get("training_step_batch2"):
        ref = default["training_step_batch2"]["reference"]["min_s"]
        out["training_ours_tuned_vs_reference_default"] = {
            k: tuned["training_step_batch2"][k]["min_s"] / ref for k in ("ours_plain", "ours_memory_efficient")}
    if default.get("inference_batch1") and tuned.get("inference_batch1"):
        out["inference_ours_tuned_vs_reference_default"] = (
            tuned["inference_batch1"]["ours"]["min_s"] / default["inference_batch1"]["reference"]["min_s"])
    if default.get("torch_compile_batch1") and default.get("inference_batch1"):
        out["torch_compile_ratio_to_reference"] = (default["torch_compile_batch1"]["min_s"]
                                                   / default["inference_batch1"]["reference"]["min_s"])
    if default.get("onnxruntime_batch1") and default.get("inference_batch1"):
        out["onnxruntime_ratio_to_reference"] = (default["onnxruntime_batch1"]["min_s"]
                                                 / default["inference_batch1"]["reference"]["min_s"])
    peaks = results.get("training_peak_memory_batch2")
    if peaks:
        ref = peaks["reference_default_allocator"]
        out["peak_memory_ratio_to_reference"] = {k: v["peak_rss_mib"] / ref["peak_rss_mib"] for k, v in peaks.items()}
        out["step_memory_ratio_to_reference"] = {k: v["step_peak_mib"] / ref["step_peak_mib"] for k, v in peaks.items()}
    return out


if __name__ == "__main__":
    sys.exit(main())
