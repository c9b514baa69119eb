"""Versions: `protoseg --version`, the model_version of every shipped card, and the versions written into outputs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from protoseg.cli import main, version_text
from protoseg.version import __version__

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "protoseg" / "pretrained"
SHIPPED = sorted(p.stem for p in PRETRAINED.glob("*.safetensors"))
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def test_package_version_matches_pyproject():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == __version__


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_card_has_a_model_version_in_its_json_and_in_its_weights(name):
    from safetensors import safe_open

    from protoseg.modelcards import SAFETENSORS_CARD_KEY

    card = json.loads((PRETRAINED / f"{name}.json").read_text())
    assert SEMVER.match(card["model_version"]), card.get("model_version")
    with safe_open(str(PRETRAINED / f"{name}.safetensors"), framework="pt") as handle:
        embedded = json.loads(handle.metadata()[SAFETENSORS_CARD_KEY])
    # The card inside the weights is the same card (a .safetensors file travels without its .json).
    assert embedded == card


def test_version_prints_the_package_and_every_shipped_model_with_its_version(capsys):
    assert SHIPPED, "no shipped models found"
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out == version_text() + "\n"
    lines = out.splitlines()
    assert lines[0] == f"protoseg {__version__}"
    for name in SHIPPED:
        version = json.loads((PRETRAINED / f"{name}.json").read_text())["model_version"]
        assert any(line.split() == [name, version] for line in lines[1:]), (name, version, out)


def test_root_friend_tree_records_the_protoseg_and_model_versions(tmp_path):
    uproot = pytest.importorskip("uproot")
    from protoseg.root_friend import FriendTreeWriter

    path = tmp_path / "friend.root"
    writer = FriendTreeWriter(path, ["background", "beam", "not-beam"], 1, tmp_path / "events.h5", model_version="1.0.0")
    writer.append(7, 0, 3, np.array([0, 2]), np.array([1, 2]), np.full((3, 2), 0.5, dtype=np.float32))
    writer.close()
    with uproot.open(path) as f:
        assert f["protoseg_version"] == __version__
        assert f["protoseg_model_version"] == "1.0.0"
        assert list(f["protoseg"]["hit_class"].array(library="np")[0]) == [1, -1, 2]
