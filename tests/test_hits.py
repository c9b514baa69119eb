"""The hit-level chain: sites, the sparse U-Net against dense convolutions, training on events files,
prediction and evaluation per hit, the projection onto the 2018 grid, and the TorchScript export."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import protoseg

from protoseg.cli import main
from protoseg.config import apply_overrides, load_config
from protoseg.errors import InputError
from protoseg.events import open_events
from protoseg.export import export_model, sample_hits
from protoseg.hits.export import HitsToProbabilities, sites_from_hits
from protoseg.hits.inference import HitPredictor, class_scores, evaluate_events, hit_confusion, project_to_image
from protoseg.hits.sites import HitGrid, event_sites
from protoseg.inference import load_model
from protoseg.models import build_model, is_hit_model
from protoseg.models.sparse_unet import DownConv, SparseUNet, SubmanifoldConv, UpConv, build_rulebooks
from protoseg.modelcards import model_card, write_weights

from test_inference import tiny_events

TINY_HIT = {"channels": [4, 8], "reps": 1}


def tiny_hit_weights(folder: Path, seed: int = 0, features: tuple[str, ...] | None = None, **more_options) -> Path:
    """A tiny sparse U-Net (2 levels, 4 and 8 maps) with random weights and BN statistics, as a run's weights.
    ``more_options``: further network options (e.g. attention_blocks, whose blocks then get random weights too)."""
    torch.manual_seed(seed)
    options = dict(TINY_HIT, **({"features": list(features)} if features else {}), **more_options)
    config = apply_overrides(load_config(), ["model.name=sparse_unet", *[f"model.{k}={json.dumps(v)}" for k, v in options.items()]])
    network = build_model("sparse_unet", num_classes=3, **options)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():  # attention blocks start as the identity: make them act
        for parameter in [*network.attention.parameters(), *network.decoder_attention.parameters(), *network.fine_decoder_attention.parameters()]:
            parameter.add_(0.3 * torch.randn_like(parameter))
    card = model_card(config, ["background", "beam", "not-beam"], {"kind": "events", "label_scheme": "beam3"}, model=network)
    folder.mkdir(parents=True, exist_ok=True)
    path, _ = write_weights(network, card, folder / "model.safetensors")
    return path


def assert_torchscript_export_equals_python(model: torch.nn.Module, path: Path) -> torch.jit.ScriptModule:
    """Export ``model`` to TorchScript at ``path``; its outputs on 500 sample hits equal the Python graph's. Returns the loaded export."""
    result = export_model(model, "torchscript", path)
    assert max(result.max_abs_diff.values()) <= 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path))
    x = sample_hits(500, seed=9)
    assert torch.allclose(loaded(x), HitsToProbabilities(model, 6, list(model.card["input"]["features"]))(x), atol=1e-5)
    return loaded


# -- sites -------------------------------------------------------------------------------------------

def test_sites_of_a_hand_made_event():
    # Hits 0 and 1 share a site (wire 10, ticks 12.5 and 16 are both in row 2 of 6 ticks); hit 1 is larger.
    hits = {"wire": np.array([10, 10, 11, 10], np.uint16), "tick": np.array([12.5, 16.0, 12.0, 30.0], np.float32),
            "integral": np.array([100.0, 300.0, 50.0, 1000.0], np.float32), "rms": np.array([2.0, 4.0, 3.0, 5.0], np.float32)}
    sites = event_sites(hits, HitGrid(6), hit_label=np.array([1, 2, 1, 0], np.uint8))
    assert sites.coords.tolist() == [[2, 10], [2, 11], [5, 10]]
    assert sites.site_of_hit.tolist() == [0, 0, 1, 2]
    assert sites.label.tolist() == [2, 1, 0]  # the largest hit's label
    log_charge, rms, tick_in_row, wire, tick = sites.features.T
    np.testing.assert_allclose(log_charge, np.log1p(np.array([400.0, 50.0, 1000.0]) / 100.0), rtol=1e-6)
    np.testing.assert_allclose(rms, [4.0 / 5, 3.0 / 5, 5.0 / 5], rtol=1e-6)
    np.testing.assert_allclose(tick_in_row, [16.0 / 6 - 2 - 0.5, 12.0 / 6 - 2 - 0.5, 30.0 / 6 - 5 - 0.5], atol=1e-6)
    np.testing.assert_allclose(wire, [10 / 1440, 11 / 1440, 10 / 1440], rtol=1e-6)
    np.testing.assert_allclose(tick, [16.0 / 6000, 12.0 / 6000, 30.0 / 6000], rtol=1e-6)


