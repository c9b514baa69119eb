"""Event displays and evaluation plots (matplotlib, Agg backend: no screen needed).

Images are drawn as in the 2018 study (shared/reference): the input with a logarithmic colour scale
(green → blue), truth and prediction with background white, beam red, not-beam black; tick bins run
up the vertical axis (TDC), wire bins along the horizontal one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from protoseg.errors import InputError
from protoseg.fileio import atomic_output

__all__ = ["class_colours", "plot_event", "plot_hits", "plot_confusion", "plot_iou", "display_file"]

# Background / beam / not-beam as in the 2018 plots; further classes (species scheme) from tab10.
_BASE_COLOURS = {"background": "#ffffff", "beam": "#c00000", "not-beam": "#000000"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def class_colours(class_names: list[str]) -> list[str]:
    """One colour per class: the 2018 colours for background / beam / not-beam, tab10 for the rest."""
    from matplotlib import colormaps

    tab = colormaps["tab10"]
    extra = iter([tab(i) for i in range(10)])
    colours = []
    for name in class_names:
        if name in _BASE_COLOURS:
            colours.append(_BASE_COLOURS[name])
        elif name in ("none", "noise"):
            colours.append("#ffffff")
        else:
            from matplotlib.colors import to_hex

            colours.append(to_hex(next(extra)))
    return colours


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _class_panel(ax, labels: np.ndarray, class_names: list[str], title: str, fig) -> None:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(class_names)
    cmap = ListedColormap(class_colours(class_names))
    norm = BoundaryNorm(np.arange(-0.5, n + 0.5), n)
    im = ax.imshow(labels, origin="lower", cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
    bar = fig.colorbar(im, ax=ax, ticks=np.arange(n), fraction=0.046, pad=0.04)
    bar.ax.set_yticklabels(class_names)
    ax.set_title(title, fontweight="bold")


def plot_event(
    adc: np.ndarray,
    label: np.ndarray | None,
    pred: np.ndarray | None,
    class_names: list[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Input (log colour scale) | truth | prediction (with its mIoU when truth is given) of one image [H, W]."""
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    panels = 1 + (label is not None) + (pred is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), squeeze=False)
    axes = axes[0]
    adc = np.asarray(adc, dtype=np.float32)
    lit = adc[adc > 0]
    vmax = float(lit.max()) if lit.size else 1.0
    vmin = max(float(np.percentile(lit, 1)) if lit.size else vmax * 1e-3, vmax * 1e-4)
    shown = np.ma.masked_less_equal(adc, 0)
    im = axes[0].imshow(shown, origin="lower", cmap="winter_r", norm=LogNorm(vmin=vmin, vmax=vmax), interpolation="nearest", aspect="auto")
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04)
    axes[0].set_title("Input", fontweight="bold")
    k = 1
    if label is not None:
        _class_panel(axes[k], np.asarray(label), class_names, "Truth", fig)
        k += 1
    if pred is not None:
        heading = "Prediction"
        if label is not None:
            import torch

            from protoseg.metrics import per_image_confusion, per_image_miou

            as_tensor = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64)[None])  # noqa: E731
            confusion = per_image_confusion(as_tensor(pred), as_tensor(label), len(class_names))
            heading += f" (mIoU {100 * float(per_image_miou(confusion.numpy())[0]):.1f})"
        _class_panel(axes[k], np.asarray(pred), class_names, heading, fig)
    for ax in axes:
        ax.set_xlabel("wire bin")
        ax.set_ylabel("tick bin")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_hits(hits: dict[str, np.ndarray], path: str | Path, title: str | None = None, class_names: list[str] | None = None) -> Path:
    """Full-resolution display of an event's hits: wire vs tick, colour = integral (log); truth labels if present."""
    from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm

    plt = _pyplot()
    has_label = "label" in hits and hits["label"] is not None
    fig, axes = plt.subplots(1, 1 + has_label, figsize=(6.5 * (1 + has_label), 5), squeeze=False)
    axes = axes[0]
    wire, tick = np.asarray(hits["wire"]), np.asarray(hits["tick"])
    integral = np.clip(np.asarray(hits["integral"], dtype=np.float64), 1e-3, None)
    order = np.argsort(integral)  # brightest on top
    if len(integral):
        sc = axes[0].scatter(wire[order], tick[order], c=integral[order], s=0.4, cmap="winter_r", norm=LogNorm(vmin=max(np.percentile(integral, 1), 1e-3), vmax=integral.max()), linewidths=0)
        fig.colorbar(sc, ax=axes[0], fraction=0.046, pad=0.04, label="hit integral (ADC·tick)")
    axes[0].set_title(f"Hits ({len(wire)})", fontweight="bold")
    if has_label:
        names = class_names or ["none", "beam", "not-beam"]
        label = np.asarray(hits["label"], dtype=np.int64)
        colours = class_colours(names)
        colours[0] = "#bbbbbb"  # noise hits in grey: white would hide them
        cmap = ListedColormap(colours)
        order = np.argsort(label == 1)  # beam on top
        sc = axes[1].scatter(wire[order], tick[order], c=label[order], s=0.4, cmap=cmap, norm=BoundaryNorm(np.arange(-0.5, len(names) + 0.5), len(names)), linewidths=0)
        bar = fig.colorbar(sc, ax=axes[1], ticks=np.arange(len(names)), fraction=0.046, pad=0.04)
        bar.ax.set_yticklabels(names)
        axes[1].set_title("Truth", fontweight="bold")
    from protoseg.detector import READOUT

    for ax in axes:
        ax.set_xlim(0, READOUT.n_wires)
        ax.set_ylim(0, READOUT.n_ticks)
        ax.set_xlabel("global wire")
        ax.set_ylabel("tick")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: str | Path, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (truth rows, prediction columns) with pixel counts in each cell."""
    plt = _pyplot()
    confusion = np.asarray(confusion, dtype=np.int64)
    rows = confusion.sum(axis=1, keepdims=True)
    fraction = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=np.float64), where=rows > 0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.6 * n + 2.5, 1.4 * n + 1.8))
    im = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{fraction[i, j]:.3f}\n({confusion[i, j]:,})", ha="center", va="center", fontsize=8, color="white" if fraction[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=30, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of truth row")
    fig.tight_layout()
    return _save(fig, path)


def plot_iou(iou: np.ndarray, class_names: list[str], path: str | Path, title: str = "IoU per class") -> Path:
    """Bar chart of the per-class IoU, the mean IoU as a dashed line."""
    plt = _pyplot()
    iou = np.asarray(iou, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1.2 * len(class_names) + 2.5, 3.6))
    colours = class_colours(class_names)
    bars = ax.bar(range(len(iou)), np.nan_to_num(iou), color=colours, edgecolor="black")
    for bar, value in zip(bars, iou):
        ax.text(bar.get_x() + bar.get_width() / 2, min(np.nan_to_num(value) + 0.02, 1.02), "n/a" if np.isnan(value) else f"{value:.3f}", ha="center", fontsize=9)
    ax.axhline(np.nanmean(iou), ls="--", color="grey", label=f"mIoU {np.nanmean(iou):.3f}")
    ax.set_xticks(range(len(iou)), class_names, rotation=20)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("IoU")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _attr(handle, key: str, default: Any = None) -> Any:
    value = handle.attrs.get(key, default)
    return value.decode() if isinstance(value, bytes) else value


def display_file(path: str | Path, event: int, output: str | Path) -> Path:
    """Event display of entry ``event`` of an events, image or predictions file."""
    import h5py

    from protoseg.fileio import check_readable

    path = Path(path)
    check_readable(path)
    try:
        with h5py.File(path, "r") as handle:
            fmt = _attr(handle, "format")
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError):
        raise InputError("not an HDF5 file (expected protoseg events, images or predictions)", path) from None
    if fmt == "protoseg-events":
        from protoseg.events import open_events
        from protoseg.images.grid import check_hit_values

        events = open_events(path)
        try:
            _check_index(event, len(events), path)
            record = events.read(event)
            check_hit_values(record.hits, record.event_id, path)
            return plot_hits(record.hits, output, title=f"{path.name}: event {record.event_id}")
        finally:
            getattr(events, "close", lambda: None)()
    if fmt == "protoseg-images":
        from protoseg.images.imagefile import open_images

        images = open_images(path)
        try:
            _check_index(event, len(images.adc), path)
            adc, label = images.read([event])
            return plot_event(adc[0], None if label is None else label[0], None, list(images.class_names), output,
                              title=f"{path.name}: image {event} (event {int(images.event_id[event])})")
        finally:
            getattr(images, "close", lambda: None)()
    if fmt == "protoseg-predictions":
        from protoseg.fileio import open_h5_checked

        with open_h5_checked(path, "protoseg-predictions") as handle:
            adc, label, pred, class_names, event_id = _read_prediction(handle, event, path)
            return plot_event(adc, label, pred, class_names, output, title=f"{path.name}: entry {event} (event {event_id})")
    raise InputError(f"is a '{fmt}' file; display reads protoseg events, images or predictions files", path)


def _read_prediction(handle, event: int, path: Path):
    """Entry ``event`` of an open predictions file, checked: (adc, label or None, pred, class names, event id)."""
    from protoseg.images.imagefile import check_image_values

    try:
        class_names = json.loads(_attr(handle, "class_names"))
        if not isinstance(class_names, list) or not class_names:
            raise ValueError("class_names is not a list of names")
        _check_index(event, handle["pred"].shape[0], path)
        adc = np.asarray(handle["adc"][event], dtype=np.float32)
        pred = np.asarray(handle["pred"][event], dtype=np.uint8)
        label = np.asarray(handle["label"][event], dtype=np.uint8) if "label" in handle else None
        event_id = int(handle["event_id"][event])
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"predictions file is incomplete or corrupt ({exc.__class__.__name__}: "
                         f"{' '.join(str(exc).split())[:160]})", path) from None
    if adc.ndim != 2 or pred.shape != adc.shape or (label is not None and label.shape != adc.shape):
        raise InputError(f"predictions file entry {event} has images of different shapes", path)
    check_image_values(adc[None], None if label is None else label[None], len(class_names), path, [event])
    check_image_values(None, pred[None], len(class_names), path, [event])
    return adc, label, pred, [str(c) for c in class_names], event_id


def _check_index(event: int, n: int, path: Path) -> None:
    if not 0 <= event < n:
        raise InputError(f"--event {event} is out of range: the file holds {n} entries (0..{n - 1})", path)
