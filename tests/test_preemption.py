"""Preemption: SIGTERM, SIGUSR1 and Ctrl-C stop a run after the step they arrive in, with a checkpoint at that step.

A real SIGTERM to `python train.py` and to one of two torchrun processes; signals sent from inside a step for the
exact-step cases; `--resume` afterwards gives the losses of an uninterrupted run; W&B records the run as preempted;
`--resume auto` starts a requeued job's first run. See docs/reliability.md, "Preemption".
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

import train
import training.loop
from checkpoints.store import list_checkpoints, read_checkpoint, read_training_state
from data import load_dataset, make_samples
from data.shapes import generate_shapes
from runtime.signals import Stopped, StopSignals, exit_status

EPOCH_STEPS = 1402  # a demo epoch: 22,418 samples of the 1,600 training images, 16 a step


def demo_args(output_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    return ["--demo", "--output-dir", str(output_dir), "--cache-dir", str(cache_dir), "--wandb", "disabled", *extra]


def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


def run_files(run_dir: Path) -> list[str]:
    """Every file of a run folder but its logs: checkpoints, and anything temporary or staged left behind."""
    return sorted(p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith("metrics"))


def wait_for_steps(run_dir: Path, steps: int, process: subprocess.Popen, timeout: float = 240) -> None:
    """Until the run has logged `steps` training steps (rank 0 appends metrics.jsonl after every step)."""
    deadline = time.monotonic() + timeout
    path = run_dir / "metrics.jsonl"
    while not (path.exists() and path.read_text().count('"train/loss"') >= steps):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {steps} steps within {timeout} s"
        time.sleep(0.02)


def assert_one_checkpoint_at_the_last_step(run_dir: Path) -> int:
    """The run folder holds exactly one checkpoint, mid-epoch, at the last step metrics.jsonl logged; its files agree
    on that step and on the data position. Returns the step."""
    step = max(losses(run_dir))
    stem = f"1_tiny_top2_step{step}"
    assert run_files(run_dir) == [f"{stem}.json", f"{stem}.safetensors", f"{stem}.state.pt"]
    weights, sidecar = read_checkpoint(run_dir / f"{stem}.safetensors")  # refuses files of two steps
    state = read_training_state(run_dir / f"{stem}.safetensors")
    assert sidecar["global_step"] == state["global_step"] == step and not sidecar["complete_epoch"]
    assert state["epoch"] == 1 and state["position"] == step < EPOCH_STEPS  # one micro-batch a step, mid-epoch
    return step


# ---------------------------------------------------------------------------------------------------------------------
# A real SIGTERM to train.py, then --resume


def test_sigterm_mid_epoch_checkpoints_the_last_step_and_resume_gives_identical_losses(tmp_path, session_cache):
    cache_dir = session_cache
    out = tmp_path / "models"
    run_dir = out / "runs" / "p"
    command = [sys.executable, str(REPO / "train.py"), *demo_args(out, cache_dir, "--epochs", "1", "--run-name", "p")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_steps(run_dir, 3, process)
        sent = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        seconds = time.perf_counter() - sent
    finally:
        process.kill()
    assert process.returncode == 143 == exit_status(signal.SIGTERM), stderr[-3000:]
    assert "Traceback" not in stderr
    step = assert_one_checkpoint_at_the_last_step(run_dir)
    assert f"SIGTERM: stopping after step {step}; writing a checkpoint" in " ".join(stderr.split())
    print(f"SIGTERM at step {step}: exited 143 {seconds:.2f} s after the signal")  # shown with pytest -s

    # --resume continues from that step with the losses of a run that was never stopped, exactly.
    end = str(step + 3)
    assert (
        train.main(demo_args(out, cache_dir, "--epochs", "1", "--run-name", "p", "--resume", "--max-steps", end)) == 0
    )
    assert train.main(demo_args(out, cache_dir, "--epochs", "1", "--run-name", "straight", "--max-steps", end)) == 0
    resumed, straight = losses(run_dir), losses(out / "runs" / "straight")
    assert sorted(resumed) == sorted(straight) == list(range(1, step + 4))
    assert resumed == straight  # bit for bit: the same weights, optimizer, schedule, RNG and data position
    # The stopped run's checkpoint was superseded by the newer one, and only that one is left.
    assert [p.name for p in list_checkpoints(run_dir)] == [f"1_tiny_top2_step{step + 3}.safetensors"]


# ---------------------------------------------------------------------------------------------------------------------
# Signals sent from inside a step: the checkpoint is at exactly that step, and each signal has its exit status


def signal_after_step(monkeypatch, signum: int, at_call: int, times: int = 1) -> None:
    """Send `signum` to this process `times` times right after the `at_call`-th optimizer step finishes."""
    calls = {"n": 0}
    real_step = training.loop.train_step

    def step_then_signal(*args, **kwargs):
        result = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at_call:
            for _ in range(times):
                os.kill(os.getpid(), signum)
        return result

    monkeypatch.setattr(training.loop, "train_step", step_then_signal)


@pytest.mark.parametrize(
    "signum, preempted",
    [(signal.SIGTERM, True), (signal.SIGUSR1, True), (signal.SIGINT, False)],
    ids=["SIGTERM", "SIGUSR1", "SIGINT"],
)
def test_each_signal_stops_after_its_step_with_its_status(tmp_path, session_cache, monkeypatch, signum, preempted):
    from training.tracking import Tracker

    marked = []
    real_stopped = Tracker.stopped

    def stopped(self, exit_code: int, preempted: bool = True) -> None:
        marked.append((exit_code, preempted))
        real_stopped(self, exit_code, preempted)

    monkeypatch.setattr(Tracker, "stopped", stopped)
    previous = signal.getsignal(signum)
    signal_after_step(monkeypatch, signum, at_call=3)
    code = train.main(demo_args(tmp_path, session_cache, "--epochs", "1", "--run-name", "s", "--save-every", "2"))
    assert code == 128 + signum
    run_dir = tmp_path / "runs" / "s"
    assert assert_one_checkpoint_at_the_last_step(run_dir) == 3  # step 2's save (--save-every 2) was superseded
    assert marked == [(128 + signum, preempted)]  # W&B: preempted for SIGTERM and SIGUSR1, not for Ctrl-C
    assert signal.getsignal(signum) == previous  # the handlers are put back


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path, session_cache, monkeypatch):
    signal_after_step(monkeypatch, signal.SIGINT, at_call=3, times=2)
    code = train.main(demo_args(tmp_path, session_cache, "--epochs", "1", "--run-name", "twice", "--save-every", "2"))
    assert code == 130
    assert [p.name for p in list_checkpoints(tmp_path / "runs" / "twice")] == ["1_tiny_top2_step2.safetensors"]


def test_stop_signals_record_only_and_agree(monkeypatch):
    with StopSignals() as stop:
        assert not stop.requested() and stop.status == 0
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # the first signal counts
        assert stop.requested() and stop.signum == signal.SIGUSR1 and stop.status == 138
        os.kill(os.getpid(), signal.SIGINT)  # not a second Ctrl-C: the first signal was SIGUSR1
        with pytest.raises(KeyboardInterrupt):
            with StopSignals() as inner:
                os.kill(os.getpid(), signal.SIGINT)
                assert inner.received == signal.SIGINT
                os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: at once
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    # A torchrun worker that stopped ignores the SIGTERM torchrun sends once another worker has exited.
    worker = StopSignals(ignore_after_stop=True).install()
    os.kill(os.getpid(), signal.SIGTERM)
    assert worker.requested()
    worker.restore()
    try:
        assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    assert Stopped(signal.SIGTERM).status == 143 and isinstance(Stopped(15), BaseException)
    assert not isinstance(Stopped(15), Exception)  # an `except Exception` on the way up does not swallow it


@pytest.mark.slow  # trains (a few steps on a small data folder)
def test_a_signal_at_the_epochs_last_step_closes_the_epoch_on_resume(tmp_path, monkeypatch):
    """Stopped after the epoch's last step but before its evaluation, the run resumes into that evaluation and the
    epoch's own checkpoint, then goes on (a small data folder: an epoch of a few steps)."""
    cache = tmp_path / "cache"
    folder = generate_shapes(cache / "small", n_images=24, seed=0)
    args = demo_args(tmp_path / "models", cache, "--data", str(folder), "--epochs", "2", "--run-name", "e")
    args += ["--eval-images", "3", "--gallery-size", "3", "--num-samples", "1"]
    splits, _ = load_dataset(str(folder), cache_dir=cache, split="random", seed=0)
    epoch_steps = math.ceil(len(make_samples(splits.train, ["caption", "qa"])) / 16)  # the demo's batch of 16
    run_dir = tmp_path / "models" / "runs" / "e"
    with monkeypatch.context() as patch:
        signal_after_step(patch, signal.SIGTERM, at_call=epoch_steps)
        assert train.main(args) == 143
    (stopped,) = list_checkpoints(run_dir)
    assert stopped.name == f"1_tiny_top2_step{epoch_steps}.safetensors"
    assert not read_checkpoint(stopped)[1]["complete_epoch"] and not (run_dir / "metrics.json").exists()

    assert train.main([*args, "--resume", "--max-steps", str(epoch_steps + 1)]) == 0
    names = [p.name for p in list_checkpoints(run_dir)]
    assert names == ["1_tiny_top2.safetensors", f"2_tiny_top2_step{epoch_steps + 1}.safetensors"]
    assert read_checkpoint(run_dir / "1_tiny_top2.safetensors")[1]["complete_epoch"]
    assert "epoch_1/val" in json.loads((run_dir / "metrics.json").read_text())
    assert sorted(losses(run_dir)) == list(range(1, epoch_steps + 2))


