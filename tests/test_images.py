"""Images: the grid formula, every pooling on hand-made pixels, against a plain loop, selection, splits, files."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from protoseg.cli import main
from protoseg.errors import InputError
from protoseg.events import Event, EventsWriter, open_events
from protoseg.images import (
    LABEL_SCHEMES,
    POOLINGS,
    class_balance,
    event_to_image,
    format_class_balance,
    hit_labels,
    make_image_file,
    open_images,
    parse_split,
    pixel_indices,
    write_images,
)
from protoseg.sim.truth import PARTICLE_COLUMNS


def hits_of(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Hits from (wire, tick, integral, label, pdg[, rms]) tuples."""
    cols = list(zip(*rows))
    n = len(rows)
    return {
        "wire": np.array(cols[0], np.uint16),
        "tick": np.array(cols[1], np.float32),
        "integral": np.array(cols[2], np.float32),
        "label": np.array(cols[3], np.uint8),
        "origin": np.array(cols[3], np.uint8),
        "pdg": np.array(cols[4], np.int32),
        "track_id": np.arange(n, dtype=np.int32),
        "rms": np.array(cols[5] if len(cols) > 5 else [3.0] * n, np.float32),
        "peak": np.ones(n, np.float32),
    }


def test_pixel_indices_formula():
    tick = np.array([0.0, 18.7499, 18.75, 5999.99, 3000.0], np.float32)
    wire = np.array([0, 4, 5, 1439, 720], np.uint16)
    row, col = pixel_indices(tick, wire, (320, 320))
    assert list(row) == [0, 0, 1, 319, 160]  # 18.75 ticks per row
    assert list(col) == [0, 0, 1, 319, 160]  # 4.5 wires per column
    row, col = pixel_indices(tick, wire, (6000, 1440))  # full resolution is the identity on integers
    assert list(row) == [0, 18, 18, 5999, 3000] and list(col) == [0, 4, 5, 1439, 720]
    with pytest.raises(InputError, match="impossible image size 0x320"):
        pixel_indices(tick, wire, (0, 320))
    with pytest.raises(InputError, match="impossible image size 320x1441"):
        pixel_indices(tick, wire, (320, 1441))


# Pixel A (row 0, col 0): beam 100 then cosmic 200.  Pixel B (row 1, col 1): beam 50, beam 60, cosmic 100.
# Pixel C (row 2, col 2): noise 30.  Pixel D (row 3, col 3): beam 70 and cosmic 70 (a tie).
HAND = hits_of([
    (0, 1.0, 100.0, 1, 211), (1, 2.0, 200.0, 2, 13),
    (5, 20.0, 50.0, 1, 2212), (6, 30.0, 60.0, 1, 2212), (8, 37.0, 100.0, 2, -13),
    (10, 40.0, 30.0, 0, 0),
    (14, 60.0, 70.0, 1, 211), (14, 61.0, 70.0, 2, 13),
])
EXPECTED = {  # pooling -> {pixel: (value, label)}
    "max": {(0, 0): (200, 2), (1, 1): (100, 2), (2, 2): (30, 0), (3, 3): (70, 1)},
    "sum": {(0, 0): (300, 2), (1, 1): (210, 1), (2, 2): (30, 0), (3, 3): (140, 1)},
    "mean": {(0, 0): (150, 2), (1, 1): (70, 1), (2, 2): (30, 0), (3, 3): (70, 1)},
    "beam-priority": {(0, 0): (200, 1), (1, 1): (100, 1), (2, 2): (30, 0), (3, 3): (70, 1)},
    "charge-majority": {(0, 0): (200, 2), (1, 1): (100, 1), (2, 2): (30, 0), (3, 3): (70, 1)},
}


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_on_hand_made_pixels(pooling):
    adc, label = event_to_image(HAND, (320, 320), pooling, "beam3")
    assert adc.dtype == np.float32 and label.dtype == np.uint8 and adc.shape == (320, 320)
    expected = EXPECTED[pooling]
    assert np.count_nonzero(adc) == len(expected)
    for (r, c), (value, lab) in expected.items():
        assert adc[r, c] == pytest.approx(value) and label[r, c] == lab, (r, c)
    assert label.sum() == sum(lab for _, lab in expected.values())


