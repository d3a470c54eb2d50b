"""Sharing a checkpoint on the Hugging Face Hub, offline: `train.py --push-to-hub` and `--checkpoint hf:OWNER/NAME`.

No test reaches the network. The upload is checked through a fake `HfApi` (its two methods replaced): the repo it
creates, the files of the one commit, the commit message and the model card's metadata. Loading is checked from a
Hugging Face cache laid out as the hub's client lays it out (`HF_HOME/hub/models--OWNER--NAME/refs/main` and
`snapshots/<sha>/...`), filled with exactly the files the push sent, read with `HF_HUB_OFFLINE=1`: the round trip
of a demo checkpoint must caption exactly like the original. The checkpoint is the session's short demo run
(`trained_demo` in conftest.py), copied so that its decoder can be taken away.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from huggingface_hub import constants as hf_constants
from safetensors.torch import load_file

import caption
import checkpoints.share
import hub
import train
from captioning import Captioner, Decoding
from checkpoints.restore import load_trained
from checkpoints.share import prepare_upload
from checkpoints.store import HUB_PREFIX, local_checkpoint
from data.images import load_image
from errors import UserError

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "someone/shapes-demo"
TOKEN = "hf_do_not_print_me"
SHA = "0123456789abcdef0123456789abcdef01234567"  # the commit of the cached snapshot (any 40 hex digits)


# ------------------------------------------------------------------------------------------------------------ helpers


def install_fake_hub(mp: pytest.MonkeyPatch) -> list:
    """Replace the two HfApi calls an upload makes; record them, with the bytes of every file the commit sends."""
    calls: list = []
    mp.setenv("HF_TOKEN", TOKEN)
    mp.setattr(hf_constants, "HF_HUB_OFFLINE", False)

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        sent = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and any(fnmatch(p.relative_to(folder).as_posix(), pat) for pat in kwargs["allow_patterns"])
        }
        calls.append(("upload_folder", kwargs, sent))

    mp.setattr(HfApi, "create_repo", create_repo)
    mp.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def place_in_hub_cache(files: dict[str, bytes], hf_home: Path, repo_id: str) -> Path:
    """Lay `files` out as huggingface_hub's cache holds a downloaded model repo; returns the snapshot folder."""
    storage = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / SHA
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(SHA)
    return snapshot


