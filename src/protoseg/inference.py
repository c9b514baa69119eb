"""Inference: load a trained network safely, predict images and events, map pixels back to hits, evaluate.

``load_model(MODEL)`` accepts a run folder, a Lightning checkpoint, a ``.safetensors`` weights file,
or the name of a model shipped in ``protoseg/pretrained`` (``"default"``). It never executes code
from a file: weights are safetensors, checkpoints are read with ``torch.load(weights_only=True)``
(whose unpickler refuses every global outside PyTorch's allow-list), and model cards are JSON.
The network comes back in eval mode with its model card as ``model.card``.

Prediction streams: images or events are read, predicted and written batch by batch into resizable
HDF5 datasets, so memory stays flat whatever the number of events.
"""
from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoseg import __version__
from protoseg.errors import InputError
from protoseg.fileio import atomic_output, check_readable

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

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PREDICTIONS_FORMAT = "protoseg-predictions"
PREDICTIONS_VERSION = 1
# Per-hit truth of hits a beam label rule drops (predict does not score them).
NO_TRUTH = 255
_SAFETENSORS_CARD_KEY = "protoseg_card"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def shipped_models() -> list[str]:
    """Names of the models shipped with this installation (files pretrained/NAME.safetensors)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def _check_card(card: dict[str, Any], source: Path) -> None:
    """What loading and prediction read from a model card must make sense; InputError naming the file."""
    from protoseg.data import NORMALISATIONS
    from protoseg.images import LABEL_SCHEMES, POOLINGS, check_size

    architecture, classes = card.get("architecture"), card.get("classes")
    if not isinstance(architecture, dict) or not isinstance(classes, list) or not classes:
        raise InputError("model card has no 'architecture' / 'classes' entries", source)
    if not all(isinstance(c, str) for c in classes) or not isinstance(architecture.get("options", {}), dict):
        raise InputError("model card: 'classes' must be names and 'architecture.options' an object", source)
    num_classes = architecture.get("num_classes")
    if not isinstance(num_classes, int) or num_classes != len(classes):
        raise InputError(f"model card is inconsistent: {num_classes} outputs for {len(classes)} classes", source)
    inputs = card.get("input", {})
    image = inputs.get("image", {}) if isinstance(inputs, dict) else None
    if not isinstance(image, dict):
        raise InputError("model card: 'input' and 'input.image' must be objects", source)
    if inputs.get("normalisation", "max") not in NORMALISATIONS:
        raise InputError(f"model card: unknown normalisation {inputs.get('normalisation')!r} (known: {', '.join(NORMALISATIONS)})", source)
    if image.get("size") is not None:
        check_size(image["size"], source)
    for key, known in (("pooling", POOLINGS), ("label_scheme", tuple(LABEL_SCHEMES))):
        if image.get(key) is not None and image[key] not in known:
            raise InputError(f"model card: unknown {key} {image[key]!r} (known: {', '.join(known)})", source)


def _build(card: dict[str, Any], state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    from protoseg.training import build_model_from_card

    _check_card(card, source)
    architecture = card["architecture"]
    try:
        model = build_model_from_card(architecture)
    except InputError as exc:
        raise InputError(str(exc), source) from None
    except Exception as exc:  # noqa: BLE001 - options from a file: any failure to build is a bad card
        detail = " ".join(str(exc).split())[:160]
        raise InputError(f"cannot build the model of its card ({exc.__class__.__name__}: {detail})", source) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise InputError(f"weights do not fit the architecture of its model card ({architecture.get('name')}): {detail[:240]}", source) from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"weights hold NaN or infinite values (tensor {name})", source)
    model.eval()
    model.card = card
    return model


def _card_from_hparams(hparams: dict[str, Any], extra: dict[str, Any], source: Path) -> dict[str, Any]:
    from protoseg.training import model_card

    try:
        return model_card(hparams["config"], hparams["class_names"], hparams.get("data_info", {}), extra)
    except (KeyError, TypeError, AttributeError, ValueError):
        raise InputError("checkpoint holds no protoseg hyper-parameters (config, class_names): not a protoseg checkpoint", source) from None


def _load_checkpoint(path: Path) -> torch.nn.Module:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only's unpickler names the global it refused; that is the one line users need. Other
        # unpickling errors ("invalid load key") are damaged files, not refused code.
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(exc))
        if found is None and "Weights only load failed" not in str(exc):
            raise InputError("corrupt or truncated checkpoint (UnpicklingError)", path) from None
        what = f" ({found.group(1)})" if found else ""
        raise InputError(
            f"refused: the checkpoint asks to run or rebuild Python objects{what}; protoseg only loads tensors and plain data",
            path,
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle raises almost anything (KeyError, struct.error, ...)
        raise InputError(f"corrupt or truncated checkpoint ({exc.__class__.__name__})", path) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise InputError("not a Lightning checkpoint (no state_dict)", path)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint["state_dict"].items()):
        raise InputError("checkpoint's state_dict does not map names to tensors", path)
    hparams = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        raise InputError("checkpoint holds no protoseg hyper-parameters (config, class_names): not a protoseg checkpoint", path)
    from protoseg.training import _VAL_KEY

    card = _card_from_hparams(hparams, {"validation": checkpoint.get(_VAL_KEY) or {}}, path)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return _build(card, state, path)


def _load_safetensors(path: Path) -> torch.nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError) as exc:
        raise InputError(f"corrupt or truncated weights file ({' '.join(str(exc).split())[:120]})", path) from None
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        try:
            text, where = card_path.read_text(encoding="utf-8"), card_path
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"model card cannot be read ({exc.__class__.__name__})", card_path) from None
    elif _SAFETENSORS_CARD_KEY in metadata:
        text, where = metadata[_SAFETENSORS_CARD_KEY], path
    else:
        raise InputError(f"weights file has no model card (neither {card_path.name} next to it nor one in its metadata)", path)
    try:
        card = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"model card is not valid JSON (line {exc.lineno})", where) from None
    except RecursionError:
        raise InputError("model card is not valid JSON (nested too deeply)", where) from None
    if not isinstance(card, dict):
        raise InputError("model card is not a JSON object", where)
    return _build(card, state, path)


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as raw:
        head = raw.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def load_model(model: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a network (eval mode, card in ``.card``) from a run folder, checkpoint, weights file or shipped name."""
    path = Path(model)
    if path.is_dir():
        for candidate in (path / "model.safetensors", path / "checkpoints" / "best.ckpt", path / "checkpoints" / "last.ckpt"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise InputError("folder holds no model.safetensors or checkpoints/{best,last}.ckpt: not a protoseg run folder", path)
    elif not path.exists():
        name = str(model)
        if _NAME.match(name) and not name.endswith((".ckpt", ".safetensors", ".pt", ".pth")):
            shipped = PRETRAINED_DIR / f"{name}.safetensors"
            if not shipped.is_file():
                available = ", ".join(shipped_models()) or "none"
                raise InputError(f"no such file, and no shipped model of that name in this installation (shipped models: {available})", name)
            path = shipped
        else:
            raise InputError("no such file or folder", path)
    check_readable(path)
    # By name first: torch.load itself hands any *.safetensors file to safetensors.
    is_weights = path.suffix == ".safetensors" or _is_safetensors(path)
    network = _load_safetensors(path) if is_weights else _load_checkpoint(path)
    network.source = str(path)
    return network.to(map_location)


# ----------------------------------------------------------------------------------------------
# Prediction
# ----------------------------------------------------------------------------------------------
def _size_divisor(model: torch.nn.Module) -> int:
    """The network's total downsampling (2 ** number of down blocks): it pads inputs to a multiple of this."""
    value = getattr(model, "pad_multiple", None)
    if isinstance(value, int) and value > 0:
        return value
    blocks = getattr(model, "card", {}).get("architecture", {}).get("options", {}).get("down_blocks")
    return 2 ** len(blocks) if blocks else 32


class Predictor:
    """Run a loaded network on batches of raw (pooled, un-normalised) images: class and probabilities per pixel.

    The networks take any image size (they pad to their downsampling multiple and crop back).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", batch_size: int = 4) -> None:
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.card = getattr(model, "card", {})
        self.class_names: list[str] = list(self.card.get("classes", []))
        self.normalisation: str = self.card.get("input", {}).get("normalisation", "max")

    @torch.inference_mode()
    def probabilities(self, adc: np.ndarray) -> np.ndarray:
        """Softmax probabilities float32 [B, C, H, W] for raw images ``adc`` [B, H, W]."""
        from protoseg.data import normalise

        x = torch.from_numpy(np.ascontiguousarray(normalise(np.asarray(adc, dtype=np.float32), self.normalisation), dtype=np.float32))
        logits = self.model(x[:, None].to(self.device))
        return logits.float().softmax(1).cpu().numpy()

    def predict(self, adc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pred uint8 [B, H, W], prob float32 [B, C, H, W]) for raw images [B, H, W]."""
        prob = self.probabilities(adc)
        return prob.argmax(1).astype(np.uint8), prob


def _check_classes(model_classes: list[str], data_classes: list[str], source: Path) -> None:
    if list(model_classes) != list(data_classes):
        raise InputError(
            f"the model predicts {len(model_classes)} classes ({', '.join(model_classes)}) but the file is labelled with "
            f"{len(data_classes)} ({', '.join(data_classes)})",
            source,
        )


def _file_format(path: Path) -> str:
    import h5py

    check_readable(path)
    try:
        with h5py.File(path, "r") as handle:
            found = handle.attrs.get("format")
            return found.decode() if isinstance(found, bytes) else str(found)
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError):
        raise InputError("not a readable HDF5 file (expected protoseg events or images; truncated or corrupt?)", path) from None


