"""train.py end to end on the shapes set with tiny models: train, test, resume exactly, init-from, configuration."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO

import train
import training.run
from checkpoints.store import find_checkpoint, list_checkpoints, read_checkpoint, save_checkpoint
from errors import UserError
from training.config import DEMO_SETTINGS, TrainConfig, load_config


def demo_args(tmp_path, cache_dir, *extra: str) -> list[str]:
    return [
        "--demo",
        "--output-dir", str(tmp_path / "models"),
        "--cache-dir", str(cache_dir),
        "--wandb", "disabled",
        *extra,
    ]  # fmt: skip


def train_losses(run_dir) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


# ----------------------------------------------------------------------------------------------------- end to end


def test_demo_trains_evaluates_and_checkpoints(trained_demo):
    output_dir, cache_dir, checkpoint = trained_demo
    weights, meta = read_checkpoint(checkpoint)
    assert checkpoint.name == "1_tiny_top2.safetensors" and meta["complete_epoch"]
    # Only what trains is saved: the bridge and the top 2 of 3 blocks, never the encoder or the frozen block.
    assert all(k.startswith(("bridge.", "decoder.model.layers.1.", "decoder.model.layers.2.")) for k in weights)
    assert any(k.startswith("decoder.model.layers.1.") for k in weights)
    assert meta["model"]["encoder"] == "tiny" and meta["model"]["top_k"] == 2
    state = torch.load(checkpoint.with_suffix(".state.pt"), weights_only=True)
    assert state["global_step"] == meta["global_step"] > 0
    metrics = json.loads((output_dir / "runs" / "session-demo" / "metrics.json").read_text())["epoch_1/val"]
    for key in ("loss", "perplexity", "bleu4", "cider_d", "qa_exact_match", "i2t_recall@1", "t2i_precision@5"):
        assert key in metrics
    # The model reads the image: shuffling images between samples costs it most of its CIDEr-D.
    assert metrics["cider_d"] > 2 * metrics["shuffled/cider_d"]
    # It prints five sample images with their generated and reference captions and a question with its answer,
    # then the verdict table.
    printed = (output_dir / "console.txt").read_text()
    assert printed.count("generated: ") == 5 and printed.count("reference: ") == 5 and printed.count("Q: ") == 5
    assert printed.index("generated: ") < printed.index("demo result") < printed.index("QA exact match")
    # the periodic log line reports throughput in samples and in tokens (visual + text) per second
    assert re.search(r"epoch 1 step 50: loss [\d.]+, [\d,]+ samples/s, [\d,]+ tokens/s", printed)


def test_test_mode_evaluates_the_latest_checkpoint(trained_demo):
    output_dir, cache_dir, checkpoint = trained_demo
    code = train.main(
        ["--test", "--encoder", "tiny", "--top-k", "2", "--output-dir", str(output_dir), "--cache-dir", str(cache_dir)]
        + ["--eval-images", "10", "--gallery-size", "5"]
    )
    assert code == 0
    metrics = json.loads((output_dir / "runs" / "session-demo" / "metrics.json").read_text())
    test_metrics = metrics[f"test/{checkpoint.stem}"]
    assert test_metrics["n_images"] == 10 and 0 <= test_metrics["cider_d"]
    # The COCO caption metrics, METEOR included (--test's default; Java is on the machine, else it says one line).
    expected = {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d"} | (
        {"meteor"} if shutil.which("java") else set()
    )
    assert expected <= test_metrics.keys() and "spice" not in test_metrics


# ----------------------------------------------------------------------------------------------------- resume


def test_resume_continues_with_exactly_the_same_losses(tmp_path, session_cache):
    cache_dir = session_cache  # the shapes set and its features, built once for the session
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train.main(demo_args(straight, cache_dir, "--max-steps", "6", "--run-name", "a")) == 0
    assert train.main(demo_args(resumed, cache_dir, "--max-steps", "3", "--run-name", "b")) == 0
    assert train.main(demo_args(resumed, cache_dir, "--max-steps", "6", "--resume")) == 0  # the run with these settings
    a = train_losses(straight / "models" / "runs" / "a")
    b = train_losses(resumed / "models" / "runs" / "b")  # the resumed run goes on in its own folder
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in range(1, 7):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), step
    assert [p.name for p in (resumed / "models" / "runs").iterdir()] == ["b"]
    # --max-steps is the run's length and its schedule's, and the checkpoint says so
    _, meta = read_checkpoint(resumed / "models" / "runs" / "b" / "1_tiny_top2_step6.safetensors")
    assert meta["schedule"] == {"total_steps": 6, "warmup_steps": 50, "epochs": 1, "set_by": "max_steps"}


def test_two_runs_in_one_folder_never_touch_each_others_files(tmp_path, session_cache, capsys):
    """Two runs that differ in one model setting share an output folder: each keeps, prunes and resumes its own
    checkpoints, and a command that could mean either says so instead of guessing."""
    cache_dir, runs = session_cache, tmp_path / "models" / "runs"
    common = ("--max-steps", "3", "--keep-checkpoints", "1")
    assert train.main(demo_args(tmp_path, cache_dir, *common, "--run-name", "nine")) == 0
    assert train.main(demo_args(tmp_path, cache_dir, *common, "--num-visual-tokens", "4", "--run-name", "four")) == 0
    four = (runs / "four" / "1_tiny_top2_step3.safetensors").read_bytes()  # mid-epoch: named with its step
    nine = runs / "nine" / "1_tiny_top2_step3.safetensors"
    assert nine.read_bytes() != four  # both survive: same stem, own folders

    # --resume with the first run's settings continues the first run (the newest run, "four", does not match) ...
    assert train.main(demo_args(tmp_path, cache_dir, "--max-steps", "6", "--keep-checkpoints", "1", "--resume")) == 0
    assert [p.name for p in list_checkpoints(runs / "nine")] == ["1_tiny_top2_step6.safetensors"]
    assert read_checkpoint(runs / "nine" / "1_tiny_top2_step6.safetensors")[1]["global_step"] == 6
    assert sorted(train_losses(runs / "nine")) == [1, 2, 3, 4, 5, 6]
    assert (runs / "four" / "1_tiny_top2_step3.safetensors").read_bytes() == four  # ... and never touches the second
    assert [p.name for p in list_checkpoints(runs / "four")] == ["1_tiny_top2_step3.safetensors"]

    # Resuming a run with other model settings is refused in one line, naming the difference.
    capsys.readouterr()
    refused = demo_args(tmp_path, cache_dir, "--num-visual-tokens", "9", "--run-name", "four", "--resume")
    assert train.main(refused) == 2
    error = capsys.readouterr().err.strip()
    assert "num_visual_tokens (9, not 4)" in error and len(error.splitlines()) == 1

    # --test without the setting that tells the runs apart names both; with it, picks one.
    test = ["--test", "--encoder", "tiny", "--top-k", "2", "--output-dir", str(tmp_path / "models")]
    assert train.main([*test, "--cache-dir", str(cache_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert "differ in num_visual_tokens" in error and "four" in error and "nine" in error
    assert len(error.splitlines()) == 1
    chosen = train.main(
        [*test, "--num-visual-tokens", "4", "--eval-images", "4", "--no-meteor", "--cache-dir", str(cache_dir)]
    )
    assert chosen == 0 and "test/1_tiny_top2_step3" in json.loads((runs / "four" / "metrics.json").read_text())


def test_an_old_flat_checkpoint_still_loads_by_its_path(tmp_path, trained_demo):
    """Checkpoints of the old layout (straight in the output folder) load by explicit path."""
    from checkpoints.restore import load_trained

    checkpoint = trained_demo[2]
    flat = tmp_path / checkpoint.name
    for suffix in (".safetensors", ".json", ".state.pt"):
        shutil.copyfile(checkpoint.with_suffix(suffix), flat.with_suffix(suffix))
    model, _, sidecar = load_trained(flat)
    assert sidecar["global_step"] == read_checkpoint(checkpoint)[1]["global_step"]
    for name, tensor in model.trainable_state_dict().items():
        assert torch.equal(tensor, read_checkpoint(checkpoint)[0][name])


def test_init_from_a_bridge_only_run_then_train_the_top_blocks(tmp_path, session_cache):
    cache_dir = session_cache
    assert train.main(demo_args(tmp_path, cache_dir, "--top-k", "0", "--max-steps", "2", "--run-name", "s1")) == 0
    stage1 = find_checkpoint(tmp_path / "models", {"encoder": "tiny", "top_k": 0})
    assert all(k.startswith("bridge.") for k in read_checkpoint(stage1)[0])
    stage2 = demo_args(tmp_path, cache_dir, "--top-k", "2", "--max-steps", "1", "--init-from", str(stage1))
    assert train.main([*stage2, "--run-name", "s2"]) == 0
    # The other way round is refused: a K=2 checkpoint trained blocks that a K=0 run freezes.
    trained = find_checkpoint(tmp_path / "models", {"encoder": "tiny", "top_k": 2})
    back = demo_args(tmp_path, cache_dir, "--top-k", "0", "--max-steps", "1", "--init-from", str(trained))
    assert train.main([*back, "--run-name", "s3"]) == 2


# ----------------------------------------------------------------------------------------------------- checkpoints


def test_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    import checkpoints.store as ckpt

    weights = {"bridge.w": torch.ones(3)}
    meta = {"model": {"encoder": "tiny", "top_k": 0}, "global_step": 1}
    save_checkpoint(tmp_path, "1_tiny_top0", weights, meta, {"step": 1})

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, "1_tiny_top0", {"bridge.w": torch.zeros(3)}, {**meta, "global_step": 2}, None)
    loaded, sidecar = read_checkpoint(tmp_path / "1_tiny_top0.safetensors")
    assert torch.equal(loaded["bridge.w"], torch.ones(3)) and sidecar["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "1_tiny_top0.json",
        "1_tiny_top0.safetensors",
        "1_tiny_top0.state.pt",
    ]


def test_old_checkpoints_are_pruned_only_after_the_new_one_and_only_in_their_run(tmp_path):
    from checkpoints.store import find_run, prune_checkpoints, run_directory

    settings = {"encoder": "vit", "top_k": 3}
    other = run_directory(tmp_path, "other")
    save_checkpoint(other, "1_vit_top3", {"x": torch.zeros(1)}, {"global_step": 5, "train_config": settings}, None)
    mine = run_directory(tmp_path, "mine")
    for epoch in (1, 2, 3):
        meta = {"model": settings, "global_step": epoch * 10, "train_config": settings}
        save_checkpoint(mine, f"{epoch}_vit_top3", {"x": torch.zeros(1)}, meta, None)
        prune_checkpoints(mine, keep=2)
    assert [p.name for p in list_checkpoints(mine)] == ["2_vit_top3.safetensors", "3_vit_top3.safetensors"]
    assert [p.name for p in list_checkpoints(other)] == ["1_vit_top3.safetensors"]  # another run's: untouched
    with pytest.raises(UserError, match="differs in encoder"):
        find_run(tmp_path, {"encoder": "clip", "top_k": 3})


# ----------------------------------------------------------------------------------------------------- configuration


def test_precedence_command_line_over_environment_over_dotenv_over_defaults(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("TOP_K=1\nBATCH_SIZE=4\nEPOCHS=7\nVISION_ENCODER=clip\n")
    env = {"TOP_K": "2", "BATCH_SIZE": "8"}
    cfg = load_config(["--top-k", "5"], env=env, dotenv=dotenv)
    assert (cfg.model.top_k, cfg.batch_size, cfg.epochs, cfg.model.encoder) == (5, 8, 7, "clip")
    assert cfg.lr_adapter == TrainConfig().lr_adapter  # untouched: the default
    assert cfg.wandb_project == "mlx8-w4-multimodal-transferlearning"


def test_demo_ignores_training_settings_from_the_environment(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("VISION_ENCODER=vit\nTOP_K=3\n")
    cfg = load_config(["--demo", "--epochs", "1"], env={"BATCH_SIZE": "2"}, dotenv=dotenv)
    assert (cfg.model.encoder, cfg.model.top_k, cfg.batch_size, cfg.epochs) == (
        "tiny",
        DEMO_SETTINGS["top_k"],
        DEMO_SETTINGS["batch_size"],
        1,
    )
    assert cfg.batch_size != 2 and cfg.threads == 1


def test_boolean_flags_are_real_booleans():
    assert load_config(["--grad-checkpointing"], env={}).grad_checkpointing is True
    assert load_config(["--no-grad-checkpointing"], env={}).grad_checkpointing is False
    assert load_config([], env={}).grad_checkpointing is False


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--encoder", "resnet"], {}, "encoder='resnet' is invalid; accepted: vit, clip, tiny"),
        (["--top-k", "-1"], {}, "top_k=-1 is invalid; expected an integer >= 0"),
        (["--batch-size", "many"], {}, "--batch-size='many' is invalid; expected an integer"),
        ([], {"TOP_K": "three"}, "TOP_K='three' is invalid; expected an integer"),
        ([], {"LR_ADAPTER": "fast"}, "LR_ADAPTER='fast' is invalid; expected a number"),
        (["--view", "patches"], {}, "view='patches' is invalid; accepted: pooled, hidden"),
        (["--threads", "0"], {}, "threads=0 is invalid; expected an integer >= 1"),
        (["--log-every", "0"], {}, "log_every=0 is invalid; expected an integer >= 1"),
    ],
)
def test_invalid_values_name_the_key_and_what_is_accepted(argv, env, message):
    with pytest.raises(UserError) as info:
        load_config(argv, env=env, dotenv="/nonexistent/.env")
    assert str(info.value) == message


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--encoder", "resnet"], "error: encoder='resnet' is invalid; accepted: vit, clip, tiny"),
        (["--epochs", "x"], "error: --epochs='x' is invalid; expected an integer"),
        (["--no-such-flag"], "error: unrecognized arguments: --no-such-flag (see --help)"),
    ],
)
def test_command_line_errors_are_one_line_and_exit_2(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # away from any .env in the checkout
    assert main_status(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err.strip()) == ("", expected)


def main_status(argv: list[str]) -> int:
    """train.py's exit status for `argv`, run in this process: main()'s return value, or argparse's SystemExit."""
    try:
        return train.main(argv)
    except SystemExit as stop:
        return stop.code


