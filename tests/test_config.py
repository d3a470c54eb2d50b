"""The training configuration's structure: parts, not copies (training/config.py, runtime/settings.py).

Every setting is declared once, on the dataclass that uses it (the model's `VLMConfig`, the evaluation's
`EvalOptions`, the upload's `HubUpload`, the run's `TrainConfig`); the flags, their help and types, the environment
keys and the run settings are read from those declarations, and checkpoints keep recording one flat dictionary.
"""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch

from bridge.vlm import VLMConfig
from checkpoints.share import HubUpload
from checkpoints.store import MODEL_KEYS, RUN_KEYS_BEFORE_RECORDED, find_run, save_checkpoint
from errors import UserError
from evaluation.protocol import EvalOptions, EvalSettings
from training.config import ENV_KEYS, EVAL_KEYS, FLAGS, RUN_KEYS, TrainConfig, build_parser, load_config


def test_every_setting_of_every_part_is_one_flag_with_its_own_help():
    parser_flags = {a.dest for a in build_parser()._actions}
    for kind in (VLMConfig, EvalOptions, HubUpload):
        for f in fields(kind):
            assert FLAGS[f.name][1] is f, f.name  # the part's own field, not a copy
            assert f.metadata["help"] and f.name in parser_flags
    own = [f.name for f in fields(TrainConfig) if f.name not in ("mode", "model", "evaluation", "share")]
    assert set(FLAGS) == {*own, *(f.name for k in (VLMConfig, EvalOptions, HubUpload) for f in fields(k))}


def test_typed_flags_land_in_their_part_with_the_annotated_type():
    cfg = load_config(
        ["--top-k", "1", "--bridge-hidden-dim", "64", "--beams", "3", "--length-penalty", "0.5", "--no-meteor"],
        env={"VISION_ENCODER": "clip"},
        dotenv="/nonexistent",
    )
    assert (cfg.model.top_k, cfg.model.bridge_hidden_dim, cfg.model.encoder) == (1, 64, "clip")
    assert (cfg.evaluation.beams, cfg.evaluation.length_penalty, cfg.evaluation.meteor) == (3, 0.5, False)
    assert isinstance(cfg.evaluation.length_penalty, float) and isinstance(cfg.model.top_k, int)
    with pytest.raises(UserError, match=r"^--top-k='two' is invalid; expected an integer$"):
        load_config(["--top-k", "two"], env={}, dotenv="/nonexistent")
    with pytest.raises(UserError, match="bridge_hidden_dim=0 is invalid"):  # validated by the part that owns it
        load_config(["--bridge-hidden-dim", "0"], env={}, dotenv="/nonexistent")


def test_the_flat_record_round_trips_and_an_unknown_key_is_one_line():
    cfg = load_config(["--top-k", "2", "--gallery-size", "7", "--data", "shapes"], env={}, dotenv="/nonexistent")
    flat = cfg.to_dict()
    assert flat["top_k"] == 2 and flat["gallery_size"] == 7 and "model" not in flat
    assert TrainConfig.from_dict(flat) == cfg
    assert json.loads(json.dumps(flat)) == flat  # what a sidecar holds
    with pytest.raises(UserError, match="^unknown setting 'bogus'"):
        TrainConfig.from_dict({"bogus": 1})


def test_run_keys_env_keys_and_eval_keys_are_read_from_the_declarations():
    assert set(MODEL_KEYS) == {"decoder", *(f.name for f in fields(VLMConfig))}
    assert set(MODEL_KEYS) <= set(RUN_KEYS)
    assert set(RUN_KEYS_BEFORE_RECORDED) <= set(RUN_KEYS)  # a run recorded before run_keys keeps its meaning
    assert "output_dir" not in RUN_KEYS and "beams" not in RUN_KEYS
    assert ENV_KEYS["TOP_K"] == "top_k" and ENV_KEYS["OUTPUT_DIR_MODELS"] == "output_dir"
    assert {f.name for f in fields(EvalOptions)} <= set(EVAL_KEYS)


def test_eval_settings_are_the_options_plus_what_the_run_fixes():
    cfg = TrainConfig.from_dict({"beams": 4, "batch_size": 8, "meteor": True, "seed": 3})
    settings = cfg.eval_settings(["caption"])
    assert isinstance(settings, EvalSettings)
    assert (settings.beams, settings.batch_size, settings.seed, settings.tasks) == (4, 16, 3, ("caption",))
    assert settings.meteor is False  # only --test scores METEOR
    test = TrainConfig.from_dict({**cfg.to_dict(), "mode": "test"}).eval_settings(["caption"])
    assert test.meteor is True


def test_find_run_tells_runs_apart_by_the_keys_each_run_recorded(tmp_path):
    """Two runs of the same encoder and K that differ in a run setting are refused as ambiguous; the settings
    compared are the ones each sidecar recorded (`run_keys`), or, for an older sidecar, the ones of its time."""

    def write_run(name: str, settings: dict, run_keys: list[str] | None) -> None:
        meta = {"train_config": settings, "complete_epoch": True} | ({"run_keys": run_keys} if run_keys else {})
        save_checkpoint(tmp_path / "runs" / name, "1_vit_top3", {"bridge.w": torch.zeros(2)}, meta, {"global_step": 1})

    base = TrainConfig().to_dict()
    write_run("a", {**base, "lr_qwen": 1e-5}, list(RUN_KEYS))
    write_run("b", {**base, "lr_qwen": 2e-5}, list(RUN_KEYS))
    with pytest.raises(UserError, match="2 runs in .* differ in lr_qwen"):
        find_run(tmp_path, {"encoder": "vit", "top_k": 3})
    write_run("c", {**base, "lr_qwen": 1e-5, "beams": 5}, None)  # an older sidecar: beams was never a run setting
    with pytest.raises(UserError, match="differ in lr_qwen:"):
        find_run(tmp_path, {"encoder": "vit", "top_k": 3})
