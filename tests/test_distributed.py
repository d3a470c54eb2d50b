"""torchrun with 2 CPU processes (gloo): the same model as one process with the same global batch, and resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from safetensors.torch import load_file

import train
from checkpoints.store import find_checkpoint, list_checkpoints


def run_torchrun(nproc: int, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run(
        [*command, str(REPO / "train.py"), *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900
    )


def demo_args(out, cache_dir, *extra: str) -> list[str]:
    return ["--demo", "--output-dir", str(out), "--cache-dir", str(cache_dir), "--wandb", "disabled",
            "--batch-size", "8", "--save-every", "2", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, session_cache):
    cache_dir = session_cache
    root = tmp_path_factory.mktemp("ddp")
    result = run_torchrun(2, demo_args(root / "models", cache_dir, "--max-steps", "4", "--run-name", "ddp"), root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, cache_dir


def test_two_processes_train_the_same_weights_as_one(two_process_run, tmp_path):
    root, cache_dir = two_process_run
    assert train.main(demo_args(tmp_path, cache_dir, "--max-steps", "4", "--run-name", "single")) == 0
    ddp = load_file(find_checkpoint(root / "models", {"encoder": "tiny", "top_k": 2}))
    single = load_file(find_checkpoint(tmp_path, {"encoder": "tiny", "top_k": 2}))
    assert ddp.keys() == single.keys()
    for name in single:
        diff = (ddp[name] - single[name]).abs().max().item()
        assert diff <= 1e-5 * max(1.0, single[name].abs().max().item()), (name, diff)
    # The logged losses are the global ones: the same as one process's.
    losses = {}
    for run, directory in (("ddp", root / "models"), ("single", tmp_path)):
        lines = (directory / "runs" / run / "metrics.jsonl").read_text().splitlines()
        losses[run] = [json.loads(x)["train/loss"] for x in lines if "train/loss" in x]
    assert losses["ddp"] == pytest.approx(losses["single"], rel=1e-5)


def test_only_rank_zero_writes(two_process_run):
    root, _ = two_process_run
    run = root / "models" / "runs" / "ddp"
    files = sorted(p.name for p in run.iterdir() if p.is_file() and "tiny_top" in p.name)
    # Checkpoints at steps 2 and 4 (--save-every 2): step 4's supersedes step 2's; no temporary files left.
    assert files == ["1_tiny_top2_step4.json", "1_tiny_top2_step4.safetensors", "1_tiny_top2_step4.state.pt"]
    assert json.loads((run / "1_tiny_top2_step4.json").read_text())["global_step"] == 4
    assert [p.name for p in (root / "models" / "runs").iterdir()] == ["ddp"]
    assert len(list_checkpoints(run)) == 1 and not list(run.glob(".*.tmp"))


def test_a_two_process_run_resumes_in_one_process(two_process_run):
    root, cache_dir = two_process_run
    args = demo_args(root / "models", cache_dir, "--max-steps", "6", "--resume")  # the run with these settings
    assert train.main(args) == 0
    lines = (root / "models" / "runs" / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if "train/loss" in x] == [1, 2, 3, 4, 5, 6]