def test_the_command_line_itself_answers_a_mistake_in_one_line(tmp_path):
    """The same, through `python train.py` in a fresh interpreter: status 2 and one line, from the shell's view."""
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--encoder", "resnet"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    expected = "error: encoder='resnet' is invalid; accepted: vit, clip, tiny"
    assert (result.returncode, result.stdout, result.stderr.strip()) == (2, "", expected)


def test_top_k_above_the_decoder_depth_fails_before_loading(tiny_checkpoint, tmp_path, session_cache):
    path, _ = tiny_checkpoint()  # 3 blocks
    args = ["--data", "shapes", "--cache-dir", str(session_cache), "--decoder", str(path), "--encoder", "tiny"]
    with pytest.raises(UserError, match=r"top_k=4 is invalid; the decoder has 3 blocks"):
        training.run.run(load_config([*args, "--top-k", "4", "--output-dir", str(tmp_path)], env={}))


def test_clip_zero_shot_reference_row_ranks_by_cosine_similarity():
    """CLIP's own retrieval: L2-normalised image and text embeddings, compared by cosine similarity."""
    from data import ImageRecord
    from evaluation.evaluate import clip_zero_shot_retrieval

    records = [ImageRecord(f"im{i}", None, [f"caption {i} a", f"caption {i} b"], []) for i in range(3)]
    directions = torch.eye(3, 8)

    class TextTower:  # each caption "i" points along axis i, but "caption 2 b" mostly along axis 0: a miss
        def encode(self, texts):
            rows = [directions[int(t.split()[1])] for t in texts]
            rows[-1] = torch.nn.functional.normalize(0.9 * directions[0] + 0.1 * directions[2], dim=0)
            return torch.stack(rows)

    images = directions * torch.tensor([[2.0], [0.5], [3.0]])  # scale must not matter: cosine similarity
    result = clip_zero_shot_retrieval(TextTower(), images, records, gallery_size=3)
    assert result["clip_zero_shot/i2t_recall@1"] == 1.0  # every image has one of its captions on top
    assert result["clip_zero_shot/t2i_recall@1"] == pytest.approx(5 / 6)  # "caption 2 b" retrieves image 0


