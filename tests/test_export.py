"""protoseg export: TorchScript and ONNX checked against PyTorch at new sizes, safetensors round trip."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from protoseg.cli import main
from protoseg.export import export_model, sample_input
from protoseg.inference import load_model

from test_inference import tiny_weights


def _reference(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(x).softmax(1).numpy()


def test_torchscript_export_matches_pytorch_at_a_new_size(tmp_path, capsys):
    tiny_weights(tmp_path / "run")
    out = tmp_path / "model.pt"
    assert main(["export", str(tmp_path / "run"), "--format", "torchscript", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "largest |torchscript - PyTorch|" in printed
    # what LArSoft does: torch::jit::load, then forward on an event of a size never seen at export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(out))
    x = sample_input(4, 57, 83, batch=1, seed=11)
    got = scripted(x).numpy()
    assert got.shape == (1, 3, 57, 83)
    assert np.abs(got - _reference(load_model(tmp_path / "run"), x)).max() <= 1e-4
    card = json.loads((tmp_path / "model.pt.json").read_text())
    assert card["export"]["format"] == "torchscript" and max(card["export"]["max_abs_diff"].values()) <= 1e-4


def test_onnx_export_has_dynamic_batch_height_width(tmp_path):
    import onnxruntime as ort

    model = load_model(tiny_weights(tmp_path / "run"))
    result = export_model(model, "onnx", tmp_path / "model.onnx")
    assert max(result.max_abs_diff.values()) <= 1e-4 and len(result.max_abs_diff) == 2
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert isinstance(shape[0], str) and isinstance(shape[2], str) and isinstance(shape[3], str)  # symbolic dims
    for batch, height, width in [(1, 96, 64), (3, 45, 70)]:  # sizes not used at export (nor in training: 32x32)
        x = sample_input(4, height, width, batch=batch, seed=batch)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == (batch, 3, height, width)
        assert np.abs(got - _reference(model, x)).max() <= 1e-4


def test_safetensors_export_round_trip_and_bad_format(tmp_path, capsys):
    tiny_weights(tmp_path / "run")
    out = tmp_path / "copy.safetensors"
    assert main(["export", str(tmp_path / "run"), "--format", "safetensors", "-o", str(out)]) == 0
    x = torch.rand(1, 1, 40, 40)
    with torch.inference_mode():
        assert torch.equal(load_model(out)(x), load_model(tmp_path / "run")(x))
    assert json.loads(out.with_suffix(".json").read_text())["classes"] == ["background", "beam", "not-beam"]
    assert main(["export", str(tmp_path / "run"), "--format", "safetensors", "-o", str(tmp_path / "x.bin")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


def test_export_refuses_a_model_that_differs_from_pytorch(tmp_path, monkeypatch):
    import protoseg.export as export

    model = load_model(tiny_weights(tmp_path / "run"))
    monkeypatch.setattr(export, "_check_torchscript", lambda tmp, module, samples: {"2x1x32x48": 0.5})
    with pytest.raises(export.InputError, match="differs from PyTorch by 0.5"):
        export_model(model, "torchscript", tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "bad.pt.json").exists()