def test_species_labels_and_pooling():
    hits = hits_of([
        (0, 1, 5, 1, 211), (0, 1, 5, 1, -211), (0, 1, 5, 1, 2212), (0, 1, 5, 1, 11), (0, 1, 5, 1, 22),
        (0, 1, 5, 1, -13), (0, 1, 5, 1, 321), (0, 1, 5, 1, 1000180400), (0, 1, 5, 2, 13), (0, 1, 5, 0, 0),
    ])
    assert list(hit_labels(hits, "species")) == [2, 2, 3, 4, 4, 5, 6, 7, 1, 0]
    assert LABEL_SCHEMES["species"][4] == "beam e/gamma shower"
    adc, label = event_to_image(HAND, (320, 320), "beam-priority", "species")
    assert label[0, 0] == 2 and label[1, 1] == 3 and label[2, 2] == 0  # pi+, proton, noise
    _, label = event_to_image(HAND, (320, 320), "max", "species")
    assert label[0, 0] == 1  # the cosmic muon wins the pixel: not-beam


def test_no_truth_gives_no_labels_and_drop_noise():
    data_hits = {k: HAND[k] for k in ("wire", "tick", "integral", "rms", "peak")}
    adc, label = event_to_image(data_hits, (320, 320), "max", "beam3")
    assert label is None and adc[0, 0] == 200
    adc, label = event_to_image(HAND, (320, 320), "max", None)
    assert label is None
    adc, label = event_to_image(HAND, (320, 320), "max", "beam3", drop_noise=True)
    assert adc[2, 2] == 0 and np.count_nonzero(adc) == 3


def loop_max_pooling(hits, size):
    """The 2018 RootToCSV loop: strict '>' so the first of equal maxima wins."""
    height, width = size
    adc = np.zeros(size, np.float64)
    label = np.zeros(size, np.uint8)
    for wire, tick, value, lab in zip(hits["wire"], hits["tick"], hits["integral"], hits["label"]):
        r = int(np.floor(float(tick) * height / 6000))
        c = int(np.floor(int(wire) * width / 1440))
        if value > adc[r, c]:
            adc[r, c] = value
            label[r, c] = lab
    return adc.astype(np.float32), label


def test_max_pooling_matches_an_independent_loop():
    rng = np.random.default_rng(11)
    n = 3000
    hits = {
        "wire": rng.integers(0, 1440, n).astype(np.uint16),
        "tick": rng.uniform(0, 6000, n).astype(np.float32),
        "integral": rng.integers(1, 40, n).astype(np.float32),  # many ties on purpose
        "label": rng.integers(0, 3, n).astype(np.uint8),
    }
    for size in ((64, 64), (320, 320), (100, 37)):
        adc, label = event_to_image(hits, size, "max", "beam3")
        ref_adc, ref_label = loop_max_pooling(hits, size)
        assert np.array_equal(adc, ref_adc) and np.array_equal(label, ref_label)


def test_spread_rms_conserves_charge_and_splits_at_row_edges():
    # A hit centred on the tick-18.75 row edge (320 rows) splits its charge half and half.
    hits = hits_of([(0, 18.75, 100.0, 1, 211, 2.0), (100, 500.0, 40.0, 2, 13, 0.0), (200, 5999.0, 10.0, 2, 13, 30.0)])
    adc, label = event_to_image(hits, (320, 320), "sum", "beam3", spread_rms=True)
    assert adc[0, 0] == pytest.approx(50.0) and adc[1, 0] == pytest.approx(50.0)
    assert label[0, 0] == 1 and label[1, 0] == 1
    assert adc[26, 22] == pytest.approx(40.0)  # rms 0: a point
    assert adc.sum() == pytest.approx(150.0, rel=1e-6)  # the hit at the window's end is clipped, not lost
    assert np.count_nonzero(adc[:, 44]) == 5  # 5999 - 90 ticks ... 6000: rows 315..319
    point, _ = event_to_image(hits, (320, 320), "sum", "beam3", spread_rms=False)
    assert point[0, 0] == 0 and point[1, 0] == 100.0


