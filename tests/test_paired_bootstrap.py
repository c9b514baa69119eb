"""benchmarks/paired_bootstrap.py: pooled scores against their formulas, and the bootstrap's limits."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("paired_bootstrap", Path(__file__).parents[1] / "benchmarks" / "paired_bootstrap.py")
boot = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(boot)


def test_scores_pool_counts_into_iou_efficiency_and_purity():
    # TP 8, FP 2, FN 2: IoU 8/12, efficiency 8/10, purity 8/10
    np.testing.assert_allclose(boot.scores(np.array([8.0, 2.0, 2.0])), [8 / 12, 0.8, 0.8])


def test_identical_models_differ_by_exactly_zero_in_every_resample():
    counts = np.array([[10, 1, 2], [5, 0, 1], [7, 3, 0]], float)
    result = boot.paired_bootstrap(counts, counts.copy(), resamples=200, seed=3)
    for name in ("beam_iou", "beam_efficiency", "beam_purity"):
        assert result[name]["difference"] == 0.0
        assert result[name]["interval_95"] == [0.0, 0.0]
        assert result[name]["share_of_resamples_b_above_a"] == 0.0


def test_a_model_better_on_every_event_is_above_in_every_resample():
    a = np.array([[10, 2, 2], [5, 1, 1], [7, 3, 1]], float)
    b = a + np.array([1, -1, -1], float)  # one more hit found and one fewer wrong on every event
    result = boot.paired_bootstrap(a, b, resamples=500, seed=7)
    assert result["beam_iou"]["share_of_resamples_b_above_a"] == 1.0
    assert result["beam_iou"]["interval_95"][0] > 0
    # observed difference from the pooled counts: A 22 / (22 + 6 + 4), B 25 / (25 + 3 + 1)
    assert result["beam_iou"]["difference"] == pytest.approx(25 / 29 - 22 / 32)


def test_the_same_seed_gives_the_same_interval():
    rng = np.random.default_rng(0)
    a = rng.integers(1, 50, size=(40, 3)).astype(float)
    b = rng.integers(1, 50, size=(40, 3)).astype(float)
    first = boot.paired_bootstrap(a, b, resamples=300, seed=11)
    assert first == boot.paired_bootstrap(a, b, resamples=300, seed=11)


def test_event_counts_add_up_to_what_predict_counted(tmp_path):
    import json

    import h5py

    from protoseg.cli import main as protoseg_main
    from test_hits import tiny_hit_weights
    from test_inference import tiny_events

    weights = tiny_hit_weights(tmp_path / "run")
    events = tiny_events(tmp_path / "events.h5")
    assert protoseg_main(["predict", str(weights), str(events), "-o", str(tmp_path / "p.h5"), "--beam-threshold", "0.4"]) == 0
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        counted = json.loads(handle.attrs["hit_metrics"])
        n_events = len(handle["hits/offsets"]) - 1
    counts = boot.event_counts(events, tmp_path / "p.h5")
    assert counts.shape == (n_events, 3)
    tp, fp, fn = counts.sum(axis=0)
    assert tp + fn == counted["beam_hits"] and tp + fp == counted["tagged_beam_hits"]
    assert tp / (tp + fn) == pytest.approx(counted["beam_efficiency"])


def test_a_file_that_is_not_predictions_is_refused_in_one_line(tmp_path, capsys):
    from test_inference import tiny_events

    events = tiny_events(tmp_path / "events.h5")
    for wrong in (events, tmp_path / "missing.h5"):
        assert boot.main(["--pair", str(events), str(wrong), str(wrong), "--seed", "1", "--results", str(tmp_path / "r.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(wrong) in err[0]
    assert not (tmp_path / "r.json").exists()
