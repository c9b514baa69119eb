"""import-root: ROOT files written with uproot in both layouts are read back to the exact values."""
from __future__ import annotations

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from protoseg.cli import main
from protoseg.errors import InputError
from protoseg.events import open_events, validate_events_file
from protoseg.importers import import_root, parse_branch_map

# Three events (entry 1 has no hits), written as per-hit jagged branches.
COUNTS = np.array([4, 0, 3])
FLAT = {
    "wire": np.array([0, 17, 1439, 700, 3, 3, 900], np.int32),
    "peak_time": np.array([0.0, 1.25, 5999.5, 3000.0, 10.0, 10.0, 4700.75], np.float32),
    "integral": np.array([120.5, 0.0, 3160.0, 45.25, 99.0, 101.0, 7.5], np.float32),
    "rms": np.array([2.0, 3.5, 1.0, 4.0, 2.5, 2.5, 6.0], np.float32),
    "label": np.array([1, 2, 0, 2, 1, 1, 2], np.int32),
    "track_id": np.array([1, 7, -1, 9, 1, 1, 12], np.int32),
    "pdg": np.array([211, 13, 0, -13, 211, 211, 11], np.int32),
}
EVENT_NUMBERS = np.array([1001, 1002, 1003], np.int32)


def write_flat(path, columns=FLAT, counts=COUNTS, tree="hits", scalars=None, dtypes=None):
    """A flat per-event tree written with mktree + extend (what a LArSoft analyzer's TTree looks like)."""
    scalars = {"event": EVENT_NUMBERS} if scalars is None else scalars
    types = {name: np.asarray(v).dtype for name, v in scalars.items()}
    types |= {name: "var * " + str((dtypes or {}).get(name, np.asarray(v).dtype)) for name, v in columns.items()}
    with uproot.recreate(path) as f:
        t = f.mktree(tree, types)
        t.extend(scalars | {name: ak.unflatten(np.asarray(v), counts) for name, v in columns.items()})
    return path


# 2018 layout: vector<HitsStruct> split into member branches, as ROOT names them (vHitsStruct.adc ...).
COUNTS_2018 = np.array([5, 2])
HITS_2018 = {
    "adc": np.array([250.0, 13.5, 600.0, 77.0, 5.0, 1.0, 2.0]),
    "tdc": np.array([4700, 100, 5999, 0, 321, 8, 9], np.uint32),
    "tpc_index": np.array([1, 5, 10, 2, 7, 4, 3], np.uint32),
    "plane_index": np.array([2, 2, 2, 0, 2, 1, 2], np.uint32),
    "wire_index": np.array([0, 479, 12, 300, 100, 40, 479], np.uint32),
    "origin": np.array([1, 2, 2, 1, 0, 1, 2], np.uint32),
}


def write_2018(path, hits=HITS_2018, counts=COUNTS_2018):
    members = ", ".join(f"{name}: {v.dtype}" for name, v in hits.items())
    with uproot.recreate(path) as f:
        t = f.mktree(
            "DataProcessing/tHitsTree",
            {"vHitsStruct": ak.types.from_datashape("var * {" + members + "}", highlevel=False)},
            field_name=lambda outer, inner: f"{outer}.{inner}",
            counter_name=lambda counted: f"{counted}_",
        )
        t.extend({"vHitsStruct": ak.zip({name: ak.unflatten(v, counts) for name, v in hits.items()})})
    return path