def test_parse_split():
    assert parse_split([10, 2, 1], 20) == (10, 2, 1)
    assert parse_split([0.8, 0.1, 0.1], 11) == (9, 1, 1)
    assert sum(parse_split([1 / 3, 1 / 3, 1 / 3], 10)) == 10
    assert parse_split([1, 0, 0], 7) == (7, 0, 0)  # sums to 1: fractions
    with pytest.raises(InputError, match="asks for 13 images .* only 12 events pass"):
        parse_split([10, 2, 1], 12)
    with pytest.raises(InputError, match="whole numbers"):
        parse_split([2.5, 1, 1], 12)
    with pytest.raises(InputError, match="non-negative"):
        parse_split([5, -1, 1], 12)


def make_events_file(path, n_events=12, seed=0, is_mc=True):
    """Events with known numbers of beam / not-beam hits: event k has 10*k beam and 60 - 5*k not-beam hits."""
    rng = np.random.default_rng(seed)
    empty = {name: np.zeros(0, dtype=dtype) for name, dtype in PARTICLE_COLUMNS.items()}
    with EventsWriter(path, config={"test": True, "charge_scale": "test scale"}, is_mc=is_mc) as writer:
        for k in range(n_events):
            labels = np.concatenate([np.ones(10 * k), np.full(60 - 5 * k, 2), np.zeros(7)]).astype(np.uint8)
            n = len(labels)
            hits = {
                "wire": rng.integers(0, 1440, n).astype(np.uint16),
                "tick": rng.uniform(0, 6000, n).astype(np.float32),
                "integral": rng.exponential(100, n).astype(np.float32),
                "rms": rng.uniform(1, 5, n).astype(np.float32),
                "peak": rng.uniform(1, 5, n).astype(np.float32),
            }
            if is_mc:
                hits |= {"label": labels, "origin": labels, "track_id": np.zeros(n, np.int32),
                         "pdg": rng.choice([211, 2212, 11, 13], n).astype(np.int32)}
            writer.append(Event(event_id=500 + k, hits=hits, is_mc=is_mc, particles=empty if is_mc else None))
    return path


def test_make_image_file_selection_split_and_contents(tmp_path):
    events_path = make_events_file(tmp_path / "events.h5")
    out = tmp_path / "images.h5"
    # beam >= 30 -> k >= 3; not-beam >= 20 -> k <= 8: events 3..8 pass
    summary = make_image_file(events_path, out, size=(64, 64), pooling="max", label_scheme="beam3",
                              min_beam_hits=30, min_notbeam_hits=20, split=[3, 2, 1], seed=4)
    assert summary["n_events_read"] == 12 and summary["n_events_passing"] == 6 and summary["n_images"] == 6
    with open_images(out) as images, open_events(events_path) as events:
        assert len(images) == 6 and images.size == (64, 64)
        assert list(images.event_id) == [503, 504, 505, 506, 507, 508]  # file order
        assert sorted(images.split.tolist()) == [0, 0, 0, 1, 1, 2]
        assert images.class_names == ["background", "beam", "not-beam"]
        attrs = images.attrs
        assert attrs["pooling"] == "max" and attrs["label_scheme"] == "beam3" and list(attrs["size"]) == [64, 64]
        assert attrs["selection"]["n_events_read"] == 12 and attrs["selection"]["seed"] == 4
        assert attrs["charge_scale"] == "test scale" and attrs["source"] == str(events_path)
        for row, position in enumerate(images.event_index):
            adc, label = event_to_image(events.read(int(position)).hits, (64, 64), "max", "beam3")
            assert np.array_equal(images.adc[row], adc) and np.array_equal(images.label[row], label)
        first_split = images.split.copy()
    again = tmp_path / "again.h5"
    make_image_file(events_path, again, size=(64, 64), min_beam_hits=30, min_notbeam_hits=20, split=[3, 2, 1], seed=4)
    other = tmp_path / "other.h5"
    make_image_file(events_path, other, size=(64, 64), min_beam_hits=30, min_notbeam_hits=20, split=[3, 2, 1], seed=5)
    with open_images(again) as a, open_images(other) as b:
        assert np.array_equal(a.split, first_split)  # same seed, same split
        assert not np.array_equal(b.split, first_split)  # this seed happens to give another one


