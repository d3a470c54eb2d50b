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


def tiny_shapes(folder, cache_dir) -> tuple[str, int]:
    """A 30-image shapes set in `folder`, and a batch size that leaves the epoch one batch of a single sample."""
    from data import generate_shapes, load_dataset, make_samples

    generate_shapes(folder, n_images=30, seed=0)
    splits, _ = load_dataset(str(folder), cache_dir=cache_dir)  # the demo's split: random, seed 0
    n = len(make_samples(splits.train))
    return str(folder), next(b for b in range(8, n) if n % b == 1)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """Two processes train one epoch whose short batch holds one sample (so one process would get none), and process
    1's second training forward returns a NaN loss. Before the fix, either one aborted the run with gloo's
    "collective mismatch": the process with the bad loss skipped backward while the other entered DDP's all-reduce."""
    root = tmp_path_factory.mktemp("ddp-faults")
    data, batch_size = tiny_shapes(root / "shapes", root / "cache")
    args = ["--demo", "--data", data, "--output-dir", str(root / "models"), "--cache-dir", str(root / "cache"),
            "--wandb", "disabled", "--epochs", "1", "--batch-size", str(batch_size), "--run-name", "faults"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    script = [str(REPO / "tests" / "ddp_faults.py"), str(root), "1", "2", "--"]
    result = subprocess.run([*command, *script, *args], capture_output=True, text=True, env=env, cwd=root, timeout=900)
    return root, result


def test_a_nan_on_one_process_skips_the_step_on_both(faulty_run):
    root, result = faulty_run
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [[json.loads(x) for x in (root / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [s["skipped"] for s in steps[0]] == [s["skipped"] for s in steps[1]]
    assert [k for k, s in enumerate(steps[0]) if s["skipped"]] == [1]  # the second step, on both processes
    assert [s["weights"] for s in steps[0]] == [s["weights"] for s in steps[1]]  # identical after every step
    assert steps[0][0]["weights"] == steps[0][1]["weights"]  # the skipped step changed nothing
    lines = (root / "models" / "runs" / "faults" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(x)["step"] for x in lines if "train/loss" in x]
    assert logged == list(range(1, len(steps[0])))  # every step but the skipped one, numbered without a gap


def test_an_epoch_whose_short_batch_is_one_sample_finishes(faulty_run):
    root, result = faulty_run
    assert result.returncode == 0, result.stderr[-3000:]
    run = root / "models" / "runs" / "faults"
    assert (run / "1_tiny_top2.safetensors").is_file() and (run / "metrics.json").is_file()  # the epoch's end
    sidecar = json.loads((run / "1_tiny_top2.json").read_text())
    # Every batch of the epoch but the one-sample batch made a step (one of them skipped for its NaN).
    steps = len((root / "rank0.jsonl").read_text().splitlines())
    assert sidecar["global_step"] == steps - 1