@dataclass
class PredictionSummary:
    """What ``predict_file`` wrote: counts, and the hit-level beam numbers when the input had truth."""

    output: Path
    n_events: int
    input_format: str
    hit_metrics: dict[str, float] = field(default_factory=dict)
    displays: list[Path] = field(default_factory=list)
    root_output: Path | None = None


class _PredictionsWriter:
    """Grows /pred, /prob, /adc, /event_id (and /label, /hits/*) batch by batch in an open HDF5 file."""

    def __init__(self, handle, n_classes: int, height: int, width: int, with_label: bool) -> None:
        self.handle = handle
        # LZF: several times faster to write than gzip. Fletcher-32: a damaged chunk is a read error, not wrong classes.
        opts = {"compression": "lzf", "shuffle": True, "fletcher32": True}
        handle.create_dataset("pred", (0, height, width), np.uint8, maxshape=(None, height, width), chunks=(1, height, width), **opts)
        handle.create_dataset("prob", (0, n_classes, height, width), np.float16, maxshape=(None, n_classes, height, width), chunks=(1, n_classes, height, width), **opts)
        handle.create_dataset("adc", (0, height, width), np.float32, maxshape=(None, height, width), chunks=(1, height, width), **opts)
        handle.create_dataset("event_id", (0,), np.int64, maxshape=(None,), chunks=(1024,))
        if with_label:
            handle.create_dataset("label", (0, height, width), np.uint8, maxshape=(None, height, width), chunks=(1, height, width), **opts)
        self.n = 0

    def append(self, pred: np.ndarray, prob: np.ndarray, adc: np.ndarray, event_id: np.ndarray, label: np.ndarray | None) -> None:
        start, stop = self.n, self.n + len(pred)
        for name, values in (("pred", pred), ("prob", prob.astype(np.float16)), ("adc", adc), ("event_id", event_id), ("label", label)):
            if values is None or name not in self.handle:
                continue
            dataset = self.handle[name]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values
        self.n = stop


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


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
) -> PredictionSummary:
    """Predict every image (or event) of ``input_path`` into the predictions file ``output_path``.

    Events files are turned into images with the settings of the model card (size, pooling), and every
    hit gets the class of the pixel that holds it (``/hits/pred``, same offsets as the events file).
    With truth, the hit-level beam efficiency and purity are computed and stored in the attributes.
    ``root_path`` (events imported from ROOT only) also writes the ROOT friend tree of
    ``protoseg.root_friend``, aligned with the input tree; both outputs appear only on success.
    """
    import contextlib

    import h5py

    input_path, output_path = Path(input_path), Path(output_path)
    fmt = _file_format(input_path)
    if root_path is not None:
        root_path = Path(root_path)
        if fmt != "protoseg-events":
            raise InputError(f"--root needs an events file made by import-root, this is a '{fmt}' file", input_path)
        if root_path.resolve() in (output_path.resolve(), input_path.resolve()):
            raise InputError("--root must name a file of its own (not the input or the predictions file)", root_path)
    predictor = Predictor(model, device=device, batch_size=batch_size)
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
            friend = FriendTreeWriter(root_tmp, predictor.class_names, info["source_entries"], input_path)
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
                "size": list(info["size"]),
            }
        )
        writer = _PredictionsWriter(handle, len(predictor.class_names), *info["size"], with_label=info["has_truth"])
        hit_pred = hit_offsets = None
        if fmt == "protoseg-events":
            hits = handle.create_group("hits")
            hit_pred = hits.create_dataset("pred", (0,), np.uint8, maxshape=(None,), chunks=(65536,), compression="lzf",
                                           fletcher32=True)
            hit_offsets = [0]
        done = 0
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
            done += len(pred)
            if progress:
                print(f"\rpredicted {done}/{info['n']}", end="", flush=True)
        if progress:
            print()
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
    return PredictionSummary(output_path, info["n"], fmt, hit_metrics, displays, root_path)