def test_data_events_give_images_without_labels(tmp_path):
    events_path = make_events_file(tmp_path / "data.h5", n_events=3, is_mc=False)
    with pytest.raises(InputError, match="no truth labels"):
        make_image_file(events_path, tmp_path / "x.h5", size=(32, 32))
    make_image_file(events_path, tmp_path / "x.h5", size=(32, 32), min_beam_hits=0, min_notbeam_hits=0, split=[1, 0, 0])
    with open_images(tmp_path / "x.h5") as images:
        assert images.label is None and len(images) == 3


def test_write_and_open_images_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    adc = rng.uniform(0, 10, (3, 16, 8)).astype(np.float32)
    label = rng.integers(0, 3, (3, 16, 8)).astype(np.uint8)
    path = write_images(tmp_path / "i.h5", adc, label, [7, 8, 9], ["train", "val", "test"], {"pooling": "sum"})
    with open_images(path) as images:
        assert np.array_equal(images.adc[...], adc) and np.array_equal(images.label[...], label)
        assert list(images.split) == [0, 1, 2] and list(images.event_id) == [7, 8, 9]
        assert images.attrs["pooling"] == "sum" and images.class_names == LABEL_SCHEMES["beam3"]
        assert list(images.indices("validation")) == [1]
    with h5py.File(path) as h5:
        assert h5["adc"].chunks == (1, 16, 8) and json.loads(h5.attrs["class_names"])[1] == "beam"


def test_class_balance_by_hand():
    a = np.zeros((4, 5), np.uint8)  # 20 pixels: 15 background, 1 beam, 4 not-beam
    a[0, 0] = 1
    a[1, :4] = 2
    b = np.zeros((4, 5), np.uint8)  # 16 background, 2 beam, 2 not-beam
    b[0, :2] = 1
    b[3, :2] = 2
    c = np.zeros((4, 5), np.uint8)  # 20 background only
    balance = class_balance([a, b, c], 3)
    assert balance["pixel_counts"] == [51, 3, 6]
    assert balance["pixel_fractions"] == pytest.approx([51 / 60, 3 / 60, 6 / 60])
    assert balance["median_weights"] == pytest.approx([1.0, (15 / 1 + 16 / 2) / 2, (15 / 4 + 16 / 2) / 2])
    assert balance["ratio"] == pytest.approx([17.0, 1.0, 2.0])
    assert balance["images_with_class"] == [3, 2, 2] and balance["absent"] == []
    assert class_balance(np.stack([a, b, c]), 3) == balance
    species = class_balance([a], 8)
    assert species["absent"] == [3, 4, 5, 6, 7] and species["median_weights"][5] == 1.0
    text = format_class_balance(balance, LABEL_SCHEMES["beam3"])
    assert "pixels beam : not-beam : background = 1 : 2.0 : 17.0" in text


