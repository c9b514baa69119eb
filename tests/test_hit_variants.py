"""benchmarks/hit_variants.py: each network's working point from the decision events, its scores there on the others."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from test_hits import tiny_hit_weights
from test_inference import tiny_events

from protoseg.errors import InputError
from protoseg.hits.inference import evaluate_events
from protoseg.inference import load_model

SPEC = importlib.util.spec_from_file_location("hit_variants", Path(__file__).parents[1] / "benchmarks" / "hit_variants.py")
hit_variants = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(hit_variants)


def _point(t, efficiency, purity):
    return {"beam_threshold": t, "beam_efficiency": efficiency, "beam_purity": purity}


def test_balanced_point_is_where_efficiency_meets_purity_lower_threshold_on_a_tie():
    points = [_point(0.6, 0.90, 0.95), _point(0.3, 0.95, 0.90), _point(0.5, 0.92, 0.93), _point(0.4, 0.93, 0.92),
              _point(0.9, 0.0, float("nan"))]  # |0.93 - 0.92| = |0.92 - 0.93|: 0.4 wins; nothing tagged at 0.9: skipped
    assert hit_variants.balanced_point(points)["beam_threshold"] == 0.4
    assert hit_variants.balanced_point(points[:3])["beam_threshold"] == 0.5
    with pytest.raises(InputError):
        hit_variants.balanced_point([_point(0.9, 0.0, float("nan"))])


def test_compare_scores_each_seed_as_evaluate_does_at_the_chosen_point(tmp_path):
    decision = tiny_events(tmp_path / "decision.h5", n=4, seed=1)
    report = tiny_events(tmp_path / "report.h5", n=3, seed=2)
    weights = tiny_hit_weights(tmp_path / "model", seed=3)
    result = hit_variants.compare([("tiny", str(weights))], decision, [("r", report)], thresholds=(0.2, 0.3, 0.4, 0.5))
    entry = result["models"]["tiny"]
    assert entry["beam_threshold"] in (0.2, 0.3, 0.4, 0.5) and entry["parameters"] > 0
    expected = evaluate_events(load_model(weights), report, beam_threshold=entry["beam_threshold"], progress=False)
    scores = entry["seeds"]["r"]
    beam = expected["classes"].index("beam")
    confusion = expected["hits"]["all"]["confusion"]
    tp, truth, given = confusion[beam][beam], sum(confusion[beam]), sum(row[beam] for row in confusion)
    assert scores["beam_efficiency"] == pytest.approx(tp / truth) and scores["beam_purity"] == pytest.approx(tp / given)
    assert scores["beam_iou"] == pytest.approx(tp / (truth + given - tp)) and scores["events"] == 3
    assert scores["rule2018_beam_efficiency"] == expected["hits"]["2018"]["efficiency"][beam]
