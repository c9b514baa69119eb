"""Result tables of the documentation, generated from the results files, so that no table can disagree with its JSON.

A page asks for a table with a line of its own::

    <!-- gen-table: robustness -->

and the build replaces that line with the table made from the JSON the table names (``TABLES`` below), followed
by a line saying which file it came from. It runs as an MkDocs hook (``hooks: [docs/gen_tables.py]`` in
``mkdocs.yml``): an unknown table name, a missing results file or a missing key stops the build.

Outside MkDocs::

    python docs/gen_tables.py                 # the names of all tables
    python docs/gen_tables.py robustness      # print one table
    python docs/gen_tables.py --out DIR       # write every table as DIR/NAME.md

Every number printed here is read from a results file at build time; rounding is the only thing this file adds.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!--\s*gen-table:\s*([A-Za-z0-9_.-]+)\s*-->\s*$", re.M)


def load(relative: str) -> Any:
    path = ROOT / relative
    if not path.is_file():
        raise FileNotFoundError(f"gen_tables: results file {relative} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def n(value: float, digits: int) -> str:
    """``value`` rounded half up to ``digits`` decimals as its shortest decimal form reads (0.215 -> 0.22, where
    binary rounding gives 0.21), the way the numbers were written by hand before the tables were generated."""
    quantum = Decimal(1).scaleb(-digits)
    return str(Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP))


def f(value: float | None, digits: int = 3) -> str:
    """A number rounded for a table; '—' where the results file holds none."""
    if value is None:
        return "—"
    return n(value, digits)


def pair(a: float | None, b: float | None, digits: int = 3) -> str:
    return f"{f(a, digits)} / {f(b, digits)}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


# --------------------------------------------------------------------------------------------- benchmarks


def summary() -> list[str]:
    d = load("benchmarks/results/summary.json")
    r, m = d["results"], d["machine"]
    sim1, sim2, img, train = r["simulate_one_core"], r["simulate_all_cores"], r["images"], r["train"]
    pt, ort = r["torch_inference"], r["onnx_inference"]
    rows = [
        [f"simulate, one core ({sim1['events']} events)", f"{n(sim1['events_per_s'], 2)} events/s ({n(sim1['seconds'] / sim1['events'], 2)} s/event)",
         f"{n(sim1['self_max_rss_mb'], 0)} MB"],
        [f"simulate, {sim2['workers']} workers ({sim2['events']} events)", f"{n(sim2['events_per_s'], 2)} events/s",
         f"main {n(sim2['self_max_rss_mb'], 0)} MB, largest worker {n(sim2['largest_child_max_rss_mb'], 0)} MB"],
        [f"images 320×320, max pooling, one core ({img['events']} synthetic events)", f"{n(img['events_per_s'], 0)} events/s", f"{n(img['peak_rss_mb'], 0)} MB"],
        [f"training, `default-cpu` recipe (stage 1), {train['image_size'][0]}×{train['image_size'][1]}, batch {train['batch_size']} "
         f"({n(train['parameters'] / 1000, 0)} k parameters)",
         f"{n(train['train_images_per_s'], 2)} images/s; evaluation {n(train['eval_images_per_s'], 2)} images/s", f"{n(train['peak_rss_mb'], 0)} MB"],
        [f"inference `tiramisu-gpu` ({n(pt['parameters'] / 1e6, 2)} M parameters), 320×320, batch 1, PyTorch, {pt['threads']} threads",
         f"**{n(pt['ms_per_image_median'], 0)} ms/image** (min {n(pt['ms_per_image_min'], 0)})", f"{n(pt['peak_rss_mb'], 0)} MB"],
        [f"inference `tiramisu-gpu`, ONNX Runtime {ort['onnxruntime']}, {ort['threads']} threads",
         f"{n(ort['ms_per_image_median'], 0)} ms/image (min {n(ort['ms_per_image_min'], 0)})", f"{n(ort['peak_rss_mb'], 0)} MB"],
    ]
    head = (f"Machine: {m['cpu']}, {m['cores']} cores, {n(m['memory_gib'], 1)} GiB, Python {m['python']}, torch {train['torch']}; "
            f"load average {n(m['load_average_at_start'], 2)} at the start; mode `{d['mode']}`; {n(m['total_s'], 0)} s in all.")
    return [head, ""] + table(["what", "result", "peak memory (RSS)"], rows)


def models() -> list[str]:
    d = load("benchmarks/results/models.json")
    s, mem = d["summary"], d["training_peak_memory_batch2"]
    fl = d["allocator_default"]["flops"]
    ort = d["allocator_default"]["onnxruntime_batch1"]
    ref_inf = s["inference_default_allocator"]["reference"]["min_s"]
    ref_train = s["training_default_allocator"]["reference"]["min_s"]
    ref_mem = mem["reference_default_allocator"]["peak_rss_mib"]
    rows = [
        ["inference, batch 1: straightforward port (default allocator)", f"{n(ref_inf, 2)} s", "1"],
        ["inference: protoseg, default allocator", f"{n(s['inference_default_allocator']['ours']['min_s'], 2)} s",
         f"{n(s['inference_default_allocator']['ours']['ratio_to_reference'], 2)}"],
        ["inference: protoseg with `tune_cpu_allocator()` (as its commands run)", f"**{n(s['inference_tuned_allocator']['ours']['min_s'], 2)} s**",
         f"**{n(s['inference_ours_tuned_vs_reference_default'], 2)}**"],
        ["inference: ONNX Runtime", f"{n(ort['min_s'], 2)} s", f"{n(s['onnxruntime_ratio_to_reference'], 2)}"],
        ["training step, batch 2, Adam, CE: port (default allocator)", f"{n(ref_train, 2)} s", "1"],
        ["training step: protoseg memory-efficient, default allocator", f"{n(s['training_default_allocator']['ours_memory_efficient']['min_s'], 2)} s",
         f"{n(s['training_default_allocator']['ours_memory_efficient']['ratio_to_reference'], 2)}"],
        ["training step: protoseg memory-efficient, tuned allocator", f"**{n(s['training_tuned_allocator']['ours_memory_efficient']['min_s'], 2)} s**",
         f"**{n(s['training_ours_tuned_vs_reference_default']['ours_memory_efficient'], 2)}**"],
        ["training step: the port with the tuned allocator", f"{n(s['training_tuned_allocator']['reference']['min_s'], 2)} s",
         f"{n(s['training_tuned_allocator']['reference']['min_s'] / ref_train, 2)}"],
        ["peak training memory (RSS), batch 2: port", f"{n(ref_mem, 0)} MiB", "1"],
        ["peak training memory: protoseg memory-efficient", f"**{n(mem['memory_efficient_default_allocator']['peak_rss_mib'], 0)} MiB**",
         f"**{n(s['peak_memory_ratio_to_reference']['memory_efficient_default_allocator'], 2)}**"],
    ]
    m = d["machine"]
    head = (f"FC-DenseNet103, {d['image'][0]}×{d['image'][1]}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}; "
            f"{d['note']}. Forward {n(fl['forward_batch1_gflop'], 1)} GFLOP per image, training step {n(d['allocator_default']['training_step_batch2_gflop'], 0)} GFLOP; "
            f"a large convolution ran at {n(fl['conv_gflop_per_s_measured'], 0)} GFLOP/s here.")
    return [head, ""] + table(["what", "time / memory", "ratio to the port"], rows)


# --------------------------------------------------------------------------------------------- shipped models


def image_test_metrics(path: str, name: str | None = None) -> Callable[[], list[str]]:
    """The per-class table of an image network's ``evaluate`` metrics.json (``name``: the model's shipped name
    now, where the file recorded another)."""
    def build() -> list[str]:
        d = load(path)
        classes, conf = d["classes"], d["confusion"]
        rows = []
        for k, name in enumerate(classes):
            truth = sum(conf[k])
            predicted = sum(row[k] for row in conf)
            rows.append([name, f"{n(d['iou'][k], 4)}", f(conf[k][k] / truth if truth else None, 3),
                         f(conf[k][k] / predicted if predicted else None, 3), str(truth)])
        head = (f"{name or '`' + d['model'] + '`'} on {d['n_images']} images ({d['data']}, split {d['split']}): mIoU **{n(d['miou'], 4)}** "
                f"(per image {n(d['miou_per_image'], 4)}), pixel accuracy {n(d['accuracy'], 4)}.")
        return [head, ""] + table(["class", "IoU", "recall", "precision", "true pixels"], rows)
    return build


def hit_test_metrics(path: str) -> Callable[[], list[str]]:
    """The per-class table of a hit-level network's ``evaluate`` metrics.json: hits under both beam label
    rules, then the same predictions projected onto the 2018 320×320 grid."""
    def build() -> list[str]:
        d = load(path)
        rows = []
        for rule in ("all", "2018"):
            h = d["hits"][rule]
            for k, name in enumerate(h["classes"]):
                rows.append([f"hits, rule {rule}", name, f(h["efficiency"][k]), f(h["purity"][k]), n(h["iou"][k], 4),
                             f"{h['n_hits'][k]:,}"])
        px = d["pixels"]
        conf = px["confusion"]
        for k, name in enumerate(d["classes"]):
            truth, predicted = sum(conf[k]), sum(row[k] for row in conf)
            rows.append([f"pixels, {px['size'][0]}×{px['size'][1]} ({px['pooling']})", name, f(conf[k][k] / truth if truth else None),
                         f(conf[k][k] / predicted if predicted else None), n(px["iou"][k], 4), f"{truth:,}"])
        point = "argmax" if d["beam_threshold"] is None else f"beam when P(beam) ≥ {d['beam_threshold']:g}"
        head = (f"`{d['model']}` (model {d['model_version']}, {point}) on the {d['n_events']} events of `{Path(d['data']).name}`; "
                f"pixels on the {px['n_images']} that pass the 2018 selection: mIoU **{n(px['miou'], 4)}**. "
                f"Network {n(1000 * d['network_seconds_per_event'], 0)} ms per event in this evaluation (on an idle machine: "
                f"[Hit-level network](hit-level.md#measured-performance)).")
        return [head, ""] + table(["scored on", "class", "efficiency (recall)", "purity (precision)", "IoU", "true hits / pixels"], rows)
    return build


def _cards() -> list[tuple[str, dict]]:
    folder = ROOT / "src" / "protoseg" / "pretrained"
    names = sorted(p.stem for p in folder.glob("*.safetensors"))
    if not names:
        raise FileNotFoundError("gen_tables: no shipped models in src/protoseg/pretrained")
    return [(name, load(f"src/protoseg/pretrained/{name}.json")) for name in names]


def _network(card: dict) -> str:
    a = card["architecture"]
    o = a.get("options", {})
    if a["name"] == "fcdensenet" and "down_blocks" in o:
        levels, layers = len(o["down_blocks"]), sorted(set(o["down_blocks"]))
        text = f"FC-DenseNet, {levels} levels of {'/'.join(map(str, layers))} layers, growth {o.get('growth_rate')}"
    elif a["name"] == "sparse_unet":
        channels = o.get("channels", [])
        text = (f"submanifold sparse U-Net over the hits, {len(channels)} levels of {channels[0]}–{channels[-1]} maps, "
                f"sites of 1 wire × {o.get('ticks_per_row')} ticks; features {', '.join(o.get('features', []))}") if channels else a["name"]
    else:
        text = a["name"]
    planes = [name for key, name in (("hit_mask_input", "hit mask"), ("position_input", "position")) if o.get(key)]
    if planes:
        text += f"; input planes: charge + {' + '.join(planes)}"
    if o.get("norm_statistics"):
        text += f"; BN statistics `{o['norm_statistics']}`"
    return text


def code(value: Any) -> str:
    return "—" if value is None else f"`{value}`"


def number(value: Any, digits: int = 3) -> str:
    """A card's metric, or '—' where the card has none (cards of other kinds of model hold other metrics)."""
    return f(value, digits) if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def shipped_cards() -> list[str]:
    rows = []
    for name, card in _cards():
        val = card.get("metrics", {}).get("validation", {}) or {}
        iou = val.get("iou", {})
        trained = card.get("trained_on", {})
        where = trained.get("gpu") or trained.get("cpu") or "—"
        if trained.get("wall_time_s") is not None:
            where += f", {n(trained['wall_time_s'] / 60, 0)} min, {trained.get('steps')} steps (last stage)"
        threshold = card.get("decision", {}).get("beam_threshold")
        rows.append([
            f"`{name}`", card.get("model_version", "unversioned"), _network(card), str(len(card["classes"])),
            code(card["input"].get("normalisation")), code(card["input"].get("image", {}).get("beam_label_rule")),
            where, number(iou.get("beam") if isinstance(iou, dict) else None), number(val.get("miou")),
            "argmax" if threshold is None else f"P(beam) ≥ {threshold}",
        ])
    return table(["model", "model version", "network", "classes", "normalisation", "beam label rule", "trained on",
                  "validation beam IoU", "validation mIoU", "decision"], rows)