def test_images_and_stats_commands(tmp_path, capsys):
    events_path = make_events_file(tmp_path / "events.h5")
    out = tmp_path / "images.h5"
    assert main(["images", str(events_path), "-o", str(out), "--size", "32", "48", "--pooling", "beam-priority",
                 "--labels", "species", "--min-beam-hits", "0", "--min-notbeam-hits", "0",
                 "--split", "0.5", "0.25", "0.25", "--stats"]) == 0
    printed = capsys.readouterr().out
    assert "12 images 32x48 (6 train, 3 validation, 3 test) from 12 of 12 events" in printed
    assert "beam pi+-" in printed
    with open_images(out) as images:
        assert images.attrs["label_scheme"] == "species" and images.label.shape == (12, 32, 48)
    assert main(["stats", str(out), "--split", "all", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_images"] == 12 and len(stats["median_weights"]) == 8
    assert sum(stats["pixel_counts"]) == 12 * 32 * 48


def _truncated_events(tmp_path):
    path = make_events_file(tmp_path / "full.h5")
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:3000])
    path.unlink()
    return cut


def _damaged_events(tmp_path):
    """An events file with bytes overwritten inside the first chunk of /hits/tick."""
    path = make_events_file(tmp_path / "damaged.h5")
    with h5py.File(path) as h5:
        info = h5["hits/tick"].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + 10 : info.byte_offset + 40] = bytes(range(30))
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    "make_input, extra, message",
    [
        (lambda p: p / "missing.h5", [], "no such file"),
        (lambda p: (p / "x.txt").write_text("hello") and p / "x.txt", [], "not an HDF5 file"),
        (_truncated_events, [], "truncated or corrupt"),
        (lambda p: write_images(p / "i.h5", np.zeros((1, 4, 4)), None, [0], [0]), [],
         "is a 'protoseg-images' file, expected a 'protoseg-events' file"),
        (_damaged_events, [], "hit data cannot be read, the file is corrupt"),
        (lambda p: make_events_file(p / "e.h5"), ["--size", "0", "320"], "impossible image size 0x320"),
        (lambda p: make_events_file(p / "e.h5"), ["--size", "6001", "320"], "impossible image size 6001x320"),
        (lambda p: make_events_file(p / "e.h5"), ["--split", "10", "2", "1"], "asks for 13 images (10 + 2 + 1) but only 6 events pass"),
        (lambda p: make_events_file(p / "e.h5"), ["--split", "0.5", "0.2", "0.2"], "counts must be whole numbers"),
        (lambda p: make_events_file(p / "e.h5"), ["--min-beam-hits", "1000"], "no event of 12 has >= 1000 beam"),
    ],
)
def test_images_refuses_bad_input(tmp_path, capsys, make_input, extra, message):
    src = make_input(tmp_path)
    before = set(tmp_path.iterdir())
    out = tmp_path / "images.h5"
    args = ["images", str(src), "-o", str(out), "--min-beam-hits", "30", "--min-notbeam-hits", "20"] + extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("protoseg images: error: ") and message in err
    assert str(src) in err or "--size" in extra
    assert set(tmp_path.iterdir()) == before


def test_stats_refuses_events_file_and_empty_split(tmp_path, capsys):
    events_path = make_events_file(tmp_path / "events.h5")
    assert main(["stats", str(events_path)]) == 2
    assert "expected a 'protoseg-images' file" in capsys.readouterr().err
    path = write_images(tmp_path / "i.h5", np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), [0, 1], [0, 0])
    assert main(["stats", str(path), "--split", "test"]) == 2
    assert f"{path}: the test split is empty" in capsys.readouterr().err


def test_selection_counts_with_empty_events(tmp_path):
    """Beam / not-beam hit counts per event, with empty events first, in the middle and last."""
    from protoseg.images.selection import hit_class_counts

    empty_particles = {name: np.zeros(0, dtype=dtype) for name, dtype in PARTICLE_COLUMNS.items()}
    labels_per_event = [[], [1, 1, 2], [], [2, 2, 2, 0, 1], []]
    path = tmp_path / "e.h5"
    with EventsWriter(path, config={}, is_mc=True) as writer:
        for k, labels in enumerate(labels_per_event):
            n = len(labels)
            hits = {"wire": np.arange(n, dtype=np.uint16), "tick": np.ones(n, np.float32), "integral": np.ones(n, np.float32),
                    "rms": np.ones(n, np.float32), "peak": np.ones(n, np.float32), "label": np.array(labels, np.uint8),
                    "origin": np.array(labels, np.uint8), "track_id": np.zeros(n, np.int32), "pdg": np.zeros(n, np.int32)}
            writer.append(Event(event_id=k, hits=hits, particles=empty_particles))
    with open_events(path) as events:
        for chunk in (1, 2, 256):
            n_beam, n_not_beam = hit_class_counts(events, chunk_events=chunk)
            assert list(n_beam) == [0, 2, 0, 1, 0] and list(n_not_beam) == [0, 1, 0, 3, 0]


