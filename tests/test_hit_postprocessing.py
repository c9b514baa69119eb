"""benchmarks/hit_postprocessing.py: the smoothing steps against their formulas on hand-built hits."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("hit_postprocessing", Path(__file__).parents[1] / "benchmarks" / "hit_postprocessing.py")
post = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(post)


def chain_and_loner() -> np.ndarray:
    # three hits 1 cm apart in a row and one hit 10 cm away
    return np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [12.0, 0.0]])


def test_neighbour_graph_joins_hits_within_the_radius_only():
    adjacency = post.neighbour_graph(chain_and_loner(), 1.5).toarray()
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = expected[1, 2] = expected[2, 1] = 1
    np.testing.assert_array_equal(adjacency, expected)


def test_diffusion_matches_its_formula_step_by_step():
    p = np.array([0.9, 0.1, 0.5, 0.3])
    adjacency = post.neighbour_graph(chain_and_loner(), 1.5)
    alpha = 0.8
    # by hand: neighbours of 0: {1}; of 1: {0, 2}; of 2: {1}; 3 has none and keeps its p
    q = p.copy()
    for _ in range(2):
        mean = np.array([q[1], (q[0] + q[2]) / 2, q[1], q[3]])
        q = (1 - alpha) * p + alpha * mean
    np.testing.assert_allclose(post.diffuse(adjacency, p, alpha, 2), q, rtol=0, atol=1e-15)
    assert post.diffuse(adjacency, p, alpha, 2)[3] == pytest.approx(0.3, abs=1e-15)


def test_fragment_mean_blends_each_hit_with_its_fragment():
    p = np.array([0.9, 0.1, 0.5, 0.3])
    adjacency = post.neighbour_graph(chain_and_loner(), 1.5)
    np.testing.assert_allclose(post.fragment_mean(adjacency, p, 1.0), [0.5, 0.5, 0.5, 0.3], atol=1e-15)
    np.testing.assert_allclose(post.fragment_mean(adjacency, p, 0.5), [0.7, 0.3, 0.5, 0.3], atol=1e-15)


def test_local_lines_give_the_direction_and_straightness_of_a_line_and_a_blob():
    line = np.c_[np.arange(0.0, 5.0, 0.5), 2.0 * np.arange(0.0, 5.0, 0.5)]  # along (1, 2)
    direction, straightness = post.local_lines(line, 1.5)
    np.testing.assert_allclose(np.abs(direction @ np.array([1.0, 2.0]) / np.sqrt(5.0)), 1.0, atol=1e-9)
    np.testing.assert_allclose(straightness, 1.0, atol=1e-9)
    square = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]])  # equal spread both ways: no line
    np.testing.assert_allclose(post.local_lines(square, 1.5)[1], 0.0, atol=1e-9)


def test_track_fragments_follow_each_track_up_to_a_crossing_and_never_across():
    # a horizontal and a vertical track of hits 0.5 cm apart, crossing at the origin (no hit there)
    steps = np.r_[np.arange(-10.0, 0.0, 0.5), np.arange(0.5, 10.5, 0.5)]
    horizontal, vertical = np.c_[steps, np.zeros_like(steps)], np.c_[np.zeros_like(steps), steps]
    xy = np.r_[horizontal, vertical]
    adjacency = post.track_graph(xy, 1.0, 0.75).tocoo()
    n = len(steps)
    assert adjacency.nnz > 0 and np.all((adjacency.row < n) == (adjacency.col < n))  # no edge joins the two tracks
    # each arm stays one fragment, up to where the hits near the crossing stop being straight (the
    # fragment stops there); the plain 1-cm graph merges all hits into one fragment
    from scipy.sparse.csgraph import connected_components
    fragment = connected_components(post.track_graph(xy, 1.0, 0.75), directed=False)[1]
    assert len(set(fragment[:16])) == 1 and len(set(fragment[n - 16:n])) == 1 and fragment[0] != fragment[n - 1]
    assert not set(fragment[:n]) & set(fragment[n:])
    assert connected_components(post.neighbour_graph(xy, 1.0), directed=False)[0] == 1
    # group means: the mean where a group holds at least min_size hits, the hit's own p elsewhere
    p = np.array([0.2, 0.4, 0.9, 0.1])
    np.testing.assert_allclose(post.group_mean(np.array([0, 0, 1, 2]), p, 1.0, 2), [0.3, 0.3, 0.9, 0.1], atol=1e-15)
    np.testing.assert_allclose(post.group_mean(np.array([0, 0, 1, 2]), p, 0.5, 1), [0.25, 0.35, 0.9, 0.1], atol=1e-15)


def test_crossing_finds_where_efficiency_meets_purity():
    # 4 beam hits with P 0.9, 0.8, 0.7, 0.3 and 4 others with P 0.75, 0.2, 0.1, 0.1
    is_beam = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    p_beam = np.array([0.9, 0.8, 0.7, 0.3, 0.75, 0.2, 0.1, 0.1])
    point = post.crossing(is_beam, p_beam)
    # at thresholds 0.31..0.70: 3 of 4 beam hits found, 4 tagged: efficiency = purity = 0.75
    assert point["efficiency"] == pytest.approx(0.75) and point["purity"] == pytest.approx(0.75)
    assert 0.31 <= point["threshold"] <= 0.70


def test_distance_to_main_cluster_is_zero_inside_and_euclidean_outside():
    xy = np.array([[0.0, 0.0], [1.5, 0.0], [3.0, 0.0], [30.0, 0.0], [3.0, 4.0]])
    is_beam = np.array([True, True, True, True, False])
    distance = post.distance_to_main_cluster(xy, is_beam)
    # hits 0-2 joined within 2 cm form the main cluster; hit 3 is 27 cm from hit 2; hit 4 is 4 cm above hit 2
    np.testing.assert_allclose(distance, [0.0, 0.0, 0.0, 27.0, 4.0])


def test_the_study_counts_the_beam_hits_predict_counted_and_refuses_other_files(tmp_path, capsys):
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
    result = post.study(events, tmp_path / "p.h5")
    assert result["n_beam_hits"] == counted["beam_hits"] and result["model_working_point"] == pytest.approx(0.4)
    shares = [row["beam_hit_share"] for row in result["by_distance_to_main_beam_cluster"]]
    assert sum(shares) == pytest.approx(1.0)  # every beam hit falls in one distance bin
    assert post.main([str(events), str(events), "--results", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "events.h5" in err[0]
    assert not (tmp_path / "r.json").exists()
