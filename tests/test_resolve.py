"""The places every command agrees on: which checkpoint a command line names (`checkpoints/resolve.py`), the default
folders and `.env` fixed against the repository (`runtime/env.py`), and the step budget of `--max-steps`.

The checkpoints here are tiny files written by `save_checkpoint` (no model): what is tested is which file each form
names, and the one line each mistake gets. The commands' own use of the resolver is in tests/test_commands.py.

Read next: tests/test_commands.py (every command's mistakes, in one table).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from checkpoints.resolve import FORMS, checkpoint_file, named_checkpoint
from checkpoints.store import run_directory, save_checkpoint
from errors import UserError
from runtime import env


def save(run: Path, stem: str, step: int, settings: dict, complete: bool = True) -> Path:
    """A checkpoint of `run` with its sidecar and training state, as a run writes it (weights of one tensor)."""
    meta = {"global_step": step, "complete_epoch": complete, "train_config": settings}
    return save_checkpoint(run, stem, {"bridge.w": torch.full((2,), float(step))}, meta, {"global_step": step})


@pytest.fixture
def output(tmp_path) -> Path:
    """An output folder with two runs of the same settings (the newer, `b`, ends mid-epoch) and one of others."""
    out = tmp_path / "models"
    vit = {"encoder": "vit", "top_k": 3, "num_visual_tokens": 16}
    save(run_directory(out, "a"), "1_vit_top3", 10, vit)
    os.utime(run_directory(out, "a") / "1_vit_top3.json", (1, 1))  # an older run
    save(run_directory(out, "b"), "1_vit_top3", 10, vit)
    save(run_directory(out, "b"), "2_vit_top3_step15", 15, vit, complete=False)
    save(run_directory(out, "clip"), "1_clip_top0", 5, {"encoder": "clip", "top_k": 0, "num_visual_tokens": 16})
    return out


def refusal(spec, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        named_checkpoint(spec, *args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_file_and_its_sidecar_name_the_same_checkpoint(output):
    weights = run_directory(output, "b") / "1_vit_top3.safetensors"
    assert named_checkpoint(weights) == weights
    assert named_checkpoint(weights.with_suffix(".json")) == weights


def test_a_training_state_is_refused_naming_its_weights_and_run(output):
    state = run_directory(output, "b") / "1_vit_top3.state.pt"
    message = refusal(state)
    assert message == (
        f"--checkpoint {state} is a checkpoint's training state (optimizer, schedule, data position), not a "
        f"checkpoint to load; pass its weights, {state.parent / '1_vit_top3.safetensors'}, or its run folder, "
        f"{state.parent}"
    )


def test_a_run_folder_names_its_newest_complete_checkpoint(output):
    run = run_directory(output, "b")
    assert named_checkpoint(run) == run / "2_vit_top3_step15.safetensors"
    # --push-to-hub: the newest that closed an epoch (a mid-epoch save has no evaluation for the card)
    assert named_checkpoint(run, closed_epoch=True) == run / "1_vit_top3.safetensors"
    (run / "2_vit_top3_step15.json").unlink()  # an incomplete save (no sidecar): not a checkpoint
    assert named_checkpoint(run) == run / "1_vit_top3.safetensors"


def test_an_output_folder_and_latest_name_the_newest_matching_run(output):
    newest_vit = run_directory(output, "b") / "2_vit_top3_step15.safetensors"
    want = {"encoder": "vit", "top_k": 3}
    assert named_checkpoint(output, output, want) == newest_vit
    assert named_checkpoint("latest", output, want) == newest_vit
    assert named_checkpoint(output / "runs", output, want) == newest_vit  # its runs/ folder means the same
    clip = run_directory(output, "clip") / "1_clip_top0.safetensors"
    assert named_checkpoint("latest", output, {"encoder": "clip"}) == clip


def test_runs_that_differ_are_named_in_one_line_with_the_commands_own_flag(output):
    message = refusal("latest", output, {}, "--init-from")
    assert message.startswith(f"3 runs in {output / 'runs'} match any settings but differ in encoder, top_k:")
    assert "clip (encoder=clip, top_k=0)" in message and "b (encoder=vit, top_k=3)" in message
    assert "name one with --init-from " in message and "--checkpoint" not in message


def test_every_form_mistake_is_one_line_saying_what_is_accepted(tmp_path, output):
    missing = tmp_path / "nowhere.safetensors"
    assert refusal(missing) == f"--checkpoint {missing}: no such file or folder; accepted: {FORMS}"
    other = tmp_path / "notes.txt"
    other.write_text("x")
    assert refusal(other, flag="--init-from") == f"--init-from {other} is not a checkpoint; accepted: {FORMS}"
    lone = tmp_path / "1_vit_top3.safetensors"
    lone.write_bytes(b"")
    assert "no sidecar 1_vit_top3.json beside it" in refusal(lone)
    sidecar = tmp_path / "2_vit_top3.json"
    sidecar.write_text("{}")
    assert "no weights 2_vit_top3.safetensors beside this sidecar" in refusal(sidecar)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert refusal(empty).startswith(f"--checkpoint {empty}: no checkpoint in this folder")
    assert refusal("latest", tmp_path / "none").startswith(f"no run with a checkpoint in {tmp_path / 'none' / 'runs'}")
    assert refusal("hf:nobody") == "--checkpoint 'hf:nobody' is not a valid repo id; write it as hf:OWNER/NAME"
    assert named_checkpoint("hf:someone/captioner") == "hf:someone/captioner"  # fetched when it is read


def test_paths_in_errors_are_absolute_wherever_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert refusal("models/../x.safetensors") == f"--checkpoint {tmp_path / 'x.safetensors'}: no such file or " + (
        f"folder; accepted: {FORMS}"
    )
    assert refusal("latest", "models").startswith(f"no run with a checkpoint in {tmp_path / 'models' / 'runs'};")


def test_a_downloaded_hub_checkpoint_folder_is_a_run_folder(tmp_path):
    snapshot = tmp_path / "snapshot"
    save_checkpoint(snapshot, "checkpoint", {"bridge.w": torch.zeros(1)}, {"global_step": 1}, None)
    assert checkpoint_file(snapshot) == snapshot / "checkpoint.safetensors"


# ------------------------------------------------------------------------------------------ places fixed to the repo


def test_default_folders_and_dotenv_are_the_repositorys_not_the_current_directorys(tmp_path, monkeypatch):
    from checkpoints.store import DEFAULT_OUTPUT_DIR
    from training.config import TrainConfig

    repo = Path(__file__).resolve().parents[1]
    assert env.REPO == repo and env.DOTENV == repo / ".env" and env.DATA_ROOT == repo.parent / ".data"
    monkeypatch.chdir(tmp_path)
    config = TrainConfig()
    assert config.output_dir == DEFAULT_OUTPUT_DIR == str(repo.parent / ".data" / "models")
    assert config.cache_dir == str(repo.parent / ".data" / "cache")


def test_a_relative_folder_in_dotenv_is_relative_to_the_file(tmp_path, monkeypatch):
    from training.config import load_config

    (tmp_path / "project").mkdir()
    dotenv = tmp_path / "project" / ".env"
    dotenv.write_text("OUTPUT_DIR_MODELS=../.data/models\nTOP_K=1\n")
    monkeypatch.setattr(env, "DOTENV", dotenv)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the command runs away from the file
    cfg = load_config([], env={})  # the default .env: runtime.env.DOTENV
    assert (cfg.output_dir, cfg.model.top_k) == (str(tmp_path / ".data" / "models"), 1)


# ------------------------------------------------------------------------------------------ --max-steps: the budget


def test_max_steps_is_the_schedules_length_and_epochs_follow_it():
    from lr_schedule import lr_lambda
    from training.config import TrainConfig
    from training.run import plan_schedule

    steps_per_epoch = 100
    plain = plan_schedule(TrainConfig(epochs=3, warmup_steps=10), steps_per_epoch)  # the demo's path: unchanged
    assert (plain.total_steps, plain.epochs, plain.set_by) == (300, 3, "epochs")
    short = plan_schedule(TrainConfig(epochs=3, warmup_steps=10, max_steps=50), steps_per_epoch)
    assert (short.total_steps, short.epochs, short.set_by) == (50, 1, "max_steps")
    assert lr_lambda(short.warmup_steps, short.total_steps)(50) == pytest.approx(0.1)  # ends at the schedule's floor
    long = plan_schedule(TrainConfig(epochs=3, warmup_steps=10, max_steps=450), steps_per_epoch)
    assert (long.total_steps, long.epochs) == (450, math.ceil(450 / steps_per_epoch))  # Trainer: overrides epochs
    assert json.loads(json.dumps(short.to_dict())) == {
        "total_steps": 50, "warmup_steps": 10, "epochs": 1, "set_by": "max_steps"
    }  # fmt: skip
