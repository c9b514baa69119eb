"""Big samples in pieces: `simulate --first-event`, `images` over several events files, the Slurm array script."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_images import HAND_PARTICLES

from protoseg.cli import main
from protoseg.events import Event, EventsWriter, open_events
from protoseg.images import make_image_file, open_images

ROOT = Path(__file__).resolve().parents[1]
# Cheap events: a 1 GeV/c muon gun with a few cosmics (10 instead of 70 per m² s sr), no noise (gun mode).
CHEAP = ["--seed", "11", "--gun", "13", "--momentum", "1", "--with-cosmics",
         "--set", "sources.cosmic_intensity_per_m2_s_sr=10", "--quiet"]
IMAGES = ["--size", "64", "64", "--min-beam-hits", "0", "--min-notbeam-hits", "0", "--split", "0.5", "0.25", "0.25",
          "--seed", "3"]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """Events 0..3 of the cheap run, simulated in one go."""
    path = tmp_path_factory.mktemp("whole") / "events.h5"
    assert main(["simulate", "-o", str(path), "-n", "4", *CHEAP]) == 0
    return path


def _columns(path, events: slice):
    """Every per-hit and per-particle column of ``events`` (a slice of positions), and the event table."""
    out = {}
    with h5py.File(path, "r") as h5:
        for group in ("hits", "particles"):
            offsets = h5[f"{group}/offsets"][...]
            lo, hi = int(offsets[events.start]), int(offsets[events.stop])
            for name in h5[group]:
                if name != "offsets":
                    out[f"{group}/{name}"] = h5[f"{group}/{name}"][lo:hi]
            out[f"{group}/counts"] = np.diff(offsets)[events]
        for name in h5["events"]:
            out[f"events/{name}"] = h5[f"events/{name}"][events]
        config = json.loads(h5.attrs["config"])
    return out, config


def _same(a, b) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def test_a_piece_holds_exactly_the_events_of_the_whole_run(tmp_path, whole_run):
    piece = tmp_path / "piece.h5"
    assert main(["simulate", "-o", str(piece), "-n", "2", "--first-event", "2", *CHEAP]) == 0
    got, config = _columns(piece, slice(0, 2))
    want, whole_config = _columns(whole_run, slice(2, 4))
    assert list(got["events/id"]) == [2, 3]
    assert got.keys() == want.keys() and got["hits/counts"].sum() > 0
    for name in want:
        assert _same(got[name], want[name]), name
    # The recorded configuration differs only in the range of events.
    assert config["run"].pop("first_event") == 2 and whole_config["run"].pop("first_event") == 0
    assert config["run"].pop("n_events") == 2 and whole_config["run"].pop("n_events") == 4
    assert config == whole_config


def test_first_event_must_be_non_negative(tmp_path, capsys):
    assert main(["simulate", "-o", str(tmp_path / "x.h5"), "-n", "1", "--first-event", "-1", *CHEAP]) == 2
    assert "--first-event must be a non-negative integer" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_slurm_array_pieces_make_the_images_of_the_whole_run(tmp_path, whole_run):
    """docs/slurm/simulate-array.sbatch run as Slurm would (tasks 0 and 1 of 2 events, then the image step):
    the image file equals the one made from the whole run, bit for bit, and says where each image came from."""
    script = ROOT / "docs" / "slurm" / "simulate-array.sbatch"
    env = dict(os.environ, OUT=str(tmp_path / "sample"), N="2", SEED="11", SIM_ARGS=" ".join(CHEAP[2:]),
               IMAGES_ARGS=" ".join(IMAGES))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this protoseg
    for task in ("1", "0"):  # tasks run in any order
        done = subprocess.run(["bash", str(script)], env=dict(env, SLURM_ARRAY_TASK_ID=task), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    again = subprocess.run(["bash", str(script)], env=dict(env, SLURM_ARRAY_TASK_ID="0"), capture_output=True, text=True)
    assert again.returncode == 0 and "exists (complete): nothing to do" in again.stdout  # a resubmission skips it
    done = subprocess.run(["bash", str(script), "images"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pieces = sorted((tmp_path / "sample" / "pieces").iterdir())
    assert [p.name for p in pieces] == ["events-000000.h5", "events-000001.h5"]
    for k, piece in enumerate(pieces):
        got, _ = _columns(piece, slice(0, 2))
        want, _ = _columns(whole_run, slice(2 * k, 2 * k + 2))
        assert all(_same(got[name], want[name]) for name in want)
    make_image_file(whole_run, tmp_path / "whole-images.h5", size=(64, 64), min_beam_hits=0, min_notbeam_hits=0,
                    split=[0.5, 0.25, 0.25], seed=3)
    with open_images(tmp_path / "sample" / "images.h5") as merged, open_images(tmp_path / "whole-images.h5") as whole:
        assert len(merged) == 4
        for name in ("adc", "label", "event_id", "split"):
            assert np.array_equal(merged._h5[name][...], whole._h5[name][...]), name
        assert list(merged.source_file) == [0, 0, 1, 1] and list(merged.event_index) == [0, 1, 0, 1]
        assert merged.source_files == [str(p) for p in pieces] and whole.source_files == [str(whole_run)]
        assert list(whole.source_file) == [0, 0, 0, 0] and list(whole.event_index) == [0, 1, 2, 3]
        assert merged.attrs["n_source_files"] == 2 and merged.attrs["selection"]["n_events_read"] == 4
        configs = [json.loads(c) for c in merged._h5["source_configs"].asstr()[...]]
        assert [c["run"]["first_event"] for c in configs] == [0, 2]


def _events(path, config, ids=(0, 1), is_mc=True):
    with EventsWriter(path, config=config, is_mc=is_mc) as writer:
        for event_id in ids:
            hits = {"wire": np.array([10, 700], np.uint16), "tick": np.array([5.0, 3000.0], np.float32),
                    "integral": np.array([100.0, 50.0], np.float32), "rms": np.ones(2, np.float32),
                    "peak": np.ones(2, np.float32)}
            particles = None
            if is_mc:
                hits |= {"label": np.array([1, 2], np.uint8), "origin": np.array([1, 2], np.uint8),
                         "track_id": np.array([1, 2], np.int32), "pdg": np.array([211, 13], np.int32)}
                particles = {name: column[:0] for name, column in HAND_PARTICLES.items()}
            writer.append(Event(event_id=event_id, hits=hits, is_mc=is_mc, particles=particles))
    return path


SIM = {"sources": {"beam": True}, "drift": {"electron_lifetime_ms": 35.0},
       "run": {"seed": 1, "n_events": 2, "first_event": 0, "dead_channels": [3]}}


def _with(config, **changes):
    out = json.loads(json.dumps(config))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        out[section][key] = value
    return out


@pytest.mark.parametrize(
    "second, message",
    [
        (lambda p: _events(p, _with(SIM, drift__electron_lifetime_ms=3.0)),
         "was made with other settings than {first}: drift.electron_lifetime_ms (3.0 vs 35.0)"),
        (lambda p: _events(p, {"command": "import-root", "layout": "flat"}), "was made by import-root but {first} by simulate"),
        (lambda p: _events(p, SIM, is_mc=False), "is data (no truth) but {first} is MC (with truth)"),
        (lambda p: _events(p, _with(SIM, run__first_event=1), ids=(1, 2)),
         "holds event 1 of {first} again (same sample: same seed or the same imported dump)"),
    ],
)
def test_images_refuses_events_files_that_do_not_make_one_sample(tmp_path, capsys, second, message):
    first = _events(tmp_path / "a.h5", SIM)
    other = second(tmp_path / "b.h5")
    before = set(tmp_path.iterdir())
    assert main(["images", str(first), str(other), "-o", str(tmp_path / "images.h5"), *IMAGES]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"protoseg images: error: {other}: {message.format(first=first)}") and err.count("\n") == 1
    assert set(tmp_path.iterdir()) == before


def test_images_accepts_another_seed_and_refuses_a_file_given_twice(tmp_path, capsys):
    first = _events(tmp_path / "a.h5", SIM)
    other_seed = _events(tmp_path / "b.h5", _with(SIM, run__seed=2, run__dead_channels=[7]))
    out = tmp_path / "images.h5"
    assert main(["images", str(first), str(other_seed), "-o", str(out), *IMAGES]) == 0
    with open_images(out) as images:
        assert list(images.event_id) == [0, 1, 0, 1] and list(images.source_file) == [0, 0, 1, 1]
        assert images.source_files == [str(first), str(other_seed)]
    capsys.readouterr()
    assert main(["images", str(first), str(first), "-o", str(tmp_path / "x.h5"), *IMAGES]) == 2
    assert capsys.readouterr().err == f"protoseg images: error: {first}: events file given twice\n"
    with open_events(first) as events:  # the inputs are untouched
        assert len(events) == 2