def working_point(source: str) -> Callable[[], list[str]]:
    def build() -> list[str]:
        d = load(source)
        points = [p for p in d["points"] if 0.399 < p["beam_threshold"] < 0.701]
        card = d.get("card_beam_threshold")
        cell = lambda p, text: f"**{text}**" if card is not None and abs(p["beam_threshold"] - card) < 1e-9 else text  # noqa: E731
        header = ["P(beam) ≥"] + [cell(p, f"{n(p['beam_threshold'], 2)}" + (" (card)" if card is not None and abs(p['beam_threshold'] - card) < 1e-9 else ""))
                                  for p in points]
        rows = [["hit efficiency"] + [cell(p, f"{n(p['beam_efficiency'], 3)}") for p in points],
                ["hit purity"] + [cell(p, f"{n(p['beam_purity'], 3)}") for p in points]]
        return table(header, rows) + ["", f"{d['beam_hits']} true beam hits; events `{d['events']}`."]
    return build


def beam_hit_origins(source: str, model: str) -> Callable[[], list[str]]:
    """Where ``model`` loses beam hits and which hits it wrongly calls beam (benchmarks/beam_hit_origins.py)."""
    return lambda: _beam_hit_origins(load(source), model)


def _beam_hit_origins(d: dict, model: str) -> list[str]:
    g = d["groups"]
    wanted = [
        ("beam / primary", "the primary and its EM daughters (what rule 2018 calls beam)"),
        ("beam / primary / e/gamma", "· of which a beam e⁺ shower (e/γ)"),
        ("beam / primary / pi+-", "· of which a primary π±"),
        ("beam / primary / p", "· of which a primary p"),
        ("beam / hadronic descendants", "hadronic descendants (inelastic products, decays, captures, and their showers)"),
        ("beam / hadronic descendants / pi+-", "· of which π±"),
        ("beam / hadronic descendants / e/gamma", "· of which e/γ (π⁰ showers, ...)"),
        ("beam / hadronic descendants / p", "· of which p"),
        ("beam / hadronic descendants / >= 50 cm from the primary", "· of which ≥ 50 cm from every hit of the primary"),
    ]
    rows = [[label, f"{n(100 * g[key]['fraction_of_beam_hits'], 1)}%", f(g[key]["efficiency"], 3),
             f"{n(100 * g[key]['missed_fraction_of_beam_hits'], 1)}%"] for key, label in wanted]
    nb = g["not-beam"]
    near = sum(g[f"not-beam / {b} from a beam hit"]["fraction_of_tagged_beam"] for b in ("0-2 cm", "2-10 cm"))
    far = g["not-beam / >= 50 cm from a beam hit"]["fraction_of_tagged_beam"]
    tail = (f"`{model}` tags {n(d['efficiency'], 3)} of these {d['beam_hits']} beam hits at purity {n(d['purity'], 3)} "
            f"({d['n_events']} events). Of the hits it tags beam, {n(100 * nb['fraction_of_tagged_beam'], 1)}% are not-beam hits: "
            f"{n(100 * near, 1)} points within 10 cm of a beam hit, {n(100 * far, 1)} beyond 50 cm.")
    return table(["beam hits of", "share of the beam hits", "efficiency", "missed (share of all beam hits)"], rows) + ["", tail]


