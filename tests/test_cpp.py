"""cpp/protoseg_infer: the TorchScript export loaded from C++ (torch::jit::load, as a LArSoft module
does) gives Python's probabilities; bad input is refused with one line and exit code 2.

The program is built with CMake against the libtorch inside the installed torch wheel, once per
torch installation and compiler, in a build folder under the system temporary directory (later runs
only rebuild what changed). Without cmake or a C++ compiler the tests are skipped.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from protoseg.data import normalise
from protoseg.export import export_model
from protoseg.inference import load_model

from test_inference import tiny_weights

CPP = Path(__file__).resolve().parents[1] / "cpp"

pytestmark = pytest.mark.slow  # the first run compiles against libtorch (about 35 s on 2 cores)


@contextlib.contextmanager
def _locked(folder: Path):
    # Two test sessions at once must not build in the same folder at the same time.
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def protoseg_infer() -> Path:
    cmake = shutil.which("cmake")
    compiler = next((found for name in (os.environ.get("CXX"), "c++", "g++", "clang++") if name and (found := shutil.which(name))), None)
    if cmake is None:
        pytest.skip("cmake not found: C++ test skipped")
    if compiler is None:
        pytest.skip("C++ compiler not found: C++ test skipped")
    prefix = torch.utils.cmake_prefix_path
    if not (Path(prefix) / "Torch" / "TorchConfig.cmake").exists():
        pytest.skip(f"libtorch CMake files not found under {prefix}: C++ test skipped")
    key = hashlib.sha256("\n".join([str(CPP), prefix, torch.__version__, compiler]).encode()).hexdigest()[:12]
    build = Path(tempfile.gettempdir()) / f"protoseg-cpp-build-{key}"
    with _locked(build):
        steps = [[cmake, "--build", str(build)]]
        if not (build / "CMakeCache.txt").exists():
            steps.insert(0, [cmake, "-S", str(CPP), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}",
                             f"-DCMAKE_CXX_COMPILER={compiler}", "-DCMAKE_BUILD_TYPE=Release"])
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if result.returncode != 0:  # a compiler that is there but fails is a bug, not a skip
                pytest.fail(f"{' '.join(step)} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return build / "protoseg_infer"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A tiny FC-DenseNet (down blocks [2, 2], bottleneck 2, growth 4, 8 first filters) exported to TorchScript."""
    folder = tmp_path_factory.mktemp("cpp-model")
    model = load_model(tiny_weights(folder / "run", size=64))
    export_model(model, "torchscript", folder / "model.pt")
    return model, folder / "model.pt"


