"""Loading a trained network safely: run folders, checkpoints, weights files and shipped models.

``load_model(MODEL)`` accepts a run folder, a Lightning checkpoint, a ``.safetensors`` weights file,
or the name of a model shipped in ``protoseg/pretrained``: ``"default"`` (the hit-level network since model
2.0.0), ``"default-no-rms"`` (the same network without the hit width, for hit dumps that record none),
``"default-2018"`` (the same network taught the 2018 labelling: the beam particle, not its hadronic chain), or
the image networks ``"tiramisu-gpu"``, ``"default-cpu"``, ``"study2018"`` and ``"species"``. It
never executes code from a file: weights are safetensors, checkpoints are read with
``torch.load(weights_only=True)`` (whose unpickler refuses every global outside PyTorch's allow-list), and
model cards are JSON (``protoseg.modelcards``). The network comes back in eval mode with its model card as ``model.card``.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from protoseg.errors import InputError
from protoseg.fileio import check_readable
from protoseg.modelcards import CHECKPOINT_VAL_KEY, SAFETENSORS_CARD_KEY, build_model_from_card, check_card, model_card

__all__ = ["PRETRAINED_DIR", "shipped_models", "load_model", "size_divisor"]

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def shipped_models() -> list[str]:
    """Names of the models shipped with this installation (files pretrained/NAME.safetensors)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def _build(card: dict[str, Any], state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    check_card(card, source)
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
    card = _card_from_hparams(hparams, {"validation": checkpoint.get(CHECKPOINT_VAL_KEY) or {}}, path)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return _build(card, state, path)


def _load_safetensors(path: Path) -> torch.nn.Module:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

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
    elif SAFETENSORS_CARD_KEY in metadata:
        text, where = metadata[SAFETENSORS_CARD_KEY], path
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


def size_divisor(model: torch.nn.Module) -> int:
    """The network's total downsampling (2 ** number of down blocks): it pads inputs to a multiple of this."""
    value = getattr(model, "pad_multiple", None)
    if isinstance(value, int) and value > 0:
        return value
    blocks = getattr(model, "card", {}).get("architecture", {}).get("options", {}).get("down_blocks")
    return 2 ** len(blocks) if blocks else 32