# --------------------------------------------------------------------------------------------- studies


def robustness() -> list[str]:
    d = load("benchmarks/results/robustness.json")
    rows = []
    for cond in d.values():
        dm, da, st = cond["default"], cond["default_all_events"], cond["study2018"]
        has_sel = dm["n_images"] > 0 and "iou" in dm
        rows.append([
            cond["description"], str(dm["n_images"]),
            f(dm["iou"]["beam"]) if has_sel else "—", f(dm["miou"]) if has_sel else "—",
            f"{pair(da['iou']['beam'], da['miou'])} ({da['n_images']})",
            pair(dm.get("hit_beam_efficiency"), dm.get("hit_beam_purity")),
            str(st["n_images"]), f(st["iou"]["beam"]) if st["n_images"] else "—", f(st["miou"]) if st["n_images"] else "—",
        ])
    seeds = sorted({c["seed"] for c in d.values()})
    events = sorted({c["events"] for c in d.values()})
    return table(["condition", "`tiramisu-gpu`: selected images", "beam IoU", "mIoU", "all events: beam IoU / mIoU",
                  "hits: beam efficiency / purity", "`study2018`: images", "beam IoU", "mIoU"], rows) + [
        "", f"{'/'.join(map(str, events))} events per condition, seed {', '.join(map(str, seeds))}."]


def model_study() -> list[str]:
    d = load("benchmarks/results/model_study.json")
    order = [v for v in ("baseline", "hit_mask", "whole_images", "position", "combined") if v in d["variants"]]
    order += [v for v in d["variants"] if v not in order]
    rows = []
    for name in order:
        v = d["variants"][name]
        h = v["heldout"]
        rows.append([f"`{name}`: {v['what']}", str(v["steps"]), f(h["iou"]["beam"]), f(h["miou"]), pair(h["beam_recall"], h["beam_precision"]),
                     pair(h.get("hit_beam_efficiency"), h.get("hit_beam_purity"))])
    first = d["variants"][order[0]]["heldout"]
    return table([f"variant ({n(d['cpu_budget_s'], 0)} CPU-s each)", "steps", "beam IoU", "mIoU", "beam recall / precision",
                  "hits: efficiency / purity"], rows) + [
        "", f"Held out: {first['n_images']} images; hit level on {first['hit_events']} events. Baseline recipe `{d['baseline']}`."]


_POOLING_LABEL = {"max+spread-rms": "max, `--spread-rms`"}


def downsampling_oracle() -> list[str]:
    d = load("benchmarks/results/downsampling.json")
    rows = []
    for r in d["rows"]:
        fr = r["pixel_fractions_all"]
        rows.append([
            _POOLING_LABEL.get(r["variant"], r["variant"]), str(r["size"]), pair(r["efficiency_all"], r["purity_all"], 4),
            pair(r["efficiency_selected"], r["purity_selected"], 4), f"{n(100 * fr['beam'], 3)} / {n(100 * fr['not-beam'], 3)}",
            f"{n(r['beam_pixels_per_image_all'], 0)}", f"{n(r['event_to_image_cpu_ms_per_event'], 2)}",
            f"{n(r['make_image_file_cpu_ms_per_event'], 1)}", f"{n(r['file_bytes_per_image'] / 1000, 1)}",
        ])
    first = d["rows"][0]
    return table(["pooling", "size", f"oracle beam efficiency / purity (all {first['events']})", f"the {first['selected_events']} selected",
                  "beam / not-beam pixels (% of image)", "beam pixels per image", "pooling, CPU ms/event", "`images`, CPU ms/event",
                  "kB per image (file)"], rows)