def _event_like(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Raw ADC images: ~6% lit pixels, 10-3000 ADC*tick, as the images command writes them."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(shape) < 0.06, rng.uniform(10.0, 3000.0, shape), 0.0).astype("<f4")


def _run(program: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("shape, method", [((2, 64, 64), "log"), ((1, 1, 57, 83), "max"), ((64, 64), "none")])
def test_cpp_probabilities_match_python(protoseg_infer, exported, tmp_path, shape, method):
    model, model_path = exported
    raw = _event_like(shape, seed=len(shape))
    np.save(tmp_path / "image.npy", raw if method != "none" else normalise(raw, "log"))
    result = _run(protoseg_infer, model_path, tmp_path / "image.npy", tmp_path / "prob.npy", "--normalise", method)
    assert result.returncode == 0, result.stderr
    got = np.load(tmp_path / "prob.npy")

    # Python: the model card's normalisation, then the same TorchScript file and the eager network.
    x = torch.from_numpy(normalise(raw.reshape(-1, *raw.shape[-2:]), method if method != "none" else "log"))[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        scripted = torch.jit.load(str(model_path))
    with torch.inference_mode():
        from_torchscript = scripted(x).numpy()
        from_eager = model(x).softmax(1).numpy()
    assert got.dtype == np.float32 and got.shape == (x.shape[0], 3, *shape[-2:])
    assert np.abs(got - from_torchscript).max() <= 1e-5
    assert np.abs(got - from_eager).max() <= 1e-5
    assert np.abs(got.sum(axis=1) - 1.0).max() <= 1e-5


def test_cpp_refuses_bad_input_in_one_line(protoseg_infer, exported, tmp_path):
    _, model_path = exported
    good = tmp_path / "good.npy"
    np.save(good, _event_like((1, 32, 32), seed=0))
    np.save(tmp_path / "float64.npy", np.zeros((1, 32, 32)))
    np.save(tmp_path / "two_planes.npy", np.zeros((1, 2, 32, 32), "<f4"))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(np.zeros((2, 32, 32), "<f4")))
    (tmp_path / "truncated.npy").write_bytes(good.read_bytes()[:-6])
    (tmp_path / "text.npy").write_text("not an array\n")
    # A TorchScript file that is not a protoseg export: wrong input channels, and a wrong output shape.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Conv2d(3, 3, 1)).save(str(tmp_path / "three_planes.pt"))
        torch.jit.script(torch.nn.MaxPool2d(2)).save(str(tmp_path / "halves.pt"))
    cases = [
        ((model_path, tmp_path / "missing.npy"), "missing.npy: no such file"),
        ((model_path, tmp_path / "float64.npy"), "dtype '<f8', expected little-endian float32"),
        ((model_path, tmp_path / "two_planes.npy"), "expected [H, W], [N, H, W] or [N, 1, H, W]"),
        ((model_path, tmp_path / "fortran.npy"), "Fortran-ordered"),
        ((model_path, tmp_path / "truncated.npy"), "holds 4090 bytes of data, shape (1, 32, 32) needs 4096"),
        ((model_path, tmp_path / "text.npy"), "not a .npy file"),
        ((tmp_path / "missing.pt", good), "missing.pt: no such file"),
        ((good, good), "good.npy: not a TorchScript model"),
        ((tmp_path / "three_planes.pt", good), "three_planes.pt: forward failed on"),
        ((tmp_path / "halves.pt", good), "halves.pt: returned shape [1, 1, 16, 16], expected probabilities [N, C, H, W]"),
        ((model_path, good, "--normalise", "sqrt"), "'sqrt' is not none, max or log"),
    ]
    out = tmp_path / "out.npy"
    for (first, second, *options), message in cases:
        result = _run(protoseg_infer, first, second, out, *options)
        assert result.returncode == 2, (message, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert not out.exists() and not Path(str(out) + ".tmp").exists()
    assert _run(protoseg_infer, model_path, good).returncode == 2  # no output named


@pytest.fixture(scope="module")
def exported_hits(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A tiny sparse U-Net (hit-level) exported to TorchScript: hits [n, 4] in, probabilities [n, C] out."""
    from test_hits import tiny_hit_weights

    folder = tmp_path_factory.mktemp("cpp-hits")
    model = load_model(tiny_hit_weights(folder / "run"))
    export_model(model, "torchscript", folder / "hits.pt")
    return model, folder / "hits.pt"


def test_cpp_hit_probabilities_match_python(protoseg_infer, exported_hits, tmp_path):
    from protoseg.export import sample_hits
    from protoseg.hits.inference import HitPredictor

    model, model_path = exported_hits
    hits = sample_hits(2500, seed=5).numpy()
    np.save(tmp_path / "hits.npy", hits.astype("<f4"))
    result = _run(protoseg_infer, model_path, tmp_path / "hits.npy", tmp_path / "prob.npy", "--hits")
    assert result.returncode == 0, result.stderr
    got = np.load(tmp_path / "prob.npy")
    columns = {"wire": hits[:, 0].astype(np.uint16), "tick": hits[:, 1], "integral": hits[:, 2], "rms": hits[:, 3]}
    expected = HitPredictor(model, beam_threshold="argmax").hit_probabilities(columns)
    assert got.shape == (2500, 3) and np.abs(got - expected).max() <= 1e-5


def test_cpp_refuses_bad_hits_in_one_line(protoseg_infer, exported_hits, tmp_path):
    _, model_path = exported_hits
    good = np.array([[10, 100.5, 300, 3], [11, 101, 250, 3]], "<f4")
    cases = {
        "three_columns": (good[:, :3], "expected hits [n, 4]"),
        "nan": (np.where(np.arange(8).reshape(2, 4) == 5, np.nan, good).astype("<f4"), "NaN or infinite"),
        "wire": (good * np.array([2000, 1, 1, 1], "<f4"), "outside the 1440 collection wires"),
        "tick": (good + np.array([0, 6000, 0, 0], "<f4"), "outside the readout window"),
    }
    out = tmp_path / "out.npy"
    for name, (array, message) in cases.items():
        np.save(tmp_path / f"{name}.npy", array)
        result = _run(protoseg_infer, model_path, tmp_path / f"{name}.npy", out, "--hits")
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, (name, result.stderr)
        assert not out.exists()
    np.save(tmp_path / "good.npy", good)
    result = _run(protoseg_infer, model_path, tmp_path / "good.npy", out, "--hits", "--normalise", "log")
    assert result.returncode == 2 and "applies to images" in result.stderr
