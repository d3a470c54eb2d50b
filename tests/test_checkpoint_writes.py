"""A checkpoint is one unit, and a write that fails loses nothing that was complete.

The failures are real: a forked child (tests/forked.py) lowers its file-size limit (RLIMIT_FSIZE, with SIGXFSZ
ignored so that the write fails with EFBIG instead of killing the process) so that one chosen file of a checkpoint
cannot be written, as on a full disk. See docs/reliability.md, "Full disks".
"""

from __future__ import annotations

import contextlib
import io
import resource
import shutil
import signal
from pathlib import Path

import pytest
import torch
from forked import Forked

import train
import training.run
from checkpoints.store import (
    SUFFIXES,
    checkpoint_stem,
    list_checkpoints,
    prune_checkpoints,
    read_checkpoint,
    read_training_state,
    save_checkpoint,
)
from errors import UserError
from training.space import Write, checkpoint_writes, space_warnings
from training.tracking import Tracker, write_metrics


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (hidden ones included), name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def limit_file_size(limit: int) -> None:
    """From now on, this process cannot write a file past `limit` bytes: the write fails with EFBIG."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.fixture
def demo_run(tmp_path, trained_demo) -> Path:
    """A copy of the session demo's run folder: its complete epoch checkpoint `1_tiny_top2` and its logs."""
    source = trained_demo[2].parent
    run_dir = tmp_path / "models" / "runs" / source.name
    shutil.copytree(source, run_dir)
    return run_dir


def file_sizes(run_dir: Path) -> dict[str, int]:
    return {suffix: (run_dir / f"1_tiny_top2{suffix}").stat().st_size for suffix in SUFFIXES}


# The file that fails, and a file-size limit that makes it fail: the checkpoint's files are staged smallest first
# (sidecar ~3 kB, weights ~1.3 MB, training state ~2.7 MB), so a limit between two sizes fails the larger one first.
FAILURES = {
    ".json": lambda sizes: sizes[".json"] // 2,
    ".safetensors": lambda sizes: (sizes[".json"] + sizes[".safetensors"]) // 2,
    ".state.pt": lambda sizes: (sizes[".safetensors"] + sizes[".state.pt"]) // 2,
}


@pytest.mark.parametrize("stem", ["1_tiny_top2_step999", "1_tiny_top2"], ids=["mid-epoch name", "same name"])
@pytest.mark.parametrize("failing", list(FAILURES))
def test_a_checkpoint_write_that_fails_changes_nothing(demo_run, stem, failing):
    """At each of a checkpoint's files, for a new mid-epoch checkpoint beside the epoch's and for one that replaces a
    checkpoint of the same name: one line naming the file, the previous checkpoint unchanged bit for bit, and no
    staged, temporary, orphaned or mixed file."""
    sizes = file_sizes(demo_run)
    assert sizes[".json"] < sizes[".safetensors"] < sizes[".state.pt"]
    before = snapshot(demo_run)
    weights, sidecar = read_checkpoint(demo_run / "1_tiny_top2.safetensors")
    state = read_training_state(demo_run / "1_tiny_top2.safetensors")
    newer = {**sidecar, "global_step": sidecar["global_step"] + 1, "complete_epoch": stem == "1_tiny_top2"}
    moved = {name: tensor + 1 for name, tensor in weights.items()}  # other bytes than the checkpoint on disk

    def save() -> Path:
        limit_file_size(FAILURES[failing](sizes))
        return save_checkpoint(demo_run, stem, moved, newer, {**state, "global_step": newer["global_step"]})

    outcome, message = Forked(save).result()
    assert outcome == "user_error", message
    assert message.startswith(f"cannot write {demo_run / (stem + failing)}: file too large (EFBIG)")
    assert "\n" not in message and "ulimit -f" in message
    assert snapshot(demo_run) == before  # bit for bit, and nothing added
    assert [p.name for p in list_checkpoints(demo_run)] == ["1_tiny_top2.safetensors"]

    # With room, the same save completes, and reads back as one checkpoint of the new step.
    path = save_checkpoint(demo_run, stem, moved, newer, {**state, "global_step": newer["global_step"]})
    loaded, meta = read_checkpoint(path)
    assert meta["global_step"] == read_training_state(path)["global_step"] == newer["global_step"]
    assert all(torch.equal(loaded[name], moved[name]) for name in moved)
    assert not [p for p in demo_run.iterdir() if p.name.startswith(".")]


