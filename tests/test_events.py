"""The events file: bit-for-bit round trips, block reads, validation, and no file left on failure."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from protoseg import events as ev
from protoseg.events import writer as ev_writer
from protoseg.errors import InputError
from protoseg.events import Event, EventsWriter, open_events, validate_events_file
from protoseg.sim.truth import PARTICLE_COLUMNS

PROCESSES = ["primary", "decay", "inelastic", "compton", "π→μν décay"]  # non-ASCII on purpose


def make_event(rng: np.random.Generator, event_id: int, n_hits: int, n_particles: int = 4, is_mc: bool = True) -> Event:
    hits = {
        "wire": rng.integers(0, 1440, n_hits).astype(np.uint16),
        "tick": rng.uniform(0, 6000, n_hits).astype(np.float32),
        "integral": rng.exponential(300.0, n_hits).astype(np.float32),
        "rms": rng.uniform(1, 10, n_hits).astype(np.float32),
        "peak": rng.uniform(5, 200, n_hits).astype(np.float32),
    }
    particles = None
    if is_mc:
        hits |= {
            "label": rng.integers(0, 3, n_hits).astype(np.uint8),
            "origin": rng.integers(0, 4, n_hits).astype(np.uint8),
            "track_id": rng.integers(-1, 50, n_hits).astype(np.int32),
            "pdg": rng.choice([211, -13, 13, 2212, 11, 22], n_hits).astype(np.int32),
        }
        particles = {}
        for name, dtype in PARTICLE_COLUMNS.items():
            if dtype.kind == "O":
                particles[name] = np.array([PROCESSES[k] for k in rng.integers(0, len(PROCESSES), n_particles)], dtype=object)
            elif dtype.kind in "iu":
                particles[name] = rng.integers(0, 100, n_particles).astype(dtype)
            else:
                particles[name] = rng.normal(size=n_particles).astype(dtype)
    return Event(
        event_id=event_id, hits=hits, run=5387, is_mc=is_mc, trigger=0xC,
        beam_pdg=211 if is_mc else 0, beam_momentum_gev=7.0 + 0.01 * event_id if is_mc else float("nan"),
        particles=particles,
    )


def assert_events_equal(a: Event, b: Event) -> None:
    assert (a.event_id, a.run, a.is_mc, a.trigger, a.beam_pdg) == (b.event_id, b.run, b.is_mc, b.trigger, b.beam_pdg)
    assert np.array_equal(a.beam_momentum_gev, b.beam_momentum_gev, equal_nan=True)
    assert set(a.hits) == set(b.hits)
    for name in a.hits:
        assert a.hits[name].dtype == b.hits[name].dtype, name
        assert np.array_equal(a.hits[name], b.hits[name]), name
    if a.particles is None:
        assert b.particles is None
        return
    assert set(a.particles) == set(b.particles)
    for name in a.particles:
        assert np.array_equal(a.particles[name], b.particles[name]), name


@pytest.fixture()
def mc_events():
    rng = np.random.default_rng(7)
    # includes an event without hits and one without particles rows
    sizes = [120, 0, 3000, 57, 1]
    out = [make_event(rng, 100 + k, n, n_particles=(0 if k == 3 else 5)) for k, n in enumerate(sizes)]
    return out


def write(path, events, is_mc=True, config=None):
    with EventsWriter(path, config=config or {"seed": 1, "gun": None, "momentum_gev": 7.0}, is_mc=is_mc, source="test") as w:
        for e in events:
            w.append(e)


@pytest.mark.parametrize("flush_hits", [1, 100, 1 << 21])
def test_round_trip_bit_for_bit(tmp_path, mc_events, monkeypatch, flush_hits):
    monkeypatch.setattr(ev_writer, "_FLUSH_HITS", flush_hits)  # block boundaries inside, between and after events
    path = tmp_path / "events.h5"
    write(path, mc_events)
    with open_events(path) as f:
        assert len(f) == len(mc_events)
        assert f.is_mc
        assert f.config == {"seed": 1, "gun": None, "momentum_gev": 7.0}
        assert f.attrs["format"] == "protoseg-events" and f.attrs["version"] == 1
        assert f.attrs["detector"] == "protodune-sp" and f.attrs["source"] == "test"
        for i, expected in enumerate(mc_events):
            assert_events_equal(expected, f.read(i))
        for chunk in (1, 2, 64):
            got = list(f.iter_events(chunk_events=chunk))
            assert len(got) == len(mc_events)
            for expected, event in zip(mc_events, got):
                assert_events_equal(expected, event)
        partial = list(f.iter_events(start=2, stop=4, chunk_events=1))
        assert [e.event_id for e in partial] == [102, 103]
        cols = f.read_hit_columns(2, ["wire", "integral"])
        assert np.array_equal(cols["wire"], mc_events[2].hits["wire"])
        assert f.read(-1).event_id == 104
        with pytest.raises(IndexError):
            f.read(5)
    validate_events_file(path)
    assert [p.name for p in tmp_path.iterdir()] == ["events.h5"]


def test_layout_matches_design(tmp_path, mc_events):
    path = tmp_path / "events.h5"
    write(path, mc_events)
    with h5py.File(path) as h5:
        assert list(h5["hits/offsets"][...]) == [0, 120, 120, 3120, 3177, 3178]
        assert h5["hits/wire"].dtype == np.uint16 and h5["hits/tick"].dtype == np.float32
        assert h5["hits/label"].dtype == np.uint8 and h5["hits/pdg"].dtype == np.int32
        assert h5["hits/wire"].compression == "lzf" and h5["hits/wire"].chunks is not None
        assert set(h5["events"]) == {"id", "run", "is_mc", "trigger", "beam_pdg", "beam_momentum"}
        assert list(h5["events/id"][...]) == [100, 101, 102, 103, 104]
        assert list(h5["particles/offsets"][...]) == [0, 5, 10, 15, 15, 20]
        assert h5["particles/process"].dtype.kind == "O"
        assert h5py.check_string_dtype(h5["particles/process"].dtype).encoding == "utf-8"
        assert json.loads(h5.attrs["config"])["momentum_gev"] == 7.0


def test_read_hit_block_reads_the_rows_of_consecutive_events(tmp_path, mc_events):
    path = tmp_path / "events.h5"
    write(path, mc_events)
    with open_events(path) as f:
        assert f.has_particles
        block = f.read_hit_block(("label", "wire"), 1, 4)  # events 101 (no hits), 102, 103
        for name in ("label", "wire"):
            assert np.array_equal(block[name], np.concatenate([e.hits[name] for e in mc_events[1:4]]))
        assert len(f.read_hit_block(("wire",), 2, 2)["wire"]) == 0
        with pytest.raises(IndexError):
            f.read_hit_block(("wire",), 3, 6)
        with pytest.raises(InputError, match="no hit column"):
            f.read_hit_block(("charge",), 0, 1)


def test_data_file_has_no_truth(tmp_path):
    rng = np.random.default_rng(3)
    data = [make_event(rng, k, 50, is_mc=False) for k in range(3)]
    path = tmp_path / "data.h5"
    write(path, data, is_mc=False)
    with open_events(path) as f:
        assert not f.is_mc
        event = f.read(1)
        assert set(event.hits) == set(ev.HIT_DTYPES)
        assert event.particles is None and not f.has_particles
        assert_events_equal(data[1], event)
    with h5py.File(path) as h5:
        assert "particles" not in h5 and "beam_pdg" not in h5["events"]
    validate_events_file(path)


def test_integer_columns_are_converted_exactly(tmp_path):
    rng = np.random.default_rng(1)
    event = make_event(rng, 1, 10)
    event.hits["wire"] = event.hits["wire"].astype(np.int64)
    path = tmp_path / "e.h5"
    write(path, [event])
    with open_events(path) as f:
        assert f.read(0).hits["wire"].dtype == np.uint16
        assert np.array_equal(f.read(0).hits["wire"], event.hits["wire"])


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("wire", 1440, "wire 1440 outside"),
        ("tick", 6000.0, "outside the readout window"),
        ("tick", -0.5, "outside the readout window"),
        ("integral", np.nan, "not a finite non-negative"),
        ("integral", -1.0, "not a finite non-negative"),
        ("rms", -1.0, "rms must be non-negative"),
        ("label", 3, "label 3"),
        ("origin", 4, "origin 4"),
    ],
)
def test_append_refuses_bad_hits_and_leaves_nothing(tmp_path, column, value, message):
    rng = np.random.default_rng(2)
    good, bad = make_event(rng, 1, 20), make_event(rng, 2, 20)
    bad.hits[column] = bad.hits[column].copy()
    bad.hits[column][7] = value
    path = tmp_path / "e.h5"
    with pytest.raises(InputError, match=message) as info:
        write(path, [good, bad])
    assert str(path) in str(info.value) and "event 2" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_append_refuses_structural_problems(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "e.h5"
    unequal = make_event(rng, 1, 20)
    unequal.hits["tick"] = unequal.hits["tick"][:-1]
    with pytest.raises(InputError, match="different lengths"):
        write(path, [unequal])
    missing = make_event(rng, 1, 20)
    del missing.hits["pdg"]
    with pytest.raises(InputError, match="missing: pdg"):
        write(path, [missing])
    float_wire = make_event(rng, 1, 20)
    float_wire.hits["wire"] = float_wire.hits["wire"].astype(np.float32)
    with pytest.raises(InputError, match="must hold integers"):
        write(path, [float_wire])
    with pytest.raises(InputError, match="is_mc"):
        write(path, [make_event(rng, 1, 5, is_mc=False)], is_mc=True)
    assert list(tmp_path.iterdir()) == []


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "e.h5"
    with pytest.raises(RuntimeError):
        with EventsWriter(path, config={}, is_mc=True) as w:
            w.append(make_event(np.random.default_rng(0), 1, 10))
            raise RuntimeError("simulation crashed")
    assert list(tmp_path.iterdir()) == []


def test_open_refuses_missing_foreign_and_truncated(tmp_path, mc_events):
    with pytest.raises(InputError, match="no such file"):
        open_events(tmp_path / "nope.h5")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file"):
        open_events(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.attrs["format"] = "protoseg-images"
        h5.attrs["version"] = 1
    with pytest.raises(InputError, match="expected a 'protoseg-events' file"):
        open_events(other)
    path = tmp_path / "events.h5"
    write(path, mc_events)
    newer = tmp_path / "v2.h5"
    newer.write_bytes(path.read_bytes())
    with h5py.File(newer, "a") as h5:
        h5.attrs["version"] = 2
    with pytest.raises(InputError, match="version 2 is not supported"):
        open_events(newer)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        validate_events_file(truncated)
    assert str(truncated) in str(info.value)


def test_validate_finds_bad_values_written_behind_our_back(tmp_path, mc_events):
    path = tmp_path / "events.h5"
    write(path, mc_events)
    with h5py.File(path, "a") as h5:
        h5["hits/tick"][130] = 7000.0
    with pytest.raises(InputError, match=r"event 102 \(position 2\): hit tick 7000 outside"):
        validate_events_file(path)
    with h5py.File(path, "a") as h5:
        h5["hits/tick"][130] = 10.0
        h5["hits/offsets"][3] = 100
    with pytest.raises(InputError, match="offsets decrease"):
        validate_events_file(path)


def corrupt_first_chunk(path, dataset="hits/integral"):
    """Overwrite bytes inside the first stored chunk of a dataset (a damaged disk block)."""
    with h5py.File(path) as h5:
        info = h5[dataset].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + 10 : info.byte_offset + 40] = bytes(range(30))
    path.write_bytes(bytes(raw))


def test_damaged_chunk_is_an_input_error_not_wrong_hits(tmp_path, mc_events):
    path = tmp_path / "events.h5"
    write(path, mc_events)
    corrupt_first_chunk(path)
    with pytest.raises(InputError, match="hit data cannot be read, the file is corrupt"):
        validate_events_file(path)
    with open_events(path) as f:  # the index still opens; reading the damaged column fails cleanly
        with pytest.raises(InputError, match=f"{path}: hit data cannot be read"):
            f.read(0)
        assert len(f.read_hit_columns(0, ["wire"])["wire"]) == 120
