"""Would smoothing a hit-level network's P(beam) over neighbouring hits help? And where do its missed beam hits lie?

A physicist's first try after a per-hit classifier: make neighbouring hits agree. This script measures two
such steps on one predictions file, without running the network again, each at the working point where
beam-hit efficiency and purity meet on that same file (so the file decides and scores: a step that
does not gain here gains nowhere):

* ``diffusion``: over the graph of hits closer than ``r`` cm in the image plane (Δwire × pitch,
  Δtick × drift velocity × tick), ``k`` steps of q ← (1 − α) p + α · mean(q over neighbours)
  (label propagation anchored to the network's p);
* ``fragment mean``: hits joined (transitively) when closer than ``R`` cm; each hit's P(beam) becomes
  β · (its fragment's mean P(beam)) + (1 − β) · its own.
* ``track fragment mean``: the same over *track fragments*, where two hits closer than ``L`` cm are joined
  only if both lie on a locally straight line (principal axes of the hits within 1.5 cm: 1 − λ₂/λ₁ ≥ s),
  the two lines agree (|cos| ≥ 0.97) and the step between them runs along both (|cos| ≥ 0.85): fragments
  follow a track and stop where it crosses another. Fragments of fewer than 10 hits keep their p.
* ``true particle mean`` (truth, a bound, not a method): each hit's P(beam) the mean over the hits of its
  true particle: what perfect clustering into particles on top of the network would give.

It also splits the true beam hits by their distance to the event's main beam cluster (true beam hits
joined within 2 cm, the largest such cluster) and gives the network's efficiency in each bin, and the
cosmic hits it tags beam by the same distance: which errors are far from the interaction, and which
lie on it. ::

    protoseg predict default events.h5 -o pred.h5
    python benchmarks/hit_postprocessing.py events.h5 pred.h5 --results benchmarks/results/hit_postprocessing-default-seed7117.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from protoseg.detector import ARGON, READOUT
from protoseg.errors import InputError
from protoseg.events import open_events
from protoseg.fileio import write_json

_SPEC = importlib.util.spec_from_file_location("paired_bootstrap", Path(__file__).with_name("paired_bootstrap.py"))
paired_bootstrap = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(paired_bootstrap)

BEAM, NOT_BEAM = 1, 2
CM_PER_TICK = READOUT.tick_us * ARGON.drift_velocity_cm_per_us
THRESHOLDS = np.round(np.arange(0.20, 0.90, 0.01), 2)
DIFFUSIONS = [(r, alpha, 10) for r in (1.0, 2.0) for alpha in (0.5, 0.8)]
FRAGMENT_MEANS = [(radius, beta) for radius in (0.5, 0.7, 1.0) for beta in (0.5, 1.0)]
TRACK_FRAGMENTS = [(link, straightness, 0.7) for link, straightness in ((1.0, 0.75), (2.0, 0.75), (2.0, 0.9), (3.0, 0.9))]
TRACK_PCA_RADIUS_CM, TRACK_COS_LINES, TRACK_COS_STEP, TRACK_MIN_HITS = 1.5, 0.97, 0.85, 10
MAIN_CLUSTER_LINK_CM = 2.0
DISTANCE_EDGES_CM = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0, np.inf)


def hit_positions_cm(wire: np.ndarray, tick: np.ndarray) -> np.ndarray:
    """[n, 2] positions in the image plane, cm: along the wires' pitch and along the drift."""
    return np.c_[np.asarray(wire, np.float64) * READOUT.wire_pitch_cm, np.asarray(tick, np.float64) * CM_PER_TICK]


def neighbour_graph(xy: np.ndarray, radius_cm: float) -> sparse.csr_matrix:
    """Symmetric 0/1 adjacency of the hits closer than ``radius_cm`` (no self loops)."""
    pairs = cKDTree(xy).query_pairs(radius_cm, output_type="ndarray")
    n = len(xy)
    upper = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    return upper + upper.T


