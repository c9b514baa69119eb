"""benchmarks/working_point.py: efficiency and purity at each beam working point, from a predictions file,
agree with what `protoseg predict --beam-threshold` counted."""
import importlib.util
import json
from pathlib import Path

import h5py
import pytest

from protoseg.cli import main as protoseg_main
from test_inference import tiny_events, tiny_weights

SPEC = importlib.util.spec_from_file_location("working_point", Path(__file__).parents[1] / "benchmarks" / "working_point.py")
working_point = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(working_point)


@pytest.mark.parametrize("threshold", [0.3, 0.34])
def test_working_point_agrees_with_predict_at_its_threshold(tmp_path, threshold):
    weights = tiny_weights(tmp_path / "run")
    events = tiny_events(tmp_path / "events.h5")
    assert protoseg_main(["predict", str(weights), str(events), "-o", str(tmp_path / "p.h5"), "--beam-threshold", str(threshold)]) == 0
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        counted = json.loads(handle.attrs["hit_metrics"])
    result = working_point.working_points(events, tmp_path / "p.h5", [0.2, threshold, 0.9])
    point = next(p for p in result["points"] if p["beam_threshold"] == pytest.approx(threshold))
    assert result["beam_hits"] == counted["beam_hits"]
    # float16 storage can move a pixel within 1e-3 of the threshold across it: a few hits at most
    assert point["tagged_beam_hits"] == pytest.approx(counted["tagged_beam_hits"], abs=max(3, 0.01 * counted["tagged_beam_hits"]))
    assert point["beam_efficiency"] == pytest.approx(counted["beam_efficiency"], abs=0.01)
    tagged = [p["tagged_beam_hits"] for p in result["points"]]
    assert tagged == sorted(tagged, reverse=True)  # a higher threshold tags fewer hits


def test_working_point_of_a_hit_level_model_reads_each_hits_probability(tmp_path):
    from test_hits import tiny_hit_weights

    weights = tiny_hit_weights(tmp_path / "run")
    events = tiny_events(tmp_path / "events.h5")
    threshold = 0.4
    assert protoseg_main(["predict", str(weights), str(events), "-o", str(tmp_path / "p.h5"), "--beam-threshold", str(threshold)]) == 0
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        counted = json.loads(handle.attrs["hit_metrics"])
    point = working_point.working_points(events, tmp_path / "p.h5", [threshold])["points"][0]
    assert point["tagged_beam_hits"] == pytest.approx(counted["tagged_beam_hits"], abs=max(3, 0.01 * counted["tagged_beam_hits"]))
    assert point["tagged_true_beam_hits"] == pytest.approx(counted["beam_efficiency"] * counted["beam_hits"], abs=3)


def test_working_point_refuses_a_file_that_is_not_predictions(tmp_path, capsys):
    events = tiny_events(tmp_path / "events.h5")
    assert working_point.main([str(events), str(events)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a protoseg predictions file" in err[0]
