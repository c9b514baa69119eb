"""benchmarks/beam_cluster_cleanup.py: the clusters of beam-tagged pixels and their distance to the main one."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from beam_cluster_cleanup import far_clusters  # noqa: E402


def test_main_cluster_is_the_one_with_most_beam_probability_and_distances_are_euclidean_pixels():
    tagged = np.zeros((40, 40), bool)
    tagged[5, 2:12] = True        # 10 pixels at P(beam) 0.6: summed 6.0
    tagged[30, 30:35] = True      # 5 pixels at P(beam) 0.99: summed 4.95, so not the main cluster
    tagged[5, 14] = True          # 2 empty pixels from the first: joined by a link of 1 px (each side grows 1)
    p_beam = np.where(tagged, 0.6, 0.0)
    p_beam[30, 30:35] = 0.99
    clusters, distance = far_clusters(tagged, p_beam, link_px=1)
    assert clusters[5, 2] == clusters[5, 14] != 0
    assert clusters[30, 30] not in (0, clusters[5, 2])
    assert (clusters[~tagged] == 0).all()
    assert distance[5, 14] == 0.0
    # nearest main-cluster pixel of (30, 30) is (5, 14): sqrt(25² + 16²)
    assert np.isclose(distance[30, 30], np.hypot(25, 16))

    apart, _ = far_clusters(tagged, p_beam, link_px=0)   # touching pixels only: the gap separates them
    assert apart[5, 14] != apart[5, 2]