def downsampling_inference() -> list[str]:
    d = load("benchmarks/results/downsampling.json")
    rows = [[f"{r['size']}×{r['size']}", f"{n(r['cpu_ms_per_image_median'], 0)} ms", f"{n(r['peak_rss_mb'], 0)} MB",
             f"{n(r['peak_rss_before_inference_mb'], 0)} MB", f"{n(r['wall_ms_per_image_median'] / 1000, 1)} s"] for r in d["inference_default_model"]]
    return table(["size", "CPU per image (median)", "peak memory", "before the first image", "wall per image (busy machine: not a speed)"], rows)


def downsampling_trained() -> list[str]:
    d = load("benchmarks/results/downsampling.json")
    repeat = load("benchmarks/results/downsampling-repeat-seed2019.json")
    oracle = {(r["variant"], r["size"]): r for r in d["rows"]}
    rows = []
    for trained, label_seed in ((d["trained"], False), (repeat["trained"], True)):
        for name, v in trained["variants"].items():
            o = oracle.get((name, trained["size"]))
            label = _POOLING_LABEL.get(name, name) + (f", seed {trained['seed']}" if label_seed else "")
            rows.append([label, str(v["trained_on"]["steps"]), pair(v["hit_beam_efficiency"], v["hit_beam_purity"]),
                         f"**{n(v['balanced_efficiency_purity'], 3)}** ({n(v['balanced_threshold'], 2)})",
                         pair(o["efficiency_all"], o["purity_all"]) if o and not label_seed else ""])
    t = d["trained"]
    return table([f"pooling ({t['size']}×{t['size']})", f"training steps in {n(t['cpu_budget_s'], 0)} CPU-s", "hit efficiency / purity at argmax",
                  "**efficiency = purity** (at t)", "oracle efficiency / purity"], rows) + [
        "", f"Recipe `{t['recipe']}`, seed {t['seed']} (repeat: seed {repeat['trained']['seed']}); held-out events `{t['heldout_events']}`."]


def inference_levers() -> list[str]:
    d = load("benchmarks/results/inference_levers.json")
    names = {"with-cpu-continuation": "· averaged ½ : ½ with its CPU continuation", "with-A": "· averaged ½ : ½ with run A"}
    rows, seen = [], set()
    for run in d["runs"]:
        groups: dict[tuple[str, str], dict[str, dict]] = {}
        for row in run["rows"]:
            groups.setdefault((row["variant"], row["shifts"]), {})[row["decision"]] = row
        for (variant, shifts), by in groups.items():
            key = (run["images"], run["split"], variant, shifts)
            if key in seen:  # the base row of a second run on the same images
                continue
            seen.add(key)
            if variant == "base" and shifts == "none":
                label = f"`{run['model']}`, {run['n_images']} images of `{run['images']}` ({run['split']})"
            elif shifts != "none":
                label = f"· {shifts} shifts"
            else:
                label = names.get(variant, f"· {variant}")
            am = by.get("argmax")
            wp = next((r for k, r in by.items() if k != "argmax"), None)
            rows.append([label, f"{n(am['iou'][1], 4)} ({n(am['miou'], 4)})" if am else "—", f"{n(wp['iou'][1], 4)} ({n(wp['miou'], 4)})" if wp else "—",
                         f"{n((am or wp)['seconds_per_image'], 2)}"])
    return table(["beam IoU (mIoU)", "argmax", "working point 0.55", "s per image (2 threads)"], rows) + ["", d["machine"] + "."]


def beam_cluster_cleanup() -> list[str]:
    header = ["largest distance D from the main beam cluster"]
    rows = []
    for seed, label in (("7117", "seed 7117 (decision)"), ("2718", "seed 2718 (unseen)")):
        d = load(f"benchmarks/results/beam_cluster_cleanup-seed{seed}.json")
        if len(header) == 1:
            header += ["none (as shipped)" if p["max_distance_px"] is None else f"{n(p['max_distance_px'], 0)} px" for p in d["points"]]
        point = "argmax" if d["beam_threshold"] is None else f"working point {d['beam_threshold']}"
        rows.append([f"{label}: pixel beam IoU"] + [f"{n(p['pixel_beam_iou'], 4)}" for p in d["points"]])
        rows.append([f"seed {seed}: hit efficiency / purity ({point})"] + [pair(p["hit_beam_efficiency"], p["hit_beam_purity"]) for p in d["points"]])
    return table(header, rows)


def cpu_continuation() -> list[str]:
    d = load("benchmarks/results/cpu_continue_default.json")
    b = d["default_before"]
    rows = [["shipped `tiramisu-gpu`", "0", "—", f"{n(b['val_iou_beam'], 4)}", f"{n(b['val_miou'], 4)}"]]
    rows += [["continued (one-cycle, peak 1.5e-4)", str(p["step"]), f"{n(p['wall_time_s'] / 60, 0)}", f"{n(p['val_iou_beam'], 4)}", f"{n(p['val_miou'], 4)}"]
             for p in d["curve"]]
    second = d["second_run"]
    rows += [["continued at a constant 2e-5", str(p["step"]), f"{n(p['wall_time_s'] / 60, 0)}", f"{n(p['val_iou_beam'], 4)}", f"{n(p['val_miou'], 4)}"]
             for p in second["curve"]]
    swap = second["bn_statistics_swap"]
    rows += [["continued weights, shipped BN statistics", "", "", f"{n(swap['continued_weights_shipped_bn_statistics']['val_iou_beam'], 4)}",
              f"{n(swap['continued_weights_shipped_bn_statistics']['val_miou'], 4)}"],
             ["shipped weights, continued BN statistics", "", "", f"{n(swap['shipped_weights_continued_bn_statistics']['val_iou_beam'], 4)}",
              f"{n(swap['shipped_weights_continued_bn_statistics']['val_miou'], 4)}"]]
    return table(["weights", "steps", "wall min", "validation beam IoU", "validation mIoU"], rows) + [
        "", f"Validation: {d['validation']}. {d['machine']}; {d['date']}. Command: `{d['command']}`."]


def hit_ceiling() -> list[str]:
    d = load("benchmarks/results/hit_ceiling.json")
    rows = [[f"{r['size']}×{r['size']}", r["pooling"], pair(r["efficiency_all"], r["purity_all"]),
             pair(r["efficiency_selected"], r["purity_selected"])] for r in d["rows"]]
    first = d["rows"][0]
    return table(["size", "pooling", f"perfect pixels: hit efficiency / purity ({first['events']} events)",
                  f"the {first['selected_events']} selected"], rows)


# --------------------------------------------------------------------------------------------- simulation


