"""Time to quality: hit-level beam efficiency and purity against training time, for the hit-level network
(every checkpoint its runs kept: stage 1, configs/hits-cpu.yaml, then stage 2, configs/hits-cpu-stage2.yaml,
whose last weights were `default` 2.1.0, then stage 3, configs/hits-cpu-decatt-stage3.yaml, `default` 2.3.0) and for the image networks `tiramisu-gpu` (GPU)
and `default-cpu`, all on the same events, which no training saw.

    python benchmarks/time_to_quality.py runs/hits [runs/hits-stage2 ...] EVENTS.h5 [--events 60] [--models tiramisu-gpu default-cpu]
    python benchmarks/time_to_quality.py --plot-only      # redraw docs/time-to-quality.png from the results
    python benchmarks/time_to_quality.py --extend runs/hits-decatt-stage3 EVENTS.h5   # one more stage onto the results

``--extend`` adds the checkpoints of a later stage to the curve already in the results file (scored on the
same first events of the same events file), counted on from the curve's last point, which is the end of
the stages before it: the earlier stages' checkpoints need not be on disk any more.

The hit-level runs must have been trained with ``trainer.keep_checkpoints: true``: each ``step-K.ckpt``
records the CPU and wall seconds its run had spent up to it; a later stage's times are counted on from the
end of the stages before it (their cards' ``trained_on``), so the curve is the whole recipe's cost.
Checkpoints are scored at argmax (a working point is chosen only for the shipped weights); the shipped
models at their cards' working points, as ``predict`` runs them. Their training cost is the README's
(whole recipes, all stages): ``default-cpu`` 3 h 41 min on this 2-core CPU (13 260 s of wall time; its
four stages' CPU time was not summed in its cards), ``tiramisu-gpu`` 410 s + 180 s on one NVIDIA H200.
Results: ``benchmarks/results/time_to_quality.json`` and ``docs/time-to-quality.png``.
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from protoseg.fileio import write_json
from protoseg.hits.inference import evaluate_events
from protoseg.inference import predict_file
from protoseg.loading import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "time_to_quality.json"
FIGURE = ROOT / "docs" / "time-to-quality.png"
# Training cost of the shipped image networks, as the README records it (all stages of each recipe).
SHIPPED_COST = {
    "default-cpu": {"device": "2-core CPU (this machine)", "wall_time_s": 3 * 3600 + 41 * 60},
    "tiramisu-gpu": {"device": "one NVIDIA H200", "wall_time_s": 410 + 180},
}


def _subset(events: Path, n: int, folder: Path) -> Path:
    """The first ``n`` events of ``events`` as a file of their own (what every model is scored on)."""
    from protoseg.events import EventsWriter, open_events

    out = folder / "events.h5"
    with open_events(events) as source, EventsWriter(out, config=source.config, is_mc=source.is_mc, source=str(events)) as writer:
        for event in source.iter_events(stop=min(n, len(source))):
            writer.append(event)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="*", metavar="RUN... EVENTS",
                        help="run folders of the hit-level network's stages, in order (checkpoints/step-K.ckpt), "
                             "then the events (with truth) that no training or decision saw")
    parser.add_argument("--events", dest="n_events", type=int, default=60)
    parser.add_argument("--models", nargs="*", default=["tiramisu-gpu", "default-cpu"], help="shipped image models to compare")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the results file")
    parser.add_argument("--extend", action="store_true", help="add the RUN's checkpoints as the next stage of the results file's curve")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"results JSON (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--figure", type=Path, default=FIGURE, help=f"figure PNG (default {FIGURE.relative_to(ROOT)})")
    args = parser.parse_args()
    if args.plot_only:
        _plot(json.loads(args.results.read_text()), args.figure)
        return
    if len(args.paths) < 2:
        parser.error("one RUN or more and EVENTS are needed unless --plot-only")
    runs, events_path = args.paths[:-1], args.paths[-1]
    previous = json.loads(args.results.read_text()) if args.extend else None
    if previous is not None and (Path(previous["events"]).name != events_path.name or previous["n_events"] != args.n_events):
        raise SystemExit(f"{args.results}: its curve is on the first {previous['n_events']} events of {previous['events']}, "
                         f"not of {events_path} ({args.n_events}): extend it on the same events")
    first_stage = 1 + max(p["stage"] for p in previous["hit_level"]) if previous else 1
    stages = []
    for stage, run in enumerate(runs, start=first_stage):
        checkpoints = sorted(run.glob("checkpoints/step-*.ckpt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
        if not checkpoints:
            raise SystemExit(f"{run}: no checkpoints/step-K.ckpt (train with trainer.keep_checkpoints: true)")
        stages.append((stage, run, checkpoints))
    with tempfile.TemporaryDirectory() as tmp:
        events = _subset(events_path, args.n_events, Path(tmp))
        curve = []
        for stage, run, checkpoints in stages:
            for path in checkpoints:
                model = load_model(path)
                scores = evaluate_events(model, events, beam_threshold="argmax", progress=False)["hits"]["all"]
                beam = scores["classes"].index("beam")
                validation = model.card["metrics"]["validation"]
                curve.append({"stage": stage, "run": str(run), "checkpoint": path.name, "step": int(validation["step"]),
                              "cpu_time_s": validation["cpu_time_s"], "wall_time_s": validation["wall_time_s"],
                              "beam_efficiency": scores["efficiency"][beam], "beam_purity": scores["purity"][beam]})
                print(path, scores["efficiency"][beam], scores["purity"][beam])
        ends = [json.loads((run / "model.json").read_text())["trained_on"] for _, run, _ in stages]
        if previous is not None:
            curve = extended_curve(previous["hit_level"], curve, ends)
            runs = [*map(Path, previous["runs"]), *runs]
        else:
            curve = counted_over_stages(curve, ends)
        shipped = {} if previous is None else previous["shipped"]
        for name in (args.models if previous is None else []):
            summary = predict_file(load_model(name), events, Path(tmp) / f"{name}.h5", progress=False)
            shipped[name] = {**SHIPPED_COST.get(name, {}), "beam_efficiency": summary.hit_metrics["beam_efficiency"],
                             "beam_purity": summary.hit_metrics["beam_purity"], "beam_threshold": summary.beam_threshold}
            print(name, json.dumps(shipped[name]))
    result = {"events": str(events_path), "n_events": args.n_events, "runs": [str(run) for run in runs], "hit_level": curve,
              "shipped": shipped}
    write_json(args.results, result)
    _plot(result, args.figure)


def counted_over_stages(curve: list[dict], stage_ends: list[dict]) -> list[dict]:
    """Checkpoints of several stages (``stage`` 1, 2, ...; ``step``, ``cpu_time_s``, ``wall_time_s`` counted from
    their own run's start) with those counted from the start of stage 1: a stage starts where the one before
    it ended, as its run's card records it (``trained_on``: ``steps``, ``cpu_time_s``, ``wall_time_s``, resumes
    included)."""
    offsets = [{"step": 0, "cpu_time_s": 0.0, "wall_time_s": 0.0}]
    for end in stage_ends:
        last = offsets[-1]
        offsets.append({"step": last["step"] + int(end["steps"]), "cpu_time_s": last["cpu_time_s"] + float(end["cpu_time_s"]),
                        "wall_time_s": last["wall_time_s"] + float(end["wall_time_s"])})
    return [{**point, **{key: offsets[point["stage"] - 1][key] + point[key] for key in ("step", "cpu_time_s", "wall_time_s")}}
            for point in curve]


def extended_curve(earlier: list[dict], later: list[dict], later_ends: list[dict]) -> list[dict]:
    """A curve already counted over its stages (``earlier``) followed by the checkpoints of later stages
    (``later``: stages numbered on from earlier's last, times counted from their own run's start; their runs'
    ``trained_on`` in ``later_ends``). The earlier stages end at their curve's last point, so it is the offset."""
    first_stage = 1 + max(p["stage"] for p in earlier)
    last = earlier[-1]
    base = {"steps": last["step"], "cpu_time_s": last["cpu_time_s"], "wall_time_s": last["wall_time_s"]}
    # as stages 2, 3, ... after one stage that ends where the earlier curve ends, then numbered back
    shifted = counted_over_stages([{**p, "stage": p["stage"] - first_stage + 2} for p in later], [base, *later_ends])
    return earlier + [{**p, "stage": p["stage"] + first_stage - 2} for p in shifted]


