"""benchmarks/downsampling.py: oracle efficiency / purity, pixel balance and costs on hand-built events, and the
trained part (--models) end to end on a tiny case."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from protoseg.events import Event, EventsWriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import downsampling  # noqa: E402

TICKS_PER_ROW_64 = 6000 / 64  # 93.75 ticks; an even column c holds wires 22.5c .. 22.5c + 22


def _hit(row: int, col: int, dt: float, dw: int, integral: float, label: int, rms: float = 2.0) -> tuple:
    """A hit in pixel (row, col) of the 64×64 grid; dt < 46.875 and dw < 12 keep it in the top-left pixel of the
    four that split it at 128×128, larger ones in the others."""
    assert col % 2 == 0
    return row * TICKS_PER_ROW_64 + dt, 45 * (col // 2) + dw, integral, label, rms


# One event at 64×64: 10 beam and 20 cosmic hits alone in their pixels, and three shared pixels
#   A: beam 100 + cosmic 300          max, charge majority: not-beam    beam-priority: beam
#   B: beam 500 + cosmic 100          all: beam
#   C: beam 200 + beam 200 + cosmic 300   max: not-beam (largest hit)   charge majority: beam (400 > 300)
# and one lone cosmic hit of rms 100 ticks, which --spread-rms spreads over rows 47..53 (peak ± 300 ticks).
# At 128×128 every hit has a pixel of its own (the shared hits sit in different quarters).
HITS = (
    [_hit(4 + 2 * k, 10, 20, 1, 400, 1) for k in range(10)]
    + [_hit(4 + 2 * k, 30, 20, 1, 300, 2) for k in range(20)]
    + [_hit(40, 50, 10, 1, 100, 1), _hit(40, 50, 60, 15, 300, 2)]
    + [_hit(42, 50, 10, 1, 500, 1), _hit(42, 50, 60, 15, 100, 2)]
    + [_hit(44, 50, 10, 1, 200, 1), _hit(44, 50, 60, 1, 200, 1), _hit(44, 50, 10, 15, 300, 2)]
    + [_hit(50, 60, 47, 1, 300, 2, rms=100.0)]
)
N_EVENTS = 3
PARTICLES = {  # track 1 the beam pion, track 2 a cosmic muon
    "track_id": np.array([1, 2], np.int32), "parent_id": np.array([-1, -1], np.int32), "pdg": np.array([211, 13], np.int32),
    "origin": np.array([1, 2], np.uint8), "process": np.array(["primary", "primary"], object),
    "end_process": np.array(["stop", "escape"], object),
    **{k: np.zeros(2, np.float32) for k in ("start_x", "start_y", "start_z", "end_x", "end_y", "end_z", "start_t",
                                            "start_px", "start_py", "start_pz", "energy_deposited", "track_length")},
}


def write_events(path: Path, n: int = N_EVENTS) -> Path:
    tick, wire, integral, label, rms = (np.array(c) for c in zip(*HITS))
    with EventsWriter(path, config={"test": "downsampling"}, is_mc=True, source="test") as writer:
        for i in range(n):
            m = len(tick)
            hits = {"wire": wire.astype(np.uint16), "tick": tick.astype(np.float32), "integral": integral.astype(np.float32),
                    "rms": rms.astype(np.float32), "peak": np.full(m, 100.0, np.float32), "label": label.astype(np.uint8),
                    "origin": label.astype(np.uint8), "track_id": label.astype(np.int32), "pdg": np.where(label == 1, 211, 13).astype(np.int32)}
            writer.append(Event(event_id=100 + i, hits=hits, is_mc=True, particles=PARTICLES))
    return path


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> dict:
    events = write_events(tmp_path_factory.mktemp("ds") / "events.h5")
    found = downsampling.pixel_studies(events, [64, 128], list(downsampling.VARIANTS))
    return {(row["variant"], row["size"]): row for row in found}


def test_oracle_efficiency_and_purity_hand_computed(rows):
    # 14 beam hits per event. Tagged beam / beam hits tagged beam, from the shared pixels above:
    expected = {
        "max": (11 / 14, 11 / 12),              # 10 + B's beam hit; tagged: 10 + B's two
        "max+spread-rms": (11 / 14, 11 / 12),   # each hit keeps its peak pixel; pieces stay in their rows here
        "charge-majority": (13 / 14, 13 / 15),  # + C's two beam hits; tagged + C's three
        "sum": (13 / 14, 13 / 15),              # sum and mean label pixels by charge majority
        "mean": (13 / 14, 13 / 15),
        "beam-priority": (1.0, 14 / 17),        # every beam hit; tagged: 10 + 2 + 2 + 3
    }
    for name, (efficiency, purity) in expected.items():
        row = rows[name, 64]
        assert (row["events"], row["selected_events"]) == (N_EVENTS, 0)  # far below 2000 hits: none selected
        assert row["efficiency_all"] == round(efficiency, 4), name
        assert row["purity_all"] == round(purity, 4), name
        assert row["efficiency_selected"] is None and row["purity_selected"] is None


def test_every_hit_in_its_own_pixel_is_perfect_and_beam_priority_keeps_every_beam_hit(rows):
    for name in downsampling.VARIANTS:
        assert (rows[name, 128]["efficiency_all"], rows[name, 128]["purity_all"]) == (1.0, 1.0), name
        assert rows["beam-priority", 64]["efficiency_all"] == 1.0


def test_pixel_class_balance_hand_computed(rows):
    n_pix = 64 * 64
    # occupied pixels: 10 + 20 alone, A, B, C, the lone cosmic = 34; with --spread-rms 6 more (rows 47..53)
    beam_pixels = {"max": 11, "charge-majority": 12, "sum": 12, "mean": 12, "beam-priority": 13, "max+spread-rms": 11}
    for name, beam in beam_pixels.items():
        occupied = 34 + 6 * (name == "max+spread-rms")
        row = rows[name, 64]
        assert row["beam_pixels_per_image_all"] == beam, name
        fractions = row["pixel_fractions_all"]
        assert fractions["beam"] == pytest.approx(beam / n_pix, rel=1e-3)
        assert fractions["not-beam"] == pytest.approx((occupied - beam) / n_pix, rel=1e-3)
        assert fractions["background"] == pytest.approx(1 - occupied / n_pix, rel=1e-3)
        assert row["event_to_image_cpu_ms_per_event"] >= 0


def test_file_cost_measures_a_real_image_file(tmp_path):
    events = write_events(tmp_path / "events.h5")
    for name in ("max", "max+spread-rms"):
        cost = downsampling.file_cost(events, 64, name, tmp_path)
        assert cost["uncompressed_bytes_per_image"] == 64 * 64 * 5
        assert 0 < cost["adc_bytes_per_image"] < 64 * 64 * 4 and 0 < cost["label_bytes_per_image"] < 64 * 64
        assert cost["file_bytes_per_image"] > cost["adc_bytes_per_image"] + cost["label_bytes_per_image"]
        assert cost["make_image_file_cpu_ms_per_event"] > 0
    assert not list(tmp_path.glob("images-*.h5"))  # the measured file is removed


@pytest.mark.slow
def test_models_trains_and_scores_one_model_per_pooling(tmp_path):
    train_events = write_events(tmp_path / "train.h5", n=6)
    heldout = write_events(tmp_path / "heldout.h5", n=2)
    results = tmp_path / "downsampling.json"
    results.write_text(json.dumps({"rows": [], "kept": 1}))
    tiny = ["model.down_blocks=[2,2]", "model.bottleneck_layers=2", "model.growth_rate=4", "model.first_filters=8",
            "trainer.limit_train_batches=2", "trainer.log_every_n_steps=1"]
    argv = [str(heldout), "--models", "--train-events", str(train_events), "--variants", "max+spread-rms",
            "--model-size", "64", "--cpu-budget-s", "2", "--train-split", "4", "2", "0", "--work", str(tmp_path / "runs"),
            "--results", str(results), "--plot", str(tmp_path / "plot.png"), *[a for s in tiny for a in ("--set", s)]]
    assert downsampling.main(argv) == 0
    out = json.loads(results.read_text())
    assert out["kept"] == 1  # the no-training part's results stay
    entry = out["trained"]["variants"]["max+spread-rms"]
    assert entry["beam_hits"] == 2 * 14 and entry["heldout_events"] == 2
    # a 2 CPU-s tiny model may tag no hit beam (how many steps it gets depends on the machine): then no purity
    assert 0.0 <= entry["hit_beam_efficiency"] <= 1.0
    if entry["hit_beam_purity"] is None:
        assert entry["hit_beam_efficiency"] == 0.0
    else:
        assert 0.0 <= entry["hit_beam_purity"] <= 1.0
    assert entry["trained_on"]["cpu_time_s"] > 0
    # the model was trained on, and predict made, 64×64 images spread by rms
    card = json.loads((tmp_path / "runs" / "max+spread-rms" / "model.json").read_text())
    assert card["input"]["image"]["spread_rms"] is True and card["input"]["image"]["size"] == [64, 64]
    with h5py.File(tmp_path / "runs" / "predictions-max+spread-rms.h5", "r") as handle:
        assert handle["pred"].shape == (2, 64, 64)
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert "balanced_efficiency_purity" in entry and entry["predict_s"] is not None
    # run again: trained and predicted already, so the scores come from the kept predictions file
    assert downsampling.main(argv) == 0
    again = json.loads(results.read_text())["trained"]["variants"]["max+spread-rms"]
    assert again["predict_s"] is None and again["hit_beam_efficiency"] == entry["hit_beam_efficiency"]


def test_balance_point_interpolates_where_efficiency_meets_purity(monkeypatch):
    import working_point

    def linear_curve(events, predictions, thresholds):
        # efficiency 1 - t, purity 0.5 + t / 2: they meet at t = 1/3, both 2/3 (linear, so interpolation is exact)
        return {"points": [{"beam_threshold": float(t), "beam_efficiency": 1.0 - t, "beam_purity": 0.5 + t / 2}
                           for t in thresholds]}

    monkeypatch.setattr(working_point, "working_points", linear_curve)
    point = downsampling.balance_point(Path("e.h5"), Path("p.h5"))
    assert point.pop("working_points")[0] == [0.02, 0.98, 0.51]
    assert point == {"balanced_efficiency_purity": pytest.approx(2 / 3, abs=1e-4), "balanced_threshold": pytest.approx(1 / 3, abs=1e-3)}

    def never_meet(events, predictions, thresholds):
        return {"points": [{"beam_threshold": float(t), "beam_efficiency": 0.2, "beam_purity": 0.9} for t in thresholds]}

    monkeypatch.setattr(working_point, "working_points", never_meet)
    point = downsampling.balance_point(Path("e.h5"), Path("p.h5"))
    assert len(point.pop("working_points")) == 97
    assert point == {"balanced_efficiency_purity": None, "balanced_threshold": None}