@pytest.mark.parametrize("pairs_per_forward", [3, 6, 512])  # 1 image a pass; 2 (and a last pass of 1); all 3
def test_retrieval_scores_equal_scoring_each_pair_alone(trained_demo, pairs_per_forward):
    """Captions are scored in length-sorted batches, against several images per pass; every score must land in its
    own (image, caption) cell."""
    from checkpoints.restore import load_trained
    from data import CAPTION_PROMPT, Sample, VLMCollator
    from evaluation.evaluate import likelihood_scores

    model, tokenizer, _ = load_trained(trained_demo[2])
    features = torch.randn(3, 10, 192, generator=torch.Generator().manual_seed(0))  # [images, tokens, width]
    captions = ["a red circle and a blue star on the left", "a star", "two shapes: a green square", "a circle"]
    scores = likelihood_scores(
        model, features, captions, tokenizer, 3, 24, torch.device("cpu"), contextlib.nullcontext, pairs_per_forward
    )

    collate = VLMCollator(tokenizer.tokenizer, tokenizer.eos_id, tokenizer.pad_id, 24)
    for j, caption in enumerate(captions):
        batch = collate([Sample(0, CAPTION_PROMPT, " " + caption, "caption")])
        for i in range(3):
            with torch.no_grad():
                alone = model.sequence_log_likelihood(batch["input_ids"], batch["labels"], features=features[i : i + 1])
            assert scores[i, j].item() == pytest.approx(alone.item(), abs=1e-5)