def test_flat_layout_exact_values(tmp_path):
    src = write_flat(tmp_path / "dump.root")
    out = tmp_path / "events.h5"
    assert main(["import-root", str(src), "-o", str(out), "--quiet"]) == 0
    validate_events_file(out)
    with open_events(out) as f:
        assert f.is_mc and len(f) == 3
        assert list(f.event_ids) == [1001, 1002, 1003]
        assert f.config["layout"] == "flat" and f.config["tree"] == "hits"
        events = list(f.iter_events())
    got = {name: np.concatenate([e.hits[name] for e in events]) for name in events[0].hits}
    assert [e.n_hits for e in events] == [4, 0, 3]
    assert np.array_equal(got["wire"], FLAT["wire"].astype(np.uint16))
    assert np.array_equal(got["tick"], FLAT["peak_time"])
    assert np.array_equal(got["integral"], FLAT["integral"])
    assert np.array_equal(got["rms"], FLAT["rms"])
    assert np.isnan(got["peak"]).all()  # not in the file: NaN means not recorded
    assert np.array_equal(got["label"], FLAT["label"].astype(np.uint8))
    # labels only: origin derived as 1 beam / 2 (cosmic-or-halo) / 0 none
    assert np.array_equal(got["origin"], FLAT["label"].astype(np.uint8))
    assert np.array_equal(got["track_id"], FLAT["track_id"]) and np.array_equal(got["pdg"], FLAT["pdg"])
    assert all(len(e.particles["track_id"]) == 0 for e in events)


def test_flat_layout_with_tpc_plane_keeps_collection_and_globalises_wire(tmp_path):
    columns = {
        "tpc": np.array([1, 5, 9, 2, 6, 10, 3], np.int32),
        "plane": np.array([2, 2, 2, 0, 1, 2, 2], np.int32),
        "wire": np.array([0, 10, 479, 5, 5, 3, 200], np.int32),
        "peak_time": np.arange(7, dtype=np.float32) * 100,
        "integral": np.arange(1, 8, dtype=np.float32),
        "origin": np.array([1, 3, 2, 1, 1, 0, 3], np.int32),
    }
    src = write_flat(tmp_path / "dump.root", columns=columns)
    out = tmp_path / "events.h5"
    import_root(src, out)
    with open_events(out) as f:
        e0, e1, e2 = (f.read(i) for i in range(3))
    assert list(e0.hits["wire"]) == [0, 480 + 10, 960 + 479]  # tpc // 4 picks the APA
    assert list(e0.hits["tick"]) == [0.0, 100.0, 200.0]
    assert list(e0.hits["origin"]) == [1, 3, 2] and list(e0.hits["label"]) == [1, 2, 2]  # halo is not-beam
    assert e1.n_hits == 0
    assert list(e2.hits["wire"]) == [960 + 3, 200] and list(e2.hits["label"]) == [0, 2]
    assert list(e2.hits["integral"]) == [6.0, 7.0]


def test_2018_split_struct_layout(tmp_path):
    src = write_2018(tmp_path / "protodune.root")
    with uproot.open(src) as f:  # the file really has ROOT's split member branches
        assert "vHitsStruct.adc" in f["DataProcessing/tHitsTree"].keys()
    out = tmp_path / "events.h5"
    summary = import_root(src, out)
    assert summary["layout"] == "2018" and summary["tree"] == "DataProcessing/tHitsTree"
    with open_events(out) as f:
        e0, e1 = f.read(0), f.read(1)
        assert f.config["truth_columns"] == ["label"]
    # event 0: hit 3 is on plane 0 and dropped; global wire = wire + 480 * (tpc // 4)
    assert list(e0.hits["wire"]) == [0, 480 + 479, 960 + 12, 480 + 100]
    assert list(e0.hits["tick"]) == [4700.0, 100.0, 5999.0, 321.0]
    assert list(e0.hits["integral"]) == [250.0, 13.5, 600.0, 5.0]
    assert list(e0.hits["label"]) == [1, 2, 2, 0]
    assert list(e0.hits["track_id"]) == [-1] * 4 and list(e0.hits["pdg"]) == [0] * 4  # unknown
    assert np.isnan(e0.hits["rms"]).all()
    assert list(e1.hits["wire"]) == [479] and list(e1.hits["label"]) == [2]