def beam_footprint() -> list[str]:
    d = load("benchmarks/results/beam_footprint.json")
    labels = [("7_gev_hit_cut_300", "hits below 300 ADC·tick dropped"), ("7_gev_hit_cut_700", "hits below 700 ADC·tick dropped"),
              ("7_gev_lifetime_3ms", "electron lifetime 3 ms instead of 35 ms"),
              ("7_gev_beyond_20_columns", "only the part beyond the first 20 wire columns"),
              ("7_gev_beyond_40_columns", "only the part beyond the first 40 wire columns")]
    rows = [[f"{e} GeV/c e⁺ guns", f"{n(v['beam_hits'], 0)}", f"{n(v['beam_pixels'], 0)}"] for e, v in d["positron_guns"].items()]
    rows += [[f"7 GeV/c, {label}", f"{n(d[key]['beam_hits'], 0)}", f"{n(d[key]['beam_pixels'], 0)}"] for key, label in labels]
    return table(["e⁺ shower, 320 × 320 pixels (median of the guns)", "beam hits", "beam pixels"], rows) + [
        "", f"{d['events_per_setting']} guns per setting, seed {d['seed']}."]


def shower_profiles() -> list[str]:
    d = load("benchmarks/results/shower_profiles.json")
    rows = []
    for energy, species in d["simulation"].items():
        e = species["e-"]
        g = d["gflash"][energy]["e"]
        rows.append([f"{int(energy) / 1000:g} GeV e⁻", pair(e["containment"]["1.0"], e["containment"]["3.5"], 2),
                     pair(g["containment"]["1.0"], g["containment"]["3.5"], 2), f"{n(e['depth_x0_50_90_95'][0], 1)}", f"{n(g['depth_x0_50_90_95'][0], 1)}"])
    pdg = d["pdg_containment"]
    return table(["shower", "protoseg: within 1 / 3.5 R_M", "GFlash (argon)", "protoseg: depth of 50% (X₀)", "GFlash"], rows) + [
        "", f"{d['showers_per_setting']} showers each, seed {d['seed']}; Molière radius {d['moliere_radius_cm']} cm, X₀ {d['radiation_length_cm']} cm; "
            f"the PDG rule of thumb: {pdg['1.0']} within 1 R_M, {pdg['3.5']} within 3.5 R_M."]


# --------------------------------------------------------------------------------------------- hit level


def hit_grid() -> list[str]:
    d = load("benchmarks/results/hit_grid.json")
    rows = [[g["grid"], pair(g["beam_efficiency"], g["beam_purity"], 4), pair(g["notbeam_efficiency"], g["notbeam_purity"], 4),
             f(g["hits_sharing_a_site"], 4), n(g["sites_per_event"], 0)] for g in d["grids"]]
    return table(["grid", "beam hits: efficiency / purity", "not-beam hits", "hits sharing their site", "sites per event"], rows) + [
        "", f"The oracle (every site its own truth, rule `{d['rule']}`) on {d['n_events']} events of `{Path(d['events']).name}`."]


def sparse_backends() -> list[str]:
    d = load("benchmarks/results/sparse_backends.json")
    ms = lambda v: n(1000 * v, 0)  # noqa: E731
    rows = []
    for name, t in d["median_s"].items():
        threads = "1" if name.endswith("1_thread") else str(d["threads"])
        diff = 0.0 if name == "protoseg" else d["max_abs_output_difference"][f"spconv_{threads}_threads"]
        label = "protoseg (plain PyTorch, gather backward)" if name == "protoseg" else f"spconv {d['spconv']}"
        rows.append([label, threads, f"{ms(t['train'])} ms", f"{ms(t['infer'])} ms",
                     "reference" if name == "protoseg" else f"{diff:.1e}" + (" (**wrong**: a race in its CPU kernels)" if diff > 1e-4 else "")])
    return table(["implementation", "threads", "training step", "inference", "largest output difference from protoseg"], rows) + [
        "", f"The same network ({d['parameters']:,} parameters, the same weights) on {d['n_events']} events of `{Path(d['events']).name}` "
            f"(median {d['sites_per_event_median']:,} sites), torch {d['torch']}, medians; 1-minute load average at the start {n(d['load_average_at_start'][0], 2)} (a simulation had just ended; nothing else ran)."]


def hits_vs_image() -> list[str]:
    d = load("benchmarks/results/hits_vs_image.json")
    rows = []
    for seed, entry in d["seeds"].items():
        for name in (d["hit_model"], d["image_model"]):
            m = entry[name]
            a, r = m["hits"]["all"], m["hits"]["2018"]
            b, nb = a["classes"].index("beam"), a["classes"].index("not-beam")
            point = "argmax" if m["beam_threshold"] is None else f"P(beam) ≥ {m['beam_threshold']:g}"
            pixels = m.get("pixels")
            rows.append([seed, f"`{name}`", point, pair(a["efficiency"][b], a["purity"][b]), pair(a["efficiency"][nb], a["purity"][nb]),
                         pair(r["efficiency"][b], r["purity"][b]),
                         f"{f(pixels['iou'][b])} / {f(pixels['miou'])} ({pixels['n_images']})" if pixels else "—"])
    return table(["seed", "model", "working point", "beam hits (rule all): efficiency / purity", "not-beam hits",
                  "beam hits (rule 2018)", "320×320 grid: beam IoU / mIoU (events)"], rows) + [
        "", f"Every event of each seed (240), hit by hit; the pixel columns on the events passing the 2018 selection. "
            f"`{d['image_model']}` gives a hit the class of its pixel."]


def hits_inference() -> list[str]:
    d = load("benchmarks/results/hits_inference.json")
    p, t, e = d["python_s_per_event"], d["torchscript_s_per_event"], d["predict_end_to_end"]
    rows = [["network, Python (`HitPredictor`: sites, network, back to hits)", f"{n(1000 * p['median'], 0)} ms (mean {n(1000 * p['mean'], 0)})", ""],
            ["network, TorchScript export (what LArSoft runs)", f"{n(1000 * t['median'], 0)} ms (mean {n(1000 * t['mean'], 0)})", ""],
            [f"`protoseg predict` end to end, {e['events']} events", f"{n(e['wall_s'], 1)} s ({n(1000 * e['wall_s'] / e['events'], 0)} ms per event)",
             f"{n(e['peak_rss_mb'], 0)} MB"]]
    return table(["what", "time per event (median over events)", "peak memory (RSS)"], rows) + [
        "", f"`{d['model']}`" + (f" {d['model_version']}" if d.get("model_version") else "") + (f" ({d['cpu']})" if d.get("cpu") else "")
            + f", `{Path(d['events']).name}` (median {d['hits_per_event_median']:,} hits per event), {d['threads']} threads; "
            f"1-minute load average at the end {n(d['load_average_at_end'][0], 2)}."]


