"""Fail fast, then work: train.py's checks before any slow work; --max-bad-fraction; OMP_WAIT_POLICY before torch."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
from conftest import REPO

import train
from data import load_dataset
from demo.decoders import demo_config
from demo.tokenizer import EOS_TOKEN, train_bpe_tokenizer
from errors import UserError
from tiny_decoder import Qwen3ForCausalLM
from training.config import TrainConfig, load_config
from training.preflight import check_run
from weights_loader import save_qwen3


def write_decoder(folder: Path, layers: int = 3) -> Path:
    """A complete decoder directory in the hub's layout: config.json, model.safetensors, tokenizer.json."""
    tokenizer = train_bpe_tokenizer(["a red circle", "a blue square"], vocab_size=300)
    config = demo_config(vocab_size=tokenizer.get_vocab_size(), eos_id=tokenizer.token_to_id(EOS_TOKEN))
    save_qwen3(Qwen3ForCausalLM(dataclasses.replace(config, num_hidden_layers=layers)), folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def config(tmp_path: Path, **values) -> TrainConfig:
    defaults = dict(data="shapes", encoder="tiny", encoder_weights="none", output_dir=str(tmp_path / "models"))
    return TrainConfig.from_dict({**defaults, **values})


# ----------------------------------------------------------------------------------------------------- what passes


def test_a_good_run_passes(tmp_path: Path) -> None:
    decoder = write_decoder(tmp_path / "decoder")
    (tmp_path / "images").mkdir()
    check_run(config(tmp_path, decoder=str(decoder), top_k=3, data=f"shapes,{tmp_path / 'images'}"))
    check_run(config(tmp_path, decoder="demo", top_k=3))  # built by the run itself, with the demo's 3 blocks ...
    with pytest.raises(UserError, match="top_k=4 is invalid; the decoder has 3 blocks"):
        check_run(config(tmp_path, decoder="demo", top_k=4))  # ... known before it is built
    check_run(config(tmp_path, decoder="demo-pretrained", top_k=2))
    # A pretrained tag is known to timm without downloading anything; a local weights file is accepted as it is.
    weights = tmp_path / "vit.safetensors"
    weights.write_bytes(b"read when the encoder is built")
    for tag in ("augreg2_in21k_ft_in1k", "default", str(weights)):
        check_run(config(tmp_path, decoder="demo", encoder="vit", encoder_weights=tag))
    check_run(config(tmp_path, decoder="demo", encoder="clip", encoder_weights="laion2b_s34b_b79k", data="flickr30k"))


def test_a_hub_id_is_resolved_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Hugging Face cache's layout: models--OWNER--NAME/snapshots/REVISION/ + refs/main naming the revision.
    repo = tmp_path / "hf-cache" / "models--someone--tiny-qwen3"
    write_decoder(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    check_run(config(tmp_path, decoder="someone/tiny-qwen3", top_k=3))
    with pytest.raises(UserError, match="top_k=4 is invalid; the decoder has 3 blocks"):
        check_run(config(tmp_path, decoder="someone/tiny-qwen3", top_k=4))
    with pytest.raises(UserError, match="could not fetch .* of 'someone/not-cached'"):
        check_run(config(tmp_path, decoder="someone/not-cached"))


# ----------------------------------------------------------------------------------------------------- what fails


def _no_config(d: Path) -> None:
    (d / "config.json").unlink()


def _bad_json(d: Path) -> None:
    (d / "config.json").write_text("{not json")


def _no_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def _no_tokenizer(d: Path) -> None:
    (d / "tokenizer.json").unlink()


def _bad_tokenizer(d: Path) -> None:
    (d / "tokenizer.json").write_text('{"model": "half a tokenizer"}')


@pytest.mark.parametrize(
    "damage, top_k, message",
    [
        (_no_config, 1, "config file not found: .*config.json"),
        (_bad_json, 1, "config.json is not valid JSON"),
        (None, 4, "top_k=4 is invalid; the decoder has 3 blocks"),
        (_no_weights, 1, "no model.safetensors or model.safetensors.index.json in"),
        (_no_tokenizer, 1, "no tokenizer.json in"),
        (_bad_tokenizer, 1, "cannot read the tokenizer of decoder .*tokenizer.json"),
    ],
)
def test_a_bad_decoder_is_one_line(tmp_path: Path, damage, top_k: int, message: str) -> None:
    decoder = write_decoder(tmp_path / "decoder")
    if damage:
        damage(decoder)
    with pytest.raises(UserError, match=message) as info:
        check_run(config(tmp_path, decoder=str(decoder), top_k=top_k))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(decoder="no/such/folder"), "checkpoint not found: 'no/such/folder' is neither a directory nor"),
        (dict(encoder="vit", encoder_weights="imagenet"), "unknown weights 'imagenet' for vit .*timm tags"),
        (dict(encoder="clip", encoder_weights="/no/such/file.pt"), "unknown weights '/no/such/file.pt' for clip"),
        (dict(encoder="tiny", encoder_weights="openai"), "unknown weights 'openai' for tiny"),
        (dict(data="hf:not a repo"), "'hf:not a repo' is not a hub dataset; write it as hf:OWNER/REPO"),
        (dict(data="/no/such/flickr30k"), "data source '/no/such/flickr30k' is not .*: no such file or folder"),
        (dict(data="synthetic:/no/such/set"), "synthetic data folder /no/such/set does not exist"),
        (dict(data="flickr30k,,shapes"), "has an empty entry"),
        (dict(init_from="/no/such/stage1.safetensors"), "--init-from /no/such/stage1.safetensors: no such file or"),
        (dict(resume=True), "no run with a checkpoint to resume in"),
        (dict(mode="test"), "no run with a checkpoint in"),
        (dict(mode="test", checkpoint="/no/such/1_vit_top3.safetensors"), "--checkpoint /no/such/1_vit_top3"),
    ],
)
def test_bad_encoder_weights_data_or_checkpoints_are_one_line(tmp_path: Path, values: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_run(config(tmp_path, **{"decoder": "demo", **values}))


def test_a_bad_decoder_fails_before_the_data_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The issue's case: a mistyped --decoder was reported after Flickr30k (~4 GB) had been fetched."""
    touched: list[str] = []

    def recording_source(*args, **kwargs):  # stands in for the hub download and the image folder
        touched.append(f"data read: {args}")
        raise AssertionError("the data source was read")

    monkeypatch.setattr("data.loading.read_hub", recording_source)
    monkeypatch.setattr("data.loading._read_source", recording_source)
    monkeypatch.setattr("data.loading.drop_bad_images", recording_source)
    monkeypatch.setattr("training.run.load_dataset", recording_source)
    monkeypatch.setattr("training.run.FeatureCache", recording_source)
    decoder = write_decoder(tmp_path / "decoder")
    (decoder / "config.json").unlink()

    start = time.perf_counter()
    code = train.main(
        ["--data", "flickr30k", "--decoder", str(decoder), "--encoder", "tiny", "--encoder-weights", "none"]
        + ["--output-dir", str(tmp_path / "models"), "--cache-dir", str(tmp_path / "cache"), "--wandb", "disabled"]
    )
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert code == 2 and touched == []
    assert err.startswith("error: config file not found") and len(err.splitlines()) == 1, err
    assert elapsed < 30, f"the check took {elapsed:.0f} s"  # seconds, not a download (generous: a busy machine)


# ----------------------------------------------------------------------------------------------------- --max-bad-fraction


def test_max_bad_fraction_from_the_flag_and_the_environment() -> None:
    assert load_config([], env={}, dotenv="/nonexistent/.env").max_bad_fraction == 0.01
    assert load_config([], env={"MAX_BAD_FRACTION": "0.2"}, dotenv="/nonexistent/.env").max_bad_fraction == 0.2
    cfg = load_config(["--max-bad-fraction", "0.5"], env={"MAX_BAD_FRACTION": "0.2"}, dotenv="/nonexistent/.env")
    assert cfg.max_bad_fraction == 0.5


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_max_bad_fraction_outside_0_1_is_one_line_and_exit_2(value: str, tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(UserError, match=f"max_bad_fraction={float(value)!r} is invalid; expected a number between 0"):
        load_config(["--max-bad-fraction", value], env={}, dotenv="/nonexistent/.env")
    # train.py's main() in this process (tests/test_train.py runs the real command line in a subprocess), away from
    # any .env in the checkout
    monkeypatch.chdir(tmp_path)
    assert train.main(["--max-bad-fraction", value]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith(f"error: max_bad_fraction={float(value)!r} is invalid")
    assert len(captured.err.strip().splitlines()) == 1 and captured.out == ""


def test_too_many_bad_images_names_the_flag_and_the_flag_lets_them_through(tmp_path: Path) -> None:
    from test_data import write_karpathy  # 8 images, 3 of them missing or broken

    folder = write_karpathy(tmp_path)
    with pytest.raises(UserError, match=r"allow more with --max-bad-fraction \(env MAX_BAD_FRACTION\)") as info:
        load_dataset(str(folder), cache_dir=tmp_path / "cache", split="karpathy")
    assert "--max-bad-fraction 0.38" in str(info.value)  # 3 of 8 = 37.5%
    splits, report = load_dataset(str(folder), cache_dir=tmp_path / "cache", split="karpathy", max_bad_fraction=0.38)
    assert report.images_skipped == 3 and len(splits.train + splits.val + splits.test) == 5
    with pytest.raises(UserError, match=r"max_bad_fraction=1.5 is invalid.*--max-bad-fraction, env MAX_BAD_FRACTION"):
        load_dataset("flickr30k", cache_dir=tmp_path / "cache", max_bad_fraction=1.5)  # before any download


# ----------------------------------------------------------------------------------------------------- OMP_WAIT_POLICY

# Runs the entry point's module-level code in a fresh interpreter, with an import hook that prints the value of
# OMP_WAIT_POLICY at the moment `torch` is first imported (what torch's OpenMP runtime will read when it loads), then
# stops the interpreter there: the answer is known, and importing torch would only cost seconds.
_RECORD_AT_TORCH_IMPORT = """
import os, runpy, sys

class RecordAtTorchImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print(os.environ.get("OMP_WAIT_POLICY", "<unset>"), flush=True)
            os._exit(0)
        return None  # any other module: the normal import goes on

sys.meta_path.insert(0, RecordAtTorchImport())
runpy.run_path(sys.argv[1], run_name="not_main")  # module-level code only: imports, constants, functions
print("<torch never imported>")
"""


@pytest.mark.parametrize("entry_point", ["train.py", "caption.py"])
@pytest.mark.parametrize("user_value, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_omp_wait_policy_is_set_before_torch_is_imported(entry_point: str, user_value, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # conftest sets it for the tests
    if user_value is not None:
        env["OMP_WAIT_POLICY"] = user_value
    result = subprocess.run(
        [sys.executable, "-c", _RECORD_AT_TORCH_IMPORT, str(REPO / entry_point)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == expected


# ----------------------------------------------------------------------------------------------------- other forms


def test_random_init_needs_the_config_and_tokenizer_not_the_weights(tmp_path: Path) -> None:
    decoder = write_decoder(tmp_path / "decoder")
    (decoder / "model.safetensors").unlink()  # random-init:SOURCE takes SOURCE's layout and tokenizer only
    check_run(config(tmp_path, decoder=f"random-init:{decoder}", top_k=3))
    with pytest.raises(UserError, match="top_k=4 is invalid; the decoder has 3 blocks"):
        check_run(config(tmp_path, decoder=f"random-init:{decoder}", top_k=4))
    (decoder / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer.json in"):
        check_run(config(tmp_path, decoder=f"random-init:{decoder}", top_k=3))


def test_hub_checkpoints_are_checked_for_their_form_only(tmp_path: Path) -> None:
    check_run(config(tmp_path, decoder="demo", init_from="hf:someone/stage1"))  # fetched when it is read
    check_run(config(tmp_path, mode="test", checkpoint="hf:someone/captioner"))
    with pytest.raises(UserError, match="--init-from 'hf:no-owner' is not a valid repo id; write it as hf:OWNER/NAME"):
        check_run(config(tmp_path, decoder="demo", init_from="hf:no-owner"))