# ----------------------------------------------------------------------------------------------------- evaluation protocol


def checkpoint_test_args(output_dir, cache_dir) -> list[str]:
    """`--test` of the session's demo checkpoint (tiny encoder, K = 2)."""
    return [
        "--test",
        "--encoder",
        "tiny",
        "--top-k",
        "2",
        "--output-dir",
        str(output_dir),
        "--cache-dir",
        str(cache_dir),
        "--no-meteor",  # its Java VM takes 5-10 s to start; test_test_mode_evaluates_the_latest_checkpoint scores it
    ]


def test_test_mode_flags_win_over_the_checkpoint_and_metrics_json_records_the_protocol(trained_demo, monkeypatch):
    output_dir, cache_dir, checkpoint = trained_demo
    calls = []
    real_evaluate = training.run.evaluate
    monkeypatch.setattr(training.run, "evaluate", lambda *a, **kw: calls.append(a[4]) or real_evaluate(*a, **kw))
    args = checkpoint_test_args(output_dir, cache_dir)
    flags = ["--eval-images", "12", "--gallery-size", "4", "--max-new-tokens", "6", "--beams", "2"]
    assert train.main([*args, *flags, "--length-penalty", "0.5", "--num-samples", "2", "--batch-size", "3"]) == 0
    used = calls[-1]  # the EvalSettings evaluate was given
    assert (used.gallery_size, used.max_new_tokens, used.beams, used.length_penalty) == (4, 6, 2, 0.5)
    assert (used.num_samples, used.batch_size, used.ptb) == (2, 6, False)  # evaluation batch: 2 x 3

    # Flags not typed keep the checkpoint's values (the demo's), not train.py's defaults.
    assert train.main([*args, "--eval-images", "8"]) == 0
    demo = read_checkpoint(checkpoint)[1]["train_config"]
    used = calls[-1]
    assert (used.gallery_size, used.max_new_tokens, used.num_samples) == (
        demo["gallery_size"],
        demo["max_new_tokens"],
        demo["num_samples"],
    )
    assert (used.beams, used.batch_size) == (1, 2 * demo["batch_size"])

    metrics = json.loads((output_dir / "runs" / "session-demo" / "metrics.json").read_text())
    protocol = metrics[f"test/{checkpoint.stem}"]["protocol"]
    assert protocol["split"] == "random test" and protocol["images"] == 8 and protocol["tokenizer"] == "python"
    assert protocol["decoding"] == "greedy" and protocol["max_new_tokens"] == demo["max_new_tokens"]
    assert metrics["epoch_1/val"]["protocol"]["images"] == 40  # the session's run: --eval-images 40