def time_to_quality() -> list[str]:
    d = load("benchmarks/results/time_to_quality.json")
    iou = lambda p: 1.0 / (1.0 / p["beam_efficiency"] + 1.0 / p["beam_purity"] - 1.0)  # noqa: E731  TP/(TP+FP+FN)
    curve = d["hit_level"]
    # every third checkpoint and the last of each stage: the figure draws them all
    last_of_stage = {p.get("stage", 1): i for i, p in enumerate(curve)}
    shown = [p for i, p in enumerate(curve) if i % 3 == 2 or i == last_of_stage[p.get("stage", 1)]]
    rows = [[f"hit-level stage {p.get('stage', 1)}, step {p['step']}",
             f"{n(p['wall_time_s'] / 60, 0)} min on 2 CPU cores ({n(p['cpu_time_s'] / 3600, 2)} CPU-h)",
             f(iou(p)), pair(p["beam_efficiency"], p["beam_purity"])] for p in shown]
    for name, p in d["shipped"].items():
        rows.append([f"`{name}`", f"{n(p['wall_time_s'] / 60, 0)} min on {p['device']}", f(iou(p)), pair(p["beam_efficiency"], p["beam_purity"])])
    return table(["model", "training (wall time)", "beam-hit IoU", "beam hits: efficiency / purity"], rows) + [
        "", f"{d['n_events']} events of `{Path(d['events']).name}`; checkpoints at argmax (every third and the last of each stage; the "
            "figure shows all), steps and times counted over all stages; shipped models at their cards' working points "
            "(`default-cpu`'s card has none: argmax)."]


def hits_stage3() -> list[str]:
    d = load("benchmarks/results/hits_stage3.json")
    rows = []
    for name, m in d["models"].items():
        decision = m["decision_seed_7117"]
        cells = [f"{name}", f"{m['beam_threshold']:.2f} ({pair(decision['beam_efficiency'], decision['beam_purity'])})"]
        for seed in ("2718", "8086", "5150"):
            r = m["seeds"][seed]
            cells.append(f"{pair(r['beam_efficiency'], r['beam_purity'])}; IoU {f(r['beam_iou'])}")
        rows.append(cells)
    t = d["stage3_training"]
    return table(["network", "working point (seed 7117: efficiency / purity)", "seed 2718: beam hits", "seed 8086", "seed 5150"], rows) + [
        "", f"Stage 3: {t['steps']:,} steps, {n(t['cpu_time_s'], 0)} CPU-s, {n(t['wall_time_s'] / 60, 0)} min on 2 cores; "
            "240 events per seed, rule `all`, every hit."]



def hit_postprocessing() -> list[str]:
    """Smoothing a hit network's P(beam) over neighbouring hits (benchmarks/hit_postprocessing.py)."""
    d = load("benchmarks/results/hit_postprocessing-default-seed7117.json")
    rows = [[name, n(p["threshold"], 2), pair(p["efficiency"], p["purity"], 4)] for name, p in d["variants"].items()]
    return table(["P(beam) of each hit", "working point (efficiency = purity)", "beam hits: efficiency / purity"], rows)


def hit_postprocessing_by_seed(paths: tuple[str, ...], prefixes: tuple[str, ...]) -> Callable[[], list[str]]:
    """``benchmarks/hit_postprocessing.py`` on several seeds: the variants whose names start with ``prefixes``,
    each at the working point where its efficiency and purity meet on that seed."""
    def build() -> list[str]:
        results = [load(path) for path in paths]
        names = [name for name in results[0]["variants"] if name.startswith(prefixes)]
        rows = [[name] + [f"{r['variants'][name]['threshold']:.2f}: {pair(r['variants'][name]['efficiency'], r['variants'][name]['purity'], 4)}"
                          for r in results] for name in names]
        seeds = [Path(r["events"]).stem.replace("eval-", "seed ") for r in results]
        return table(["P(beam) of each hit"] + [f"{seed} ({r['n_events']} events): working point: efficiency / purity"
                                                for seed, r in zip(seeds, results)], rows)
    return build


def hit_error_distance() -> list[str]:
    """Where a hit network's beam errors lie: distance to the main cluster of true beam hits."""
    d = load("benchmarks/results/hit_postprocessing-default-seed7117.json")
    rows = [[f"{b['distance_cm']} cm", n(b["beam_hit_share"], 3), n(b["beam_efficiency"], 3), n(b["missed_beam_points"], 2),
             str(b["not_beam_tagged_beam"]), n(b["impurity_points"], 2)] for b in d["by_distance_to_main_beam_cluster"]]
    return table(["distance to the main beam cluster", "share of beam hits", "beam efficiency", "missed beam hits (points)",
                  "not-beam hits tagged beam", "impurity (points)"], rows)


def paired_bootstrap(path: str, label_a: str, label_b: str) -> Callable[[], list[str]]:
    """A ``benchmarks/paired_bootstrap.py`` result: B − A with its 95% interval over resampled events."""
    def build() -> list[str]:
        d = load(path)
        rows = []
        for key, name in (("beam_iou", "beam-hit IoU"), ("beam_efficiency", "beam efficiency"), ("beam_purity", "beam purity")):
            r = d["scores"][key]
            rows.append([name, n(r["a"], 4), n(r["b"], 4), f"{100 * r['difference']:+.2f}",
                         f"{100 * r['interval_95'][0]:+.2f} to {100 * r['interval_95'][1]:+.2f}", f"{100 * r['share_of_resamples_b_above_a']:.1f}%"])
        return table(["pooled over the events", label_a, label_b, "difference (points)", "95% interval (points)", f"resamples with {label_b} ahead"], rows) + [
            "", f"{d['events']} events ({len(d['pairs'])} seeds) resampled {d['resamples']} times with replacement, the same draw for both models."]
    return build


def paired_levers(entries: tuple[tuple[str, str], ...], label_a: str) -> Callable[[], list[str]]:
    """Several ``benchmarks/paired_bootstrap.py`` results against one model A on the same events: one row per
    model B (its label, then its pooled beam scores and B − A in beam-hit IoU with the 95% interval)."""
    def build() -> list[str]:
        rows, events = [], None
        for label, path in entries:
            d = load(path)
            events = events or f"{d['events']} events ({len(d['pairs'])} seeds), resampled {d['resamples']} times"
            iou, eff, pur = (d["scores"][k] for k in ("beam_iou", "beam_efficiency", "beam_purity"))
            rows.append([label, f"{pair(eff['b'], pur['b'])}", n(iou["b"], 4), f"{100 * iou['difference']:+.2f}",
                         f"{100 * iou['interval_95'][0]:+.2f} to {100 * iou['interval_95'][1]:+.2f}",
                         f"{100 * iou['share_of_resamples_b_above_a']:.1f}%"])
        first = load(entries[0][1])["scores"]
        rows.insert(0, [label_a, pair(first["beam_efficiency"]["a"], first["beam_purity"]["a"]), n(first["beam_iou"]["a"], 4), "", "", ""])
        return table(["network (working point)", "beam hits: efficiency / purity", "beam-hit IoU", "IoU − the first row's (points)",
                      "95% interval (points)", "resamples ahead"], rows) + [
            "", f"Pooled over {events} with replacement, the same draw for every pair."]
    return build


