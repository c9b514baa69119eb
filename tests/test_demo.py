"""protoseg demo: says so (exit 2) without shipped weights; with them, runs the whole chain."""
from __future__ import annotations

import json
import shutil

import h5py

import protoseg.loading as loading
from protoseg.cli import main

from test_inference import tiny_weights


def test_demo_without_shipped_weights_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loading, "PRETRAINED_DIR", tmp_path / "empty")
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shipped model 'default' is not in this installation" in err[0]
    assert not (tmp_path / "demo").exists()


def test_demo_runs_the_whole_chain(tmp_path, monkeypatch, capsys):
    shipped = tmp_path / "pretrained"
    weights = tiny_weights(tmp_path / "trained", size=64)
    shipped.mkdir()
    # what the lead does with a run folder: copy its two model files under the shipped name
    shutil.copy(weights, shipped / "default.safetensors")
    shutil.copy(weights.with_suffix(".json"), shipped / "default.json")
    monkeypatch.setattr(loading, "PRETRAINED_DIR", shipped)
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "-n", "2"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["n_images"] == 2 and metrics["model"] == "default"
    assert f"{metrics['miou']:.4f}" in printed and str(out / "predictions.h5") in printed
    with h5py.File(out / "predictions.h5") as handle:
        assert handle["pred"].shape == (2, 64, 64)  # images made with the shipped model's settings
        assert handle["hits/pred"].shape[0] == handle["hits/offsets"][-1] > 0
    assert len(list((out / "displays").glob("*.png"))) == 2
    for name in ("confusion.png", "iou.png", "event_best.png"):
        assert (out / "evaluation" / name).is_file()


def test_demo_with_a_hit_level_default(tmp_path, monkeypatch, capsys):
    from test_hits import tiny_hit_weights

    shipped = tmp_path / "pretrained"
    weights = tiny_hit_weights(tmp_path / "trained")
    shipped.mkdir()
    shutil.copy(weights, shipped / "default.safetensors")
    shutil.copy(weights.with_suffix(".json"), shipped / "default.json")
    monkeypatch.setattr(loading, "PRETRAINED_DIR", shipped)
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "-n", "2"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["n_events"] == 2 and metrics["pixels"]["n_images"] == 2 and metrics["model"] == "default"
    assert "hits, beam label rule all" in printed and f"mIoU {metrics['pixels']['miou']:.4f}" in printed
    beam = metrics["classes"].index("beam")
    assert (f"hits (beam label rule all): beam hits tagged beam {metrics['hits']['all']['efficiency'][beam]:.3f}, "
            f"purity of hits tagged beam {metrics['hits']['all']['purity'][beam]:.3f}") in printed
    with h5py.File(out / "predictions.h5") as handle:
        n_hits = handle["hits/offsets"][-1]
        assert handle["hits/pred"].shape == (n_hits,) and handle["hits/prob"].shape == (n_hits, 3) and n_hits > 1000
        assert sum(metrics["hits"]["all"]["n_hits"]) == n_hits
    assert len(list((out / "displays").glob("*.png"))) == 2 and (out / "evaluation" / "event_worst.png").is_file()