def test_the_protocol_line_names_split_images_galleries_decoding_and_tokeniser():
    from evaluation.protocol import EvalProtocol

    line = EvalProtocol("karpathy test", 1000, 5000, 1000, 3, 1.0, 20, "ptb", 64).describe()
    assert line == (
        "protocol: karpathy test split, 1,000 images (5,000 captions); retrieval in 1 gallery of 1,000 images; "
        "captions by beam search (3 beams, length penalty 1), at most 20 tokens; BLEU/CIDEr on the Java PTB "
        "tokenizer; batch 64"
    )


def test_evaluation_config_takes_only_the_flags_the_user_typed():
    from training.config import test_config

    trained = TrainConfig.from_dict(
        dict(gallery_size=10, max_new_tokens=24, batch_size=16, num_samples=5, eval_images=50)
    )
    cfg = load_config(["--test", "--gallery-size", "1000", "--beams", "3", "--ptb"], env={}, dotenv="/nonexistent")
    used = test_config(cfg, trained)
    assert (used.evaluation.gallery_size, used.evaluation.beams, used.evaluation.ptb) == (1000, 3, True)
    assert (used.evaluation.max_new_tokens, used.batch_size, used.evaluation.num_samples, used.eval_images) == (
        24,
        16,
        5,
        50,
    )
    # the environment's BATCH_SIZE is a training setting: it does not replace the checkpoint's at --test
    cfg = load_config(["--test"], env={"BATCH_SIZE": "2"}, dotenv="/nonexistent")
    assert test_config(cfg, trained).batch_size == 16 and cfg.explicit == frozenset()