# ---------------------------------------------------------------------------------------------------------------------
# W&B: a preempted run is marked preempting, with the signal's exit code


def wandb_records(path: Path) -> list:
    """The records of an offline `.wandb` file: LevelDB's log format (32 KiB blocks of chunks with a 7-byte header:
    CRC-32, length, type), after W&B's 7-byte file header; each record a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2

    data, records, pos, pending = path.read_bytes(), [], 7, b""
    while pos + 7 <= len(data):
        if (left := 32768 - pos % 32768) < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_a_preempted_run_is_marked_preempting_in_wandb(tmp_path, monkeypatch):
    from training.tracking import Tracker

    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_CONFIG_DIR", "cfg"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / sub))
    tracker = Tracker(tmp_path / "run", {"lr": 1e-3}, mode="offline", run_name="preempted")
    tracker.log({"train/loss": 2.0}, step=1)
    tracker.stopped(143, preempted=True)
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    kinds = [r.WhichOneof("record_type") for r in wandb_records(run_file)]
    assert "preempting" in kinds and kinds[-1] == "exit"
    assert kinds.index("preempting") < kinds.index("exit")
    assert wandb_records(run_file)[-1].exit.exit_code == 143


# ---------------------------------------------------------------------------------------------------------------------
# --resume auto: the same command line for a job's first start and its requeues


def test_resume_auto_starts_a_run_then_continues_it(tmp_path, session_cache, capsys):
    cache_dir = session_cache
    args = demo_args(tmp_path, cache_dir, "--epochs", "1", "--run-name", "job", "--resume", "auto")
    assert train.main([*args, "--max-steps", "2"]) == 0
    assert "--resume auto: run job has no checkpoint yet; starting it" in " ".join(capsys.readouterr().err.split())
    assert train.main([*args, "--max-steps", "4"]) == 0
    assert "resumed job/1_tiny_top2_step2.safetensors at epoch 1, step 2" in " ".join(capsys.readouterr().err.split())
    assert sorted(losses(tmp_path / "runs" / "job")) == [1, 2, 3, 4]

    # Plain --resume still refuses a run with nothing to resume, and --resume auto a run of other model settings.
    assert train.main(demo_args(tmp_path, cache_dir, "--run-name", "nothing", "--resume")) == 2
    assert train.main([*args, "--num-visual-tokens", "4"]) == 2
    assert train.main(demo_args(tmp_path, cache_dir, "--resume", "auto")) == 2  # without --run-name
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert "no checkpoint in" in errors[0] and "--resume auto starts the run" in errors[0]
    assert "num_visual_tokens (4, not 9)" in errors[1]
    assert "--resume auto needs --run-name NAME" in errors[2]


# ---------------------------------------------------------------------------------------------------------------------
# torchrun: a signal to one process stops both after the same step; rank 0 writes


def test_torchrun_processes_stop_together_and_rank_zero_writes(tmp_path, session_cache):
    cache_dir = session_cache
    out = tmp_path / "models"
    run_dir = out / "runs" / "ddp"
    args = demo_args(out, cache_dir, "--epochs", "1", "--run-name", "ddp", "--batch-size", "8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    process = subprocess.Popen(
        [*launcher, str(REPO / "train.py"), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_steps(run_dir, 3, process)
        rank1 = worker_pid(process.pid, rank=1)
        os.kill(rank1, signal.SIGTERM)  # one worker only: rank 0 learns of it through the per-step all-reduce
        _, stderr = process.communicate(timeout=180)
    finally:
        process.kill()
    step = assert_one_checkpoint_at_the_last_step(run_dir)  # rank 0 wrote it, at the step rank 1 stopped after
    flat = " ".join(stderr.split())
    assert f"SIGTERM: stopping after step {step}; writing a checkpoint" in flat
    # No traceback from the workers' code (torchrun prints its own report, from the virtual environment's torch).
    assert not re.search(rf'File "{re.escape(str(REPO))}/(?!\.venv/)', stderr), stderr[-3000:]
    # Both workers exited with 143 on their own (torchrun reports each worker's exit code); none was killed.
    assert flat.count("exitcode : 143") == 2, stderr[-3000:]

    # The two-process run resumes in one process (the global batch is the same) and goes on from that step.
    assert train.main([*args, "--resume", "--max-steps", str(step + 2)]) == 0
    assert sorted(losses(run_dir)) == list(range(1, step + 3))


def worker_pid(launcher: int, rank: int, timeout: float = 60) -> int:
    """The pid of torchrun's worker with RANK=`rank` (a child of the launcher; Linux /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
        for pid in children:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no torchrun worker with RANK={rank}")
