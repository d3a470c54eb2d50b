"""Every command line answers a user's mistake the same way: one line on stderr, exit status 2, no traceback.

`CASES` walks every option of every entry point (train.py, caption.py, python -m experiments, python -m synth,
python -m explain.pointing, python -m bench.*, weights_loader.py) with values it must refuse: the wrong type, out of
range, a missing path, a file where a folder is expected and the reverse, and pairs that contradict each other.
`test_every_option_has_a_case` fails when an option is added without one (switches, which take no value, and free
text are listed with the reason). Each case calls the command's `main()` in this process, so the whole table takes
seconds; the real command lines are run once each by the commands' own test files.

Each error line must also name only options that exist in that command (advice to pass a flag the command does not
have is a mistake too), and every option's `--help` must show its default.

Read next: `errors.py` (the one-line contract), `checkpoints/resolve.py` (the checkpoint forms every command takes).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from collections.abc import Callable

import pytest
from conftest import tiny_qwen3_config
from PIL import Image

BENCHES = ("decoder", "generation", "train_step", "gpu", "retrieval", "feature_cache", "feature_extraction",
           "data_loading", "run_all", "memory")  # fmt: skip


def entry_points() -> dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[list[str]], int]]]:
    """name -> (its parser, its main), imported here: the table's module is collected by both test workers."""
    import caption
    import train
    import weights_loader
    from data import inspect
    from demo import tables
    from experiments import __main__ as experiments
    from explain.pointing import __main__ as pointing
    from synth import __main__ as synth
    from training.config import build_parser as train_parser

    found = {
        "train.py": (train_parser, train.main),
        "caption.py": (caption.build_parser, caption.main),
        "experiments": (experiments.build_parser, experiments.main),
        "synth": (synth.build_parser, synth.main),
        "explain.pointing": (pointing.build_parser, pointing.main),
        "weights_loader.py": (weights_loader.build_parser, weights_loader.main),
        "data.inspect": (inspect.build_parser, inspect.main),
        "demo.tables": (tables.build_parser, tables.main),
    }
    for name in BENCHES:
        module = importlib.import_module(f"bench.{name}")
        found[f"bench.{name}"] = (module.build_parser, module.main)
    return found


# Options without a value to refuse: switches (on or off; their conflicts are cases of the options they qualify)
# and free text, with the reason it is free.
NOTHING_TO_REFUSE = {
    "train.py": {"--train": "switch", "--no-resume": "switch",
                 "--image-column": "a column name, read when the data is", "--caption-column": "the same",
                 "--wandb-project": "any W&B project name", "--wandb-entity": "any W&B entity",
                 "--wandb-group": "any W&B group name"},
    "caption.py": {"--question": "any question", "--no-early-stopping": "switch", "--serve": "switch",
                   "--no-auth": "switch"},
    "synth": {"--dry-run": "switch"},
    "explain.pointing": {"--best-head": "switch", "--no-controls": "switch", "--include-training-images": "switch",
                         "--methods": "checked against the model's heads once it is loaded (test_explain.py)"},
    "weights_loader.py": {},
    "demo.tables": {"--check": "switch"},
    "data.inspect": {"--image-column": "a column name, read when the data is", "--caption-column": "the same",
                     "--tokenizer": "one that does not load is reported, and words are counted instead"},
    "bench.gpu": {"--skip-max-batch": "switch", "--no-write": "switch"},
    "bench.feature_cache": {"--keep": "switch", "--no-write": "switch"},
    "bench.data_loading": {"--keep": "switch", "--no-write": "switch"},
    "bench.memory": {"--measure": "switch", "--write": "switch"},
} | {f"bench.{name}": {"--no-write": "switch"} for name in ("decoder", "generation", "train_step", "retrieval",
                                                              "feature_extraction", "run_all")}  # fmt: skip

DEMO = ["--demo", "--output-dir", "{out}", "--cache-dir", "{cache}"]  # train.py cases that reach the checks of a run
TEST = ["--test", "--output-dir", "{out}", "--cache-dir", "{cache}"]
IMAGE = ["{image}", "--output-dir", "{out}"]  # caption.py: a readable image, and an output folder with no run
GRID = ["smoke", "--results-dir", "{tmp}/r", "--work-dir", "{tmp}/w", "--cache-dir", "{cache}"]
SYNTH = ["--images", "{dir}", "--out", "{tmp}/synthetic"]
POINT = ["--checkpoint", "{missing}.safetensors"]  # the option's own check comes before the checkpoint's