def _image_batches(path: Path, predictor: Predictor, split: str | None) -> tuple[Iterator[dict], dict]:
    from protoseg.images import open_images

    images = open_images(path)
    try:
        _check_classes(predictor.class_names, list(images.class_names), path)
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
            for part in _batches(len(index), predictor.batch_size):
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
    from protoseg.images import BEAM_LABEL_RULES, apply_beam_label_rule, check_hit_values, event_to_image, pixel_indices

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


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def per_image_miou(confusions: np.ndarray) -> np.ndarray:
    """Mean IoU of each image from its confusion matrix [N, C, C]; classes absent from truth and prediction are skipped."""
    from protoseg.metrics import iou

    return torch.nanmean(iou(torch.as_tensor(np.asarray(confusions))), dim=-1).numpy()


@dataclass
class Evaluation:
    """Pooled and per-image numbers of one evaluation."""

    class_names: list[str]
    confusion: np.ndarray  # [C, C] int64, rows truth, columns prediction
    image_confusions: np.ndarray  # [N, C, C]
    event_ids: np.ndarray
    indices: np.ndarray  # rows of the image file

    @property
    def iou(self) -> np.ndarray:
        from protoseg.metrics import iou

        return iou(torch.from_numpy(self.confusion)).double().numpy()

    @property
    def miou(self) -> float:
        return float(np.nanmean(self.iou))

    @property
    def miou_per_image(self) -> np.ndarray:
        return per_image_miou(self.image_confusions)

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def metrics(self, model: str, data: str, split: str) -> dict[str, Any]:
        def clean(value: float) -> float | None:
            return None if not math.isfinite(value) else float(value)

        per_image = self.miou_per_image
        return {
            "classes": self.class_names,
            "iou": [clean(v) for v in self.iou.tolist()],
            "miou": clean(self.miou),
            "miou_per_image": clean(float(np.nanmean(per_image))) if np.isfinite(per_image).any() else None,
            "accuracy": clean(self.accuracy),
            "confusion": self.confusion.tolist(),
            "n_images": int(len(self.event_ids)),
            "model": model,
            "data": data,
            "split": split,
            "per_image": [{"event_id": int(e), "miou": clean(float(m))} for e, m in zip(self.event_ids, per_image)],
        }


