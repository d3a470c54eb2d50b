"""Tests for training/tracking.py: W&B offline/disabled/auto modes and the local metrics.jsonl log.

Only one real (offline) W&B run is started -- wandb spawns a service process, which takes a second or
two; the other tests use "disabled" mode or a stand-in for `wandb.init`.
"""

import json
import logging

import pytest
import torch
from PIL import Image

from errors import UserError
from training.tracking import Tracker, resolve_mode


@pytest.fixture(autouse=True)
def isolated_wandb_env(tmp_path, monkeypatch):
    """No real credentials or user settings leak in, and wandb writes nothing outside tmp_path."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # wandb and we read ~/.netrc otherwise
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_CONFIG_DIR", "cfg"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / sub))


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_auto_mode_without_api_key_runs_offline_and_writes_everything(tmp_path):
    run_dir = tmp_path / "run"
    image_file = tmp_path / "dog.png"
    Image.new("RGB", (8, 8), "red").save(image_file)
    with Image.open(image_file) as opened, Tracker(run_dir, {"lr": 1e-3}, mode="auto", run_name="t") as tracker:
        assert tracker.mode == "offline"  # no WANDB_API_KEY, no netrc entry
        tracker.log({"train/loss": 2.5}, step=1)
        tracker.log({"train/loss": torch.tensor(1.5), "val/bleu4": 0.25}, step=2)
        in_memory = Image.new("RGB", (8, 8), "blue")  # no file behind it
        tracker.log_table("samples", ["image", "caption"], [[opened, "a dog"], [in_memory, "a cat"]], step=2)
        tracker.log({"train/between_logs": 0.5}, step=3, to_wandb=False)  # a step that --log-every skips
        tracker.summary({"best/cider_d": 0.7})

    # The local log: one line per call, tensors turned into numbers, images into their path or null.
    assert _read_jsonl(run_dir / "metrics.jsonl") == [
        {"step": 1, "train/loss": 2.5},
        {"step": 2, "train/loss": 1.5, "val/bleu4": 0.25},
        {
            "step": 2,
            "table": "samples",
            "columns": ["image", "caption"],
            "rows": [[str(image_file), "a dog"], [None, "a cat"]],
        },
        {"step": 3, "train/between_logs": 0.5},
    ]
    assert json.loads((run_dir / "summary.json").read_text()) == {"best/cider_d": 0.7}

    # The offline W&B run that `wandb sync` uploads: its .wandb file holds the logged history.
    run_files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    history = run_files[0].read_bytes()
    for key in (b"train/loss", b"val/bleu4", b"samples", b"best/cider_d"):
        assert key in history
    assert b"train/between_logs" not in history  # to_wandb=False: metrics.jsonl only


def test_disabled_mode_writes_only_the_jsonl(tmp_path):
    run_dir = tmp_path / "run"
    with Tracker(run_dir, {"lr": 1e-3}, mode="disabled") as tracker:
        tracker.log({"train/loss": 1.0}, step=0)
        tracker.log_table("samples", ["caption"], [["a dog"]], step=0)
        tracker.summary({"best": 1})
        tracker.summary({"last": 2})  # merged with the previous summary
    assert not (run_dir / "wandb").exists()
    assert _read_jsonl(run_dir / "metrics.jsonl")[0] == {"step": 0, "train/loss": 1.0}
    assert json.loads((run_dir / "summary.json").read_text()) == {"best": 1, "last": 2}


def test_log_rejects_malformed_input(tmp_path):
    with Tracker(tmp_path / "run", {}, mode="disabled") as tracker:
        with pytest.raises(ValueError, match="reserved"):
            tracker.log({"step": 3}, step=3)
        with pytest.raises(ValueError, match="2 cells for 1 columns"):
            tracker.log_table("t", ["caption"], [["a", "b"]], step=0)


def test_resolve_mode(tmp_path, monkeypatch):
    assert resolve_mode("auto") == "offline"
    assert resolve_mode("disabled") == "disabled"
    with pytest.raises(UserError, match="expected one of auto, online, offline, disabled"):
        resolve_mode("cloud")
    # A netrc entry for the W&B host (what `wandb login` writes) counts as a configured key.
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password not-a-real-key\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the standard variable wins in auto mode
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"  # an explicit mode wins over it


class _FakeRun:
    def __init__(self):
        self.logged, self.summary, self.exit_code = [], {}, None

    def log(self, metrics, step):
        self.logged.append((step, metrics))

    def finish(self, exit_code=0):
        self.exit_code = exit_code


def test_online_failure_falls_back_to_offline_without_leaking_the_key(tmp_path, monkeypatch, caplog):
    import wandb

    secret = "secret-key-0123456789"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    modes, run = [], _FakeRun()

    def fake_init(mode, **kwargs):
        modes.append(mode)
        if mode == "online":
            raise RuntimeError(f"dial tcp: no such host (api key {secret})\nmore details")
        return run

    monkeypatch.setattr(wandb, "init", fake_init)
    with caplog.at_level(logging.WARNING, logger="training.tracking"):
        tracker = Tracker(tmp_path / "run", {}, mode="auto")
    assert modes == ["online", "offline"] and tracker.mode == "offline"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "offline" in warnings[0]
    assert secret not in warnings[0]

    # The context manager marks a crashed run as failed.
    with pytest.raises(KeyError), tracker:
        tracker.log({"train/loss": 1.0}, step=0)
        raise KeyError("boom")
    assert run.logged == [(0, {"train/loss": 1.0})] and run.exit_code == 1


def test_group_name_and_project_reach_wandb_init(tmp_path, monkeypatch):
    """`python -m experiments` groups each grid's runs (`--wandb-group`), so W&B's dashboard compares them."""
    import wandb

    calls = []
    monkeypatch.setattr(wandb, "init", lambda mode, **kwargs: calls.append((mode, kwargs)) or _FakeRun())
    Tracker(tmp_path / "run", {"top_k": 0}, mode="offline", run_name="transfer-pretrained-k0-seed0", group="transfer")
    mode, kwargs = calls[0]
    assert mode == "offline" and kwargs["group"] == "transfer" and kwargs["name"] == "transfer-pretrained-k0-seed0"
    assert kwargs["project"] == "mlx8-w4-multimodal-transferlearning" and kwargs["config"] == {"top_k": 0}