# (entry point, the option the case is about, its arguments, the start of what the one stderr line says after "error: ")
CASES = [
    # ---------------------------------------------------------------------------------------------------- train.py
    ("train.py", "--test", ["--test", "--demo"], "argument --demo: not allowed with argument --test"),
    ("train.py", "--demo", ["--demo", "--push-to-hub", "a/b", "--test"], "argument --test: not allowed with"),
    ("train.py", "--encoder", ["--encoder", "resnet"], "encoder='resnet' is invalid; accepted: vit, clip, tiny"),
    ("train.py", "--encoder-weights", [*DEMO, "--encoder-weights", "{missing}.safetensors"], "unknown weights"),
    ("train.py", "--encoder-weights", [*DEMO, "--encoder-weights", "{dir}"], "unknown weights"),
    ("train.py", "--view", ["--view", "patches"], "view='patches' is invalid; accepted: pooled, hidden"),
    ("train.py", "--top-k", ["--top-k", "x"], "--top-k='x' is invalid; expected an integer"),
    ("train.py", "--top-k", ["--top-k", "-1"], "top_k=-1 is invalid; expected an integer >= 0"),
    ("train.py", "--top-k", [*DEMO, "--top-k", "5"], "top_k=5 is invalid; the decoder has 3 blocks"),
    ("train.py", "--num-visual-tokens", ["--num-visual-tokens", "0"], "num_visual_tokens=0 is invalid"),
    ("train.py", "--bridge-hidden-dim", ["--bridge-hidden-dim", "x"], "--bridge-hidden-dim='x' is invalid"),
    ("train.py", "--bridge-hidden-dim", ["--bridge-hidden-dim", "0"], "bridge_hidden_dim=0 is invalid"),
    ("train.py", "--decoder", [*DEMO, "--decoder", "{missing}"], "checkpoint not found: '{missing}' is neither"),
    ("train.py", "--decoder", [*DEMO, "--decoder", "{file}"], "checkpoint not found: '{file}' is neither"),
    ("train.py", "--data", [*DEMO, "--data", "{missing}"], "data source '{missing}' is not"),
    ("train.py", "--split", ["--split", "sideways"], "split='sideways' is invalid"),
    ("train.py", "--tasks", ["--tasks", "dance"], "tasks='dance' is invalid; accepted: caption, qa"),
    ("train.py", "--max-target-tokens", ["--max-target-tokens", "-1"], "max_target_tokens=-1 is invalid"),
    ("train.py", "--max-bad-fraction", ["--max-bad-fraction", "2"], "max_bad_fraction=2.0 is invalid"),
    ("train.py", "--max-bad-fraction", ["--max-bad-fraction", "x"], "--max-bad-fraction='x' is invalid"),
    ("train.py", "--num-workers", ["--num-workers", "-1"], "num_workers=-1 is invalid"),
    ("train.py", "--epochs", ["--epochs", "x"], "--epochs='x' is invalid; expected an integer"),
    ("train.py", "--epochs", ["--epochs", "0"], "epochs=0 is invalid; expected an integer >= 1"),
    ("train.py", "--batch-size", ["--batch-size", "0"], "batch_size=0 is invalid"),
    ("train.py", "--grad-accum", ["--grad-accum", "0"], "grad_accum=0 is invalid"),
    ("train.py", "--lr-adapter", ["--lr-adapter", "fast"], "--lr-adapter='fast' is invalid; expected a number"),
    ("train.py", "--lr-qwen", ["--lr-qwen", "-1"], "lr_qwen=-1.0 is invalid; expected a number >= 0"),
    ("train.py", "--lr-lora", ["--lr-lora", "-1"], "lr_lora=-1.0 is invalid; expected a number >= 0"),
    ("train.py", "--lora-rank", ["--lora-rank", "-1"], "lora_rank=-1 is invalid; expected an integer >= 0"),
    ("train.py", "--lora-rank", ["--demo", "--lora-rank", "4", "--top-k", "3"], "--lora-rank 4 adapts the blocks below the top K, and --top-k 3 trains all 3"),
    ("train.py", "--lora-rank", ["--demo", "--lora-rank", "129"], "--lora-rank 129 is invalid for k_proj, a 128 -> 64"),
    ("train.py", "--lora-alpha", ["--lora-rank", "4", "--lora-alpha", "0"], "lora_alpha=0.0 is invalid"),
    ("train.py", "--lora-targets", ["--lora-rank", "4", "--lora-targets", "qproj"], "--lora-targets 'qproj' names no linear layer of a Qwen3"),
    ("train.py", "--lora-targets", ["--lora-rank", "4", "--lora-targets", "lm_head"], "--lora-targets lm_head is refused"),
    ("train.py", "--weight-decay", ["--weight-decay", "-0.1"], "weight_decay=-0.1 is invalid"),
    ("train.py", "--warmup-steps", ["--warmup-steps", "-1"], "warmup_steps=-1 is invalid"),
    ("train.py", "--grad-clip", ["--grad-clip", "-1"], "grad_clip=-1.0 is invalid"),
    ("train.py", "--max-steps", ["--max-steps", "0"], "max_steps=0 is invalid; expected an integer >= 1"),
    ("train.py", "--grad-checkpointing", ["--grad-checkpointing=yes"], "argument --grad-checkpointing"),
    ("train.py", "--lead-token", ["--lead-token=yes"], "argument --lead-token"),
    ("train.py", "--seed", ["--seed", "-1"], "seed=-1 is invalid; expected an integer >= 0"),
    ("train.py", "--device", ["--device", "tpu"], "device='tpu' is invalid"),
    ("train.py", "--threads", ["--threads", "0"], "threads=0 is invalid; expected an integer >= 1"),
    ("train.py", "--precision", ["--precision", "fp8"], "precision='fp8' is invalid"),
    ("train.py", "--eval-images", ["--eval-images", "0"], "eval_images=0 is invalid"),
    ("train.py", "--gallery-size", ["--gallery-size", "0"], "gallery_size=0 is invalid"),
    ("train.py", "--max-new-tokens", ["--max-new-tokens", "0"], "max_new_tokens=0 is invalid"),
    ("train.py", "--num-samples", ["--num-samples", "-1"], "num_samples=-1 is invalid"),
    ("train.py", "--beams", ["--beams", "0"], "beams=0 is invalid"),
    ("train.py", "--length-penalty", ["--length-penalty", "long"], "--length-penalty='long' is invalid"),
    ("train.py", "--ptb", ["--ptb=maybe"], "argument --ptb"),
    ("train.py", "--meteor", ["--meteor=maybe"], "argument --meteor"),
    ("train.py", "--spice", ["--spice=maybe"], "argument --spice"),
    ("train.py", "--eval-every", ["--eval-every", "-1"], "eval_every=-1 is invalid"),
    ("train.py", "--output-dir", [*DEMO, "--output-dir", "{file}"], "--output-dir {file} is a file; expected a folder"),
    ("train.py", "--cache-dir", [*DEMO, "--cache-dir", "{file}"], "--cache-dir {file} is a file; expected a folder"),
    ("train.py", "--run-name", ["--run-name", "a/b"], "run_name='a/b' is invalid"),
    ("train.py", "--save-every", ["--save-every", "-1"], "save_every=-1 is invalid"),
    ("train.py", "--keep-checkpoints", ["--keep-checkpoints", "0"], "keep_checkpoints=0 is invalid"),
    ("train.py", "--resume", ["--resume", "maybe"], "--resume 'maybe' is invalid; accepted: --resume, or --resume"),
    ("train.py", "--resume", ["--resume", "auto"], "--resume auto needs --run-name NAME"),
    ("train.py", "--resume", [*DEMO, "--resume"], "no run with a checkpoint to resume in {out}/runs; start it"),
    ("train.py", "--resume", [*TEST, "--resume"], "--test evaluates a checkpoint and trains nothing, so --resume"),
    ("train.py", "--init-from", [*DEMO, "--init-from", "{missing}"], "--init-from {missing}: no such file or folder"),
    ("train.py", "--init-from", [*DEMO, "--init-from", "{dir}"], "--init-from {dir}: no checkpoint in this folder"),
    ("train.py", "--init-from", [*DEMO, "--init-from", "latest"], "no run with a checkpoint in {out}/runs"),
    ("train.py", "--init-from", [*TEST, "--init-from", "{dir}"], "--test evaluates a checkpoint and trains nothing"),
    ("train.py", "--checkpoint", [*TEST, "--checkpoint", "{missing}"], "--checkpoint {missing}: no such file or"),
    ("train.py", "--checkpoint", [*TEST, "--checkpoint", "{file}"], "--checkpoint {file} is not a checkpoint"),
    ("train.py", "--checkpoint", [*TEST, "--checkpoint", "{tmp}/1_vit_top3.state.pt"], "--checkpoint {tmp}/1_vit_top3"
     ".state.pt is a checkpoint's training state"),
    ("train.py", "--checkpoint", [*TEST, "--checkpoint", "hf:nobody"], "--checkpoint 'hf:nobody' is not a valid repo"),
    ("train.py", "--checkpoint", [*TEST], "no run with a checkpoint in {out}/runs; train one first or pass"),
    ("train.py", "--checkpoint", ["--checkpoint", "{file}"], "--checkpoint names the checkpoint of --test or"),
    ("train.py", "--push-to-hub", ["--push-to-hub", "not a repo"], "--push-to-hub 'not a repo' is not a valid repo id"),
    ("train.py", "--push-to-hub", [*DEMO, "--push-to-hub", "a/b"], "no run with a checkpoint in {out}/runs"),
    ("train.py", "--public", ["--public"], "--public only applies to an upload; add --push-to-hub OWNER/NAME"),
    ("train.py", "--dry-run", ["--dry-run"], "--dry-run only applies to an upload"),
    ("train.py", "--hub-decoder", ["--hub-decoder", "Qwen/Qwen3-0.6B-Base"], "--hub-decoder only applies to an upload"),
    ("train.py", "--hub-decoder", ["--push-to-hub", "a/b", "--hub-decoder", "no id"], "--hub-decoder 'no id' is not"),
    ("train.py", "--wandb", ["--wandb", "sometimes"], "wandb='sometimes' is invalid"),
    ("train.py", "--log-every", ["--log-every", "0"], "log_every=0 is invalid"),
    # ---------------------------------------------------------------------------------------------------- caption.py
    ("caption.py", "IMAGE", ["{missing}.png"], "{missing}.png: no such file or folder"),
    ("caption.py", "IMAGE", ["{dir}"], "{dir}: no images in this folder"),
    ("caption.py", "IMAGE", ["--serve", "{image}"], "--serve takes no image paths"),
    ("caption.py", "--checkpoint", [*IMAGE, "--checkpoint", "{missing}"], "--checkpoint {missing}: no such file or"),
    ("caption.py", "--checkpoint", [*IMAGE, "--checkpoint", "{file}"], "--checkpoint {file} is not a checkpoint"),
    ("caption.py", "--checkpoint", [*IMAGE, "--checkpoint", "{dir}"], "--checkpoint {dir}: no checkpoint in this"),
    ("caption.py", "--checkpoint", [*IMAGE, "--checkpoint", "{tmp}/1_vit_top3.state.pt"], "--checkpoint {tmp}/1_vit_"
     "top3.state.pt is a checkpoint's training state"),
    ("caption.py", "--checkpoint", [*IMAGE, "--checkpoint", "hf:nobody"], "--checkpoint 'hf:nobody' is not a valid"),
    ("caption.py", "--decoder", [*IMAGE, "--decoder", "{missing}"], "--decoder {missing}: no such folder"),
    ("caption.py", "--decoder", [*IMAGE, "--decoder", "{file}"], "--decoder {file} is a file; expected a folder"),
    ("caption.py", "--encoder-weights", [*IMAGE, "--encoder-weights", "{missing}.pt"], "--encoder-weights {missing}.pt"
     ": no such file"),
    ("caption.py", "--encoder-weights", [*IMAGE, "--encoder-weights", "{dir}"], "--encoder-weights {dir} is a folder"),
    ("caption.py", "--output-dir", ["{image}", "--output-dir", "{file}"], "--output-dir {file} is a file"),
    ("caption.py", "--output-dir", ["{image}", "--output-dir", "{missing}"], "no run with a checkpoint in {missing}/"),
    ("caption.py", "--out", [*IMAGE, "--out", "{dir}"], "--out {dir} is a folder; expected a .jsonl file"),
    ("caption.py", "--out", [*IMAGE, "--out", "{missing}/out.jsonl"], "cannot write --out {missing}/out.jsonl"),
    ("caption.py", "--explain", [*IMAGE, "--explain", "{file}"], "--explain {file} is a file; expected a folder"),
    ("caption.py", "--batch-size", [*IMAGE, "--batch-size", "0"], "--batch-size 0 is invalid"),
    ("caption.py", "--batch-size", [*IMAGE, "--batch-size", "x"], "argument --batch-size: invalid int value"),
    ("caption.py", "--device", [*IMAGE, "--device", "tpu"], "argument --device: invalid choice"),
    ("caption.py", "--max-new-tokens", [*IMAGE, "--max-new-tokens", "0"], "--max-new-tokens 0 is invalid"),
    ("caption.py", "--beams", [*IMAGE, "--beams", "0"], "--beams 0 is invalid"),
    ("caption.py", "--beams", [*IMAGE, "--beams", "2", "--temperature", "0.5"], "--beams and sampling"),
    ("caption.py", "--length-penalty", [*IMAGE, "--length-penalty", "x"], "argument --length-penalty: invalid float"),
    ("caption.py", "--temperature", [*IMAGE, "--temperature", "-1"], "--temperature -1.0 is invalid"),
    ("caption.py", "--top-k", [*IMAGE, "--top-k", "0"], "--top-k 0 is invalid"),
    ("caption.py", "--top-p", [*IMAGE, "--top-p", "2"], "--top-p 2.0 is invalid"),
    ("caption.py", "--seed", [*IMAGE, "--seed", "-1"], "--seed -1 is invalid; expected an integer >= 0"),
    ("caption.py", "--port", ["--serve", "--port", "70000"], "--port 70000 is invalid; expected 0..65535"),
    ("caption.py", "--port", ["--serve", "--port", "x"], "argument --port: invalid int value"),
    ("caption.py", "--auth", ["--serve", "--auth", "nobody"], "--auth must be USER:PASSWORD"),
    ("caption.py", "--auth", ["--serve", "--auth", "a:b", "--no-auth"], "--auth and --no-auth exclude each other"),
    ("caption.py", "--host", ["--serve", "--host", "0.0.0.0"], "--host 0.0.0.0 opens the page to the network"),
    ("caption.py", "--max-upload-mb", ["--serve", "--max-upload-mb", "0"], "--max-upload-mb 0 is invalid"),
    ("caption.py", "--queue-size", ["--serve", "--queue-size", "0"], "--queue-size 0 is invalid"),
    ("caption.py", "--concurrency", ["--serve", "--concurrency", "0"], "--concurrency 0 is invalid"),
    # ---------------------------------------------------------------------------------------------------- experiments
    ("experiments", "GRID", ["nosuch", *GRID[1:]], "grid 'nosuch' is unknown"),
    ("experiments", "--seeds", [*GRID, "--seeds", "a"], "--seeds 'a' is invalid"),
    ("experiments", "--seeds", [*GRID, "--seeds", "-1"], "--seeds '-1' is invalid"),
    ("experiments", "--jobs", [*GRID, "--jobs", "0"], "--jobs '0' is invalid"),
    ("experiments", "--epochs", [*GRID, "--epochs", "0"], "--epochs '0' is invalid"),
    ("experiments", "--k", ["transfer", *GRID[1:], "--k", "two"], "--k value 'two' is invalid"),
    ("experiments", "--k", ["transfer", *GRID[1:], "--k", "0,5"], "top_k=5 is invalid; the decoder has 3 blocks"),
    ("experiments", "--views", ["views", *GRID[1:], "--views", "patches"], "--views value 'patches' is invalid"),
    ("experiments", "--tokens", ["views", *GRID[1:], "--tokens", "0"], "--tokens '0' is invalid"),
    ("experiments", "--stage1-epochs", [*GRID, "--stage1-epochs", "0"], "--stage1-epochs '0' is invalid"),
    ("experiments", "--two-stage-k", ["two-stage", *GRID[1:], "--two-stage-k", "x"], "--two-stage-k 'x' is invalid"),
    ("experiments", "--eval-every", [*GRID, "--eval-every", "-1"], "--eval-every '-1' is invalid"),
    ("experiments", "--results-dir", [*GRID, "--results-dir", "{file}"], "--results-dir {file} is a file"),
    ("experiments", "--work-dir", [*GRID, "--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("experiments", "--cache-dir", [*GRID, "--cache-dir", "{file}"], "--cache-dir {file} is a file"),
    ("experiments", "--wandb", [*GRID, "--wandb", "sometimes"], "wandb='sometimes' is invalid"),
    ("experiments", "--decoder", [*GRID, "--decoder", "{missing}"], "checkpoint not found: '{missing}'"),
    ("experiments", "--encoder", [*GRID, "--decoder", "{decoder}", "--encoder", "resnet"], "encoder='resnet' is"),
    ("experiments", "--encoder-weights", [*GRID, "--decoder", "{decoder}", "--encoder-weights", "{missing}.pt"],
     "unknown weights"),
    ("experiments", "--data", [*GRID, "--decoder", "{decoder}", "--data", "{missing}"], "data source '{missing}'"),
    # ---------------------------------------------------------------------------------------------------- synth
    ("synth", "--images", ["--out", "{tmp}/synthetic"], "nothing to do"),
    ("synth", "--images", ["--images", "{missing}", "--out", "{tmp}/s", "--dry-run"], "--images {missing}: no such"),
    ("synth", "--images", ["--images", "{file}", "--out", "{tmp}/s"], "--images {file} is a file; expected a folder"),
    ("synth", "--out", ["--images", "{dir}"], "the following arguments are required: --out"),
    ("synth", "--out", ["--images", "{dir}", "--out", "{file}"], "--out {file} is a file; expected a folder"),
    ("synth", "--out", ["--out", "{missing}", "--push-to-hub", "a/b"], "--out {missing}: no such folder"),
    ("synth", "--questions", [*SYNTH, "--questions", "x"], "argument --questions: invalid int value"),
    ("synth", "--questions", [*SYNTH, "--questions", "-1"], "--questions must be at least 0"),
    ("synth", "--batch-size", [*SYNTH, "--batch-size", "0"], "--batch-size must be at least 1"),
    ("synth", "--limit", [*SYNTH, "--limit", "0"], "--limit must be at least 1"),
    ("synth", "--model", [*SYNTH, "--model", "{missing}"], "--model {missing}: no such folder"),
    ("synth", "--model", [*SYNTH, "--model", "{file}"], "--model {file} is a file; expected a folder"),
    ("synth", "--max-new-tokens", [*SYNTH, "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    ("synth", "--max-pixels", [*SYNTH, "--max-pixels", "10"], "--max-pixels must be at least 3136"),
    ("synth", "--cache-dir", [*SYNTH, "--cache-dir", "{file}"], "--cache-dir {file} is a file"),
    ("synth", "--seed", [*SYNTH, "--seed", "-1"], "--seed must be at least 0"),
    ("synth", "--push-to-hub", [*SYNTH, "--push-to-hub", "not a repo"], "--push-to-hub 'not a repo' is not a valid"),
    ("synth", "--public", [*SYNTH, "--public"], "--public only applies to an upload"),
    # ---------------------------------------------------------------------------------------------------- explain
    ("explain.pointing", "--checkpoint", [], "the following arguments are required: --checkpoint"),
    pytest.param("explain.pointing", "--checkpoint", ["--checkpoint", "{missing}"],
                 "--checkpoint {missing}: no such file or folder"),
    pytest.param("explain.pointing", "--checkpoint", ["--checkpoint", "{dir}"],
                 "--checkpoint {dir}: no checkpoint in this folder"),
    pytest.param("explain.pointing", "--checkpoint", ["--checkpoint", "{tmp}/1_vit_top3.state.pt"],
                 "--checkpoint {tmp}/1_vit_top3.state.pt is a checkpoint's training state"),
    ("explain.pointing", "--data", [*POINT, "--data", "coco"], "--data 'coco' is invalid"),
    ("explain.pointing", "--images", [*POINT, "--data", "flickr30k-entities:{dir}"], "--data flickr30k-entities:DIR "
     "needs --images"),
    pytest.param("explain.pointing", "--images", [*POINT, "--data", "flickr30k-entities:{dir}", "--images",
                 "{missing}"], "--images {missing}: no such folder"),
    pytest.param("explain.pointing", "--split", [*POINT, "--split", "dev"], "--split 'dev' is invalid"),
    ("explain.pointing", "--limit", [*POINT, "--limit", "0"], "--limit 0 is invalid"),
    pytest.param("explain.pointing", "--grid", [*POINT, "--grid", "0"], "--grid 0 is invalid"),
    pytest.param("explain.pointing", "--cache-dir", [*POINT, "--cache-dir", "{file}"], "--cache-dir {file} is a file"),
    pytest.param("explain.pointing", "--out", [*POINT, "--out", "{file}"], "--out {file} is a file"),
    pytest.param("explain.pointing", "--threads", [*POINT, "--threads", "0"], "--threads 0 is invalid"),
    ("explain.pointing", "--device", [*POINT, "--device", "tpu"], "argument --device: invalid choice"),
    # ---------------------------------------------------------------------------------------------------- weights_loade
    ("weights_loader.py", "source", ["{missing}"], "checkpoint not found: '{missing}' is neither a directory"),
    ("weights_loader.py", "source", ["{file}"], "checkpoint not found: '{file}' is neither a directory"),
    ("weights_loader.py", "source", ["nobody/nothing"], "could not fetch"),
    ("weights_loader.py", "source", ["--bogus"], "unrecognized arguments: --bogus"),
    ("weights_loader.py", "--prompt", ["{dir}", "--prompt", ""], "--prompt is empty"),
    ("weights_loader.py", "--max-new-tokens", ["{dir}", "--max-new-tokens", "-1"], "--max-new-tokens -1 is invalid"),
    ("weights_loader.py", "--max-new-tokens", ["{dir}", "--max-new-tokens", "x"], "argument --max-new-tokens"),
    # ---------------------------------------------------------------------------------------------------- bench.*
    ("bench.decoder", "--batch", ["--batch", "0"], "--batch 0 is invalid; expected a number >= 1"),
    ("bench.decoder", "--seq", ["--seq", "x"], "argument --seq: invalid int value"),
    ("bench.decoder", "--layers", ["--layers", "29"], "--layers 29 is invalid; the decoder has 28 blocks"),
    ("bench.decoder", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.decoder", "--repeats", ["--repeats", "0"], "--repeats 0 is invalid"),
    ("bench.decoder", "--warmup", ["--warmup", "-1"], "--warmup -1 is invalid"),
    ("bench.decoder", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.generation", "--sizes", ["--sizes", "7b"], "argument --sizes: invalid choice"),
    ("bench.generation", "--batches", ["--batches", "1", "0"], "--batches 0 is invalid"),
    ("bench.generation", "--prompt", ["--prompt", "0"], "--prompt 0 is invalid"),
    ("bench.generation", "--new", ["--new", "0"], "--new 0 is invalid"),
    ("bench.generation", "--layers", ["--layers", "4"], "--layers 4 is invalid; the decoder has 3 blocks"),
    ("bench.generation", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.generation", "--repeats", ["--repeats", "0"], "--repeats 0 is invalid"),
    ("bench.generation", "--warmup", ["--warmup", "-1"], "--warmup -1 is invalid"),
    ("bench.generation", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.train_step", "--batch", ["--batch", "0"], "--batch 0 is invalid"),
    ("bench.train_step", "--memory-batches", ["--memory-batches", "0"], "--memory-batches 0 is invalid"),
    ("bench.train_step", "--steps", ["--steps", "0"], "--steps 0 is invalid"),
    ("bench.train_step", "--rounds", ["--rounds", "0"], "--rounds 0 is invalid"),
    ("bench.train_step", "--frozen-dtype", ["--frozen-dtype", "fp16"], "argument --frozen-dtype: invalid choice"),
    ("bench.train_step", "--top-k", ["--top-k", "-1"], "--top-k -1 is invalid"),
    ("bench.train_step", "--top-k", ["--layers", "2", "--top-k", "3"], "--top-k 3 is invalid; the decoder keeps 2"),
    ("bench.train_step", "--visual-tokens", ["--visual-tokens", "0"], "--visual-tokens 0 is invalid"),
    ("bench.train_step", "--layers", ["--layers", "0"], "--layers 0 is invalid"),
    ("bench.train_step", "--variants", ["--variants", "fastest"], "argument --variants: invalid choice"),
    ("bench.train_step", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.train_step", "--warmup", ["--warmup", "-1"], "--warmup -1 is invalid"),
    ("bench.train_step", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.gpu", "--device", ["--device", "tpu"], "--device 'tpu' is invalid"),
    ("bench.gpu", "--batch", ["--batch", "0"], "--batch 0 is invalid"),
    ("bench.gpu", "--steps", ["--steps", "0"], "--steps 0 is invalid"),
    ("bench.gpu", "--top-k", ["--top-k", "29"], "--top-k 29 is invalid; the decoder keeps 28 blocks"),
    ("bench.gpu", "--layers", ["--layers", "0"], "--layers 0 is invalid"),
    ("bench.gpu", "--budget-gib", ["--budget-gib", "0"], "--budget-gib 0.0 is invalid; expected a number > 0"),
    ("bench.gpu", "--peak-tflops", ["--peak-tflops", "-1"], "--peak-tflops -1.0 is invalid"),
    ("bench.gpu", "--compile", ["--compile", "--device", "cpu"], "--compile is for CUDA only"),
    ("bench.gpu", "--gallery", ["--gallery", "-1"], "--gallery -1 is invalid"),
    ("bench.gpu", "--pairs-per-forward", ["--pairs-per-forward", "0"], "--pairs-per-forward 0 is invalid"),
    ("bench.gpu", "--tokenizer", ["--tokenizer", "{missing}"], "--tokenizer {missing}: no such folder"),
    ("bench.gpu", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.gpu", "--repeats", ["--repeats", "0"], "--repeats 0 is invalid"),
    ("bench.gpu", "--warmup", ["--warmup", "-1"], "--warmup -1 is invalid"),
    ("bench.gpu", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.retrieval", "--device", ["--device", "tpu"], "--device 'tpu' is invalid"),
    ("bench.retrieval", "--layers", ["--layers", "29"], "--layers 29 is invalid"),
    ("bench.retrieval", "--gallery", ["--gallery", "0"], "--gallery 0 is invalid"),
    ("bench.retrieval", "--pairs-per-forward", ["--pairs-per-forward", "0"], "--pairs-per-forward 0 is invalid"),
    ("bench.retrieval", "--tokenizer", ["--tokenizer", "{file}"], "--tokenizer {file} is a file; expected a folder"),
    ("bench.retrieval", "--peak-tflops", ["--peak-tflops", "0"], "--peak-tflops 0.0 is invalid"),
    ("bench.retrieval", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.retrieval", "--repeats", ["--repeats", "0"], "--repeats 0 is invalid"),
    ("bench.retrieval", "--warmup", ["--warmup", "-1"], "--warmup -1 is invalid"),
    ("bench.retrieval", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.feature_cache", "--images", ["--images", "0"], "--images 0 is invalid"),
    ("bench.feature_cache", "--in-ram-images", ["--in-ram-images", "0"], "--in-ram-images 0 is invalid"),
    ("bench.feature_cache", "--batch-size", ["--batch-size", "0"], "--batch-size 0 is invalid"),
    ("bench.feature_cache", "--shard-size", ["--shard-size", "x"], "argument --shard-size: invalid int value"),
    ("bench.feature_cache", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.feature_cache", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.feature_extraction", "--images", ["--images", "0"], "--images 0 is invalid"),
    ("bench.feature_extraction", "--vit-images", ["--vit-images", "-1"], "--vit-images -1 is invalid"),
    ("bench.feature_extraction", "--workers", ["--workers", "0", "-2"], "--workers -2 is invalid"),
    ("bench.feature_extraction", "--repeats", ["--repeats", "0"], "--repeats 0 is invalid"),
    ("bench.feature_extraction", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.feature_extraction", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.data_loading", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    # ------------------------------------------------------------------------------------------------ data.inspect
    ("data.inspect", "--data", ["--data", "{missing}", "--cache-dir", "{cache}"], "data source '{missing}' is not"),
    ("data.inspect", "--data", ["--cache-dir", "{cache}"], "the following arguments are required: --data"),
    ("data.inspect", "--split", ["--data", "shapes", "--split", "sideways"], "argument --split: invalid choice"),
    ("data.inspect", "--seed", ["--data", "shapes", "--seed", "-1"], "--seed -1 is invalid"),
    ("data.inspect", "--max-target-tokens", ["--data", "shapes", "--max-target-tokens", "0"], "--max-target-tokens 0"),
    ("data.inspect", "--samples", ["--data", "shapes", "--samples", "x"], "argument --samples: invalid int value"),
    ("data.inspect", "--cache-dir", ["--data", "shapes", "--cache-dir", "{file}"], "--cache-dir {file} is a file"),
    ("data.inspect", "--sheet", ["--data", "shapes", "--sheet", "{dir}"], "--sheet {dir} is a folder"),
    ("demo.tables", "--cache-dir", ["--cache-dir", "{file}"], "--cache-dir {file} is a file"),
    ("bench.run_all", "--threads", ["--threads", "x"], "argument --threads: invalid int value"),
    ("bench.run_all", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
    ("bench.run_all", "--work-dir", ["--work-dir", "{file}"], "--work-dir {file} is a file"),
    ("bench.memory", "--decoder-size", ["--decoder-size", "7b"], "argument --decoder-size: invalid choice"),
    ("bench.memory", "--top-k", ["--top-k", "-1"], "--top-k -1 is invalid"),
    ("bench.memory", "--top-k", ["--top-k", "29", "--decoder-size", "0.6b"], "--top-k 29 is invalid; Qwen3-0.6B-Base has 28"),
    ("bench.memory", "--top-k", ["--measure", "--top-k", "5"], "--top-k 5 is invalid with --measure"),
    ("bench.memory", "--lora-rank", ["--lora-rank", "-1"], "--lora-rank -1 is invalid"),
    ("bench.memory", "--lora-rank", ["--lora-rank", "16", "--top-k", "28"], "--lora-rank 16 adapts the blocks below the top K"),
    ("bench.memory", "--batch-size", ["--batch-size", "8", "0"], "--batch-size 0 is invalid"),
    ("bench.memory", "--max-target-tokens", ["--max-target-tokens", "0"], "--max-target-tokens 0 is invalid"),
    ("bench.memory", "--num-visual-tokens", ["--num-visual-tokens", "0"], "--num-visual-tokens 0 is invalid"),
    ("bench.memory", "--precision", ["--precision", "fp8"], "argument --precision: invalid choice"),
    ("bench.memory", "--frozen-dtype", ["--precision", "fp32", "--frozen-dtype", "bf16"], "--frozen-dtype bf16 is invalid"),
    ("bench.memory", "--beams", ["--beams", "0"], "--beams 0 is invalid"),
    ("bench.memory", "--threads", ["--threads", "0"], "--threads 0 is invalid"),
]  # fmt: skip


def case_values(case) -> tuple:
    return tuple(case.values) if hasattr(case, "values") else case


def case_id(case) -> str:
    entry, option, argv, _ = case_values(case)
    return f"{entry} {option} {' '.join(argv)}"


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, str]:
    """The paths the cases name, and an environment that cannot change their outcome: no `.env`, none of the
    project's keys, the hub offline (a hub id fails at once), no login for the page."""
    import runtime.env
    from training.config import ENV_KEYS

    monkeypatch.setattr(runtime.env, "DOTENV", tmp_path / "no.env")
    for key in [*ENV_KEYS, "CAPTION_AUTH", "WORLD_SIZE"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    (tmp_path / "file.txt").write_text("not what the option wants\n")
    (tmp_path / "dir").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "x.png")
    decoder = tmp_path / "decoder"  # a local decoder's config: all the experiments read before their cells' checks
    decoder.mkdir()
    (decoder / "config.json").write_text(json.dumps(tiny_qwen3_config().to_dict()))
    return {"tmp": str(tmp_path), "file": str(tmp_path / "file.txt"), "dir": str(tmp_path / "dir"),
            "missing": str(tmp_path / "missing"), "image": str(tmp_path / "x.png"), "out": str(tmp_path / "models"),
            "cache": str(tmp_path / "cache"), "decoder": str(decoder)}  # fmt: skip


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """A command's exit status for `argv`, run in this process: main()'s return value, or argparse's SystemExit."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def option_names(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string a user can type, with the metavar or name of positional arguments."""
    names = set()
    for action in parser._actions:
        names |= set(action.option_strings) or {action.metavar or action.dest}
    return names


@pytest.mark.parametrize("entry, option, argv, expected", CASES, ids=[case_id(c) for c in CASES])
def test_a_mistake_is_one_line_and_exit_status_2(entry, option, argv, expected, places, capsys):
    build_parser, main = entry_points()[entry]
    argv = [a.format(**places) for a in argv]
    status = run_main(main, argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, (status, captured.err[-2000:])
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err[-2000:]
    assert lines[0].startswith("error: " + expected.format(**places)), lines[0]
    # Advice names only options of this command: besides its own, only what the user typed (quoted back) and, inside
    # `backquotes`, another program's (`hf download ... --local-dir DIR`).
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", re.sub(r"`[^`]*`", "", lines[0])))
    unknown = named - option_names(build_parser()) - set(argv)
    assert not unknown, f"the error names options {entry} does not have: {unknown}"


@pytest.mark.parametrize("entry", sorted(NOTHING_TO_REFUSE))
def test_every_option_has_a_case(entry):
    """Each option a user can type has a case above, or a reason it has no value to refuse."""
    parser = entry_points()[entry][0]()
    covered = {case_values(c)[1] for c in CASES if case_values(c)[0] == entry} | set(NOTHING_TO_REFUSE[entry])
    shown = [a for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
    missing = [a.option_strings or [a.metavar or a.dest] for a in shown]
    missing = [names for names in missing if not set(names) & covered]
    assert not missing, f"{entry}: no case for {missing}"


HELP_CASES = [pytest.param(e) if e == "explain.pointing" else e for e in NOTHING_TO_REFUSE]


@pytest.mark.parametrize("entry", HELP_CASES)
def test_help_shows_every_default(entry):
    """`--help` says each option's default (switches are off unless given; required options have none)."""
    parser = entry_points()[entry][0]()
    formatter = parser._get_formatter()
    silent = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or action.nargs == 0 or action.required:
            continue
        if "default" not in formatter._expand_help(action).lower():
            silent.append(action.option_strings or action.dest)
    assert not silent, f"{entry}: --help shows no default for {silent}"
    parser.format_help()  # every help string formats (a stray % would raise)