def diffuse(adjacency: sparse.csr_matrix, p: np.ndarray, alpha: float, steps: int) -> np.ndarray:
    """k steps of q <- (1 - alpha) p + alpha mean_neighbours(q); a hit without neighbours keeps its p."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    q = p.astype(np.float64, copy=True)
    for _ in range(steps):
        mean = np.where(degree > 0, (adjacency @ q) / np.maximum(degree, 1), q)
        q = (1.0 - alpha) * p + alpha * mean
    return q


def fragment_mean(adjacency: sparse.csr_matrix, p: np.ndarray, beta: float) -> np.ndarray:
    """beta * (mean p over the hit's connected fragment) + (1 - beta) * p."""
    return group_mean(connected_components(adjacency, directed=False)[1], p, beta)


def local_lines(xy: np.ndarray, radius_cm: float) -> tuple[np.ndarray, np.ndarray]:
    """Each hit's local direction (unit [n, 2], the principal axis of the hits within ``radius_cm``, itself
    included) and straightness 1 − λ₂/λ₁ (1: a line; 0 for a hit alone or a round blob)."""
    adjacency = neighbour_graph(xy, radius_cm) + sparse.identity(len(xy), format="csr")
    count = np.asarray(adjacency.sum(axis=1)).ravel()
    mean = (adjacency @ xy) / count[:, None]
    sxx = (adjacency @ (xy[:, 0] ** 2)) / count - mean[:, 0] ** 2
    syy = (adjacency @ (xy[:, 1] ** 2)) / count - mean[:, 1] ** 2
    sxy = (adjacency @ (xy[:, 0] * xy[:, 1])) / count - mean[:, 0] * mean[:, 1]
    half_trace, root = (sxx + syy) / 2, np.sqrt(np.maximum(((sxx - syy) / 2) ** 2 + sxy ** 2, 0.0))
    largest, smallest = half_trace + root, half_trace - root
    angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    straightness = np.where(largest > 1e-12, 1.0 - smallest / np.maximum(largest, 1e-12), 0.0)
    return np.c_[np.cos(angle), np.sin(angle)], straightness


def track_graph(xy: np.ndarray, link_cm: float, min_straightness: float) -> sparse.csr_matrix:
    """Adjacency of the hits closer than ``link_cm`` that lie on one straight track (see the module docstring)."""
    direction, straightness = local_lines(xy, TRACK_PCA_RADIUS_CM)
    pairs = cKDTree(xy).query_pairs(link_cm, output_type="ndarray")
    a, b = pairs[:, 0], pairs[:, 1]
    step = xy[b] - xy[a]
    step /= np.maximum(np.linalg.norm(step, axis=1), 1e-9)[:, None]
    keep = ((straightness[a] >= min_straightness) & (straightness[b] >= min_straightness)
            & (np.abs((direction[a] * direction[b]).sum(axis=1)) >= TRACK_COS_LINES)
            & (np.abs((step * direction[a]).sum(axis=1)) >= TRACK_COS_STEP) & (np.abs((step * direction[b]).sum(axis=1)) >= TRACK_COS_STEP))
    a, b, n = a[keep], b[keep], len(xy)
    return sparse.csr_matrix((np.ones(2 * len(a)), (np.r_[a, b], np.r_[b, a])), shape=(n, n))


def group_mean(group: np.ndarray, p: np.ndarray, beta: float, min_size: int = 1) -> np.ndarray:
    """beta * (mean p over the hit's group) + (1 - beta) * p, for hits in groups of >= ``min_size`` hits."""
    size = np.bincount(group)
    mean = np.bincount(group, weights=p) / size
    return np.where(size[group] >= min_size, beta * mean[group] + (1.0 - beta) * p, p)


def crossing(is_beam: np.ndarray, p_beam: np.ndarray) -> dict:
    """The threshold of THRESHOLDS where beam efficiency and purity are closest, with both."""
    best = None
    n_beam = int(is_beam.sum())
    for threshold in THRESHOLDS:
        tagged = p_beam >= threshold
        found = int((tagged & is_beam).sum())
        efficiency, purity = found / n_beam, found / max(int(tagged.sum()), 1)
        if best is None or abs(efficiency - purity) < abs(best["efficiency"] - best["purity"]):
            best = {"threshold": float(threshold), "efficiency": efficiency, "purity": purity}
    return best


def distance_to_main_cluster(xy: np.ndarray, is_beam: np.ndarray) -> np.ndarray:
    """Each hit's distance (cm) to the largest cluster of true beam hits joined within 2 cm (0 inside it)."""
    beam_xy = xy[is_beam]
    _, cluster = connected_components(neighbour_graph(beam_xy, MAIN_CLUSTER_LINK_CM), directed=False)
    in_main = cluster == np.bincount(cluster).argmax()
    distance = cKDTree(beam_xy[in_main]).query(xy)[0]
    distance[np.flatnonzero(is_beam)[in_main]] = 0.0
    return distance


def study(events_path: Path, predictions_path: Path) -> dict:
    probabilities, offsets, working_point = paired_bootstrap.read_hit_predictions(predictions_path, "prob")
    p_beam_all = probabilities[:, BEAM].astype(np.float64)
    # the threshold the file's classes were decided with (0.5 for argmax: the beam side of a 3-class argmax)
    tag_threshold = working_point if working_point >= 0 else 0.5
    variants = {"network": []} | {f"diffusion r={r:g} cm alpha={a:g} k={k}": [] for r, a, k in DIFFUSIONS} \
        | {f"fragment mean R={radius:g} cm beta={b:g}": [] for radius, b in FRAGMENT_MEANS} \
        | {f"track fragment mean L={link:g} cm s={s:g} beta={b:g}": [] for link, s, b in TRACK_FRAGMENTS} \
        | {"true particle mean (truth: a bound)": []}
    truth, distance, missed_main = [], [], []
    with open_events(events_path) as events:
        if len(events) != len(offsets) - 1 or events.n_hits != len(p_beam_all):
            raise InputError(f"does not match {predictions_path} ({len(events)} events, {events.n_hits} hits)", events_path)
        for index, event in enumerate(events.iter_events()):
            hits = event.hits
            if "label" not in hits:
                raise InputError("has no truth labels", events_path)
            p = p_beam_all[offsets[index]:offsets[index + 1]]
            xy = hit_positions_cm(hits["wire"], hits["tick"])
            is_beam = hits["label"] == BEAM
            truth.append(hits["label"])
            distance.append(distance_to_main_cluster(xy, is_beam) if is_beam.any() else np.full(len(p), np.inf))
            if is_beam.any() and (hits["label"] == NOT_BEAM).any():
                # the missed beam hits of the main cluster: how sure the network was, how big their particle,
                # how far from any not-beam hit (an overlap with a cosmic ray, or a track on its own)
                in_main = is_beam & (distance[-1] == 0.0)
                missed = in_main & (p < tag_threshold)
                _, where, size = np.unique(hits["track_id"], return_inverse=True, return_counts=True)
                to_cosmic = cKDTree(xy[hits["label"] == NOT_BEAM]).query(xy[missed])[0]
                missed_main.append(np.c_[p[missed], size[where][missed], to_cosmic])
            variants["network"].append(p)
            graphs = {r: neighbour_graph(xy, r) for r in {r for r, _, _ in DIFFUSIONS} | {radius for radius, _ in FRAGMENT_MEANS}}
            for r, a, k in DIFFUSIONS:
                variants[f"diffusion r={r:g} cm alpha={a:g} k={k}"].append(diffuse(graphs[r], p, a, k))
            for radius, b in FRAGMENT_MEANS:
                variants[f"fragment mean R={radius:g} cm beta={b:g}"].append(fragment_mean(graphs[radius], p, b))
            for link, s, b in TRACK_FRAGMENTS:
                _, fragment = connected_components(track_graph(xy, link, s), directed=False)
                variants[f"track fragment mean L={link:g} cm s={s:g} beta={b:g}"].append(group_mean(fragment, p, b, TRACK_MIN_HITS))
            _, particle = np.unique(hits["track_id"], return_inverse=True)
            variants["true particle mean (truth: a bound)"].append(group_mean(particle.reshape(-1), p, 1.0))
    label = np.concatenate(truth)
    is_beam = label == BEAM
    result = {"events": str(events_path), "predictions": str(predictions_path), "n_events": len(offsets) - 1,
              "n_hits": int(len(label)), "n_beam_hits": int(is_beam.sum()), "model_working_point": working_point,
              "variants": {name: crossing(is_beam, np.concatenate(values)) for name, values in variants.items()}}
    # where the network's errors lie, at the model's working point
    tagged = np.concatenate(variants["network"]) >= tag_threshold
    d = np.concatenate(distance)
    edges = DISTANCE_EDGES_CM
    n_tagged = int(tagged.sum())
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (d >= lo) & (d < hi)
        beam_here = is_beam & inside
        cosmic_here = (label == NOT_BEAM) & inside
        bins.append({
            "distance_cm": f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">= {lo:g}",
            "beam_hit_share": int(beam_here.sum()) / int(is_beam.sum()),
            "beam_efficiency": float((tagged & beam_here).sum() / max(int(beam_here.sum()), 1)),
            "missed_beam_points": 100.0 * int((~tagged & beam_here).sum()) / int(is_beam.sum()),
            "not_beam_hits": int(cosmic_here.sum()),
            "not_beam_tagged_beam": int((tagged & cosmic_here).sum()),
            "impurity_points": 100.0 * int((tagged & cosmic_here).sum()) / max(n_tagged, 1),
        })
    result["by_distance_to_main_beam_cluster"] = bins
    m = np.concatenate(missed_main) if missed_main else np.zeros((0, 3))
    quantiles = (lambda v: [float(q) for q in np.quantile(v, [0.1, 0.5, 0.9])] if len(v) else None)  # noqa: E731
    result["missed_in_main_cluster"] = {
        "hits": int(len(m)),
        "p_beam_quantiles_10_50_90": quantiles(m[:, 0]),
        "particle_hits_quantiles_10_50_90": quantiles(m[:, 1]),
        "share_within_1_cm_of_a_not_beam_hit": float(np.mean(m[:, 2] < 1.0)) if len(m) else None,
        "share_beyond_10_cm_of_any_not_beam_hit": float(np.mean(m[:, 2] >= 10.0)) if len(m) else None,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--results", type=Path, help="write the numbers to this JSON file")
    args = parser.parse_args(argv)
    try:
        result = study(args.events, args.predictions)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, point in result["variants"].items():
        print(f"{name:44s} P(beam) >= {point['threshold']:.2f}: efficiency {point['efficiency']:.4f} purity {point['purity']:.4f}")
    print("distance to the main beam cluster | share of beam hits | efficiency | missed (points) | not-beam tagged beam | impurity (points)")
    for row in result["by_distance_to_main_beam_cluster"]:
        print(f"{row['distance_cm']:>8} cm | {row['beam_hit_share']:.3f} | {row['beam_efficiency']:.3f} | {row['missed_beam_points']:.2f} | "
              f"{row['not_beam_tagged_beam']} | {row['impurity_points']:.2f}")
    print("missed beam hits of the main cluster:", json.dumps(result["missed_in_main_cluster"]))
    if args.results:
        write_json(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