def evaluate(model: torch.nn.Module, images_path: str | Path, split: str = "test", batch_size: int = 4, device: str = "cpu", progress: bool = True) -> Evaluation:
    """Confusion matrices (pooled and per image) of ``model`` on one split of an image file."""
    from protoseg.images import open_images
    from protoseg.metrics import per_image_confusion

    path = Path(images_path)
    predictor = Predictor(model, device=device, batch_size=batch_size)
    images = open_images(path)
    try:
        _check_classes(predictor.class_names, list(images.class_names), path)
        if images.label is None:
            raise InputError("has no labels: evaluate needs truth (use predict for data)", path)
        index = images.indices(split)
        if len(index) == 0:
            raise InputError(f"the {split} split is empty", path)
        n_classes = len(predictor.class_names)
        confusions = np.zeros((len(index), n_classes, n_classes), dtype=np.int64)
        for part in _batches(len(index), predictor.batch_size):
            adc, label = images.read(index[part])
            pred, _ = predictor.predict(adc)
            label = torch.from_numpy(label.astype(np.int64))
            confusions[part] = per_image_confusion(torch.from_numpy(pred.astype(np.int64)), label, n_classes).numpy()
            if progress:
                print(f"\revaluated {part.stop}/{len(index)}", end="", flush=True)
        if progress:
            print()
        event_ids = images.event_id[index]
    finally:
        _close(images)
    return Evaluation(predictor.class_names, confusions.sum(axis=0), confusions, event_ids, index)