def working_points_at(entries: tuple[tuple[str, str, float], ...], what: str) -> Callable[[], list[str]]:
    """One row per ``benchmarks/working_point.py`` result (label, file, the model's working point): beam hits at that point."""
    def build() -> list[str]:
        rows, events = [], None
        for label, path, threshold in entries:
            d = load(path)
            events = events or Path(d["events"]).name
            point = next(p for p in d["points"] if abs(p["beam_threshold"] - threshold) < 1e-9)
            rows.append([label, f"{threshold:.2f}", f"{d['beam_hits']:,}", pair(point["beam_efficiency"], point["beam_purity"])])
        return table(["network", "working point P(beam) ≥", "beam hits", f"beam hits: efficiency / purity"], rows) + ["", f"{what} ({events})."]
    return build


def hit_variants(path: str, rule: str = "all") -> Callable[[], list[str]]:
    """A ``benchmarks/hit_variants.py`` comparison: each network at its own working point, on every reporting seed,
    beam hits scored under ``rule`` (``all`` or ``2018``)."""
    def build() -> list[str]:
        d = load(path)
        seeds = list(d["seeds"])
        key = "" if rule == "all" else "rule2018_"
        rows = []
        for label, m in d["models"].items():
            t = m.get("trained_on") or {}
            cells = [label, f"{m['parameters'] / 1e6:.2f} M",
                     f"{n(t['cpu_time_s'], 0)} CPU-s, {t['steps']:,} steps" if t else "—",
                     f"{m['beam_threshold']:.2f} ({pair(m['decision']['beam_efficiency'], m['decision']['beam_purity'])}, "
                     f"rule {m.get('beam_label_rule', 'all')})"]
            for seed in seeds:
                r = m["seeds"][seed]
                e, p = r[f"{key}beam_efficiency"], r[f"{key}beam_purity"]
                cells.append(f"{pair(e, p)}; IoU {f(1.0 / (1.0 / e + 1.0 / p - 1.0))}")
            rows.append(cells)
        events = next(iter(d["models"].values()))["seeds"][seeds[0]]["events"]
        return table(["network", "parameters", "last training stage", f"working point ({Path(d['decision_events']).name}: efficiency / purity)",
                      *[f"seed {s}: beam hits" for s in seeds]], rows) + [
            "", f"Beam hits under rule `{rule}`, every hit {'' if rule == 'all' else 'the rule scores '}of each seed's {events} events "
                "(efficiency / purity and their IoU); "
                "each network at the threshold where its efficiency and purity meet on the decision events, under the rule it was trained for."]
    return build