def test_sites_refuse_missing_rms_when_read():
    hits = {"wire": np.array([1], np.uint16), "tick": np.array([5.0], np.float32), "integral": np.array([10.0], np.float32),
            "rms": np.array([np.nan], np.float32)}
    with pytest.raises(InputError, match="rms"):
        event_sites(hits)
    assert event_sites(hits, features=("log_charge", "wire")).features.shape == (1, 2)


def test_torch_sites_equal_numpy_sites(tmp_path):
    path = tiny_events(tmp_path / "events.h5", n=3)
    with open_events(path) as events:
        for i in range(len(events)):
            hits = events.read(i).hits
            expected = event_sites(hits)
            table = torch.from_numpy(np.stack([hits["wire"], hits["tick"], hits["integral"], hits["rms"]], 1).astype(np.float32))
            coords, features, site = sites_from_hits(table, 6, ["log_charge", "rms", "tick_in_row", "wire", "tick"])
            assert coords[:, 1:].numpy().tolist() == expected.coords.tolist()
            assert site.numpy().tolist() == expected.site_of_hit.tolist()
            np.testing.assert_allclose(features.numpy(), expected.features, atol=1e-6)


# -- the sparse convolutions against dense ones ------------------------------------------------------

def _random_sites(height: int, width: int, fraction: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    cells = (torch.rand(height, width, generator=generator) < fraction).nonzero()
    return torch.cat([torch.zeros(len(cells), 1, dtype=torch.long), cells], 1)


def test_sparse_convolutions_equal_dense_convolutions():
    torch.manual_seed(3)
    height, width, cin, cout = 14, 18, 3, 5  # even: a dense stride-2 convolution covers every cell
    coords = _random_sites(height, width, 0.3, seed=1)
    rows, cols = coords[:, 1], coords[:, 2]
    x = torch.randn(len(coords), cin)
    dense = torch.zeros(1, cin, height, width)
    dense[0, :, rows, cols] = x.T
    neighbours, children, slots, _ = build_rulebooks(coords, 2)

    conv = SubmanifoldConv(cin, cout)
    reference = F.conv2d(dense, conv.weight.view(3, 3, cin, cout).permute(3, 2, 0, 1), padding=1)[0][:, rows, cols].T
    assert torch.allclose(conv(x, neighbours[0]), reference, atol=1e-5)

    down = DownConv(cin, cout)
    coarse = down(x, children[0], slots[0])
    reference_down = F.conv2d(dense, down.weight.view(2, 2, cin, cout).permute(3, 2, 0, 1), stride=2)[0]
    coarse_cells = torch.unique(rows // 2 * 100 + cols // 2)
    assert torch.allclose(coarse, reference_down[:, coarse_cells // 100, coarse_cells % 100].T, atol=1e-5)

    up = UpConv(cout, cin)
    dense_coarse = torch.zeros(1, cout, (height + 1) // 2, (width + 1) // 2)
    dense_coarse[0, :, coarse_cells // 100, coarse_cells % 100] = coarse.T
    reference_up = F.conv_transpose2d(dense_coarse, up.weight.view(cout, 2, 2, cin).permute(0, 3, 1, 2), stride=2)[0][:, rows, cols].T
    assert torch.allclose(up(coarse, children[0], slots[0]), reference_up, atol=1e-5)


@pytest.mark.parametrize("layer", ["subm", "down", "up"])
def test_gather_backward_equals_autograd(layer):
    # The hand-written backward passes (gathers) against autograd through the plain forward (scatter-adds).
    torch.manual_seed(5)
    coords = _random_sites(18, 22, 0.35, seed=6)
    neighbours, children, slots, _ = build_rulebooks(coords, 2)
    n_coarse = children[0].shape[0]
    conv, x, plain = {
        "subm": (SubmanifoldConv(3, 4), torch.randn(len(coords), 3), lambda m, x: __import__("protoseg.models.sparse_unet", fromlist=["_gather"])._gather(x, neighbours[0]) @ m.weight),
        "down": (DownConv(3, 4), torch.randn(len(coords), 3), lambda m, x: __import__("protoseg.models.sparse_unet", fromlist=["_gather"])._gather(x, children[0]) @ m.weight),
        "up": (UpConv(4, 3), torch.randn(n_coarse, 4), lambda m, x: (x @ m.weight).view(-1, 3)[slots[0]]),
    }[layer]
    target = torch.randn(len(coords) if layer != "down" else n_coarse, 3 if layer == "up" else 4)
    grads = []
    for fn in (lambda m, x: m(x, neighbours[0]) if layer == "subm" else m(x, children[0], slots[0]), plain):
        conv.zero_grad()
        xi = x.clone().requires_grad_(True)
        (fn(conv, xi) * target).sum().backward()
        grads.append((xi.grad.clone(), conv.weight.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5) and torch.allclose(grads[0][1], grads[1][1], atol=1e-4)


def test_sparse_unet_events_in_a_batch_do_not_interact_and_script():
    torch.manual_seed(0)
    model = SparseUNet(5, 3, channels=(4, 8, 8), reps=1).eval()
    a, b = _random_sites(20, 30, 0.2, seed=2), _random_sites(25, 21, 0.2, seed=3)
    fa, fb = torch.randn(len(a), 5), torch.randn(len(b), 5)
    batch = torch.cat([a, b + torch.tensor([1, 0, 0])])
    with torch.no_grad():
        together = model(batch, torch.cat([fa, fb]))
        assert torch.allclose(together[: len(a)], model(a, fa), atol=1e-5)
        assert torch.allclose(together[len(a):], model(b, fb), atol=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(model)
        assert torch.allclose(scripted(a, fa), model(a, fa), atol=1e-6)


def test_memory_efficient_gives_the_same_outputs_and_gradients():
    coords, features = _random_sites(16, 16, 0.3, seed=4), torch.randn(77, 5)
    features = torch.randn(len(coords), 5)
    grads = []
    for memory_efficient in (False, True):
        torch.manual_seed(1)
        model = SparseUNet(5, 3, channels=(4, 8), reps=2, memory_efficient=memory_efficient).train()
        out = model(coords, features)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert all(torch.allclose(g0, g1, atol=1e-5) for g0, g1 in zip(grads[0][1], grads[1][1]))


def test_registry_builds_and_refuses():
    assert is_hit_model("sparse_unet") and not is_hit_model("fcdensenet56")
    model = build_model("sparse_unet", num_classes=3, channels=[4, 8], reps=1, features=["log_charge", "wire"])
    assert model.config["in_channels"] == 2 and model.config["features"] == ["log_charge", "wire"]
    assert sum(p.numel() for p in build_model(**{**model.config, "name": "sparse_unet"}).parameters()) == sum(p.numel() for p in model.parameters())
    with pytest.raises(InputError, match="site features"):
        build_model("sparse_unet", features=["charge"])
    with pytest.raises(InputError, match="ticks_per_row"):
        build_model("sparse_unet", ticks_per_row=0)
    with pytest.raises(InputError, match="in_channels"):
        build_model("sparse_unet", in_channels=3)
    # the default network: seven levels, 1.55 M parameters
    assert sum(p.numel() for p in build_model("sparse_unet").parameters()) == 1554915


# -- scores and projection ---------------------------------------------------------------------------

def test_class_scores_on_a_small_case():
    truth = np.array([1, 1, 1, 2, 2, 0, 255], np.uint8)  # the last hit is not scored
    pred = np.array([1, 1, 2, 2, 1, 0, 1], np.uint8)
    confusion = hit_confusion(truth, pred, 3)
    assert confusion.tolist() == [[1, 0, 0], [0, 2, 1], [0, 1, 1]]
    scores = class_scores(confusion, ["background", "beam", "not-beam"])
    assert scores["efficiency"][1] == pytest.approx(2 / 3) and scores["purity"][1] == pytest.approx(2 / 3)
    assert scores["iou"][1] == pytest.approx(2 / 4) and scores["iou"][2] == pytest.approx(1 / 3)


def test_projection_takes_the_largest_hit_of_each_pixel():
    hits = {"wire": np.array([0, 1, 1439], np.uint16), "tick": np.array([0.0, 10.0, 5999.0], np.float32),
            "integral": np.array([5.0, 9.0, 1.0], np.float32)}
    prob = np.array([[0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.0, 1.0, 0.0]], np.float32)
    pred, image_prob = project_to_image(hits, np.array([1, 2, 1], np.uint8), prob, (4, 4))
    assert pred[0, 0] == 2 and pred[3, 3] == 1 and pred.sum() == 3  # pixel (0, 0) holds hits 0 and 1: hit 1 is larger
    np.testing.assert_array_equal(image_prob[:, 0, 0], prob[1])
    np.testing.assert_array_equal(image_prob[:, 1, 1], [1, 0, 0])


# -- the chain ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hit_run(tmp_path_factory):
    """A tiny sparse U-Net trained for 4 steps on 5 tiny events (one validates) by `protoseg train`."""
    folder = tmp_path_factory.mktemp("hits")
    events = tiny_events(folder / "events.h5", n=5)
    code = main(["train", "--config", str(Path(__file__).resolve().parents[1] / "configs" / "hits-cpu.yaml"), "--data", str(events),
                 "--out", str(folder / "run"), "--set", "model.channels=[4, 8]", "--set", "model.reps=1", "--set", "data.validation_events=1",
                 "--set", "trainer.max_steps=4", "--set", "trainer.limit_train_batches=2", "--set", "trainer.cpu_time_budget_s=0",
                 "--set", "optim.schedule=none", "--set", "trainer.progress_bar=false"])
    assert code == 0
    return folder / "run", events


def test_train_on_events_writes_a_hit_model(hit_run):
    run, events = hit_run
    model = load_model(run)
    card = model.card
    assert card["input"]["kind"] == "hits" and card["input"]["grid"] == {"ticks_per_row": 6}
    assert card["training_data"]["validation_events"] == 1 and card["architecture"]["options"]["channels"] == [4, 8]
    assert 0.0 <= card["metrics"]["validation"]["miou"] <= 1.0


def test_train_refuses_an_image_file_for_a_hit_model(tmp_path, capsys):
    from test_inference import tiny_images

    images = tiny_images(tmp_path / "images.h5")
    code = main(["train", "--config", str(Path(__file__).resolve().parents[1] / "configs" / "hits-cpu.yaml"), "--data", str(images),
                 "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a 'protoseg-events' file" in err and not (tmp_path / "run").exists()


def test_predict_and_evaluate_a_hit_model(hit_run, tmp_path, capsys):
    run, events = hit_run
    out = tmp_path / "predictions.h5"
    assert main(["predict", str(run), str(events), "-o", str(out), "--beam-threshold", "argmax"]) == 0
    model = load_model(run)
    predictor = HitPredictor(model, beam_threshold="argmax")
    with h5py.File(out, "r") as handle, open_events(events) as source:
        offsets = handle["hits/offsets"][...]
        assert offsets.tolist() == source.hit_offsets.tolist()
        prob = handle["hits/prob"][...].astype(np.float32)
        pred = handle["hits/pred"][...]
        hits = source.read(2).hits
        expected = predictor.hit_probabilities(hits)
        np.testing.assert_allclose(prob[offsets[2]:offsets[3]], expected, atol=1e-3)  # stored as float16
        assert np.array_equal(pred[offsets[2]:offsets[3]], expected.argmax(1))
        truth = np.concatenate([source.read(i).hits["label"] for i in range(len(source))])
        metrics = json.loads(handle.attrs["hit_metrics"])
        beam, tagged = truth == 1, pred == 1
        assert metrics["beam_hits"] == int(beam.sum()) and metrics["tagged_beam_hits"] == int(tagged.sum())
        if tagged.any():
            assert metrics["beam_purity"] == pytest.approx((beam & tagged).sum() / tagged.sum())
        assert handle["pred"].shape == (5, 320, 320) and handle["prob"].shape == (5, 3, 320, 320)
        assert handle.attrs["protoseg_version"] == protoseg.__version__ and handle.attrs["model_version"] == ""  # a run's card: no version

    result = evaluate_events(model, events, beam_threshold="argmax", min_beam_hits=1, min_notbeam_hits=1, progress=False)
    confusion = np.asarray(result["hits"]["all"]["confusion"])
    assert confusion.sum() == len(truth) and confusion[1].sum() == int(beam.sum())
    assert result["hits"]["2018"] is not None and result["pixels"]["n_images"] == 5

    assert main(["evaluate", str(run), str(events), "-o", str(tmp_path / "ev")]) == 0
    written = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert written["n_events"] == 5 and "hits, beam label rule all" in capsys.readouterr().out
    assert written["protoseg_version"] == protoseg.__version__ and written["model_version"] is None
    # the tiny events have < 2000 beam hits: none passes the 2018 selection of the pixel scores and displays
    assert written["pixels"]["n_images"] == 0 and not (tmp_path / "ev" / "event_median.png").exists()
    assert written["hits"]["all"]["confusion"] == confusion.tolist()


def test_hits_report_scores_a_predictions_file_as_evaluate_does(hit_run, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("hits_report", Path(__file__).parents[1] / "benchmarks" / "hits_report.py")
    hits_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hits_report)
    run, events = hit_run
    assert main(["predict", str(run), str(events), "-o", str(tmp_path / "p.h5"), "--beam-threshold", "0.4"]) == 0
    scored = hits_report.score_predictions(events, tmp_path / "p.h5")
    evaluated = evaluate_events(load_model(run), events, beam_threshold=0.4, progress=False)
    assert scored["beam_threshold"] == 0.4
    for rule in ("all", "2018"):
        assert scored["hits"][rule]["confusion"] == evaluated["hits"][rule]["confusion"]


def test_init_from_a_hit_model_reading_more_features_keeps_their_input_columns(tmp_path):
    from protoseg.training import HitSegmentationModule, _initialise_from

    source = tiny_hit_weights(tmp_path / "with-rms")  # log_charge, rms, tick_in_row, wire, tick
    trained = load_model(source).state_dict()
    old_features = load_model(source).card["input"]["features"]
    no_rms = [name for name in old_features if name != "rms"]
    config = apply_overrides(load_config(), ["model.name=sparse_unet", "model.channels=[4, 8]", "model.reps=1",
                                             f"model.features={json.dumps(no_rms)}", f"init_from={source}"])
    module = HitSegmentationModule(config, ["background", "beam", "not-beam"])
    assert module.model.stem.weight.shape == (4, 4)
    assert _initialise_from(module, str(source)) is True
    mine = module.model.state_dict()
    assert torch.equal(mine["stem.weight"], trained["stem.weight"][:, [0, 2, 3, 4]])  # rms was column 1
    assert all(torch.equal(mine[k], v) for k, v in trained.items() if k != "stem.weight")
    # a feature the source never read cannot be initialised from it
    other = tiny_hit_weights(tmp_path / "no-wire", features=("log_charge", "rms", "tick_in_row", "tick"))
    with pytest.raises(InputError, match="init_from: its network"):
        _initialise_from(HitSegmentationModule(config, ["background", "beam", "not-beam"]), str(other))


def test_a_hit_model_without_rms_predicts_hits_that_record_none(tmp_path, capsys):
    # the 2018 hit dumps record no width: rms is NaN. A model reading rms refuses them in one line; one without
    # it classifies every hit.
    events = tiny_events(tmp_path / "events.h5", n=2)
    with h5py.File(events, "r+") as handle:
        handle["hits/rms"][...] = np.nan
    with_rms = tiny_hit_weights(tmp_path / "with-rms")
    assert main(["predict", str(with_rms), str(events), "-o", str(tmp_path / "p1.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rms" in err and not (tmp_path / "p1.h5").exists()
    without = tiny_hit_weights(tmp_path / "no-rms", features=("log_charge", "tick_in_row", "wire", "tick"))
    assert main(["predict", str(without), str(events), "-o", str(tmp_path / "p2.h5")]) == 0
    with h5py.File(tmp_path / "p2.h5", "r") as handle, open_events(events) as source:
        assert len(handle["hits/pred"]) == sum(len(source.read(i).hits["wire"]) for i in range(len(source)))
        assert np.isfinite(handle["hits/prob"][...].astype(np.float32)).all()


def test_hit_model_refuses_image_files(hit_run, tmp_path, capsys):
    from test_inference import tiny_images

    run, _ = hit_run
    images = tiny_images(tmp_path / "images.h5")
    assert main(["predict", str(run), str(images), "-o", str(tmp_path / "p.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reads the hits of an events file" in err and not (tmp_path / "p.h5").exists()
    assert main(["evaluate", str(run), str(images), "-o", str(tmp_path / "ev")]) == 2
    assert "evaluated on an events file" in capsys.readouterr().err and not (tmp_path / "ev").exists()


def test_export_torchscript_equals_python_and_onnx_is_refused(tmp_path, capsys):
    weights = tiny_hit_weights(tmp_path / "run")
    loaded = assert_torchscript_export_equals_python(load_model(weights), tmp_path / "hits.pt")
    assert loaded(torch.zeros((0, 4))).shape == (0, 3)
    card = json.loads(Path(str(tmp_path / "hits.pt") + ".json").read_text())
    assert card["export"]["output"].startswith("softmax probabilities [n, C]")
    assert main(["export", str(weights), "--format", "onnx", "-o", str(tmp_path / "hits.onnx")]) == 2
    assert "TorchScript only" in capsys.readouterr().err and not (tmp_path / "hits.onnx").exists()


def test_resumed_hit_run_matches_uninterrupted_run(tmp_path):
    """A hit-level run stopped after one epoch and started again ends with the weights of a straight two-epoch run."""
    from protoseg.config import validate
    from protoseg.training import train

    events = tiny_events(tmp_path / "events.h5", n=4)

    def config(out: Path, epochs: int) -> dict:
        return validate(apply_overrides(load_config(Path(__file__).resolve().parents[1] / "configs" / "hits-cpu.yaml"), [
            f"data.path={events}", f"out={out}", "model.channels=[4, 8]", "model.reps=1", "data.validation_events=1",
            f"trainer.max_epochs={epochs}", "trainer.limit_train_batches=1.0", "trainer.cpu_time_budget_s=0",
            "trainer.keep_checkpoints=false", "optim.schedule=none", "trainer.progress_bar=false"]))  # a cosine would follow max_epochs

    def weights(run: Path) -> dict:
        state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        return {k: v for k, v in state.items() if v.is_floating_point()}

    train(config(tmp_path / "straight", 2))
    train(config(tmp_path / "killed", 1))
    first = weights(tmp_path / "killed")
    assert train(config(tmp_path / "killed", 2)).resumed_from == tmp_path / "killed" / "checkpoints" / "last.ckpt"
    straight, again = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert max(float((straight[k] - again[k]).abs().max()) for k in straight) <= 1e-6
    assert any(not torch.equal(first[k], again[k]) for k in again)
