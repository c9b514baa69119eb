"""benchmarks/time_to_quality.py: a later stage's checkpoints counted on from where the stages before it ended."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("time_to_quality", Path(__file__).parents[1] / "benchmarks" / "time_to_quality.py")
time_to_quality = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(time_to_quality)


def test_stage_two_starts_where_stage_one_ended():
    curve = [{"stage": 1, "step": 1000, "cpu_time_s": 10.0, "wall_time_s": 6.0, "beam_efficiency": 0.5},
             {"stage": 1, "step": 2000, "cpu_time_s": 20.0, "wall_time_s": 12.0, "beam_efficiency": 0.6},
             {"stage": 2, "step": 500, "cpu_time_s": 5.0, "wall_time_s": 3.0, "beam_efficiency": 0.7},
             {"stage": 3, "step": 100, "cpu_time_s": 1.0, "wall_time_s": 0.5, "beam_efficiency": 0.8}]
    # stage 1's run went on past its last checkpoint (2050 steps, 21 CPU-s), stage 2's ended at 600 steps
    ends = [{"steps": 2050, "cpu_time_s": 21.0, "wall_time_s": 13.0}, {"steps": 600, "cpu_time_s": 6.5, "wall_time_s": 4.0},
            {"steps": 100, "cpu_time_s": 1.0, "wall_time_s": 0.5}]
    counted = time_to_quality.counted_over_stages(curve, ends)
    assert [p["step"] for p in counted] == [1000, 2000, 2550, 2750]
    assert [p["cpu_time_s"] for p in counted] == pytest.approx([10.0, 20.0, 26.0, 28.5])
    assert [p["wall_time_s"] for p in counted] == pytest.approx([6.0, 12.0, 16.0, 17.5])
    assert [p["beam_efficiency"] for p in counted] == [0.5, 0.6, 0.7, 0.8]
    assert curve[2]["step"] == 500  # the input is left as it was


def test_beam_hit_iou_is_tp_over_tp_fp_fn():
    # 90 true positives, 10 missed, 30 false positives: efficiency 0.9, purity 0.75, IoU 90 / 130
    assert time_to_quality.beam_hit_iou(0.9, 0.75) == pytest.approx(90 / 130)


def test_an_extended_curve_counts_the_new_stage_on_from_the_last_point():
    earlier = [{"stage": 1, "step": 1000, "cpu_time_s": 10.0, "wall_time_s": 6.0},
               {"stage": 2, "step": 2600, "cpu_time_s": 27.0, "wall_time_s": 16.0}]
    # stage 3's own run: checkpoints at 100 and 300 steps; it ended at 320 steps, 4 CPU-s, 2.5 s
    later = [{"stage": 3, "step": 100, "cpu_time_s": 1.0, "wall_time_s": 0.6}, {"stage": 3, "step": 300, "cpu_time_s": 3.5, "wall_time_s": 2.2}]
    extended = time_to_quality.extended_curve(earlier, later, [{"steps": 320, "cpu_time_s": 4.0, "wall_time_s": 2.5}])
    assert extended[:2] == earlier
    assert [p["stage"] for p in extended[2:]] == [3, 3]
    assert [p["step"] for p in extended[2:]] == [2700, 2900]
    assert [p["cpu_time_s"] for p in extended[2:]] == pytest.approx([28.0, 30.5])
    assert [p["wall_time_s"] for p in extended[2:]] == pytest.approx([16.6, 18.2])
