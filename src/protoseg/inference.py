"""Prediction: a loaded network on images and events files, pixels mapped back to hits, predictions files.

Prediction streams: images or events are read, predicted and written batch by batch into resizable
HDF5 datasets, so memory stays flat whatever the number of events. Events files are made into images
with the settings of the model card, and every hit gets the class of the pixel that holds it.

Loading lives in ``protoseg.loading``, the model card in ``protoseg.modelcards``, the batch predictor
in ``protoseg.predictor`` and evaluation in ``protoseg.evaluation``; their public names are
re-exported here (``from protoseg.inference import load_model, evaluate`` keeps working).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoseg.errors import InputError
from protoseg.evaluation import Evaluation, evaluate
from protoseg.fileio import atomic_output, hdf5_format
from protoseg.loading import PRETRAINED_DIR, load_model, shipped_models
from protoseg.metrics import per_image_miou
from protoseg.progress import progress_bar
from protoseg.predictions import NO_TRUTH, PREDICTIONS_FORMAT, PREDICTIONS_VERSION, PredictionSummary, PredictionsWriter
from protoseg.predictor import Predictor, batch_slices, check_classes
from protoseg.version import __version__

__all__ = [
    "PRETRAINED_DIR",
    "PREDICTIONS_FORMAT",
    "load_model",
    "shipped_models",
    "Predictor",
    "predict_file",
    "PredictionSummary",
    "evaluate",
    "Evaluation",
    "per_image_miou",
]

def predict_file(
    model: torch.nn.Module,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 4,
    device: str = "cpu",
    split: str | None = None,
    displays_dir: str | Path | None = None,
    max_displays: int = 10,
    progress: bool = True,
    root_path: str | Path | None = None,
    beam_threshold: float | str | None = None,
) -> PredictionSummary:
    """Predict every image (or event) of ``input_path`` into the predictions file ``output_path``.

    Events files are turned into images with the settings of the model card (size, pooling), and every
    hit gets the class of the pixel that holds it (``/hits/pred``, same offsets as the events file).
    ``beam_threshold``: the beam working point (:class:`~protoseg.predictor.Predictor`; None: the card's).
    With truth, the hit-level beam efficiency and purity are computed and stored in the attributes.
    ``root_path`` (events imported from ROOT only) also writes the ROOT friend tree of
    ``protoseg.root_friend``, aligned with the input tree; both outputs appear only on success.
    """
    import contextlib

    import h5py

    input_path, output_path = Path(input_path), Path(output_path)
    fmt = hdf5_format(input_path)
    from protoseg.hits.inference import is_hit_card, predict_events_file

    if is_hit_card(getattr(model, "card", {})):
        if fmt != "protoseg-events":
            raise InputError(f"is a '{fmt}' file; a hit-level model reads the hits of an events file "
                             "(protoseg simulate / import-root)", input_path)
        if split is not None:
            raise InputError("--split applies to image files; an events file has no splits", input_path)
        return predict_events_file(model, input_path, output_path, device=device, displays_dir=displays_dir,
                                   max_displays=max_displays, progress=progress, root_path=root_path,
                                   beam_threshold=beam_threshold)
    if root_path is not None:
        root_path = Path(root_path)
        if fmt != "protoseg-events":
            raise InputError(f"--root needs an events file made by import-root, this is a '{fmt}' file", input_path)
        if root_path.resolve() in (output_path.resolve(), input_path.resolve()):
            raise InputError("--root must name a file of its own (not the input or the predictions file)", root_path)
    predictor = Predictor(model, device=device, batch_size=batch_size, beam_threshold=beam_threshold)
    if fmt == "protoseg-images":
        iterator, info = _image_batches(input_path, predictor, split)
    elif fmt == "protoseg-events":
        if split is not None:
            raise InputError("--split applies to image files; an events file has no splits", input_path)
        iterator, info = _event_batches(input_path, predictor, with_source=root_path is not None)
    else:
        raise InputError(f"is a '{fmt}' file; predict reads protoseg-images or protoseg-events files", input_path)
    if info["n"] == 0:
        raise InputError("no images to predict" + (f" in split '{split}'" if split else ""), input_path)

    displays: list[Path] = []
    display_dir = Path(displays_dir) if displays_dir else None
    if display_dir is not None:
        display_dir.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(4, dtype=np.int64)  # truth beam hits, tagged beam hits, both, all hits
    with contextlib.ExitStack() as outputs:
        tmp = outputs.enter_context(atomic_output(output_path, suffix=".h5"))
        friend = None
        if root_path is not None:
            from protoseg.root_friend import FriendTreeWriter

            root_tmp = outputs.enter_context(atomic_output(root_path, suffix=".root"))
            friend = FriendTreeWriter(root_tmp, predictor.class_names, info["source_entries"], input_path,
                                      model_version=predictor.card.get("model_version"))
            outputs.callback(friend.abort)  # closes the file on failure (close() already did on success)
        handle = outputs.enter_context(h5py.File(tmp, "w"))
        handle.attrs.update(
            {
                "format": PREDICTIONS_FORMAT,
                "version": PREDICTIONS_VERSION,
                "protoseg_version": __version__,
                "source": str(input_path),
                "input_format": fmt,
                "class_names": json.dumps(predictor.class_names),
                "model": str(getattr(model, "source", "")),
                "model_card": json.dumps(predictor.card),
                "model_version": str(predictor.card.get("model_version") or ""),  # "" for a card without one (not shipped)
                # the beam working point the classes were decided with (-1: the most probable class)
                "beam_threshold": -1.0 if predictor.beam_threshold is None else predictor.beam_threshold,
                "size": list(info["size"]),
            }
        )
        writer = PredictionsWriter(handle, len(predictor.class_names), *info["size"], with_label=info["has_truth"])
        hit_pred = hit_offsets = None
        if fmt == "protoseg-events":
            hits = handle.create_group("hits")
            hit_pred = hits.create_dataset("pred", (0,), np.uint8, maxshape=(None,), chunks=(65536,), compression="lzf",
                                           fletcher32=True)
            hit_offsets = [0]
        bar = outputs.enter_context(progress_bar(info["n"], "predicted", enabled=progress, stream=sys.stdout, unit="image"))
        for batch in iterator:
            pred, prob = predictor.predict(batch["adc"])
            prob16 = prob.astype(np.float16)  # what the file stores; the ROOT tree gets the same values
            writer.append(pred, prob16, batch["adc"], batch["event_id"], batch.get("label"))
            if hit_pred is not None:
                for i, (rows, cols, truth, source) in enumerate(batch["hits"]):
                    tagged = pred[i][rows, cols]
                    if friend is not None:
                        entry, entry_hits, index = source
                        friend.append(int(batch["event_id"][i]), entry, entry_hits, index, tagged,
                                      prob16[i][:, rows, cols].astype(np.float32))
                    start = hit_pred.shape[0]
                    hit_pred.resize(start + len(tagged), axis=0)
                    hit_pred[start:] = tagged
                    hit_offsets.append(start + len(tagged))
                    if truth is not None and "beam" in predictor.class_names:
                        beam = predictor.class_names.index("beam")
                        # hits the model's beam label rule drops have no truth class: not counted
                        scored = truth != NO_TRUTH
                        is_beam, is_tagged = (truth == 1) & scored, (tagged == beam) & scored
                        counts += [is_beam.sum(), is_tagged.sum(), (is_beam & is_tagged).sum(), scored.sum()]
            if display_dir is not None and len(displays) < max_displays:
                from protoseg.display import plot_event

                for i in range(min(len(pred), max_displays - len(displays))):
                    label = batch["label"][i] if batch.get("label") is not None else None
                    out = display_dir / f"event_{int(batch['event_id'][i])}.png"
                    plot_event(batch["adc"][i], label, pred[i], predictor.class_names, out, title=f"event {int(batch['event_id'][i])}")
                    displays.append(out)
            bar.update(len(pred))
        hit_metrics: dict[str, float] = {}
        if hit_pred is not None:
            handle["hits"].create_dataset("offsets", data=np.asarray(hit_offsets, dtype=np.int64))
            if counts[3] > 0:
                hit_metrics = {
                    "beam_hits": int(counts[0]),
                    "tagged_beam_hits": int(counts[1]),
                    "beam_efficiency": float(counts[2] / counts[0]) if counts[0] else float("nan"),
                    "beam_purity": float(counts[2] / counts[1]) if counts[1] else float("nan"),
                    "n_hits": int(counts[3]),
                }
                handle.attrs["hit_metrics"] = json.dumps(hit_metrics)
        if friend is not None:
            handle.attrs["root_output"] = str(root_path)
            friend.close()
    return PredictionSummary(output_path, info["n"], fmt, hit_metrics, displays, root_path, predictor.beam_threshold)


def _image_batches(path: Path, predictor: Predictor, split: str | None) -> tuple[Iterator[dict], dict]:
    from protoseg.images.imagefile import open_images

    images = open_images(path)
    try:
        check_classes(predictor.class_names, list(images.class_names), path)
        index = images.indices(split)
    except InputError:
        images.close()
        raise
    if len(index) == 0:
        images.close()  # predict_file refuses it; the generator below would never run to close it
    has_truth = images.label is not None
    size = images.size
    event_ids = images.event_id

    def generate() -> Iterator[dict]:
        try:
            for part in batch_slices(len(index), predictor.batch_size):
                rows = index[part]
                adc, label = images.read(rows)
                batch = {"adc": adc, "event_id": event_ids[rows]}
                if has_truth:
                    batch["label"] = label
                yield batch
        finally:
            _close(images)

    return generate(), {"n": len(index), "size": size, "has_truth": has_truth}


def _event_batches(path: Path, predictor: Predictor, with_source: bool = False) -> tuple[Iterator[dict], dict]:
    from protoseg.events import open_events
    from protoseg.images.grid import check_hit_values, pixel_indices
    from protoseg.images.labels import BEAM_LABEL_RULES, apply_beam_label_rule
    from protoseg.images.pooling import event_to_image

    events = open_events(path)
    source_entries = None
    if with_source:
        source_entries = events.config.get("source_entries")
        if not events.has_source_index or not isinstance(source_entries, int):
            events.close()
            raise InputError(
                "does not record where its hits came from in a ROOT tree (no /hits/source_index): --root needs "
                "events imported by import-root (files imported by an older protoseg: import them again)", path)
    image = predictor.card.get("input", {}).get("image", {})
    size = tuple(int(s) for s in image.get("size") or (320, 320))
    pooling = image.get("pooling") or "max"
    label_scheme = image.get("label_scheme") or "beam3"
    spread_rms, drop_noise = bool(image.get("spread_rms", False)), bool(image.get("drop_noise", False))
    # The truth the model was trained on: images made with --beam-label-rule 2018 drop the hits of
    # particles that are not generator primaries and credit EM daughters to their parent.
    rule = image.get("beam_label_rule") if image.get("beam_label_rule") in BEAM_LABEL_RULES else "all"
    n = len(events)
    has_truth = bool(events.is_mc)
    if n == 0:
        events.close()

    def generate() -> Iterator[dict]:
        try:
            batch: list = []
            for event in events.iter_events(chunk_events=max(predictor.batch_size, 16)):
                batch.append(event)
                if len(batch) == predictor.batch_size:
                    yield _event_batch(batch)
                    batch = []
            if batch:
                yield _event_batch(batch)
        finally:
            _close(events)

    def _event_batch(batch: list) -> dict:
        adcs, labels, ids, hits_info = [], [], [], []
        for event in batch:
            hits = event.hits
            check_hit_values(hits, event.event_id, path)  # a NaN or out-of-window hit would make a NaN image
            rows, cols = pixel_indices(hits["tick"], hits["wire"], size)
            truth = np.asarray(hits["label"]) if "label" in hits else None
            if event.is_mc and rule != "all" and truth is not None:
                # The image as `protoseg images --beam-label-rule` makes it; every hit of the event
                # still gets the class of its pixel, but only the kept ones are scored.
                indexed = dict(hits, hit_index=np.arange(truth.size))
                kept = apply_beam_label_rule(indexed, event.particles, rule)
                hits = {name: column for name, column in kept.items() if name != "hit_index"}
                truth = np.full(truth.size, NO_TRUTH, np.uint8)
                truth[kept["hit_index"]] = np.asarray(kept["label"], np.uint8)
            adc, label = event_to_image(hits, size, pooling, label_scheme if event.is_mc else None, spread_rms, drop_noise)
            adcs.append(adc)
            labels.append(label)
            ids.append(event.event_id)
            source = (event.source_entry, event.source_hits, event.hits["source_index"]) if with_source else None
            hits_info.append((rows, cols, truth, source))
        out = {"adc": np.stack(adcs).astype(np.float32), "event_id": np.asarray(ids, dtype=np.int64), "hits": hits_info}
        if has_truth and all(lbl is not None for lbl in labels):
            out["label"] = np.stack(labels).astype(np.uint8)
        return out

    return generate(), {"n": n, "size": size, "has_truth": has_truth, "source_entries": source_entries}


def _close(handle: Any) -> None:
    close = getattr(handle, "close", None)
    if callable(close):
        close()


