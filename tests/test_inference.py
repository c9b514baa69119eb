"""load_model (safe loading, every source), predict (images and events, hits mapped back), evaluate, displays."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from protoseg.cli import main
from protoseg.config import apply_overrides, load_config
from protoseg.errors import InputError
from protoseg.events import Event, EventsWriter
from protoseg.images import pixel_indices, write_images
from protoseg.inference import Predictor, load_model, per_image_miou, predict_file
from protoseg.models import build_model
from protoseg.training import model_card, write_weights

TINY = {"down_blocks": [2, 2], "bottleneck_layers": 2, "growth_rate": 4, "first_filters": 8}
CLASSES = ["background", "beam", "not-beam"]


def tiny_weights(folder: Path, seed: int = 0, size: int = 32, classes: list[str] = CLASSES) -> Path:
    """A tiny FC-DenseNet with random weights written as model.safetensors + model.json."""
    torch.manual_seed(seed)
    config = apply_overrides(load_config(), ["model.name=fcdensenet", *[f"model.{k}={v}" for k, v in TINY.items()]])
    network = build_model("fcdensenet", num_classes=len(classes), **TINY)
    # Batch-norm statistics away from their initial values, so a wrong load would show.
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    card = model_card(config, classes, {"size": [size, size], "pooling": "max", "label_scheme": "beam3"}, model=network)
    folder.mkdir(parents=True, exist_ok=True)
    path, _ = write_weights(network, card, folder / "model.safetensors")
    return path


def tiny_images(path: Path, n: int = 6, size: int = 32, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    adc = np.where(rng.random((n, size, size)) < 0.1, rng.uniform(10, 500, (n, size, size)), 0).astype(np.float32)
    label = np.where(adc > 0, 1 + (adc > 200), 0).astype(np.uint8)
    return write_images(path, adc, label, np.arange(n) + 7, [0, 1] + [2] * (n - 2), {"pooling": "max", "label_scheme": "beam3"})


def tiny_events(path: Path, n: int = 5, seed: int = 2, is_mc: bool = True) -> Path:
    """MC events with hits spread over the whole readout; labels 1 (beam) in the lower-left corner."""
    rng = np.random.default_rng(seed)
    with EventsWriter(path, config={"test": "tiny"}, is_mc=is_mc, source="test") as writer:
        for i in range(n):
            m = int(rng.integers(200, 400))
            wire = rng.integers(0, 1440, m).astype(np.uint16)
            tick = rng.uniform(0, 5999, m).astype(np.float32)
            hits = {"wire": wire, "tick": tick, "integral": rng.uniform(50, 2000, m).astype(np.float32),
                    "rms": np.full(m, 3.0, np.float32), "peak": np.full(m, 100.0, np.float32)}
            particles = None
            if is_mc:
                beam = (wire < 400) & (tick > 4000)
                hits.update(label=np.where(beam, 1, 2).astype(np.uint8), origin=np.where(beam, 1, 2).astype(np.uint8),
                            track_id=np.where(beam, 1, 2).astype(np.int32), pdg=np.where(beam, 211, 13).astype(np.int32))
                particles = {
                    "track_id": np.array([1, 2], np.int32), "parent_id": np.array([-1, -1], np.int32), "pdg": np.array([211, 13], np.int32),
                    "origin": np.array([1, 2], np.uint8), "process": np.array(["primary", "primary"], object),
                    "end_process": np.array(["stop", "escape"], object),
                    **{k: np.zeros(2, np.float32) for k in ("start_x", "start_y", "start_z", "end_x", "end_y", "end_z", "start_t",
                                                          "start_px", "start_py", "start_pz", "energy_deposited", "track_length")},
                }
            writer.append(Event(event_id=1000 + i, hits=hits, is_mc=is_mc, particles=particles))
    return path


# ------------------------------------------------------------------------------------------- loading
def test_safetensors_run_folder_and_checkpoint_give_the_same_network(tmp_path):
    weights = tiny_weights(tmp_path / "run")
    x = torch.rand(2, 1, 32, 48)
    from_file, from_folder = load_model(weights), load_model(tmp_path / "run")
    with torch.inference_mode():
        assert torch.equal(from_file(x), from_folder(x))
    assert from_file.card["classes"] == CLASSES and not from_file.training
    # A Lightning-style checkpoint of the same network loads to the same outputs.
    card = from_file.card
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in from_file.state_dict().items()},
                  "hyper_parameters": {"config": card["recipe"], "class_names": CLASSES, "data_info": {"size": [32, 32]}}}
    torch.save(checkpoint, tmp_path / "model.ckpt")
    with torch.inference_mode():
        assert torch.equal(load_model(tmp_path / "model.ckpt")(x), from_file(x))


def test_checkpoint_that_runs_code_on_unpickling_is_refused(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Payload()}, path)
    with pytest.raises(InputError, match="refused.*(posix.system|os.system)"):
        load_model(path)
    assert not marker.exists()
    # through the command line: one line, exit 2, and still no code run
    result = subprocess.run([sys.executable, "-m", "protoseg", "evaluate", str(path), "x.h5", "-o", str(tmp_path / "e")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "refused" in result.stderr
    assert not marker.exists()
    # a raw pickle file (not torch's zip) is refused the same way
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump(Payload(), handle)
    with pytest.raises(InputError, match="refused"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch notes the pickle protocol before refusing the global
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_corrupt_and_foreign_model_files_are_refused(tmp_path):
    weights = tiny_weights(tmp_path / "run")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match="corrupt or truncated weights"):
        load_model(truncated)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"PK\x03\x04 not really a zip file at all")
    with pytest.raises(InputError, match="corrupt or truncated checkpoint"):
        load_model(garbage)
    with pytest.raises(InputError, match="not a protoseg run folder"):
        load_model(tmp_path)
    with pytest.raises(InputError, match="no shipped model of that name"):
        load_model("no-such-model")


def test_weights_of_another_architecture_are_refused(tmp_path):
    weights = tiny_weights(tmp_path / "run")
    card = json.loads(weights.with_suffix(".json").read_text())
    card["architecture"]["options"]["growth_rate"] = 6
    weights.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="weights do not fit the architecture"):
        load_model(weights)


# ------------------------------------------------------------------------------------------ predict
def test_predict_images_file(tmp_path):
    model = load_model(tiny_weights(tmp_path / "run"))
    images = tiny_images(tmp_path / "images.h5")
    out = tmp_path / "pred.h5"
    summary = predict_file(model, images, out, batch_size=4, displays_dir=tmp_path / "displays", max_displays=2, progress=False)
    assert summary.n_events == 6 and len(summary.displays) == 2 and all(p.stat().st_size > 0 for p in summary.displays)
    with h5py.File(out) as handle, h5py.File(images) as source:
        assert handle.attrs["format"] == "protoseg-predictions"
        pred, prob = handle["pred"][...], handle["prob"][...]
        assert pred.dtype == np.uint8 and prob.dtype == np.float16 and prob.shape == (6, 3, 32, 32)
        np.testing.assert_array_equal(handle["event_id"][...], np.arange(6) + 7)
        np.testing.assert_array_equal(handle["label"][...], source["label"][...])
        np.testing.assert_allclose(prob.astype(np.float32).sum(1), 1.0, atol=3e-3)
        # the stored classes are the network's argmax on the normalised image
        from protoseg.data import normalise

        x = torch.from_numpy(normalise(source["adc"][...], "max"))[:, None]
        with torch.inference_mode():
            expected = model(x).argmax(1).numpy()
        np.testing.assert_array_equal(pred, expected)


def test_predict_events_maps_every_hit_to_its_pixel(tmp_path):
    model = load_model(tiny_weights(tmp_path / "run"))
    events = tiny_events(tmp_path / "events.h5")
    out = tmp_path / "pred.h5"
    summary = predict_file(model, events, out, batch_size=2, progress=False)
    with h5py.File(out) as handle, h5py.File(events) as source:
        offsets = handle["hits/offsets"][...]
        np.testing.assert_array_equal(offsets, source["hits/offsets"][...])
        hit_pred, pred = handle["hits/pred"][...], handle["pred"][...]
        wire, tick, truth = source["hits/wire"][...], source["hits/tick"][...], source["hits/label"][...]
        tagged = truth_beam = both = 0
        for i in range(len(offsets) - 1):
            rows, cols = pixel_indices(tick[offsets[i] : offsets[i + 1]], wire[offsets[i] : offsets[i + 1]], (32, 32))
            np.testing.assert_array_equal(hit_pred[offsets[i] : offsets[i + 1]], pred[i][rows, cols])
            t, p = truth[offsets[i] : offsets[i + 1]] == 1, hit_pred[offsets[i] : offsets[i + 1]] == 1
            tagged, truth_beam, both = tagged + p.sum(), truth_beam + t.sum(), both + (t & p).sum()
        stored = json.loads(handle.attrs["hit_metrics"])
    assert stored["beam_efficiency"] == pytest.approx(both / truth_beam)
    if tagged:
        assert stored["beam_purity"] == pytest.approx(both / tagged)
    assert summary.hit_metrics == stored


def test_predict_events_without_truth(tmp_path):
    model = load_model(tiny_weights(tmp_path / "run"))
    events = tiny_events(tmp_path / "data.h5", n=3, is_mc=False)
    code = main(["predict", str(tmp_path / "run"), str(events), "-o", str(tmp_path / "pred.h5")])
    assert code == 0
    with h5py.File(tmp_path / "pred.h5") as handle:
        assert "label" not in handle and "hit_metrics" not in handle.attrs and handle["pred"].shape == (3, 32, 32)
        assert handle["hits/pred"].shape[0] == handle["hits/offsets"][-1]


def test_prediction_memory_does_not_grow_with_the_number_of_events(tmp_path):
    import tracemalloc

    model = load_model(tiny_weights(tmp_path / "run"))
    peaks = []
    for n in (4, 4, 16):  # the first run warms up (one-time allocations), the next two are compared
        images = tiny_images(tmp_path / f"images{n}.h5", n=n, size=48)
        tracemalloc.start()
        predict_file(model, images, tmp_path / f"pred{n}.h5", batch_size=2, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # tracemalloc sees every numpy array (images read, probabilities converted for the file): four times
    # the events, the same peak. Keeping each batch's inputs and float16 probabilities would add ~280 kB.
    assert peaks[2] < 1.2 * peaks[1] + 100_000


# ----------------------------------------------------------------------------------------- evaluate
def test_per_image_miou_hand_computed():
    # image 0: background 8/9 IoU, beam 1/2, not-beam absent from truth and prediction → mean of two
    confusion = np.array([[[8, 1, 0], [0, 1, 0], [0, 0, 0]]])
    assert per_image_miou(confusion)[0] == pytest.approx((8 / 9 + 1 / 2) / 2)


def test_evaluate_metrics_are_consistent_with_their_confusion_matrix(tmp_path, capsys):
    tiny_weights(tmp_path / "run")
    images = tiny_images(tmp_path / "images.h5", n=6)
    code = main(["evaluate", str(tmp_path / "run"), str(images), "--split", "test", "-o", str(tmp_path / "eval")])
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    confusion = np.array(metrics["confusion"])
    assert metrics["n_images"] == 4 and confusion.sum() == 4 * 32 * 32
    tp = np.diag(confusion)
    iou = tp / (confusion.sum(0) + confusion.sum(1) - tp)
    np.testing.assert_allclose(metrics["iou"], iou, rtol=1e-12)
    assert metrics["miou"] == pytest.approx(iou.mean()) and metrics["accuracy"] == pytest.approx(tp.sum() / confusion.sum())
    assert metrics["classes"] == CLASSES and metrics["data"] == str(images)
    assert metrics["miou_per_image"] == pytest.approx(np.mean([p["miou"] for p in metrics["per_image"]]))
    for name in ("confusion.png", "iou.png", "event_best.png", "event_median.png", "event_worst.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"{metrics['miou']:.4f}" in printed and "not-beam" in printed


def test_evaluate_refuses_other_classes_and_empty_splits(tmp_path, capsys):
    tiny_weights(tmp_path / "run")
    rng = np.random.default_rng(0)
    species = write_images(tmp_path / "species.h5", rng.random((3, 32, 32)).astype(np.float32), np.zeros((3, 32, 32), np.uint8),
                           [1, 2, 3], [0, 1, 2], {"label_scheme": "species"})
    assert main(["evaluate", str(tmp_path / "run"), str(species), "-o", str(tmp_path / "e1")]) == 2
    assert "the model predicts 3 classes" in capsys.readouterr().err
    no_test = write_images(tmp_path / "notest.h5", rng.random((2, 32, 32)).astype(np.float32), np.zeros((2, 32, 32), np.uint8), [1, 2], [0, 1])
    assert main(["evaluate", str(tmp_path / "run"), str(no_test), "-o", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test split is empty" in err[0]
    assert not (tmp_path / "e2" / "metrics.json").exists()


# ------------------------------------------------------------------------------------------ display
def test_display_every_file_kind(tmp_path, capsys):
    model = load_model(tiny_weights(tmp_path / "run"))
    images, events = tiny_images(tmp_path / "images.h5"), tiny_events(tmp_path / "events.h5", n=2)
    predict_file(model, images, tmp_path / "pred.h5", progress=False)
    for source in (images, events, tmp_path / "pred.h5"):
        out = tmp_path / f"{source.stem}.png"
        assert main(["display", str(source), "--event", "1", "-o", str(out)]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["display", str(images), "--event", "6", "-o", str(tmp_path / "x.png")]) == 2
    assert "out of range: the file holds 6 entries" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_predict_events_applies_the_models_2018_beam_label_rule(tmp_path):
    """A model trained on --beam-label-rule 2018 images: predict builds the same images from MC events,
    gives every hit its pixel's class, and scores only the hits the rule keeps."""
    from test_images import hand_events_file

    from protoseg.images import make_image_file, open_images

    torch.manual_seed(0)
    config = apply_overrides(load_config(), ["model.name=fcdensenet", *[f"model.{k}={v}" for k, v in TINY.items()]])
    network = build_model("fcdensenet", num_classes=3, **TINY)
    image = {"size": [64, 64], "pooling": "max", "label_scheme": "beam3", "beam_label_rule": "2018"}
    weights, _ = write_weights(network, model_card(config, CLASSES, image, model=network), tmp_path / "model.safetensors")
    # The hand-built event of test_images: 8 beam hits, 4 of them kept by the 2018 rule; 3 not-beam, 2 kept.
    events = hand_events_file(tmp_path / "events.h5", ticks=(100.0, 3100.0))
    make_image_file(events, tmp_path / "images.h5", size=(64, 64), min_beam_hits=0, min_notbeam_hits=0,
                    split=[2, 0, 0], beam_label_rule="2018")
    summary = predict_file(load_model(weights), events, tmp_path / "pred.h5", batch_size=2, progress=False)
    with h5py.File(tmp_path / "pred.h5") as handle, open_images(tmp_path / "images.h5") as images:
        np.testing.assert_array_equal(handle["label"][...], images.label[[0, 1]])
        pred = handle["pred"][...]
        hit_pred = handle["hits/pred"][...]
    assert hit_pred.shape == (24,)  # every hit of the events file, dropped ones included
    for k in range(2):
        rows, cols = pixel_indices(np.full(12, 100.0 + 3000 * k), np.arange(12) * 100, (64, 64))
        np.testing.assert_array_equal(hit_pred[12 * k : 12 * k + 12], pred[k][rows, cols])
    kept = np.array([0, 1, 2, 3, 8, 9, 11])
    kept_pred = np.concatenate([hit_pred[12 * k + kept] for k in range(2)])
    kept_truth = np.tile(np.array([1, 1, 1, 1, 2, 2, 0]), 2)
    assert summary.hit_metrics["n_hits"] == 14 and summary.hit_metrics["beam_hits"] == 8
    assert summary.hit_metrics["tagged_beam_hits"] == int((kept_pred == 1).sum())
    both = int(((kept_pred == 1) & (kept_truth == 1)).sum())
    assert summary.hit_metrics["beam_efficiency"] == pytest.approx(both / 8)