def _particle_table(rows: list[tuple[int, int, int, int, str]]) -> dict[str, np.ndarray]:
    """Particle table from (track_id, parent_id, pdg, origin, process) rows; other columns zero."""
    n = len(rows)
    table = {name: np.zeros(n, dtype=dtype) for name, dtype in PARTICLE_COLUMNS.items()}
    cols = list(zip(*rows))
    table["track_id"] = np.array(cols[0], np.int32)
    table["parent_id"] = np.array(cols[1], np.int32)
    table["pdg"] = np.array(cols[2], np.int32)
    table["origin"] = np.array(cols[3], np.uint8)
    table["process"] = np.array(cols[4], dtype=object)
    table["end_process"] = np.full(n, "stop", dtype=object)
    return table


# A beam π⁺ (0) with a delta ray (1) whose brem photon (2) Compton-scatters an electron (3); the π⁺
# interacts: a secondary proton (4) with its own delta ray (5), and a π⁰'s photon (6) converting to
# an e⁻ (7). A cosmic μ (8) with a delta ray (9) decays to a Michel e⁻ (10). Track ids are not rows.
HAND_PARTICLES = _particle_table([
    (10, -1, 211, 1, "primary"), (11, 10, 11, 1, "delta"), (12, 11, 22, 1, "brem"), (13, 12, 11, 1, "compt"),
    (14, 10, 2212, 1, "inelastic"), (15, 14, 11, 1, "delta"), (16, 10, 22, 1, "decay"), (17, 16, 11, 1, "conv"),
    (30, -1, 13, 2, "primary"), (31, 30, 11, 2, "delta"), (32, 30, 11, 2, "decay"),
])


def test_2018_beam_label_rule_on_a_hand_built_event():
    from protoseg.images import apply_beam_label_rule, credited_particle_rows

    # Rows credited: EM daughters climb to the first particle not made by an EM process.
    assert credited_particle_rows(HAND_PARTICLES).tolist() == [0, 0, 0, 0, 4, 4, 6, 6, 8, 8, 10]
    track = [10, 11, 12, 13, 14, 15, 16, 17, 30, 31, 32, -1]
    hits = hits_of([(w, 10.0 * w, 1.0 + w, 1 if t < 30 and t >= 0 else (2 if t >= 30 else 0), 0)
                    for w, t in enumerate(track)])
    hits["track_id"] = np.array(track, np.int32)
    hits["pdg"] = np.array([211, 11, 22, 11, 2212, 11, 22, 11, 13, 11, 11, 0], np.int32)
    out = apply_beam_label_rule(hits, HAND_PARTICLES, "2018")
    # Kept: the π⁺ and its EM chain (wires 0-3), the muon and its delta ray (8, 9), the noise hit (11).
    assert out["wire"].tolist() == [0, 1, 2, 3, 8, 9, 11]
    assert out["label"].tolist() == [1, 1, 1, 1, 2, 2, 0]
    assert out["track_id"].tolist() == [10, 10, 10, 10, 30, 30, -1]
    assert out["pdg"].tolist() == [211, 211, 211, 211, 13, 13, 0]
    assert out["integral"].tolist() == [1.0, 2.0, 3.0, 4.0, 9.0, 10.0, 12.0]
    assert apply_beam_label_rule(hits, HAND_PARTICLES, "all") is hits
    with pytest.raises(InputError, match="not in the particle table"):
        apply_beam_label_rule(hits | {"track_id": np.array(track[:-1] + [99], np.int32)}, HAND_PARTICLES, "2018")
    with pytest.raises(InputError, match="unknown beam label rule"):
        apply_beam_label_rule(hits, HAND_PARTICLES, "2019")


