"""DDP on two CPU processes (gloo) under torchrun: the ranks see disjoint images, the result loads."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from protoseg.inference import load_model

from test_training import TINY_MODEL, make_images

RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import protoseg.data as data
    from protoseg.config import apply_overrides, load_config, validate
    from protoseg.training import train

    seen_file = sys.argv[1] + f".rank{os.environ['RANK']}"
    original = data.ImageDataset.__getitem__

    def recording_getitem(self, key):
        if self.split == "train":  # record which training image this rank was handed
            with open(seen_file, "a") as handle:
                handle.write(json.dumps(int(key[0] if isinstance(key, tuple) else key)) + "\\n")
        return original(self, key)

    data.ImageDataset.__getitem__ = recording_getitem
    config = validate(apply_overrides(load_config(), json.loads(sys.argv[2])))
    train(config)
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun_two_ranks(rank_script: str, tmp_path: Path, overrides: list[str], *extra: str) -> subprocess.CompletedProcess:
    """``rank_script`` under torchrun on two CPU processes: argv = seen-file prefix, the overrides as JSON, ``extra``."""
    script = tmp_path / "rank.py"
    script.write_text(rank_script)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), str(script), str(tmp_path / "seen"), json.dumps(overrides), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)


def _seen_by_rank(tmp_path: Path) -> list[list[int]]:
    return [[json.loads(line) for line in Path(f"{tmp_path / 'seen'}.rank{rank}").read_text().split()] for rank in (0, 1)]


def test_ddp_two_cpu_processes(tmp_path):
    data = make_images(tmp_path / "images.h5", n_train=8, n_val=2, n_test=0)
    overrides = [f"data.path={data}", f"out={tmp_path / 'run'}", *TINY_MODEL, "data.batch_size=2", "trainer.max_epochs=1",
                 "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.progress_bar=false",
                 "optim.schedule=none"]
    result = _torchrun_two_ranks(RANK_SCRIPT, tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-3000:]

    seen = _seen_by_rank(tmp_path)
    # each rank got half of the 8 training images, and no image went to both
    assert len(seen[0]) == len(seen[1]) == 4
    assert set(seen[0]).isdisjoint(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(8))

    # the run folder holds one model, written once (rank 0), that loads and runs
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "model.safetensors").is_file()
    model = load_model(run)
    with torch.inference_mode():
        out = model(torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2  # 8 images / (2 ranks x batch 2)
    assert np.isfinite(state["callbacks"][next(k for k in state["callbacks"] if k.startswith("ModelCheckpoint"))]["best_model_score"].item())


HIT_RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import protoseg.hits.data as data
    from protoseg.config import apply_overrides, load_config, validate
    from protoseg.training import train

    seen_file = sys.argv[1] + f".rank{os.environ['RANK']}"
    original = data.HitEventsDataset.__getitem__

    def recording_getitem(self, key):
        if len(self.indices) == int(sys.argv[3]):  # the training events, not the validation ones
            position = key[0] if isinstance(key, tuple) else key
            with open(seen_file, "a") as handle:
                handle.write(json.dumps(int(self.indices[position])) + "\\n")
        return original(self, key)

    data.HitEventsDataset.__getitem__ = recording_getitem
    config = validate(apply_overrides(load_config(), json.loads(sys.argv[2])))
    train(config)
    """
)


def test_ddp_two_cpu_processes_hit_level(tmp_path):
    """The hit-level module under DDP: ranks get disjoint events, the run folder holds one hit model."""
    from test_inference import tiny_events

    events = tiny_events(tmp_path / "events.h5", n=9)  # the last one validates
    overrides = [f"data.path={events}", f"out={tmp_path / 'run'}", "model.name=sparse_unet", "model.channels=[4, 8]", "model.reps=1",
                 "data.validation_events=1", "data.batch_size=2", "trainer.max_epochs=1", "trainer.cpu_time_budget_s=0",
                 "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.progress_bar=false",
                 "optim.schedule=none"]
    result = _torchrun_two_ranks(HIT_RANK_SCRIPT, tmp_path, overrides, "8")
    assert result.returncode == 0, result.stderr[-3000:]

    seen = _seen_by_rank(tmp_path)
    assert len(seen[0]) == len(seen[1]) == 4
    assert set(seen[0]).isdisjoint(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(8))

    run = tmp_path / "run"
    model = load_model(run)
    assert model.card["input"]["kind"] == "hits" and model.card["trained_on"]["processes"] == 2
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2  # 8 events / (2 ranks x batch 2)