def test_a_failed_mid_epoch_save_ends_the_run_with_one_line(demo_run, trained_demo):
    """train.py resumed with --save-every 2: the save at the second step succeeds, the one at the fourth cannot write
    its weights. The run ends with exit status 2 and one line; the epoch's checkpoint and the step-2 save are as they
    were, bit for bit, and nothing of the failed save is left."""
    output_dir, cache_dir = demo_run.parents[1], trained_demo[1]
    start = read_checkpoint(demo_run / "1_tiny_top2.safetensors")[1]["global_step"]
    sizes = file_sizes(demo_run)
    args = ["--demo", "--output-dir", str(output_dir), "--cache-dir", str(cache_dir), "--wandb", "disabled"]
    args += ["--run-name", demo_run.name, "--resume", "--epochs", "2", "--save-every", "2", "--max-steps", "9999"]
    saves = {"n": 0}
    real_save = training.run.save_checkpoint
    before: dict[str, bytes] = {}

    def second_save_fails(directory, stem, *rest):
        saves["n"] += 1
        if saves["n"] == 2:
            before.update(snapshot(directory))
            limit_file_size(FAILURES[".safetensors"](sizes))
        return real_save(directory, stem, *rest)

    def run() -> tuple[int, str, dict[str, bytes], dict[str, bytes]]:
        training.run.save_checkpoint = second_save_fails  # in the child only
        printed = io.StringIO()
        with contextlib.redirect_stderr(printed):
            code = train.main(args)
        return code, printed.getvalue(), before, snapshot(demo_run)

    outcome, (code, printed, before, after) = Forked(run).result(timeout=300)
    assert outcome == "ok"
    errors = [line for line in printed.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in printed, printed[-3000:]
    failed = f"2_tiny_top2_step{start + 4}"
    assert errors[0].startswith(f"error: cannot write {demo_run / failed}.safetensors: file too large (EFBIG)")
    # The epoch's checkpoint and the step-2 save, bit for bit; no file of the failed save, staged or not.
    kept = {name for name in before if name.startswith(("1_tiny_top2.", f"2_tiny_top2_step{start + 2}."))}
    assert len(kept) == 6 and all(after[name] == before[name] for name in kept)
    assert not [name for name in after if failed in name or name.startswith(".")]
    assert after.keys() - {"metrics.jsonl"} == before.keys() - {"metrics.jsonl"}


def test_metrics_that_cannot_be_written_are_one_line_and_leave_the_file(tmp_path):
    run_dir = tmp_path / "run"
    write_metrics(run_dir, {"epoch_1/val": {"cider_d": 0.5}})
    tracker = Tracker(run_dir, {}, mode="disabled")
    tracker.log({"train/loss": 1.0}, step=1)
    before = snapshot(run_dir)
    big = {f"epoch_{i}/val": {"cider_d": 0.5, "text": "x" * 100} for i in range(200)}

    def write_json() -> None:
        limit_file_size(4096)
        write_metrics(run_dir, big, merge=True)

    outcome, message = Forked(write_json).result()
    assert outcome == "user_error" and message.startswith(f"cannot write {run_dir / 'metrics.json'}: file too large")
    assert snapshot(run_dir) == before

    def append_line() -> None:
        limit_file_size(len(before["metrics.jsonl"]) + 10)
        tracker.log({"train/loss": 2.0, "text": "y" * 100}, step=2)

    outcome, message = Forked(append_line).result()
    assert outcome == "user_error" and message.startswith(f"cannot write {run_dir / 'metrics.jsonl'}: file too large")
    assert snapshot(run_dir) == before  # no half line: the partial append was cut off again


def test_files_of_two_saves_are_never_one_checkpoint(tmp_path):
    """A checkpoint whose weights (or training state) come from another save than its sidecar is refused in one line
    and left out of the run's checkpoints."""
    for step in (1, 2):
        meta = {"global_step": step, "train_config": {}}
        save_checkpoint(
            tmp_path / str(step), "1_x_top0", {"w": torch.full((2,), float(step))}, meta, {"global_step": step}
        )
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for suffix in SUFFIXES:
        shutil.copyfile(tmp_path / "1" / f"1_x_top0{suffix}", mixed / f"1_x_top0{suffix}")
    shutil.copyfile(tmp_path / "2" / "1_x_top0.safetensors", mixed / "1_x_top0.safetensors")
    with pytest.raises(UserError, match=r"is mixed: its weights file is of step 2 and its sidecar of step 1"):
        read_checkpoint(mixed / "1_x_top0.safetensors")
    assert list_checkpoints(mixed) == []
    shutil.copyfile(tmp_path / "1" / "1_x_top0.safetensors", mixed / "1_x_top0.safetensors")
    shutil.copyfile(tmp_path / "2" / "1_x_top0.state.pt", mixed / "1_x_top0.state.pt")
    assert read_checkpoint(mixed / "1_x_top0.safetensors")[1]["global_step"] == 1
    with pytest.raises(UserError, match=r"is mixed: its training state file is of step 2 and its sidecar of step 1"):
        read_training_state(mixed / "1_x_top0.safetensors")


def test_mid_epoch_saves_have_their_own_names_and_superseded_ones_go(tmp_path):
    def save(epoch: int, step: int, complete: bool) -> None:
        meta = {"global_step": step, "complete_epoch": complete}
        stem = checkpoint_stem(epoch, "tiny", 2, step=None if complete else step)
        save_checkpoint(tmp_path, stem, {"w": torch.zeros(1)}, meta, None)
        prune_checkpoints(tmp_path, keep=2)

    save(1, 5, complete=False)
    save(1, 10, complete=True)  # closes epoch 1: the step-5 save is superseded
    assert [p.name for p in list_checkpoints(tmp_path)] == ["1_tiny_top2.safetensors"]
    save(2, 15, complete=False)
    save(2, 18, complete=False)  # never the epoch's name; step 15 superseded, epoch 1 kept (--keep-checkpoints 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["1_tiny_top2.safetensors", "2_tiny_top2_step18.safetensors"]
    save(2, 20, complete=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["1_tiny_top2.safetensors", "2_tiny_top2.safetensors"]
    # A save killed between its files leaves staged files; the next save removes them.
    (tmp_path / ".3_tiny_top2_step21.safetensors.staged.tmp").write_bytes(b"half")
    save(3, 22, complete=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{stem}{suffix}" for stem in ("2_tiny_top2", "3_tiny_top2_step22") for suffix in (".json", ".safetensors")
    )


def test_low_disk_space_is_one_warning_line(tmp_path, monkeypatch, session_cache, capsys):
    output, cache = tmp_path / "models", tmp_path / "cache"
    one = checkpoint_writes(output, trainable=1_000_000, keep=2)
    assert one.size == 9_000_000  # (2 + 1) checkpoints, each the weights and AdamW's two moments: 3 MB
    assert checkpoint_writes(output, 1_000_000, keep=2, existing=6_000_000).size == 3_000_000  # a resumed run's
    writes = [one, Write(cache, 5_000_000, "tiny hidden features of 2,000 images")]
    free = type("Usage", (), {"free": 10_000_000, "total": 0, "used": 0})
    monkeypatch.setattr("training.space.shutil.disk_usage", lambda path: free)
    (line,) = space_warnings(writes)  # one file system: the output and cache needs add up to 14 MB > 10 MB
    assert line.startswith(f"low disk space: 10.0 MB free for {output} and {cache}, and this run will write about 14.0")
    assert "checkpoints: 3 x 3.0 MB with --keep-checkpoints 2: 9.0 MB" in line
    assert space_warnings(writes[:1]) == []  # 9 MB fit

    # A run says it in one line before the features are built (the session's cache holds them: only checkpoints).
    free.free = 1000
    args = ["--demo", "--output-dir", str(output), "--cache-dir", str(session_cache), "--wandb", "disabled"]
    assert train.main([*args, "--eval-images", "40", "--max-steps", "1", "--run-name", "short"]) == 0
    printed = " ".join(capsys.readouterr().err.split())
    assert "low disk space: 1.0 kB free for" in printed and "checkpoints: 3 x 4.0 MB" in printed
    assert "features" not in printed.split("low disk space")[1].split("free some space")[0]  # already cached