# name -> (results files it reads, builder)
TABLES: dict[str, tuple[tuple[str, ...], Callable[[], list[str]]]] = {
    "summary": (("benchmarks/results/summary.json",), summary),
    "models": (("benchmarks/results/models.json",), models),
    "default-test-metrics": (("docs/default-model-test-metrics.json",), hit_test_metrics("docs/default-model-test-metrics.json")),
    "tiramisu-gpu-test-metrics": (("docs/tiramisu-gpu-test-metrics.json",), image_test_metrics("docs/tiramisu-gpu-test-metrics.json", "`tiramisu-gpu` (recorded as `default`, its name then)")),
    "shipped-cards": (("src/protoseg/pretrained/*.json",), shipped_cards),
    "working-point": (("benchmarks/results/working_point.json",), working_point("benchmarks/results/working_point.json")),
    "working-point-seed5150": (("benchmarks/results/working_point-seed5150.json",), working_point("benchmarks/results/working_point-seed5150.json")),
    "working-point-default-seed7117": (("benchmarks/results/working_point-default-seed7117.json",),
                                       working_point("benchmarks/results/working_point-default-seed7117.json")),
    "beam-hit-origins": (("benchmarks/results/beam_hit_origins-default.json",),
                         beam_hit_origins("benchmarks/results/beam_hit_origins-default.json", "default")),
    "beam-hit-origins-tiramisu-gpu": (("benchmarks/results/beam_hit_origins-tiramisu-gpu.json",),
                                      beam_hit_origins("benchmarks/results/beam_hit_origins-tiramisu-gpu.json", "tiramisu-gpu")),
    "robustness": (("benchmarks/results/robustness.json",), robustness),
    "model-study": (("benchmarks/results/model_study.json",), model_study),
    "downsampling-oracle": (("benchmarks/results/downsampling.json",), downsampling_oracle),
    "downsampling-inference": (("benchmarks/results/downsampling.json",), downsampling_inference),
    "downsampling-trained": (("benchmarks/results/downsampling.json", "benchmarks/results/downsampling-repeat-seed2019.json"), downsampling_trained),
    "inference-levers": (("benchmarks/results/inference_levers.json",), inference_levers),
    "beam-cluster-cleanup": (("benchmarks/results/beam_cluster_cleanup-seed7117.json", "benchmarks/results/beam_cluster_cleanup-seed2718.json"),
                             beam_cluster_cleanup),
    "cpu-continuation": (("benchmarks/results/cpu_continue_default.json",), cpu_continuation),
    "hit-ceiling": (("benchmarks/results/hit_ceiling.json",), hit_ceiling),
    "beam-footprint": (("benchmarks/results/beam_footprint.json",), beam_footprint),
    "shower-profiles": (("benchmarks/results/shower_profiles.json",), shower_profiles),
    "hit-grid": (("benchmarks/results/hit_grid.json",), hit_grid),
    "sparse-backends": (("benchmarks/results/sparse_backends.json",), sparse_backends),
    "hits-vs-image": (("benchmarks/results/hits_vs_image.json",), hits_vs_image),
    "hits-inference": (("benchmarks/results/hits_inference.json",), hits_inference),
    "time-to-quality": (("benchmarks/results/time_to_quality.json",), time_to_quality),
    "hits-stage3": (("benchmarks/results/hits_stage3.json",), hits_stage3),
    "hits-8level-stage1": (("benchmarks/results/hits_8level_stage1.json",), hit_variants("benchmarks/results/hits_8level_stage1.json")),
    "hits-2018": (("benchmarks/results/hits_2018.json",), hit_variants("benchmarks/results/hits_2018.json", rule="2018")),
    "hits-attention-stage3": (("benchmarks/results/hits_attention_stage3.json",), hit_variants("benchmarks/results/hits_attention_stage3.json")),
    "paired-attention-stage3": (("benchmarks/results/paired_attention_stage3.json",),
                                paired_bootstrap("benchmarks/results/paired_attention_stage3.json", "2.1.0", "2.2.0")),
    "paired-default-unbiased": (("benchmarks/results/paired_default_2.3.0_vs_2.2.0_unbiased.json",),
                                paired_bootstrap("benchmarks/results/paired_default_2.3.0_vs_2.2.0_unbiased.json", "2.2.0", "2.3.0")),
    "stage3-levers": (("benchmarks/results/paired_stage3_decoder_attention.json", "benchmarks/results/paired_stage3_lovasz.json",
                       "benchmarks/results/paired_stage3_decoder_attention_lovasz.json",
                       "benchmarks/results/paired_stage3_decoder_attention_lovasz_mu10.json"),
                      paired_levers((("decoder attention: 2.3.0 (P ≥ 0.65)", "benchmarks/results/paired_stage3_decoder_attention.json"),
                                     ("Lovász-softmax added to the loss (P ≥ 0.60)", "benchmarks/results/paired_stage3_lovasz.json"),
                                     ("both (P ≥ 0.60)", "benchmarks/results/paired_stage3_decoder_attention_lovasz.json"),
                                     ("both, on muon-enriched events (P ≥ 0.65)", "benchmarks/results/paired_stage3_decoder_attention_lovasz_mu10.json")),
                                    "2.2.0 (P ≥ 0.50)")),
    "stage3-levers-vs-2.3.0": (("benchmarks/results/paired_stage3_overlays-vs-2.3.0.json",
                                "benchmarks/results/paired_stage3_fine_decoder_attention-vs-2.3.0.json",
                                "benchmarks/results/paired_stage3_decoder_attention_lovasz-vs-2.3.0.json"),
                               paired_levers((("+ overlays, half the events (P ≥ 0.60)", "benchmarks/results/paired_stage3_overlays-vs-2.3.0.json"),
                                              ("+ one block after the third-coarsest decoder (P ≥ 0.45)",
                                               "benchmarks/results/paired_stage3_fine_decoder_attention-vs-2.3.0.json"),
                                              ("+ the Lovász term (P ≥ 0.60)", "benchmarks/results/paired_stage3_decoder_attention_lovasz-vs-2.3.0.json")),
                                             "2.3.0 (P ≥ 0.65)")),
    "beam-muon-events": (("benchmarks/results/beam_muons-2.2.0-seed1313.json", "benchmarks/results/beam_muons-decoder-attention-seed1313.json",
                          "benchmarks/results/beam_muons-lovasz-seed1313.json", "benchmarks/results/beam_muons-decoder-attention-lovasz-mu10-seed1313.json"),
                         working_points_at((("2.2.0", "benchmarks/results/beam_muons-2.2.0-seed1313.json", 0.50),
                                            ("decoder attention: 2.3.0", "benchmarks/results/beam_muons-decoder-attention-seed1313.json", 0.65),
                                            ("Lovász-softmax added to the loss", "benchmarks/results/beam_muons-lovasz-seed1313.json", 0.60),
                                            ("both, on muon-enriched events", "benchmarks/results/beam_muons-decoder-attention-lovasz-mu10-seed1313.json", 0.65)),
                                           "60 events whose beam particle is a 7 GeV/c μ⁺, with cosmics and halo as usual "
                                           "(`simulate -n 60 --seed 1313 --set 'sources.beam_composition=[0,0,0,0,1]'`)")),
    "hit-postprocessing": (("benchmarks/results/hit_postprocessing-default-seed7117.json",), hit_postprocessing),
    "hit-postprocessing-2.3.0": (("benchmarks/results/hit_postprocessing-2.3.0-seed1357.json", "benchmarks/results/hit_postprocessing-2.3.0-seed3821.json"),
                                 hit_postprocessing_by_seed(("benchmarks/results/hit_postprocessing-2.3.0-seed1357.json",
                                                             "benchmarks/results/hit_postprocessing-2.3.0-seed3821.json"),
                                                            ("network", "track fragment", "true particle"))),
    "stage3-levers-vs-2.3.0-unbiased": (("benchmarks/results/paired_stage3_overlays-vs-2.3.0-unbiased.json",
                                         "benchmarks/results/paired_stage3_fine_decoder_attention-vs-2.3.0-unbiased.json"),
                                        paired_levers((("+ overlays, half the events (P ≥ 0.60)",
                                                        "benchmarks/results/paired_stage3_overlays-vs-2.3.0-unbiased.json"),
                                                       ("+ one block after the third-coarsest decoder (P ≥ 0.45)",
                                                        "benchmarks/results/paired_stage3_fine_decoder_attention-vs-2.3.0-unbiased.json")),
                                                      "2.3.0 (P ≥ 0.65)")),
    "hit-error-distance": (("benchmarks/results/hit_postprocessing-default-seed7117.json",), hit_error_distance),
}


def render(name: str) -> str:
    """The markdown of table ``name``: the table and a line naming the files it was made from."""
    if name not in TABLES:
        raise KeyError(f"gen_tables: no table named {name!r} (known: {', '.join(TABLES)})")
    sources, build = TABLES[name]
    try:
        lines = build()
    except KeyError as exc:
        raise KeyError(f"gen_tables: table {name!r}: key {exc} missing in {', '.join(sources)}") from None
    where = ", ".join(f"`{s}`" for s in sources)
    return "\n".join(lines) + f"\n\n*Generated by `docs/gen_tables.py` from {where}.*\n"


def expand(markdown: str, where: str = "") -> str:
    """Replace every ``<!-- gen-table: NAME -->`` line of a page by its table."""
    def one(match: re.Match) -> str:
        try:
            return render(match.group(1))
        except (KeyError, FileNotFoundError) as exc:
            raise RuntimeError(f"{where}: {exc.args[0] if exc.args else exc}") from None

    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, page=None, config=None, files=None, **_) -> str:  # MkDocs hook
    try:
        return expand(markdown, page.file.src_path if page is not None else "")
    except RuntimeError as exc:
        from mkdocs.exceptions import PluginError

        raise PluginError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="tables to print (none: list the names)")
    parser.add_argument("--out", metavar="DIR", help="write every table as DIR/NAME.md")
    args = parser.parse_args(argv)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            (out / f"{name}.md").write_text(render(name), encoding="utf-8")
        print(f"wrote {len(TABLES)} tables into {out}")
        return 0
    if not args.names:
        print("\n".join(TABLES))
        return 0
    for name in args.names:
        print(render(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