def test_streaming_in_small_steps_gives_the_same_file(tmp_path):
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 50, 40)
    n = int(counts.sum())
    columns = {
        "wire": rng.integers(0, 1440, n).astype(np.int32),
        "peak_time": rng.uniform(0, 6000, n).astype(np.float32),
        "integral": rng.exponential(200, n).astype(np.float32),
        "label": rng.integers(0, 3, n).astype(np.int32),
    }
    src = write_flat(tmp_path / "big.root", columns=columns, counts=counts, scalars={})
    import_root(src, tmp_path / "one.h5", step_size=1000)
    import_root(src, tmp_path / "many.h5", step_size=3)  # 3 entries per chunk
    with open_events(tmp_path / "one.h5") as a, open_events(tmp_path / "many.h5") as b:
        assert len(a) == len(b) == 40
        assert list(a.event_ids) == list(range(40))  # no event branch: entry numbers
        for ea, eb in zip(a.iter_events(), b.iter_events()):
            for name in ea.hits:
                assert np.array_equal(ea.hits[name], eb.hits[name], equal_nan=True)
        assert np.array_equal(a.hit_offsets[1:] - a.hit_offsets[:-1], counts)


def test_branch_map_and_no_truth(tmp_path):
    columns = {"ch": FLAT["wire"], "t": FLAT["peak_time"], "q": FLAT["integral"], "label": FLAT["label"]}
    src = write_flat(tmp_path / "dump.root", columns=columns, tree="ana/hits")
    out = tmp_path / "data.h5"
    assert main(["import-root", str(src), "-o", str(out), "--map", "wire=ch", "tick=t", "integral=q", "--no-truth", "--quiet"]) == 0
    with open_events(out) as f:
        assert not f.is_mc
        e = f.read(2)
        assert set(e.hits) == {"wire", "tick", "integral", "rms", "peak", "source_index"}
        assert list(e.hits["wire"]) == [3, 3, 900]
    assert parse_branch_map(["tick = hit_time"]) == {"tick": "hit_time"}
    with pytest.raises(InputError, match="step size must be a positive number"):
        import_root(src, tmp_path / "x.h5", step_size="lots")
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(InputError, match="unknown column 'charge'"):
        parse_branch_map(["charge=q"])


