"""predict --root: predictions written back into ROOT, aligned entry by entry and hit by hit with the input tree."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import uproot
from test_import_root import HITS_2018, write_2018, write_flat
from test_inference import tiny_events, tiny_weights

from protoseg.cli import main
from protoseg.events import open_events, validate_events_file
from protoseg.images import make_image_file, pixel_indices
from protoseg.root_friend import probability_branch_names

# Five entries, read in steps of two: entry 1 has no hits at all, entry 3 only induction-plane hits.
COUNTS = np.array([6, 0, 4, 2, 5])
N = int(COUNTS.sum())
PLANE = np.array([2, 0, 2, 1, 2, 2, 2, 2, 0, 2, 1, 0, 2, 2, 0, 2, 1], np.int32)
DUMP = {
    "tpc": np.array([1, 1, 5, 2, 9, 10, 2, 6, 1, 1, 3, 4, 0, 5, 8, 9, 2], np.int32),
    "plane": PLANE,
    "wire": np.array([0, 7, 100, 40, 479, 300, 20, 200, 5, 460, 1, 2, 250, 3, 9, 120, 6], np.int32),
    "peak_time": np.linspace(10.0, 5990.0, N).astype(np.float32),
    "integral": np.linspace(50.0, 900.0, N).astype(np.float32),
    "label": np.array([1, 1, 2, 0, 2, 1, 2, 2, 1, 1, 0, 2, 1, 2, 2, 2, 1], np.int32),
}
SIZE = 64


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """dump.root → import-root (2-entry steps) → predict --root with a tiny 64×64 model (files only read)."""
    tmp_path = tmp_path_factory.mktemp("predicted")
    dump = write_flat(tmp_path / "dump.root", columns=DUMP, counts=COUNTS, scalars={"event": np.arange(5, dtype=np.int32) + 70})
    events = tmp_path / "events.h5"
    assert main(["import-root", str(dump), "-o", str(events), "--step-size", "2", "--quiet"]) == 0
    tiny_weights(tmp_path / "run", size=SIZE)
    out, root = tmp_path / "predictions.h5", tmp_path / "predictions.root"
    assert main(["predict", str(tmp_path / "run"), str(events), "-o", str(out), "--root", str(root)]) == 0
    return dump, events, out, root, tmp_path / "run"


def test_import_root_records_where_every_kept_hit_came_from(predicted):
    _, events, _, _, _ = predicted
    validate_events_file(events)
    with open_events(events) as f:
        assert f.has_source_index and f.config["source_entries"] == 5
        assert list(f.source_entries) == [0, 1, 2, 3, 4] and list(f.source_hits) == list(COUNTS)
        got = [list(f.read(i).hits["source_index"]) for i in range(5)]
    starts = np.concatenate([[0], np.cumsum(COUNTS)])
    want = [list(np.flatnonzero(PLANE[starts[k]:starts[k + 1]] == 2)) for k in range(5)]
    assert got == want == [[0, 2, 4, 5], [], [0, 1, 3], [], [0, 1, 3]]


def test_root_tree_matches_the_predictions_file_entry_by_entry_and_hit_by_hit(predicted):
    dump, _, out, root, _ = predicted
    with uproot.open(dump) as f:
        source = f["hits"].arrays(library="np")
    with h5py.File(out) as h5:
        pred, prob, hit_pred, offsets = h5["pred"][...], h5["prob"][...], h5["hits/pred"][...], h5["hits/offsets"][...]
        event_id = h5["event_id"][...]
    classes = ["background", "beam", "not-beam"]
    prob_branches = probability_branch_names(classes)
    assert prob_branches == ["hit_prob_background", "hit_prob_beam", "hit_prob_not_beam"]
    with uproot.open(root) as f:
        assert f["protoseg_classes"] == '["background", "beam", "not-beam"]'
        tree = f["protoseg"]
        assert tree.keys() == ["protoseg_event_id", "protoseg_n_hits", "hit_class", *prob_branches]
        assert tree["hit_class"].typename == "int32_t[]" and tree["hit_prob_beam"].typename == "float[]"
        written = tree.arrays(library="np")
    assert tree.num_entries == 5 and list(written["protoseg_event_id"]) == list(event_id) == [70, 71, 72, 73, 74]
    assert list(written["protoseg_n_hits"]) == list(COUNTS)
    kept_so_far = 0
    for k in range(5):
        plane, tpc, wire = source["plane"][k], source["tpc"][k], source["wire"][k]
        kept = plane == 2
        # The pixel of each collection hit, computed here from the ROOT file's own values.
        rows, cols = pixel_indices(source["peak_time"][k][kept], wire[kept] + 480 * (tpc[kept] // 4), (SIZE, SIZE))
        hit_class = written["hit_class"][k]
        assert len(hit_class) == COUNTS[k]
        assert np.all(hit_class[~kept] == -1)
        assert np.array_equal(hit_class[kept], pred[k][rows, cols])
        assert np.array_equal(hit_class[kept], hit_pred[offsets[k]:offsets[k + 1]])  # /hits/pred, in the same order
        for c, name in enumerate(prob_branches):
            values = written[name][k]
            assert values.dtype == np.float32 and np.all(values[~kept] == -1)
            assert np.array_equal(values[kept], prob[k, c][rows, cols].astype(np.float32))  # bit for bit
        kept_so_far += int(kept.sum())
    assert kept_so_far == len(hit_pred) == 10


def test_2018_layout_gets_minus_one_for_its_induction_hits(tmp_path):
    dump = write_2018(tmp_path / "protodune.root")
    assert main(["import-root", str(dump), "-o", str(tmp_path / "events.h5"), "--quiet"]) == 0
    tiny_weights(tmp_path / "run", size=SIZE)
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "events.h5"), "-o", str(tmp_path / "p.h5"),
                 "--root", str(tmp_path / "p.root")]) == 0
    with uproot.open(tmp_path / "p.root") as f:
        hit_class = f["protoseg"]["hit_class"].array(library="np")
    with h5py.File(tmp_path / "p.h5") as h5:
        hit_pred = h5["hits/pred"][...]
    planes = np.split(HITS_2018["plane_index"], [5])
    assert [len(h) for h in hit_class] == [5, 2]
    assert [list(h[p != 2]) for h, p in zip(hit_class, planes)] == [[-1], [-1]]
    assert np.array_equal(np.concatenate([h[p == 2] for h, p in zip(hit_class, planes)]), hit_pred)


def test_probability_branch_names_are_valid_and_distinct():
    names = probability_branch_names(["background", "not-beam", "beam pi+-", "beam e/gamma shower", "not beam", "+"])
    assert names == ["hit_prob_background", "hit_prob_not_beam", "hit_prob_beam_pi", "hit_prob_beam_e_gamma_shower",
                     "hit_prob_not_beam_4", "hit_prob_class5"]


def _refused(capsys, tmp_path, argv, message):
    before = set(tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert set(tmp_path.iterdir()) == before  # neither output, no temporary file


def test_root_output_is_refused_for_events_not_imported_from_root(tmp_path, capsys):
    tiny_weights(tmp_path / "run")
    simulated = tiny_events(tmp_path / "events.h5", n=2)
    out = ["-o", str(tmp_path / "p.h5"), "--root", str(tmp_path / "p.root")]
    _refused(capsys, tmp_path, ["predict", str(tmp_path / "run"), str(simulated), *out],
             f"protoseg predict: error: {simulated}: does not record where its hits came from in a ROOT tree")
    images = tmp_path / "images.h5"
    make_image_file(simulated, images, size=(32, 32), min_beam_hits=0, min_notbeam_hits=0, split=[2, 0, 0])
    _refused(capsys, tmp_path, ["predict", str(tmp_path / "run"), str(images), *out],
             f"{images}: --root needs an events file made by import-root, this is a 'protoseg-images' file")


def test_files_imported_before_source_indices_still_read_but_cannot_go_back_to_root(tmp_path, capsys, predicted):
    _, events, _, _, run = predicted
    old = tmp_path / "old.h5"
    old.write_bytes(events.read_bytes())
    with h5py.File(old, "a") as h5:  # the layout of an import made before /hits/source_index existed
        del h5["hits/source_index"], h5["events/source_entry"], h5["events/source_hits"]
    validate_events_file(old)
    with open_events(old) as f:
        assert not f.has_source_index and f.source_entries is None and f.read(0).source_entry == -1
    assert main(["predict", str(run), str(old), "-o", str(tmp_path / "old-p.h5")]) == 0
    _refused(capsys, tmp_path, ["predict", str(run), str(old), "-o", str(tmp_path / "x.h5"),
                                "--root", str(tmp_path / "x.root")], "(no /hits/source_index)")


def test_events_out_of_entry_order_leave_no_output(tmp_path, capsys, predicted):
    _, events, _, _, run = predicted
    shuffled = tmp_path / "shuffled.h5"
    shuffled.write_bytes(events.read_bytes())
    with h5py.File(shuffled, "a") as h5:
        h5["events/source_entry"][...] = [0, 2, 1, 3, 4]
    _refused(capsys, tmp_path, ["predict", str(run), str(shuffled), "-o", str(tmp_path / "x.h5"),
                                "--root", str(tmp_path / "x.root")],
             "event 71 comes from entry 2 of the input tree where entry 1 was expected")


def test_hit_level_model_writes_the_same_friend_tree_from_each_hits_own_probabilities(predicted, tmp_path, capsys):
    from test_hits import tiny_hit_weights

    _, events, _, _, _ = predicted
    # the dump records no hit rms: a model that reads it refuses the file in one line, one without it runs
    with_rms = tiny_hit_weights(tmp_path / "with-rms")
    assert main(["predict", str(with_rms), str(events), "-o", str(tmp_path / "x.h5"), "--root", str(tmp_path / "x.root")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rms" in err and not (tmp_path / "x.h5").exists() and not (tmp_path / "x.root").exists()
    weights = tiny_hit_weights(tmp_path / "no-rms", features=("log_charge", "tick_in_row", "wire", "tick"))
    out, root = tmp_path / "p.h5", tmp_path / "p.root"
    assert main(["predict", str(weights), str(events), "-o", str(out), "--root", str(root)]) == 0
    with h5py.File(out) as h5:
        hit_pred, hit_prob, offsets = h5["hits/pred"][...], h5["hits/prob"][...].astype(np.float32), h5["hits/offsets"][...]
    with uproot.open(root) as f:
        written = f["protoseg"].arrays(library="np")
    with open_events(events) as f:
        for k in range(5):
            index = f.read(k).hits["source_index"]
            assert list(written["hit_class"][k][index]) == list(hit_pred[offsets[k]:offsets[k + 1]])
            np.testing.assert_array_equal(written["hit_prob_beam"][k][index], hit_prob[offsets[k]:offsets[k + 1], 1])
            others = np.setdiff1d(np.arange(COUNTS[k]), index)
            assert (written["hit_class"][k][others] == -1).all()
