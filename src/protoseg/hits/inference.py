"""A hit-level network at work: the class of every hit, its projection onto the 2018 image grid, and scores.

:class:`HitPredictor` runs a hit-level model (``protoseg.models.sparse_unet``) on the hits of an event
and gives every hit the class and probabilities of its site, decided at the model card's beam working
point as for the image networks (``protoseg.predictor.Predictor.decide``). :func:`project_to_image`
puts those classes on the 320×320 grid of the 2018 study the way its images were labelled (a pixel
takes its largest hit's class), so pixel IoUs stay comparable with the image networks'.
:func:`predict_events_file` writes the predictions file and :func:`evaluate_events` scores a model on an
events file with truth, at hit level (both beam label rules) and on the 2018 grid.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoseg.errors import InputError
from protoseg.hits.sites import HitGrid, event_sites
from protoseg.images.grid import check_hit_values, pixel_indices
from protoseg.images.labels import apply_beam_label_rule, hit_labels
from protoseg.predictions import NO_TRUTH, PredictionSummary
from protoseg.predictor import Predictor

__all__ = ["HitPredictor", "project_to_image", "hit_confusion", "class_scores", "truth_under_rule", "predict_events_file", "evaluate_events",
           "NO_TRUTH", "is_hit_card"]


def is_hit_card(card: dict[str, Any]) -> bool:
    """Whether a model card describes a hit-level network."""
    return (card.get("input") or {}).get("kind") == "hits"


class HitPredictor:
    """Class and probabilities of every hit of an event, from a loaded hit-level model."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", beam_threshold: float | str | None = None) -> None:
        card = getattr(model, "card", {})
        if not is_hit_card(card):
            raise InputError(f"model {getattr(model, 'source', '')} works on images, not on hits")
        self.decider = Predictor(model, device=device, batch_size=1, beam_threshold=beam_threshold)
        self.model, self.device, self.card = self.decider.model, self.decider.device, card
        self.class_names = self.decider.class_names
        self.beam_threshold = self.decider.beam_threshold
        self.grid = HitGrid(int(card["input"]["grid"]["ticks_per_row"]))
        self.features = tuple(card["input"]["features"])
        self.label_scheme = (card["input"].get("image") or {}).get("label_scheme", "beam3")
        # the beam label rule of the truth it was trained on (data.beam_label_rule): predict scores it under that rule
        self.beam_label_rule = (card["input"].get("image") or {}).get("beam_label_rule", "all")

    @torch.inference_mode()
    def hit_probabilities(self, hits: dict[str, np.ndarray], where: str | Path | None = None) -> np.ndarray:
        """Softmax probabilities float32 [n_hits, C]: each hit those of its site."""
        n_classes = len(self.class_names)
        if len(hits["wire"]) == 0:
            return np.zeros((0, n_classes), np.float32)
        sites = event_sites(hits, self.grid, self.features, None, where)
        coords = torch.from_numpy(np.concatenate([np.zeros((sites.n_sites, 1), np.int64), sites.coords], axis=1)).to(self.device)
        logits = self.model(coords, torch.from_numpy(sites.features).to(self.device))
        return logits.float().softmax(1).cpu().numpy()[sites.site_of_hit]

    def decide(self, prob: np.ndarray) -> np.ndarray:
        """Class per hit (uint8 [n]) from probabilities [n, C], at this predictor's beam working point."""
        return self.decider.decide(prob.T[None])[0].astype(np.uint8)

    def predict(self, hits: dict[str, np.ndarray], where: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(class uint8 [n], probabilities float32 [n, C]) of every hit."""
        prob = self.hit_probabilities(hits, where)
        return self.decide(prob), prob


def project_to_image(hits: dict[str, np.ndarray], hit_class: np.ndarray, hit_prob: np.ndarray,
                     size: tuple[int, int] = (320, 320)) -> tuple[np.ndarray, np.ndarray]:
    """Hit classes on the 2018 image grid: (class uint8 [H, W], probabilities float32 [C, H, W]).

    A pixel takes the class and probabilities of its largest hit (the 2018 images' max pooling);
    pixels without hits are class 0 with probability 1.
    """
    height, width = size
    n_classes = hit_prob.shape[1]
    pred = np.zeros(height * width, np.uint8)
    prob = np.zeros((n_classes, height * width), np.float32)
    prob[0] = 1.0
    if len(hit_class):
        row, col = pixel_indices(hits["tick"], hits["wire"], size)
        pix = row * width + col
        order = np.lexsort((np.asarray(hits["integral"]), pix))
        lead = order[np.flatnonzero(np.r_[np.diff(pix[order]) != 0, True])]
        pred[pix[lead]] = hit_class[lead]
        prob[:, pix[lead]] = hit_prob[lead].T
    return pred.reshape(height, width), prob.reshape(n_classes, height, width)


def hit_confusion(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix int64 [C, C] (rows truth, columns prediction) of the hits whose truth is not NO_TRUTH."""
    scored = truth != NO_TRUTH
    index = truth[scored].astype(np.int64) * n_classes + pred[scored].astype(np.int64)
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def class_scores(confusion: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Per class: efficiency (the class's hits given that class), purity (the hits given it that are of it), IoU."""
    c = np.asarray(confusion, dtype=np.float64)
    tp, truth, given = np.diag(c), c.sum(1), c.sum(0)

    def ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
        return [float(n / d) if d > 0 else None for n, d in zip(num, den)]

    efficiency, purity, iou = ratio(tp, truth), ratio(tp, given), ratio(tp, truth + given - tp)
    defined = [v for v in iou if v is not None]
    return {
        "classes": list(class_names),
        "efficiency": efficiency,
        "purity": purity,
        "iou": iou,
        "miou": float(np.mean(defined)) if defined else None,
        "n_hits": [int(v) for v in truth],
        "confusion": c.astype(np.int64).tolist(),
    }


def truth_under_rule(hits: dict[str, np.ndarray], particles: dict[str, np.ndarray] | None, rule: str,
                     label_scheme: str = "beam3") -> np.ndarray:
    """Truth class of every hit under a beam label rule; NO_TRUTH for the hits the rule drops."""
    truth = hit_labels(hits, label_scheme)
    if rule == "all":
        return truth
    indexed = dict(hits, hit_index=np.arange(len(truth)), class_=truth)
    kept = apply_beam_label_rule(indexed, particles, rule)
    out = np.full(len(truth), NO_TRUTH, np.uint8)
    out[kept["hit_index"]] = kept["class_"]
    return out


@dataclass
class HitPredictionSummary(PredictionSummary):
    """What ``predict_events_file`` wrote: a :class:`~protoseg.predictions.PredictionSummary` and the network's time per event."""

    seconds_per_event: float = float("nan")


def predict_events_file(model: torch.nn.Module, input_path: str | Path, output_path: str | Path, device: str = "cpu",
                        displays_dir: str | Path | None = None, max_displays: int = 10, progress: bool = True,
                        root_path: str | Path | None = None, beam_threshold: float | str | None = None) -> HitPredictionSummary:
    """Every hit of every event of ``input_path`` classified by a hit-level model, into the predictions file.

    The file holds what the image networks' predictions files hold (``/pred``, ``/prob``, ``/adc``,
    ``/label`` on the 320×320 grid, ``/hits/pred`` and ``/hits/offsets``) and the hits' own probabilities
    ``/hits/prob`` float16 [n_hits, C]. With truth, the hit-level efficiency and purity of beam and
    not-beam are computed and stored in the attributes, under the beam label rule the model was trained
    with (``all``, or ``2018``: the hits that rule drops are not scored).
    """
    import contextlib

    import h5py

    from protoseg.events import open_events
    from protoseg.fileio import atomic_output
    from protoseg.images.pooling import event_to_image
    from protoseg.predictions import PREDICTIONS_FORMAT, PREDICTIONS_VERSION, PredictionsWriter
    from protoseg.progress import progress_bar
    from protoseg.version import __version__

    input_path, output_path = Path(input_path), Path(output_path)
    predictor = HitPredictor(model, device=device, beam_threshold=beam_threshold)
    names = predictor.class_names
    size = (320, 320)
    if root_path is not None:
        root_path = Path(root_path)
        if root_path.resolve() in (output_path.resolve(), input_path.resolve()):
            raise InputError("--root must name a file of its own (not the input or the predictions file)", root_path)
    events = open_events(input_path)
    displays: list[Path] = []
    display_dir = Path(displays_dir) if displays_dir else None
    confusion = np.zeros((len(names), len(names)), np.int64)
    with contextlib.ExitStack() as outputs:
        outputs.callback(events.close)
        if len(events) == 0:
            raise InputError("no events to predict", input_path)
        source_entries = None
        if root_path is not None:
            source_entries = events.config.get("source_entries")
            if not events.has_source_index or not isinstance(source_entries, int):
                raise InputError(
                    "does not record where its hits came from in a ROOT tree (no /hits/source_index): --root needs "
                    "events imported by import-root (files imported by an older protoseg: import them again)", input_path)
        if display_dir is not None:
            display_dir.mkdir(parents=True, exist_ok=True)
        tmp = outputs.enter_context(atomic_output(output_path, suffix=".h5"))
        friend = None
        if root_path is not None:
            from protoseg.root_friend import FriendTreeWriter

            root_tmp = outputs.enter_context(atomic_output(root_path, suffix=".root"))
            friend = FriendTreeWriter(root_tmp, names, source_entries, input_path, model_version=predictor.card.get("model_version"))
            outputs.callback(friend.abort)
        handle = outputs.enter_context(h5py.File(tmp, "w"))
        handle.attrs.update({
            "format": PREDICTIONS_FORMAT, "version": PREDICTIONS_VERSION, "protoseg_version": __version__,
            "source": str(input_path), "input_format": "protoseg-events", "class_names": json.dumps(names),
            "model": str(getattr(model, "source", "")), "model_card": json.dumps(predictor.card),
            "model_version": str(predictor.card.get("model_version") or ""),
            "beam_threshold": -1.0 if predictor.beam_threshold is None else predictor.beam_threshold, "size": list(size),
        })
        has_truth = bool(events.is_mc)
        writer = PredictionsWriter(handle, len(names), *size, with_label=has_truth)
        group = handle.create_group("hits")
        opts = {"compression": "lzf", "fletcher32": True}
        hit_pred = group.create_dataset("pred", (0,), np.uint8, maxshape=(None,), chunks=(65536,), **opts)
        hit_prob = group.create_dataset("prob", (0, len(names)), np.float16, maxshape=(None, len(names)), chunks=(16384, len(names)), **opts)
        offsets = [0]
        network_s = 0.0
        bar = outputs.enter_context(progress_bar(len(events), "predicted", enabled=progress, stream=sys.stdout, unit="event"))
        for event in events.iter_events(chunk_events=16):
            hits = event.hits
            check_hit_values(hits, event.event_id, input_path)
            start = time.perf_counter()
            klass, prob = predictor.predict(hits, input_path)
            network_s += time.perf_counter() - start
            prob16 = prob.astype(np.float16)
            adc, label = event_to_image(hits, size, "max", predictor.label_scheme if event.is_mc else None)
            pred_image, prob_image = project_to_image(hits, klass, prob16.astype(np.float32), size)
            writer.append(pred_image[None], prob_image[None], adc[None], np.array([event.event_id]), None if label is None else label[None])
            n0 = hit_pred.shape[0]
            hit_pred.resize(n0 + len(klass), axis=0)
            hit_pred[n0:] = klass
            hit_prob.resize(n0 + len(klass), axis=0)
            hit_prob[n0:] = prob16
            offsets.append(n0 + len(klass))
            if friend is not None:
                friend.append(event.event_id, event.source_entry, event.source_hits, hits["source_index"], klass,
                              prob16.T.astype(np.float32))
            if has_truth and "label" in hits:
                if predictor.beam_label_rule == "all":
                    truth = hit_labels(hits, predictor.label_scheme)
                else:
                    truth = truth_under_rule(hits, event.particles, predictor.beam_label_rule, predictor.label_scheme)
                confusion += hit_confusion(truth, klass, len(names))
            if display_dir is not None and len(displays) < max_displays:
                from protoseg.display import plot_event

                out = display_dir / f"event_{event.event_id}.png"
                plot_event(adc, label, pred_image, names, out, title=f"event {event.event_id} (hit-level model, shown on the 320x320 grid)")
                displays.append(out)
            bar.update(1)
        group.create_dataset("offsets", data=np.asarray(offsets, dtype=np.int64))
        hit_metrics: dict[str, Any] = {}
        if has_truth and confusion.sum() > 0:
            scores = class_scores(confusion, names)
            hit_metrics = {"n_hits": int(confusion.sum()), "beam_label_rule": predictor.beam_label_rule}
            for name in ("beam", "not-beam"):
                if name in names:
                    k = names.index(name)
                    key = name.replace("-", "")
                    hit_metrics[f"{key}_hits"] = int(confusion[k].sum())
                    hit_metrics[f"tagged_{key}_hits"] = int(confusion[:, k].sum())
                    hit_metrics[f"{key}_efficiency"] = scores["efficiency"][k] if scores["efficiency"][k] is not None else float("nan")
                    hit_metrics[f"{key}_purity"] = scores["purity"][k] if scores["purity"][k] is not None else float("nan")
            handle.attrs["hit_metrics"] = json.dumps(hit_metrics)
        handle.attrs["network_seconds_per_event"] = network_s / len(events)
        if friend is not None:
            handle.attrs["root_output"] = str(root_path)
            friend.close()
    return HitPredictionSummary(output_path, len(events), "protoseg-events", hit_metrics, displays, root_path,
                                predictor.beam_threshold, network_s / len(events))


def evaluate_events(model: torch.nn.Module, events_path: str | Path, device: str = "cpu", beam_threshold: float | str | None = None,
                    min_beam_hits: int = 2000, min_notbeam_hits: int = 2000, progress: bool = True) -> dict[str, Any]:
    """Score a hit-level model on every event of an events file with truth.

    Returns ``hits``: per-class efficiency, purity and IoU over all hits, under the beam label rule
    ``all`` (every hit of the beam interaction is beam) and, with a particle table, ``2018`` (the 2018
    study's rule: hits of hadronic daughters not scored); ``pixels``: IoU per class, mIoU and confusion of
    the predictions projected onto the 320×320 grid, over the events that pass the 2018 selection
    (≥ ``min_beam_hits`` beam and ≥ ``min_notbeam_hits`` not-beam hits), as the image networks are
    scored; ``per_event``: each event's id, hits and pixel mIoU (for the best / median / worst displays).
    """
    from protoseg.events import open_events
    from protoseg.images.pooling import event_to_image
    from protoseg.metrics import iou as iou_of
    from protoseg.progress import progress_bar

    predictor = HitPredictor(model, device=device, beam_threshold=beam_threshold)
    names = predictor.class_names
    n = len(names)
    rules = {"all": np.zeros((n, n), np.int64), "2018": np.zeros((n, n), np.int64)}
    pixels = np.zeros((n, n), np.int64)
    per_event: list[dict[str, Any]] = []
    network_s = 0.0
    with open_events(events_path) as events:
        if not events.is_mc:
            raise InputError("events file holds data (no truth): evaluate needs simulated events; use predict", events_path)
        if len(events) == 0:
            raise InputError("no events to evaluate", events_path)
        with progress_bar(len(events), "evaluated", enabled=progress, stream=sys.stdout, unit="event") as bar:
            for position, event in enumerate(events.iter_events(chunk_events=16)):
                hits = event.hits
                check_hit_values(hits, event.event_id, events_path)
                start = time.perf_counter()
                klass, prob = predictor.predict(hits, events_path)
                network_s += time.perf_counter() - start
                rules["all"] += hit_confusion(truth_under_rule(hits, None, "all", predictor.label_scheme), klass, n)
                if event.particles is not None and "track_id" in hits and rules["2018"] is not None:
                    rules["2018"] += hit_confusion(truth_under_rule(hits, event.particles, "2018", predictor.label_scheme), klass, n)
                else:
                    rules["2018"] = None
                label = np.asarray(hits["label"])
                record = {"position": position, "event_id": event.event_id, "n_hits": int(len(label)),
                          "beam_hits": int((label == 1).sum()), "notbeam_hits": int((label == 2).sum()), "selected": False}
                if record["beam_hits"] >= min_beam_hits and record["notbeam_hits"] >= min_notbeam_hits:
                    _, truth_image = event_to_image(hits, (320, 320), "max", predictor.label_scheme)
                    pred_image, _ = project_to_image(hits, klass, prob)
                    image_confusion = hit_confusion(truth_image.reshape(-1), pred_image.reshape(-1), n)
                    pixels += image_confusion
                    record["selected"] = True
                    record["pixel_miou"] = float(np.nanmean(iou_of(torch.from_numpy(image_confusion)).numpy()))
                per_event.append(record)
                bar.update(1)
    iou_pixels = iou_of(torch.from_numpy(pixels)).numpy()
    selected = sum(r["selected"] for r in per_event)
    return {
        "classes": names,
        "beam_threshold": predictor.beam_threshold,
        "n_events": len(per_event),
        "hits": {rule: (class_scores(c, names) if c is not None else None) for rule, c in rules.items()},
        "pixels": {
            "size": [320, 320], "pooling": "max", "n_images": int(selected),
            "selection": {"min_beam_hits": int(min_beam_hits), "min_notbeam_hits": int(min_notbeam_hits)},
            "iou": [None if np.isnan(v) else float(v) for v in iou_pixels],
            "miou": float(np.nanmean(iou_pixels)) if selected else None,
            "confusion": pixels.tolist(),
        },
        "network_seconds_per_event": network_s / len(per_event),
        "per_event": per_event,
    }
