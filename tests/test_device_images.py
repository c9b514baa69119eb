"""benchmarks/device_images.py: an image file packed to its hit pixels and unpacked is the same file, its values
rounded to float16 after a division by 64."""
import importlib.util
from pathlib import Path

import h5py
import numpy as np

from protoseg.images import write_images

SPEC = importlib.util.spec_from_file_location("device_images", Path(__file__).parents[1] / "benchmarks" / "device_images.py")
device_images = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(device_images)


def _sparse_images(path: Path) -> Path:
    rng = np.random.default_rng(7)
    adc = np.zeros((5, 64, 64), np.float32)
    label = np.zeros((5, 64, 64), np.uint8)
    hit = rng.random((5, 64, 64)) < 0.06
    adc[hit] = rng.uniform(10.0, 3.0e5, hit.sum()).astype(np.float32)  # beyond float16's 65504 before the scale
    label[hit] = rng.integers(0, 3, hit.sum())
    label[0, 3, 4], adc[0, 3, 4] = 1, 0.0  # a hit whose integral is 0 keeps its label
    return write_images(path, adc, label, np.arange(5) + 40, [0, 0, 0, 1, 2], {"pooling": "max", "label_scheme": "beam3"})


def test_pack_then_unpack_gives_the_same_file_with_float16_values(tmp_path):
    source = _sparse_images(tmp_path / "images.h5")
    n, size = device_images.pack(source, tmp_path / "packed" / "images")
    assert n == 5 and size < source.stat().st_size
    assert device_images.unpack(tmp_path / "packed" / "images", tmp_path / "back.h5") == 5
    with h5py.File(source, "r") as a, h5py.File(tmp_path / "back.h5", "r") as b:
        assert set(a) == set(b)
        assert {k: str(v) for k, v in a.attrs.items()} == {k: str(v) for k, v in b.attrs.items()}
        np.testing.assert_array_equal(a["label"][:], b["label"][:])
        for name in set(a) - {"adc", "label"}:
            np.testing.assert_array_equal(a[name][()], b[name][()])
        adc, back = a["adc"][:], b["adc"][:]
        np.testing.assert_array_equal(back, (adc / 64.0).astype(np.float16).astype(np.float32) * 64.0)
        nonzero = adc != 0
        assert np.max(np.abs(back[nonzero] - adc[nonzero]) / adc[nonzero]) <= 2.0 ** -11  # float16's rounding
        assert back[0, 3, 4] == 0.0 and b["label"][0, 3, 4] == 1


def test_pack_cli_refuses_a_missing_file_with_exit_2(tmp_path, capsys):
    assert device_images.main(["pack", str(tmp_path / "missing.h5"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.h5" in err[0]


def test_pack_refuses_values_float16_cannot_hold_and_writes_nothing(tmp_path, capsys):
    adc = np.zeros((2, 64, 64), np.float32)
    adc[1, 5, 5] = 1.0e9  # / 64 is still far beyond float16's 65504
    label = (adc > 0).astype(np.uint8)
    source = write_images(tmp_path / "big.h5", adc, label, np.arange(2), [0, 2], {"pooling": "max", "label_scheme": "beam3"})
    assert device_images.main(["pack", str(source), str(tmp_path / "out" / "big")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image 1 has a hit value outside float16's range" in err[0]
    assert not any((tmp_path / "out").iterdir())  # neither half of the pair, no temporary file