class _FixedLogits(torch.nn.Module):
    """A 'network' that returns the same logits for every pixel: softmax gives known probabilities."""

    def __init__(self, probabilities: list[float], classes: list[str], decision: dict | None = None) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.tensor(probabilities)), requires_grad=False)
        self.card = {"classes": classes, "input": {"normalisation": "max"}, **({"decision": decision} if decision else {})}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[None, :, None, None].expand(x.shape[0], -1, x.shape[2], x.shape[3])


def test_beam_working_point_from_the_card_the_argument_or_argmax():
    adc = np.ones((2, 4, 4), np.float32)
    # P = (background 0.05, beam 0.45, not-beam 0.50): argmax says not-beam; P(beam) >= 0.4 says beam
    model = _FixedLogits([0.05, 0.45, 0.50], CLASSES, decision={"beam_threshold": 0.4})
    assert np.all(Predictor(model).predict(adc)[0] == 1)  # the card's working point
    assert Predictor(model).beam_threshold == pytest.approx(0.4)
    assert np.all(Predictor(model, beam_threshold="argmax").predict(adc)[0] == 2)
    assert np.all(Predictor(model, beam_threshold=0.46).predict(adc)[0] == 2)  # the argument wins over the card
    assert np.all(Predictor(model, beam_threshold=0.45).predict(adc)[0] == 1)  # >=: exactly at the threshold is beam
    # below the threshold the pixel takes the most probable of the OTHER classes, even if beam is the most probable
    bare = _FixedLogits([0.35, 0.40, 0.25], CLASSES)
    assert np.all(Predictor(bare).predict(adc)[0] == 1) and Predictor(bare).beam_threshold is None
    assert np.all(Predictor(bare, beam_threshold=0.5).predict(adc)[0] == 0)
    prob = Predictor(bare, beam_threshold=0.5).predict(adc)[1]
    np.testing.assert_allclose(prob[:, :, 0, 0], [[0.35, 0.40, 0.25]] * 2, rtol=1e-6)  # probabilities untouched


