"""protoseg train: configuration checks, the run folder, exact resume, median class weights, bad input."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from protoseg.cli import main
from protoseg.config import apply_overrides, load_config, validate
from protoseg.errors import InputError
from protoseg.images import class_balance, open_images, write_images

TINY_MODEL = ["model.name=fcdensenet", "model.down_blocks=[2,2]", "model.bottleneck_layers=2", "model.growth_rate=4", "model.first_filters=8"]


def make_images(path: Path, n_train: int = 8, n_val: int = 2, n_test: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Event-like 32x32 images: a bright 'beam' blob (class 1) and faint horizontal 'cosmic' tracks (class 2)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    adc = np.zeros((n, size, size), np.float32)
    label = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r, c = rng.integers(size // 4, size // 2, 2)
        adc[i, r - 2 : r + 2, c - 3 : c + 3] = rng.uniform(200, 400, (4, 6))
        label[i, r - 2 : r + 2, c - 3 : c + 3] = 1
        for row in rng.choice(size, 3, replace=False):
            adc[i, row, :] = rng.uniform(50, 100, size)
            label[i, row, :] = np.where(label[i, row, :] == 1, 1, 2)
    split = [0] * n_train + [1] * n_val + [2] * n_test
    return write_images(path, adc, label, np.arange(n) + 100, split, {"pooling": "max", "label_scheme": "beam3"})


def tiny_config(data: Path, out: Path, *overrides: str) -> dict:
    config = load_config(Path(__file__).parents[1] / "configs" / "cpu.yaml")
    common = [f"data.path={data}", f"out={out}", *TINY_MODEL, "data.batch_size=3", "data.num_workers=0", "trainer.accelerator=cpu",
              "trainer.devices=1", "trainer.progress_bar=false", "optim.lr=1e-3", "optim.schedule=plateau", "data.crop_size=null", "trainer.log_every_n_steps=1"]
    return validate(apply_overrides(config, [*common, *overrides]))


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def test_every_recipe_loads_and_validates():
    for recipe in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        validate(load_config(recipe))
    seed2018 = load_config(Path(__file__).parents[1] / "configs" / "seed2018.yaml")
    assert (seed2018["model"]["name"], seed2018["optim"]["name"], seed2018["loss"]["name"]) == ("fcdensenet103", "adam", "ce")
    assert (seed2018["data"]["batch_size"], seed2018["trainer"]["max_epochs"], seed2018["optim"]["plateau_factor"]) == (2, 390, 0.75)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=-1", "'optim.lr' = -1 is out of range"),
        ("trainer.precision=15", "'trainer.precision' = '15' is not one of"),
        ("optim.lrr=1", "unknown configuration key 'optim.lrr'"),
        ("data.batch_size=0", "'data.batch_size' = 0 is out of range"),
        ("trainer.max_epochs=1.5", "'trainer.max_epochs' = 1.5 must be an integer"),
    ],
)
def test_bad_override_is_refused_in_one_line(override, message):
    with pytest.raises(InputError, match=message):
        validate(apply_overrides(load_config(), [override]))


def test_cli_bad_override_exits_2_with_one_line(tmp_path, capsys):
    data = make_images(tmp_path / "images.h5")
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--set", "optim.weight_decay=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "optim.weight_decay" in err[0] and "out of range" in err[0]
    assert not (tmp_path / "run").exists()


def test_yaml_numbers_without_dot_are_numbers():
    config = apply_overrides(load_config(), ["optim.lr=3e-4", "model.growth_rate=12"])
    assert config["optim"]["lr"] == pytest.approx(3e-4) and config["model"]["growth_rate"] == 12


def test_empty_validation_split_is_refused(tmp_path):
    data = make_images(tmp_path / "images.h5", n_val=0)
    with pytest.raises(InputError, match="validation split is empty"):
        from protoseg.training import train

        train(tiny_config(data, tmp_path / "run", "trainer.max_epochs=1"))


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """One uninterrupted 2-epoch run, shared by the run-folder and the resume tests."""
    from protoseg.training import train

    folder = tmp_path_factory.mktemp("straight")
    data = make_images(folder / "images.h5")
    config = tiny_config(data, folder / "run", "trainer.max_epochs=2")
    return data, config, train(config)


def test_train_writes_run_folder_logs_and_model_card(two_epoch_run):
    data, config, result = two_epoch_run
    run = Path(config["out"])
    # resolved config saved, and identical to what ran
    assert yaml.safe_load((run / "config.yaml").read_text()) == config
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader(open(run / "csv" / "version_0" / "metrics.csv")))
    val_rows = [r for r in rows if r.get("val_miou")]
    assert len(val_rows) == 2  # one per epoch
    for row in val_rows:  # mIoU is the mean of the logged per-class IoUs
        ious = [float(row[f"val_iou_{c}"]) for c in ("background", "beam", "not-beam")]
        assert float(row["val_miou"]) == pytest.approx(np.mean(ious), abs=1e-6)
    assert result.best_val_miou == pytest.approx(max(float(r["val_miou"]) for r in val_rows), abs=1e-6)
    # exactly the two files that ship a model: weights + JSON card
    card = json.loads((run / "model.json").read_text())
    assert card["classes"] == ["background", "beam", "not-beam"]
    assert card["architecture"]["name"] == "fcdensenet" and card["architecture"]["options"]["down_blocks"] == [2, 2]
    assert card["input"]["normalisation"] == config["data"]["normalisation"] and card["input"]["image"]["size"] == [32, 32]
    assert card["metrics"]["validation"]["miou"] == pytest.approx(result.best_val_miou, abs=1e-6)
    # the shipped weights are those of the best checkpoint
    from safetensors.torch import load_file

    best = _weights(run / "checkpoints" / "best.ckpt")
    shipped = load_file(run / "model.safetensors")
    assert set(shipped) == {k.removeprefix("model.") for k in best if k.startswith("model.")}
    for key, value in shipped.items():
        assert torch.equal(value, best[f"model.{key}"])


def test_resumed_run_matches_uninterrupted_run(tmp_path, two_epoch_run):
    """A 'killed' run (1 epoch) started again to 2 epochs ends with the weights of a 2-epoch run."""
    from protoseg.training import train

    data, straight_config, _ = two_epoch_run
    train(tiny_config(data, tmp_path / "killed", "trainer.max_epochs=1"))
    after_first_epoch = _weights(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    resumed = train(tiny_config(data, tmp_path / "killed", "trainer.max_epochs=2"))
    assert resumed.resumed_from == tmp_path / "killed" / "checkpoints" / "last.ckpt"
    straight = _weights(Path(straight_config["out"]) / "checkpoints" / "last.ckpt")
    again = _weights(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    assert set(straight) == set(again)
    worst = max(float((straight[k].double() - again[k].double()).abs().max()) for k in straight if straight[k].is_floating_point())
    assert worst <= 1e-6
    # and the resumed part did train (the comparison is not between two copies of one checkpoint)
    assert any(not torch.equal(after_first_epoch[k], again[k]) for k in again if again[k].is_floating_point())


def test_median_weights_are_the_training_split_class_balance(tmp_path):
    from protoseg.training import train

    data = make_images(tmp_path / "images.h5")
    train(tiny_config(data, tmp_path / "run", "loss.name=weighted_ce", "loss.weights=median", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                     "optim.schedule=cosine", "optim.name=sgd"))
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    with open_images(data) as images:
        expected = class_balance(images.label[images.indices("train").tolist()], 3)["median_weights"]
    assert saved["loss"]["weights"] == pytest.approx(expected)
    assert expected[1] > expected[2] > 1.0  # the beam blob is rarer than the tracks


def test_used_run_folder_refuses_a_fresh_run_another_model_and_a_corrupt_checkpoint(tmp_path):
    from protoseg.training import train

    data = make_images(tmp_path / "images.h5")
    # one step of one-cycle (a schedule that needs several steps per phase) must still run
    train(tiny_config(data, tmp_path / "run", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "optim.schedule=onecycle"))
    with pytest.raises(InputError, match="already holds checkpoints"):
        train(tiny_config(data, tmp_path / "run", "trainer.max_epochs=1"), resume=False)
    with pytest.raises(InputError, match="cannot resume: trained with model"):
        train(tiny_config(data, tmp_path / "run", "trainer.max_epochs=2", "model.growth_rate=6"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(InputError, match="cannot resume: checkpoint is corrupt"):
        train(tiny_config(data, tmp_path / "run", "trainer.max_epochs=2"))


def test_budget_one_cycle_follows_the_cpu_time_used():
    from protoseg.training import BudgetOneCycle, RunClock

    clock = RunClock(cpu_budget_s=100.0)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = BudgetOneCycle(optimizer, max_lr=1e-3, warmup_fraction=0.2, clock=clock)
    # torch's OneCycleLR defaults: from max/25, up to max at the end of the warm-up, down to max/25/1e4
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4e-5)
    assert schedule.lr_at(0.1) == pytest.approx((4e-5 + 1e-3) / 2)  # cosine half-way up
    assert schedule.lr_at(0.2) == pytest.approx(1e-3)
    assert schedule.lr_at(0.6) == pytest.approx((1e-3 + 4e-9) / 2)  # half-way down
    assert schedule.lr_at(1.0) == pytest.approx(4e-9) and schedule.lr_at(3.0) == pytest.approx(4e-9)
    clock.cpu_s = 20.0
    optimizer.step()
    schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert "clock" not in schedule.state_dict()


def test_budget_fraction_is_the_further_spent_of_the_cpu_and_wall_budgets():
    from protoseg.training import RunClock

    clock = RunClock(cpu_budget_s=100.0, wall_budget_s=50.0)
    clock.cpu_s, clock.wall_s = 30.0, 10.0
    assert clock.has_budget and clock.budget_fraction() == pytest.approx(0.3)
    clock.wall_s = 40.0
    assert clock.budget_fraction() == pytest.approx(0.8)
    wall_only = RunClock(wall_budget_s=200.0)
    wall_only.cpu_s, wall_only.wall_s = 1000.0, 50.0
    assert wall_only.budget_fraction() == pytest.approx(0.25)
    assert not RunClock().has_budget and RunClock().budget_fraction() == 0.0


def test_cpu_time_budget_stops_the_run_and_logs_both_clocks(tmp_path):
    from protoseg.training import train

    data = make_images(tmp_path / "images.h5", n_train=6)
    config = tiny_config(data, tmp_path / "run", "trainer.max_epochs=100000", "trainer.cpu_time_budget_s=2.0",
                         "optim.schedule=onecycle")
    train(config)
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "csv" / "version_0" / "metrics.csv")) if r.get("cpu_time_s")]
    assert rows, "no validation row carries the clocks"
    cpu = [float(r["cpu_time_s"]) for r in rows]
    wall = [float(r["wall_time_s"]) for r in rows]
    assert cpu == sorted(cpu) and wall == sorted(wall) and cpu[0] > 0
    # stopped by the budget: within one training step (a few ms here) plus a validation of it
    assert 2.0 <= cpu[-1] < 10.0
    assert len(rows) < 100000
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["metrics"]["validation"]["cpu_time_s"] > 0
    # the card says where and for how long the model was trained
    assert card["trained_on"]["cpu_time_s"] == pytest.approx(cpu[-1], abs=1.0)
    assert card["trained_on"]["accelerator"] == "cpu" and card["trained_on"]["cpu_cores"] >= 1 and card["trained_on"]["steps"] > 0


def test_wall_time_budget_stops_the_run(tmp_path):
    from protoseg.training import train

    data = make_images(tmp_path / "images.h5", n_train=6)
    train(tiny_config(data, tmp_path / "run", "trainer.max_epochs=100000", "trainer.wall_time_budget_s=1.5",
                      "optim.schedule=onecycle"))
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert 1.5 <= card["trained_on"]["wall_time_s"] < 8.0


def test_init_from_copies_the_weights_of_the_same_network_only(tmp_path, two_epoch_run):
    from protoseg.training import SegmentationModule, _initialise_from

    data, config, result = two_epoch_run
    fresh = SegmentationModule(tiny_config(data, tmp_path / "b", "init_from=" + str(result.weights)), ["background", "beam", "not-beam"])
    _initialise_from(fresh, str(result.weights))
    from safetensors.torch import load_file

    shipped = load_file(result.weights)
    assert all(torch.equal(fresh.model.state_dict()[k], v) for k, v in shipped.items())
    other = SegmentationModule(tiny_config(data, tmp_path / "c", "model.growth_rate=6"), ["background", "beam", "not-beam"])
    with pytest.raises(InputError, match="init_from: its network"):
        _initialise_from(other, str(result.weights))
    # other classes (species from a beam3 model): the body is copied, the classifier keeps its fresh values
    species = SegmentationModule(tiny_config(data, tmp_path / "d"), ["background", "not-beam", "beam pi+-", "beam p"])
    fresh_classifier = species.model.classifier.weight.detach().clone()
    assert _initialise_from(species, str(result.weights)) is False
    body = {k: v for k, v in shipped.items() if not k.startswith("classifier.")}
    assert body and all(torch.equal(species.model.state_dict()[k], v) for k, v in body.items())
    assert torch.equal(species.model.classifier.weight, fresh_classifier)
    assert species.model.classifier.weight.shape[0] == 4
    # class 0 must be the same class (empty pixels are predicted class 0)
    other_first = SegmentationModule(tiny_config(data, tmp_path / "e"), ["beam", "background", "not-beam"])
    with pytest.raises(InputError, match="class 0 must be the same"):
        _initialise_from(other_first, str(result.weights))
