"""Hand-off of a trained network: TorchScript (LArSoft, ``torch::jit::load``), ONNX (Triton, onnxruntime), safetensors.

The exported graph is the network followed by a softmax over classes: input ``[N, 1, H, W]`` float32,
normalised as the model card says, any H and W (the network pads inside and crops back); output
``[N, C, H, W]`` class probabilities. Batch, height and width are dynamic in the ONNX graph. Every
export is checked against PyTorch on a sample and the largest absolute difference is reported;
above the tolerance (1e-4) the file is not written.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoseg.errors import InputError
from protoseg.fileio import atomic_output
from protoseg.version import __version__

__all__ = ["FORMATS", "TOLERANCE", "Probabilities", "ExportResult", "export_model", "sample_input", "sample_hits"]

FORMATS = ("torchscript", "onnx", "safetensors")
TOLERANCE = 1e-4


class Probabilities(torch.nn.Module):
    """The network with a softmax over the class axis: what LArSoft and Triton consumers want."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(x), dim=1)


@dataclass
class ExportResult:
    """The written file, the largest |exported - PyTorch| on each checked sample size, and the tolerance."""

    path: Path
    format: str
    max_abs_diff: dict[str, float]
    tolerance: float = TOLERANCE


def sample_input(divisor: int, height: int | None = None, width: int | None = None, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A sparse event-like sample [batch, 1, H, W] in [0, 1]: ~5% lit pixels with log-uniform values."""
    height = height or 2 * divisor
    width = width or 3 * divisor
    rng = np.random.default_rng(seed)
    lit = rng.random((batch, 1, height, width)) < 0.05
    values = np.exp(rng.uniform(np.log(1e-3), 0.0, size=lit.shape))
    return torch.from_numpy(np.where(lit, values, 0.0).astype(np.float32))


def _check_sizes(divisor: int) -> list[tuple[int, int, int]]:
    # The size exported with, then another batch, height and width (not multiples of the downsampling:
    # the network pads them) to prove the exported graph is dynamic in all three.
    base = max(divisor, 16)
    return [(2, 2 * base, 3 * base), (3, 3 * base - 5, 2 * base + 7)]


def _reference(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return module(x).float().numpy()


def _export_torchscript(module: Probabilities, tmp: Path, sample: torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices: TorchScript is what LArSoft loads
        try:
            scripted = torch.jit.script(module)
        except Exception:  # a network that cannot be scripted is traced; the size checks below catch baked-in shapes
            scripted = torch.jit.trace(module, sample, check_trace=False)
        scripted = torch.jit.freeze(scripted.eval()) if hasattr(torch.jit, "freeze") else scripted
        torch.jit.save(scripted, str(tmp))


def _check_torchscript(tmp: Path, module: Probabilities, samples: list[torch.Tensor]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(tmp), map_location="cpu")
    diffs = {}
    for x in samples:
        with torch.inference_mode():
            got = loaded(x).float().numpy()
        diffs["x".join(map(str, x.shape))] = float(np.max(np.abs(got - _reference(module, x))))
    return diffs


def _export_onnx(module: Probabilities, tmp: Path, sample: torch.Tensor, opset: int) -> None:
    batch, height, width = (torch.export.Dim(name, min=1) for name in ("batch", "height", "width"))
    import logging

    # The exporter logs that torchvision (not a dependency) is absent; that is noise here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (sample,),
            dynamo=True,
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        program.save(str(tmp))


def _check_onnx(tmp: Path, module: Probabilities, samples: list[torch.Tensor]) -> dict[str, float]:
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(tmp))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    diffs = {}
    for x in samples:
        got = session.run(None, {name: x.numpy()})[0]
        diffs["x".join(map(str, x.shape))] = float(np.max(np.abs(got - _reference(module, x))))
    return diffs


def _refuse_if_different(diffs: dict[str, float], fmt: str, tolerance: float, output: Path) -> None:
    """InputError (the caller's temporary file is then removed) when an export is further than ``tolerance`` from PyTorch."""
    worst = max(diffs.values())
    if not np.isfinite(worst) or worst > tolerance:
        raise InputError(f"{fmt} export differs from PyTorch by {worst:.3g} (> {tolerance:g}); not written", output)


def export_model(model: torch.nn.Module, fmt: str, output: str | Path, opset: int = 18, tolerance: float = TOLERANCE) -> ExportResult:
    """Export a loaded network (``protoseg.load_model``) to ``output`` in format ``fmt`` and check it.

    The check runs the exported file and PyTorch on event-like samples of two sizes (the second with
    another batch, height and width); a difference above ``tolerance`` raises and writes nothing.
    """
    from protoseg.loading import size_divisor
    from protoseg.modelcards import write_weights

    if fmt not in FORMATS:
        raise InputError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    output = Path(output)
    model = model.to("cpu").eval()
    card: dict[str, Any] = dict(getattr(model, "card", {}))
    if fmt == "safetensors":
        if output.suffix != ".safetensors":
            raise InputError("weights file name must end in .safetensors (its model card is written next to it as .json)", output)
        path, _ = write_weights(model, card, output)
        return ExportResult(path, fmt, {}, tolerance)

    from protoseg.hits.inference import is_hit_card

    if is_hit_card(card):
        return _export_hit_model(model, card, fmt, output, opset, tolerance)
    divisor = size_divisor(model)
    module = Probabilities(model).eval()
    samples = [sample_input(divisor, h, w, batch=b, seed=i) for i, (b, h, w) in enumerate(_check_sizes(divisor))]
    with atomic_output(output, suffix=output.suffix or ".tmp") as tmp:
        try:
            if fmt == "torchscript":
                _export_torchscript(module, tmp, samples[0])
                diffs = _check_torchscript(tmp, module, samples)
            else:
                _export_onnx(module, tmp, samples[0], opset)
                diffs = _check_onnx(tmp, module, samples)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{fmt} export failed: {exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}", output) from None
        _refuse_if_different(diffs, fmt, tolerance, output)
    if card:
        # The card travels with the exported file: what it expects and returns, and how close it is.
        export_info = {"format": fmt, "output": "softmax probabilities [N, C, H, W]", "max_abs_diff": diffs, "tolerance": tolerance,
                       "protoseg_version": __version__}
        with atomic_output(Path(str(output) + ".json")) as tmp:
            Path(tmp).write_text(json.dumps({**card, "export": export_info}, indent=2) + "\n")
    return ExportResult(output, fmt, diffs, tolerance)


def sample_hits(n_hits: int, seed: int = 0) -> torch.Tensor:
    """Event-like hits [n, 4] float32 (wire, tick, integral, rms): tracks of neighbouring wires plus scattered hits."""
    rng = np.random.default_rng(seed)
    n_track = n_hits // 2
    start_wire, start_tick = rng.integers(0, 1300, 8), rng.uniform(0, 5000, 8)
    which = rng.integers(0, 8, n_track)
    step = rng.integers(0, 120, n_track)
    wire = np.concatenate([start_wire[which] + step, rng.integers(0, 1440, n_hits - n_track)])
    tick = np.concatenate([start_tick[which] + step * rng.uniform(2, 9, 8)[which], rng.uniform(0, 6000, n_hits - n_track)])
    hits = np.stack([np.clip(wire, 0, 1439), np.clip(tick, 0, 5999.5), rng.exponential(400.0, n_hits), rng.uniform(1.5, 6.0, n_hits)], axis=1)
    return torch.from_numpy(hits.astype(np.float32))


def _export_hit_model(model: torch.nn.Module, card: dict[str, Any], fmt: str, output: Path, opset: int, tolerance: float) -> ExportResult:
    """Export a hit-level network as hits [n, 4] → probabilities [n, C] (protoseg.hits.export), checked on two events
    against protoseg's own Python path (numpy sites + the network)."""
    from protoseg.hits.export import HIT_COLUMNS_EXPORTED, HitsToProbabilities
    from protoseg.hits.inference import HitPredictor

    if fmt != "torchscript":
        # The graph's sizes depend on the data (the number of sites is torch.unique's output): torch 2.13's
        # ONNX exporter (torch.export, dynamo) stops at "GuardOnDataDependentSymNode: Could not guard on
        # data-dependent expression u0 > 0". LArSoft loads TorchScript, which has no such limit.
        raise InputError("a hit-level model exports to TorchScript only (--format torchscript): the number of sites is "
                         "data-dependent (torch.unique), which torch.export / the ONNX exporter cannot trace", output)
    module = HitsToProbabilities(model, int(card["input"]["grid"]["ticks_per_row"]), list(card["input"]["features"])).eval()
    predictor = HitPredictor(model, beam_threshold="argmax")
    samples = [sample_hits(n, seed=i) for i, n in enumerate((3000, 1777))]
    with atomic_output(output, suffix=output.suffix or ".tmp") as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.freeze(torch.jit.script(module))
                torch.jit.save(scripted, str(tmp))
                loaded = torch.jit.load(str(tmp), map_location="cpu")
            diffs = {}
            for x in samples:
                columns = {name: x[:, k].numpy() for k, name in enumerate(HIT_COLUMNS_EXPORTED)}
                columns["wire"] = columns["wire"].astype(np.uint16)
                with torch.inference_mode():
                    got = loaded(x).numpy()
                diffs[f"{len(x)} hits"] = float(np.max(np.abs(got - predictor.hit_probabilities(columns))))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{fmt} export failed: {exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}", output) from None
        _refuse_if_different(diffs, fmt, tolerance, output)
    export_info = {"format": fmt, "input": "hits [n, 4] float32: wire (0..1439), peak tick (0..5999), integral (ADC*tick), rms (ticks)",
                   "output": "softmax probabilities [n, C], one row per hit", "max_abs_diff": diffs, "tolerance": tolerance,
                   "protoseg_version": __version__}
    with atomic_output(Path(str(output) + ".json")) as tmp:
        Path(tmp).write_text(json.dumps({**card, "export": export_info}, indent=2) + "\n")
    return ExportResult(output, fmt, diffs, tolerance)