def hand_events_file(path, ticks=(100.0, 101.0)):
    """One MC event per tick value: a hit of each HAND_PARTICLES particle (and a noise hit) on wires
    0, 100, ..., 1100 at that tick, integrals 1..12."""
    track = np.array([10, 11, 12, 13, 14, 15, 16, 17, 30, 31, 32, -1], np.int32)
    label = np.array([1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 0], np.uint8)
    with EventsWriter(path, config={"test": True}, is_mc=True) as writer:
        for k, tick in enumerate(ticks):
            hits = {"wire": np.arange(12, dtype=np.uint16) * 100, "tick": np.full(12, tick, np.float32),
                    "integral": np.arange(1, 13, dtype=np.float32), "rms": np.ones(12, np.float32),
                    "peak": np.ones(12, np.float32), "label": label, "origin": label, "track_id": track,
                    "pdg": np.zeros(12, np.int32)}
            writer.append(Event(event_id=k, hits=hits, is_mc=True, particles=HAND_PARTICLES))
    return path


def test_make_image_file_selects_on_hits_kept_by_the_2018_rule(tmp_path):
    path = hand_events_file(tmp_path / "events.h5")
    # 8 beam hits with all, 4 with 2018; 3 and 2 not-beam hits.
    summary = make_image_file(path, tmp_path / "all.h5", size=(64, 64), min_beam_hits=8, min_notbeam_hits=3,
                              split=[2, 0, 0])
    assert summary["n_events_passing"] == 2
    with pytest.raises(InputError, match="no event of 2 has >= 5 beam"):
        make_image_file(path, tmp_path / "x.h5", size=(64, 64), min_beam_hits=5, min_notbeam_hits=2,
                        beam_label_rule="2018")
    make_image_file(path, tmp_path / "2018.h5", size=(64, 64), min_beam_hits=4, min_notbeam_hits=2,
                    split=[2, 0, 0], beam_label_rule="2018")
    # Hits naming particles the table lacks: one line naming the file and the event.
    with pytest.raises(InputError, match=r"without-particles\.h5: event 500: hit truth names track 0, which is not in the particle table"):
        make_image_file(make_events_file(tmp_path / "events-without-particles.h5"), tmp_path / "y.h5", size=(64, 64),
                        min_beam_hits=0, min_notbeam_hits=0, beam_label_rule="2018")
    assert not (tmp_path / "y.h5").exists()
    with open_images(tmp_path / "2018.h5") as images:
        assert images.attrs["beam_label_rule"] == "2018"
        counts = np.bincount(images.label[0].ravel(), minlength=3)
        assert counts.tolist() == [64 * 64 - 6, 4, 2]
        assert np.count_nonzero(images.adc[0]) == 7  # the noise hit is kept, labelled background
        assert sorted(images.adc[0][images.adc[0] > 0].tolist()) == [1, 2, 3, 4, 9, 10, 12]


def test_images_stats_of_a_test_only_file_counts_every_image(tmp_path, capsys):
    events_path = make_events_file(tmp_path / "events.h5")
    out = tmp_path / "images.h5"
    assert main(["images", str(events_path), "-o", str(out), "--size", "32", "48", "--min-beam-hits", "0",
                 "--min-notbeam-hits", "0", "--split", "0", "0", "12", "--stats"]) == 0
    printed = capsys.readouterr().out
    assert "class balance of all images:" in printed
    with open_images(out) as images:
        expected = class_balance((images.label[i] for i in range(len(images))), images.num_classes)
    assert format_class_balance(expected, ["background", "beam", "not-beam"]) in printed
