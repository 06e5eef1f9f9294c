"""Data-parallel training under Accelerate: two CPU processes take the same steps as one.

``accelerate launch --cpu --num_processes 2`` runs the chapter's GPT training (``train_gpt``)
unchanged; each process trains on half of every batch and the gradients are averaged, so the
losses match a single process on the whole batch up to float rounding.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from genai_lab.parallel import DataParallel, launched_world_size

SCRIPT = """
import json, sys
import torch
import genai_lab as gl
from genai_lab.gpt import GPTConfig, TinyGPT, TrainSettings, train_gpt

cfg = gl.setup("smoke", threads=1, verbose=False)
ids = (torch.arange(4000) * 7 + torch.arange(4000) // 5) % 65  # a learnable pattern
model = TinyGPT(GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32))
hist = train_gpt(model, ids, TrainSettings(steps=8, batch_size=8, warmup=2, lr=1e-2), progress=False,
                 generator=torch.Generator().manual_seed(2))
if int(__import__("os").environ.get("RANK", "0")) == 0:
    json.dump({"losses": hist.losses, "world": int(__import__("os").environ.get("WORLD_SIZE", "1"))},
              open(sys.argv[1], "w"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_accelerate_match_one(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", GENAI_LAB_THREADS="1", ACCELERATE_USE_CPU="true")
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.json")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "--main_process_port", str(_free_port()), str(script), str(tmp_path / "two.json")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert single["world"] == 1 and double["world"] == 2
    assert len(single["losses"]) == len(double["losses"]) == 8
    assert single["losses"][-1] < single["losses"][0]  # it trains
    for a, b in zip(single["losses"], double["losses"]):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (single["losses"], double["losses"])


def test_world_size_is_read_from_the_launcher(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_world_size() == 4
    for bad in ("two", "0"):
        monkeypatch.setenv("WORLD_SIZE", bad)
        with pytest.raises(ValueError, match="WORLD_SIZE"):
            launched_world_size()


def test_one_process_leaves_batches_and_gradients_alone():
    import torch

    p = torch.nn.Parameter(torch.ones(3))
    dp = DataParallel([p])
    batch = (torch.arange(6), torch.arange(6))
    assert dp.size == 1 and dp.shard(batch) is batch and dp.mean(2.5) == 2.5 and dp.any(False) is False