@pytest.mark.parametrize("threshold, message", [(0.0, "between 0 and 1"), (1.0, "between 0 and 1"), (1.5, "between 0 and 1")])
def test_beam_working_point_out_of_range_is_refused(threshold, message):
    with pytest.raises(InputError, match=message):
        Predictor(_FixedLogits([0.2, 0.4, 0.4], CLASSES), beam_threshold=threshold)


def test_beam_working_point_needs_a_beam_class():
    species = _FixedLogits([0.5, 0.3, 0.2], ["background", "not-beam", "beam e/gamma"], decision={"beam_threshold": 0.6})
    with pytest.raises(InputError, match="needs a model with a 'beam' class"):
        Predictor(species)


def test_beam_threshold_flag_is_parsed_and_recorded(tmp_path, capsys):
    weights = tiny_weights(tmp_path / "run")
    images = tiny_images(tmp_path / "images.h5")
    assert main(["evaluate", str(weights), str(images), "-o", str(tmp_path / "ev"), "--no-displays", "--beam-threshold", "0.3"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["beam_threshold"] == pytest.approx(0.3)
    assert "P(beam) >= 0.3" in capsys.readouterr().out
    assert main(["predict", str(weights), str(images), "-o", str(tmp_path / "p.h5"), "--beam-threshold", "argmax"]) == 0
    assert "(argmax)" in capsys.readouterr().out
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        assert handle.attrs["beam_threshold"] == -1.0
        prob = handle["prob"][:].astype(np.float32)  # stored as float16: near-ties may round either way
        top2 = np.sort(prob, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2e-3
        np.testing.assert_array_equal(handle["pred"][:][clear], prob.argmax(1)[clear])
    assert main(["predict", str(weights), str(images), "-o", str(tmp_path / "q.h5"), "--beam-threshold", "high"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--beam-threshold must be a probability" in err[0]
    assert not (tmp_path / "q.h5").exists()