def _bad_flat(tmp_path, column, index, value):
    columns = {k: v.copy() for k, v in FLAT.items()}
    columns[column][index] = value
    return write_flat(tmp_path / "bad.root", columns=columns)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.root", "no such file"),
        (lambda p: (p / "notes.root").write_text("not root at all") and p / "notes.root", "not a ROOT file"),
        (lambda p: _bad_flat(p, "wire", 5, 1440), "entry 2 of tree 'hits': hit wire 1440 outside the 1440 collection wires"),
        (lambda p: _bad_flat(p, "peak_time", 0, -0.5), "entry 0 of tree 'hits': hit tick -0.5 outside the readout window"),
        (lambda p: _bad_flat(p, "peak_time", 6, 6000.0), "entry 2 of tree 'hits': hit tick 6000 outside"),
        (lambda p: _bad_flat(p, "integral", 1, np.nan), "entry 0 of tree 'hits': hit integral nan is not a finite non-negative"),
        (lambda p: _bad_flat(p, "integral", 4, -3.0), "entry 2 of tree 'hits': hit integral -3 is not a finite non-negative"),
        (lambda p: _bad_flat(p, "label", 4, 7), "hit label 7 is not 0"),
        (lambda p: write_flat(p / "nowire.root", columns={k: v for k, v in FLAT.items() if k != "wire"}),
         "required branches missing: wire"),
        (lambda p: write_flat(p / "float_wire.root", columns=FLAT | {"wire": FLAT["wire"].astype(np.float32)}),
         "holds floating-point numbers"),
        (lambda p: write_2018(p / "bad2018.root", hits=HITS_2018 | {"wire_index": HITS_2018["wire_index"] + 1}),
         "collection wire 480 outside the 480 wires of an APA face"),
    ],
)
def test_bad_input_is_refused_in_one_line(tmp_path, capsys, make, message):
    src = make(tmp_path)
    before = set(tmp_path.iterdir())
    out = tmp_path / "events.h5"
    assert main(["import-root", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"protoseg import-root: error: {src}: ")
    assert message in err
    assert set(tmp_path.iterdir()) == before  # nothing written, no temporary left


def test_truncated_root_and_wrong_tree(tmp_path, capsys):
    rng = np.random.default_rng(0)
    counts = np.full(200, 500)
    n = int(counts.sum())
    columns = {"wire": rng.integers(0, 1440, n).astype(np.int32), "peak_time": rng.uniform(0, 6000, n).astype(np.float32),
               "integral": rng.uniform(0, 1, n).astype(np.float32)}
    full = write_flat(tmp_path / "full.root", columns=columns, counts=counts, scalars={})
    data = full.read_bytes()
    for cut in (len(data) // 2, 2000):
        truncated = tmp_path / f"truncated{cut}.root"
        truncated.write_bytes(data[:cut])
        assert main(["import-root", str(truncated), "-o", str(tmp_path / "out.h5")]) == 2
        err = capsys.readouterr().err
        assert f"{truncated}: ROOT file is truncated" in err and err.count("\n") == 1
        assert not (tmp_path / "out.h5").exists()
    assert main(["import-root", str(full), "-o", str(tmp_path / "out.h5"), "--tree", "nope"]) == 2
    assert "no tree 'nope' (trees in the file: hits)" in capsys.readouterr().err
    with h5py.File(tmp_path / "x.h5", "w"):
        pass
    assert main(["import-root", str(tmp_path / "x.h5"), "-o", str(tmp_path / "out.h5")]) == 2
    assert "not a ROOT file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["full.root", f"truncated{len(data) // 2}.root", "truncated2000.root", "x.h5"]
    )


def test_root_dump_to_max_pooled_images_matches_an_independent_computation(tmp_path, capsys):
    """The acceptance check of issue #2: flat dump -> import-root -> images, against a plain loop."""
    rng = np.random.default_rng(2018)
    counts = np.array([900, 1400, 700])
    n = int(counts.sum())
    columns = {
        "wire": rng.integers(0, 1440, n).astype(np.int32),
        "peak_time": rng.uniform(0, 6000, n).astype(np.float32),
        "integral": rng.integers(1, 60, n).astype(np.float32),  # ties happen: the first hit keeps the pixel
        "label": rng.integers(0, 3, n).astype(np.int32),
    }
    src = write_flat(tmp_path / "dump.root", columns=columns, counts=counts)
    events_path, images_path = tmp_path / "events.h5", tmp_path / "images.h5"
    assert main(["import-root", str(src), "-o", str(events_path), "--quiet"]) == 0
    assert main(["images", str(events_path), "-o", str(images_path), "--size", "64", "48",
                 "--min-beam-hits", "0", "--min-notbeam-hits", "0", "--split", "1", "0", "0"]) == 0
    capsys.readouterr()
    with uproot.open(src) as f:
        arrays = f["hits"].arrays(["event", "wire", "peak_time", "integral", "label"], library="np")
    with h5py.File(images_path) as h5:
        adc, label, event_id = h5["adc"][...], h5["label"][...], h5["event_id"][...]
    assert list(event_id) == list(arrays["event"])
    for k in range(len(counts)):
        ref_adc = np.zeros((64, 48), np.float32)
        ref_label = np.zeros((64, 48), np.uint8)
        for w, t, q, lab in zip(arrays["wire"][k], arrays["peak_time"][k], arrays["integral"][k], arrays["label"][k]):
            r, c = int(float(t) * 64 // 6000), int(int(w) * 48 // 1440)
            if q > ref_adc[r, c]:
                ref_adc[r, c], ref_label[r, c] = q, lab
        assert np.array_equal(adc[k], ref_adc) and np.array_equal(label[k], ref_label)