def use_hub_cache(mp: pytest.MonkeyPatch, hf_home: Path) -> None:
    """In this process: read the hub cache under `hf_home`, offline (what HF_HOME and HF_HUB_OFFLINE=1 do)."""
    mp.setattr(hf_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def push_args(checkpoint: Path, *extra: str) -> list[str]:
    return ["--push-to-hub", REPO_ID, "--checkpoint", str(checkpoint), *extra]


def error_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    return [line for line in captured.err.splitlines() if line.strip()]


def run_caption(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    return subprocess.run(
        [sys.executable, str(REPO / "caption.py"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**environment, **(env or {})},
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo_copy(trained_demo, tmp_path_factory):
    """(checkpoint, cache_dir): a copy of the session's demo checkpoint with its own decoder folder, tested once
    with `train.py --test` so that its run has test metrics for the card."""
    _, cache_dir, checkpoint = trained_demo
    models = tmp_path_factory.mktemp("hub-demo") / "models"
    models.mkdir()
    copy = models / checkpoint.name
    for suffix in (".safetensors", ".json"):
        shutil.copy(checkpoint.with_suffix(suffix), copy.with_suffix(suffix))
    sidecar = json.loads(copy.with_suffix(".json").read_text())
    decoder = models / Path(sidecar["decoder"]["source"]).name
    shutil.copytree(sidecar["decoder"]["source"], decoder)
    sidecar["decoder"]["source"] = sidecar["tokenizer"]["source"] = str(decoder)
    sidecar["run_dir"] = str(models / "runs" / "copy")
    copy.with_suffix(".json").write_text(json.dumps(sidecar))
    test_run = ["--test", "--checkpoint", str(copy), "--output-dir", str(models), "--cache-dir", str(cache_dir)]
    assert train.main([*test_run, "--eval-images", "10", "--gallery-size", "5", "--no-meteor"]) == 0
    return copy, cache_dir


@pytest.fixture(scope="module")
def pushed(demo_copy):
    """The calls of one `train.py --push-to-hub` of the copy, through the fake hub, and what it printed."""
    checkpoint, _ = demo_copy
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(printed):  # train.py's console: stderr
        calls = install_fake_hub(mp)
        assert train.main(push_args(checkpoint)) == 0
    return [*calls, printed.getvalue()]


@pytest.fixture
def held_out(demo_scenes) -> list[Path]:
    """Three test images of the checkpoint's own data (the copy's data settings are the demo run's)."""
    return [path for path, _ in demo_scenes[:3]]


# ------------------------------------------------------------------------------------------------------------- upload


def test_push_sends_weights_sidecar_card_and_the_small_demo_decoder(pushed, demo_copy):
    checkpoint, _ = demo_copy
    (_, repo_id, create), (_, upload, sent), printed = pushed
    assert f"uploaded {checkpoint.name} (7 files) to https://huggingface.co/{REPO_ID} (private)" in printed
    assert f"--checkpoint hf:{REPO_ID}" in printed and TOKEN not in printed
    assert repo_id == REPO_ID and create == {"repo_type": "model", "private": True, "exist_ok": True}
    assert upload["repo_id"] == REPO_ID and upload["repo_type"] == "model"
    assert upload["commit_message"].startswith(f"{checkpoint.name}: epoch 1, step ")
    decoder = checkpoint.parent / "demo_decoder_seed0"
    decoder_files = [f"decoder/{p.name}" for p in decoder.iterdir()]
    assert sorted(sent) == sorted(["README.md", "checkpoint.safetensors", "checkpoint.json", *decoder_files])
    assert sent["checkpoint.safetensors"] == checkpoint.read_bytes()  # the trained tensors, as saved
    assert sent["decoder/model.safetensors"] == (decoder / "model.safetensors").read_bytes()
    # The uploaded sidecar is a rewritten copy: it says the decoder travels with it, and carries the test metrics.
    local = json.loads(checkpoint.with_suffix(".json").read_text())
    uploaded = json.loads(sent["checkpoint.json"])
    test_metrics = json.loads((checkpoint.parent / "runs/copy/metrics.json").read_text())[f"test/{checkpoint.stem}"]
    assert uploaded["decoder"]["bundled"] == "decoder" and "bundled" not in local["decoder"]
    numbers = {k: v for k, v in test_metrics.items() if k != "protocol"}  # the numbers travel; the protocol's dict not
    assert uploaded["test_metrics"] == numbers and uploaded["run_dir"] is None
    assert uploaded["model"] == local["model"] and uploaded["metrics"] == local["metrics"]
    assert uploaded["hub"]["repo_id"] == REPO_ID and uploaded["hub"]["checkpoint"] == checkpoint.name


def test_public_creates_a_public_repo(demo_copy, monkeypatch):
    calls = install_fake_hub(monkeypatch)
    assert train.main(push_args(demo_copy[0], "--public")) == 0
    assert calls[0][2] == {"repo_type": "model", "private": False, "exist_ok": True}


def test_model_card_metadata_and_text(pushed, demo_copy):
    checkpoint, _ = demo_copy
    text = pushed[1][2]["README.md"].decode()
    data = ModelCard(text).data
    assert data.pipeline_tag == "image-to-text" and data.library_name == "tiny-vlm" and data.license == "apache-2.0"
    assert {"tiny-vlm", "image-captioning", "encoder-tiny"} <= set(data.tags)
    assert data.base_model is None and data.datasets is None  # a local decoder and a generated set have no hub id
    local = json.loads(checkpoint.with_suffix(".json").read_text())
    test_metrics = json.loads(pushed[1][2]["checkpoint.json"])["test_metrics"]
    for expected in (
        "top 2 trained (K=2)",
        "**Visual tokens**: 9 per image",
        "**View**: `hidden`",
        "random weights drawn with a fixed seed",
        "the generated shapes set, a random 80/10/10 split by image (seed 0)",
        f"| CIDEr-D | {local['metrics']['cider_d']:.3f} | {test_metrics['cider_d']:.3f} |",
        f"Validation: {int(local['metrics']['n_images'])} images",
        f"Test: {int(test_metrics['n_images'])} images of the test split",
        "galleries of 20 images",
        f"python caption.py photo.jpg --checkpoint hf:{REPO_ID}",
        f'load_trained("hf:{REPO_ID}")',
        "from captioning import Captioner, Decoding",
        f'Captioner("hf:{REPO_ID}", "cpu")',
        "## What this repo does not contain",
        "The training state",
    ):
        assert expected in text, expected


def test_card_names_a_hub_decoder_as_base_model_and_its_datasets(demo_copy, tmp_path):
    """A decoder with a hub id is not carried: it is the card's base_model. --hub-decoder records such an id for a
    decoder trained from a local copy."""
    checkpoint, _ = demo_copy
    copy = tmp_path / checkpoint.name
    shutil.copy(checkpoint, copy)
    sidecar = json.loads(checkpoint.with_suffix(".json").read_text())
    sidecar["decoder"]["source"] = sidecar["tokenizer"]["source"] = "Qwen/Qwen3-0.6B-Base"
    sidecar["data"]["source"] = "flickr30k,hf:someone/more-captions,shapes"
    copy.with_suffix(".json").write_text(json.dumps(sidecar))
    (tmp_path / "a").mkdir()
    upload = prepare_upload(copy, REPO_ID, private=True, staging=tmp_path / "a")
    data = ModelCard(upload.card).data
    assert data.base_model == "Qwen/Qwen3-0.6B-Base"
    assert data.datasets == ["nlphuji/flickr30k", "someone/more-captions"]
    assert [name for name, _ in upload.files()] == ["README.md", "checkpoint.json", "checkpoint.safetensors"]
    assert "fetched from `Qwen/Qwen3-0.6B-Base`" in upload.card

    (tmp_path / "b").mkdir()
    upload = prepare_upload(checkpoint, REPO_ID, True, tmp_path / "b", hub_decoder="Qwen/Qwen3-0.6B-Base")
    uploaded = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert uploaded["decoder"]["source"] == uploaded["tokenizer"]["source"] == "Qwen/Qwen3-0.6B-Base"
    assert uploaded["decoder"]["trained_from"].endswith("demo_decoder_seed0")
    assert ModelCard(upload.card).data.base_model == "Qwen/Qwen3-0.6B-Base"
    assert not any(name.startswith("decoder/") for name, _ in upload.files())


def test_dry_run_prints_the_upload_without_network(demo_copy, monkeypatch, capsys):
    checkpoint, _ = demo_copy

    def no_network(*args, **kwargs):
        raise AssertionError("--dry-run must not call the hub")

    monkeypatch.setattr(HfApi, "create_repo", no_network)
    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    monkeypatch.setattr(hub, "get_token", lambda: None)  # no token needed to look
    assert train.main(push_args(checkpoint, "--dry-run")) == 0
    out = capsys.readouterr().err  # train.py's console writes to stderr
    assert "would upload 7 files" in out and f"private model repo {REPO_ID}" in out
    for name in ("README.md", "checkpoint.safetensors", "checkpoint.json", "decoder/model.safetensors"):
        assert f"  {name} (" in out
    assert "pipeline_tag: image-to-text" in out  # the card follows
    assert train.main(push_args(checkpoint, "--dry-run", "--public")) == 0
    assert f"public model repo {REPO_ID}" in capsys.readouterr().err


def test_push_mistakes_are_one_line_exit_2_and_lose_nothing(demo_copy, monkeypatch, capsys, tmp_path):
    checkpoint, _ = demo_copy
    before = {p: p.read_bytes() for p in checkpoint.parent.rglob("*") if p.is_file()}
    calls = install_fake_hub(monkeypatch)

    def fails(args: list[str], expected: str) -> None:
        assert train.main(args) == 2, expected
        lines = error_lines(capsys)
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in lines[0], (expected, lines)

    fails(["--push-to-hub", "not a repo", "--checkpoint", str(checkpoint)], "is not a valid repo id")
    fails(["--push-to-hub", "a/b/c", "--checkpoint", str(checkpoint)], "write it as OWNER/NAME")
    fails(["--push-to-hub", REPO_ID, "--checkpoint", str(tmp_path / "none.safetensors")], "no such file or folder")
    fails(["--demo", "--push-to-hub", REPO_ID, "--output-dir", str(tmp_path)], "no run with a checkpoint")
    fails(["--public"], "--public only applies to an upload")
    fails(["--test", "--push-to-hub", REPO_ID], "run --test separately")
    monkeypatch.setattr(checkpoints.share, "BUNDLE_LIMIT_BYTES", 1000)  # as if the local decoder were large
    fails(push_args(checkpoint), "too large to carry in the repo")
    monkeypatch.setattr(checkpoints.share, "BUNDLE_LIMIT_BYTES", 200 * 1024**2)
    assert calls == []  # none of these reached the hub

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    fails(push_args(checkpoint), "HF_HUB_OFFLINE is set")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "get_token", lambda: None)
    fails(push_args(checkpoint), "no Hugging Face token (set HF_TOKEN")
    assert calls == []
    # A failed upload: the real HfApi against a closed local port (connection refused at once).
    monkeypatch.undo()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    fails(push_args(checkpoint), f"could not upload to the hub model repo {REPO_ID}")
    fails(push_args(checkpoint), f"the checkpoint is still at {checkpoint}; rerun with --push-to-hub {REPO_ID}")
    assert {p: p.read_bytes() for p in checkpoint.parent.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------------------------ loading


def test_hf_checkpoint_from_a_hub_shaped_cache_captions_like_the_local_one(pushed, demo_copy, held_out, tmp_path,
                                                                           capsys):  # fmt: skip
    """The done-when of the issue: pushed (prepared), placed in a hub-shaped cache, loaded by repo id, offline."""
    checkpoint, _ = demo_copy
    place_in_hub_cache(pushed[1][2], tmp_path / "hf", REPO_ID)
    images = [str(p) for p in held_out]
    assert caption.main([*images, "--checkpoint", str(checkpoint)]) == 0  # the local checkpoint, in this process
    local = capsys.readouterr().out
    decoder = checkpoint.parent / "demo_decoder_seed0"
    decoder.rename(decoder.with_name("elsewhere"))  # only the decoder carried in the repo is left
    try:
        remote = run_caption(
            *images, "--checkpoint", f"hf:{REPO_ID}", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
        )
    finally:
        decoder.with_name("elsewhere").rename(decoder)
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert remote.stdout == local and len(local.splitlines()) == 3


def test_load_trained_test_and_init_from_by_repo_id(pushed, demo_copy, held_out, tmp_path, monkeypatch):
    checkpoint, cache_dir = demo_copy
    snapshot = place_in_hub_cache(pushed[1][2], tmp_path / "hf", REPO_ID)
    use_hub_cache(monkeypatch, tmp_path / "hf")
    assert local_checkpoint(f"{HUB_PREFIX}{REPO_ID}") == snapshot / "checkpoint.safetensors"
    model, tokenizer, sidecar = load_trained(f"hf:{REPO_ID}")  # the Python one-liner of docs/sharing.md
    expected = load_file(checkpoint)
    trained = model.trainable_state_dict()
    assert sorted(trained) == sorted(expected) and all(torch.equal(trained[k], expected[k]) for k in expected)
    assert not model.training and tokenizer.eos_id == sidecar["tokenizer"]["eos_id"]
    # docs/sharing.md's Python example: a Captioner by repo id answers like one of the local checkpoint.
    images = [load_image(p) for p in held_out]
    by_id = Captioner(f"hf:{REPO_ID}", "cpu")
    assert by_id.summary().startswith(f"hf:{REPO_ID}: encoder tiny")
    for question in (None, "how many shapes are there?"):
        expected_outputs = Captioner(checkpoint, "cpu").run(images, question, Decoding())
        assert by_id.run(images, question, Decoding()) == expected_outputs
    # train.py --test by repo id: its metrics go to this machine's output directory, not the training machine's.
    out = tmp_path / "models"
    test = ["--test", "--checkpoint", f"hf:{REPO_ID}", "--output-dir", str(out), "--cache-dir", str(cache_dir)]
    assert train.main([*test, "--eval-images", "4", "--gallery-size", "4", "--no-meteor"]) == 0
    metrics = json.loads((out / "runs" / "test_shapes-demo" / "metrics.json").read_text())
    assert metrics["test/shapes-demo"]["n_images"] == 4
    # --init-from by repo id: one step of a new run starts from the pushed weights.
    init = ["--demo", "--output-dir", str(out), "--cache-dir", str(cache_dir), "--wandb", "disabled"]
    assert train.main([*init, "--init-from", f"hf:{REPO_ID}", "--max-steps", "1", "--run-name", "init"]) == 0


def test_missing_repo_or_frozen_parts_are_one_line(demo_copy, held_out, tmp_path, monkeypatch, capsys):
    checkpoint, _ = demo_copy
    use_hub_cache(monkeypatch, tmp_path / "hf")
    image = str(held_out[0])

    def fails(args: list[str], *expected: str) -> None:
        assert caption.main([image, *args]) == 2
        lines = error_lines(capsys)
        assert len(lines) == 1 and all(e in lines[0] for e in expected), (expected, lines)

    fails(["--checkpoint", "hf:someone/not-cached"], "could not fetch hf:someone/not-cached", "HF_HUB_OFFLINE")
    fails(["--checkpoint", "hf:not a repo"], "is not a valid repo id", "hf:OWNER/NAME")

    def with_sidecar(name: str, change) -> Path:
        copy = tmp_path / name / checkpoint.name
        copy.parent.mkdir()
        shutil.copy(checkpoint, copy)
        sidecar = json.loads(checkpoint.with_suffix(".json").read_text())
        change(sidecar)
        copy.with_suffix(".json").write_text(json.dumps(sidecar))
        return copy

    gone = with_sidecar("gone", lambda s: s["decoder"].update(source="/nowhere/demo_decoder_seed0"))
    fails(["--checkpoint", str(gone)], "the decoder /nowhere/demo_decoder_seed0", "--decoder PATH")
    decoder = str(checkpoint.parent / "demo_decoder_seed0")
    assert caption.main([image, "--checkpoint", str(gone), "--decoder", decoder]) == 0  # pointed at a local copy
    capsys.readouterr()
    unfetched = with_sidecar("hub-id", lambda s: s["decoder"].update(source="someone/absent-decoder"))
    fails(["--checkpoint", str(unfetched)], "could not fetch", "someone/absent-decoder", "--decoder DIR")
    weights = with_sidecar("weights", lambda s: s["model"].update(encoder_weights="/nowhere/tiny.safetensors"))
    fails(["--checkpoint", str(weights)], "the encoder weights /nowhere/tiny.safetensors", "--encoder-weights")
    with pytest.raises(UserError, match="--decoder PATH"):
        load_trained(gone)


# ------------------------------------------------------------------------------------ nothing private in what is shared


@pytest.mark.parametrize(
    ("source", "public"),
    [
        ("shapes", "shapes"),
        ("flickr30k,hf:someone/more-captions", "flickr30k,hf:someone/more-captions"),
        ("/home/ada/data/flickr30k-local", "flickr30k-local"),
        ("flickr30k,synthetic:/home/ada/synth-out/", "flickr30k,synthetic:synth-out"),
        ("~/weights/vit.safetensors", "vit.safetensors"),
        ("random-init:Qwen/Qwen3-0.6B-Base", "random-init:Qwen/Qwen3-0.6B-Base"),
        ("../models/demo_decoder_seed0", "demo_decoder_seed0"),
        ("C:\\Users\\ada\\data", "data"),
        ("default", "default"),
    ],
)
def test_public_names_of_sources(source, public):
    assert checkpoints.share.public_name(source) == public


def test_a_local_data_folder_named_like_a_built_in_source_stays_local():
    """A folder ~/data/flickr30k is pushed as ./flickr30k: not the hub's dataset on the card, nor at --test."""
    from checkpoints.model_card import data_description, hub_datasets

    public = checkpoints.share.public_name("/home/ada/data/flickr30k,/srv/shapes,flickr30k", local="./")
    assert public == "./flickr30k,./shapes,flickr30k"
    assert hub_datasets(public) == ["nlphuji/flickr30k"]  # only the real hub source
    sizes = {"train": 8, "val": 8, "test": 8}
    card = data_description(
        {"data": {"source": "./flickr30k", "split": "karpathy", "images": sizes, "tasks": ["caption"]}}
    )
    assert card.startswith("`./flickr30k`, the data's own split") and "(8 / 8 / 8 images)" in card


def test_the_cards_metrics_table_holds_numbers_only():
    from checkpoints.model_card import metrics_table

    rows = metrics_table({"bleu4": 0.1, "n_images": 4}, {"bleu4": 0.2, "protocol": {"images": 4}, "meteor": 0.3})
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["BLEU-4", "METEOR"]


def test_pushed_repo_holds_no_local_path_nor_environment_value(trained_demo, tmp_path, monkeypatch):
    """A demo checkpoint as a run on a user's machine leaves it (its paths, a W&B entity from the environment, a
    local synthetic data folder), pushed to the fake hub: no file of the repo holds this test's temporary folder,
    the session's, the home folder or the environment's values; the local sidecar keeps its paths; and the pushed
    checkpoint still loads with load_trained, with the decoder carried in the repo."""
    _, _, original = trained_demo
    machine = tmp_path / "machine"  # everything local lives under here
    models = machine / "models"
    models.mkdir(parents=True)
    checkpoint = models / original.name
    shutil.copy(original, checkpoint)
    sidecar = json.loads(original.with_suffix(".json").read_text())
    decoder = models / Path(sidecar["decoder"]["source"]).name
    shutil.copytree(sidecar["decoder"]["source"], decoder)
    sidecar["decoder"]["source"] = sidecar["tokenizer"]["source"] = str(decoder)
    sidecar["run_dir"] = str(models / "runs" / "ada-run")
    synthetic = machine / "synth-out"
    sidecar["data"]["source"] = f"shapes,synthetic:{synthetic}"
    entity, api_key = "ada-private-team", "wandb-0123456789-secret"
    monkeypatch.setenv("WANDB_ENTITY", entity)
    monkeypatch.setenv("WANDB_API_KEY", api_key)
    sidecar["train_config"].update(
        output_dir=str(models), cache_dir=str(machine / "cache"), data=sidecar["data"]["source"],
        init_from=str(models / "0_tiny_top2.safetensors"), encoder_weights="none", wandb_entity=entity,
        wandb_project="ada-secret-project", run_name="ada-run",
    )  # fmt: skip
    checkpoint.with_suffix(".json").write_text(json.dumps(sidecar))
    local_before = checkpoint.with_suffix(".json").read_bytes()

    calls = install_fake_hub(monkeypatch)
    assert train.main(push_args(checkpoint)) == 0
    (_, upload, sent) = calls[1]
    assert "checkpoint.json" in sent and "decoder/model.safetensors" in sent
    private = {
        str(tmp_path): "this test's temporary folder",
        str(original.parents[1]): "the session's demo folder",
        str(Path.home()): "the home folder",
        entity: "$WANDB_ENTITY",
        "ada-secret-project": "the W&B project",
        api_key: "$WANDB_API_KEY",
        TOKEN: "$HF_TOKEN",
    }
    for name, data in sent.items():
        for value, what in private.items():
            assert value.encode() not in data, f"{name} holds {what}"
    assert checkpoint.with_suffix(".json").read_bytes() == local_before  # the local sidecar keeps its paths

    # What a user needs is still there.
    uploaded = json.loads(sent["checkpoint.json"])
    assert uploaded["decoder"]["source"] == uploaded["tokenizer"]["source"] == "decoder"
    assert uploaded["decoder"]["bundled"] == "decoder"
    assert uploaded["model"] == sidecar["model"] and uploaded["metrics"] == sidecar["metrics"]
    assert uploaded["data"]["source"] == uploaded["train_config"]["data"] == "shapes,synthetic:synth-out"
    assert uploaded["train_config"]["init_from"] == "0_tiny_top2.safetensors"
    assert uploaded["run_dir"] is None
    for field in ("output_dir", "cache_dir", "run_name", "wandb_entity", "wandb_project", "device", "threads"):
        assert field not in uploaded["train_config"], field
    assert {k: uploaded["train_config"][k] for k in ("top_k", "lr_adapter", "seed", "epochs")} == {
        k: sidecar["train_config"][k] for k in ("top_k", "lr_adapter", "seed", "epochs")
    }
    card = sent["README.md"].decode()
    assert "`synthetic:synth-out`" in card and "trained from `demo_decoder_seed0`" in card

    # The pushed repo, in a hub-shaped cache, loads by its id with the local decoder gone.
    place_in_hub_cache(sent, tmp_path / "hf", REPO_ID)
    use_hub_cache(monkeypatch, tmp_path / "hf")
    shutil.rmtree(decoder)
    model, tokenizer, loaded = load_trained(f"hf:{REPO_ID}")
    expected = load_file(checkpoint)
    trained = model.trainable_state_dict()
    assert sorted(trained) == sorted(expected) and all(torch.equal(trained[k], expected[k]) for k in expected)
    assert tokenizer.eos_id == loaded["tokenizer"]["eos_id"]


def test_a_private_value_the_push_does_not_clean_is_refused(trained_demo, tmp_path, monkeypatch, capsys):
    """The last check before an upload: a carried decoder whose config.json names its local folder (as some tools
    write `_name_or_path`) is refused in one line, and nothing reaches the hub."""
    _, _, original = trained_demo
    checkpoint = tmp_path / "models" / original.name
    checkpoint.parent.mkdir()
    shutil.copy(original, checkpoint)
    sidecar = json.loads(original.with_suffix(".json").read_text())
    decoder = checkpoint.parent / "demo_decoder_seed0"
    shutil.copytree(sidecar["decoder"]["source"], decoder)
    sidecar["decoder"]["source"] = sidecar["tokenizer"]["source"] = str(decoder)
    checkpoint.with_suffix(".json").write_text(json.dumps(sidecar))
    config = json.loads((decoder / "config.json").read_text())
    (decoder / "config.json").write_text(json.dumps({**config, "_name_or_path": str(decoder)}))
    calls = install_fake_hub(monkeypatch)
    assert train.main(push_args(checkpoint)) == 2
    lines = error_lines(capsys)
    assert lines == [
        f"error: refusing to push: decoder/config.json would carry the local path {decoder}; nothing was uploaded "
        "(a field the push does not clean: please report it)"
    ]
    assert calls == []
    # A secret-looking environment value is refused the same way, and never printed.
    (decoder / "config.json").write_text(json.dumps({**config, "note": "hf_written_by_mistake_123"}))
    monkeypatch.setenv("MY_SERVICE_TOKEN", "hf_written_by_mistake_123")
    assert train.main(push_args(checkpoint)) == 2
    captured = capsys.readouterr()
    assert "decoder/config.json would carry the value of $MY_SERVICE_TOKEN" in captured.err
    assert "hf_written_by_mistake_123" not in captured.out + captured.err and calls == []