def test_ptb_without_java_is_one_line_and_exit_2_before_any_work(tmp_path, monkeypatch, capsys):
    """No `java` on the PATH: --ptb fails at once, before the (missing) checkpoint or any data is looked at."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    argv = ["--test", "--ptb", "--checkpoint", str(tmp_path / "missing.safetensors"), "--data", str(tmp_path / "no")]
    assert train.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --ptb needs Java on the PATH to run pycocoevalcap's PTB tokenizer (java not found); install a Java "
        "runtime (e.g. apt-get install default-jre-headless) or leave out --ptb"
    ]


@pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed (PTBTokenizer needs it)")
def test_ptb_with_java_scores_on_the_java_tokenizer(trained_demo, monkeypatch):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    output_dir, cache_dir, checkpoint = trained_demo
    tokenized = []
    real = PTBTokenizer.tokenize
    monkeypatch.setattr(PTBTokenizer, "tokenize", lambda self, batch: tokenized.append(len(batch)) or real(self, batch))
    args = checkpoint_test_args(output_dir, cache_dir)
    assert train.main([*args, "--eval-images", "6", "--gallery-size", "3", "--ptb"]) == 0
    # captions and the shuffled control: each call tokenises 6 images' references and 6 generated captions
    assert tokenized == [12, 12]
    metrics = json.loads((output_dir / "runs" / "session-demo" / "metrics.json").read_text())
    assert metrics[f"test/{checkpoint.stem}"]["protocol"]["tokenizer"] == "ptb"


def test_num_workers_reaches_the_feature_extraction(tmp_path, session_cache, monkeypatch):
    """--num-workers is the DataLoader workers of feature extraction (vision/cache.py), not a dead flag."""
    seen = []
    features = training.run.FeatureCache.features

    def recording(self, *args, **kwargs):
        seen.append(kwargs.get("num_workers"))
        return features(self, *args, **kwargs)

    monkeypatch.setattr(training.run.FeatureCache, "features", recording)
    args = demo_args(tmp_path, session_cache, "--num-workers", "2", "--max-steps", "1", "--run-name", "workers")
    assert train.main(args) == 0
    assert seen and set(seen) == {2}


def test_lora_with_top_1_trains_resumes_exactly_tests_captions_and_pushes(tmp_path, session_cache, capsys):
    """`--lora-rank 4 --top-k 1` on the demo: adapters on the two blocks below the top one. A run stopped at step 3
    and resumed gives step 6 the losses of a straight run; --test evaluates it; caption.py's Captioner (which merges
    the adapters into the weights) captions what the unmerged model generates; the dry-run push's card says LoRA."""
    from captioning import Captioner, Decoding
    from checkpoints.restore import load_trained
    from data.images import load_image

    lora = ("--lora-rank", "4", "--top-k", "1", "--lr-lora", "1e-3")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train.main(demo_args(straight, session_cache, *lora, "--max-steps", "6", "--run-name", "a")) == 0
    assert "LoRA r=4 a=8 (all, blocks 0-1)" in capsys.readouterr().err  # the what-trains table
    assert train.main(demo_args(resumed, session_cache, *lora, "--max-steps", "3", "--run-name", "b")) == 0
    assert train.main(demo_args(resumed, session_cache, *lora, "--max-steps", "6", "--resume")) == 0
    a, b = train_losses(straight / "models" / "runs" / "a"), train_losses(resumed / "models" / "runs" / "b")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in range(1, 7):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), step
    checkpoint = resumed / "models" / "runs" / "b" / "1_tiny_top1_step6.safetensors"
    weights, meta = read_checkpoint(checkpoint)
    assert meta["model"]["lora_rank"] == 4 and "lora_rank" in meta["run_keys"]
    assert any(".lora_B." in k for k in weights) and not any(".base_layer." in k for k in weights)
    assert any(v.abs().max() > 0 for k, v in weights.items() if ".lora_B." in k)  # B left zero: it trained

    test = ["--test", "--checkpoint", str(checkpoint), "--eval-images", "4", "--no-meteor"]
    assert train.main([*test, "--cache-dir", str(session_cache), "--wandb", "disabled"]) == 0

    model, _, _ = load_trained(checkpoint)
    assert model.lora  # the unmerged model, as trained
    image = load_image(next((session_cache).rglob("*.png")))
    captioner = Captioner(checkpoint, "cpu")
    assert not captioner.model.lora  # merged
    unmerged = Captioner.__new__(Captioner)
    unmerged.__dict__.update(captioner.__dict__ | {"model": model})
    (merged_text, merged_score), (text, score) = (
        captioner.run([image], None, Decoding())[0],
        unmerged.run([image], None, Decoding())[0],
    )
    assert merged_text == text and merged_score == pytest.approx(score, abs=1e-5)  # the same caption

    capsys.readouterr()
    push = ["--push-to-hub", "someone/lora", "--dry-run", "--checkpoint", str(checkpoint)]
    assert train.main([*push, "--output-dir", str(resumed / "models")]) == 0
    assert "with LoRA adapters of rank 4 (alpha 8; on all)" in "".join(capsys.readouterr())