def beam_hit_iou(efficiency: float, purity: float) -> float:
    """Beam-hit IoU from efficiency TP/(TP+FN) and purity TP/(TP+FP): TP/(TP+FP+FN) = 1/(1/e + 1/p - 1).
    One number per model, less sensitive to where a working point sits than either alone."""
    return 1.0 / (1.0 / efficiency + 1.0 / purity - 1.0)


def _plot(result: dict, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True)
    curve = result["hit_level"]
    hours = [p["wall_time_s"] / 3600 for p in curve]
    left.plot(hours, [beam_hit_iou(p["beam_efficiency"], p["beam_purity"]) for p in curve], "o-", color="tab:red",
              label="hit-level sparse U-Net (2-core CPU)")
    right.plot(hours, [p["beam_efficiency"] for p in curve], "o-", color="tab:red", label="hit-level: efficiency")
    right.plot(hours, [p["beam_purity"] for p in curve], "s--", color="tab:red", label="hit-level: purity")
    for before, after in zip(curve, curve[1:]):
        if after.get("stage", 1) != before.get("stage", 1):  # a new stage: fresh events, a second one-cycle
            for ax in (left, right):
                ax.axvline(before["wall_time_s"] / 3600, color="grey", lw=0.8, ls=":")
                ax.annotate(f"stage {after['stage']}", (before["wall_time_s"] / 3600, 0.45), xycoords=("data", "axes fraction"),
                            fontsize=7, color="grey", xytext=(3, 0), textcoords="offset points")
    colours = {"tiramisu-gpu": "tab:blue", "default-cpu": "tab:green"}
    for name, point in result["shipped"].items():
        x, colour = point.get("wall_time_s", 0) / 3600, colours.get(name, "k")
        left.scatter([x], [beam_hit_iou(point["beam_efficiency"], point["beam_purity"])], marker="D", color=colour, s=60,
                     label=f"{name} ({point.get('device', '')})")
        right.scatter([x], [point["beam_efficiency"]], marker="o", color=colour, s=60, label=f"{name}: efficiency")
        right.scatter([x], [point["beam_purity"]], marker="s", color=colour, s=60, facecolors="none", label=f"{name}: purity")
    left.set_ylabel("beam-hit IoU (rule all)")
    right.set_ylabel("beam hits (rule all)")
    for ax in (left, right):
        ax.set_xlabel("training wall time (hours)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Time to quality on {result['n_events']} unseen events ({Path(result['events']).name}); checkpoints at argmax")
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)


if __name__ == "__main__":
    main()
