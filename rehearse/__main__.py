"""`python -m rehearse` (`make rehearse`): the README's commands at the real layout, offline, on the CPU, checked.

    python -m rehearse            # builds, runs and checks in a temporary folder, then deletes it
    python -m rehearse --keep     # keeps the folder (or REHEARSE_KEEP=1): the hub cache, the runs, every log

Each step is a command in its own process (`rehearse/commands.py`), with HF_HOME at the rehearsal's hub cache and
HF_HUB_OFFLINE=1, measured for time and peak memory, in this order (`commands`):

1. build (`python -m rehearse.build`): the hub cache (Qwen3-0.6B-Base, the ViT-B/16 and CLIP ViT-B/32 weights, the
   teacher) and a Flickr30k folder of 24 images with Karpathy's split;
2. imports: a process that only imports what the commands import, the memory every estimate starts from;
3. `train.py --encoder vit --top-k 3 --precision bf16 --max-steps 2`: a few steps in one process, a mid-epoch
   checkpoint, a validation at the stop;
4. `train.py --encoder clip --top-k 3 --view hidden --precision bf16 --max-steps 1`, the README's second command
   (in an output folder of its own: caption.py's default checkpoint must not have to choose between the two);
5. the ViT run under `torchrun --nproc_per_node 2` (gloo), for one whole epoch: its end, its validation with the
   shuffled-image control, a checkpoint that closes the epoch;
6. `train.py --test --encoder vit --top-k 3` (the newest matching run: the two-process one);
7. `caption.py IMAGE` (the newest checkpoint);
8. `train.py --push-to-hub OWNER/NAME --dry-run --encoder vit --top-k 3`;
9. `python -m synth` on three images with the teacher;
10. the same images as COCO with Karpathy's split over the 2017 folders (`--data COCO --split karpathy`) and as a
    Parquet dataset repo on the hub (`--data hf:someone/captions`): a step each, then `--test`, whose full metric
    set (and for COCO the published rows beside ours) is checked.
11. `train.py --encoder vit --top-k 1 --lora-rank 16 --max-steps 1`, then `caption.py` with its checkpoint (the
    adapters merged into the weights);
12. the memory estimator (`training/memory.py`): one training step of a random decoder at Qwen3-0.6B's full layout
    (bf16, frozen weights in bf16, LoRA beside the top K; `bench/memory.py`), its resident memory and peaks checked
    against the estimate's, phase by phase.

Training uses batch 8 (40 captions: 5 steps an epoch) and evaluates 4 images in galleries of 4; every other
setting is the commands' default. Then the checks (`check`, `rehearse/checks.py`), one line each, with the measured
and the expected value: exit statuses, peak memory against an estimate, checkpoint contents and sizes, finite
numbers, generation ending with end-of-text, the tokenizer's count of over-long captions, what the push would
upload, the teacher's output.

Exit status 0 when every check passes; 1 when one fails (every check is printed, then the end of the log of each
command that failed); 2 when the rehearsal cannot start (no tokenizer, too little disk or memory). About 8 minutes
on the 2-core test machine; it needs 8 GB of disk and 16 GB of memory (two training processes of 7 GB at once).

Read next: `rehearse/__init__.py` (why rehearse, and what is real and what is not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer

from checkpoints.store import checkpoint_stem
from errors import OneLineArgumentParser

from . import checks as c
from .build import SPLITS, TOKENIZER_DIR, Workspace, read_build_checks
from .captions import PARQUET_REPO
from .commands import Finished, command_environment, run
from .encoders import CLIP_REPO, CLIP_WEIGHTS, VIT_REPO
from .flickr import KARPATHY_FILE, image_name
from .hub_cache import folder_bytes
from .qwen3 import DECODER_REPO, END_OF_TEXT, GRAMMAR, QWEN3_0_6B_BASE_CONFIG
from .teacher import TEACHER_REPO

REPO = Path(__file__).resolve().parents[1]
KEEP_ENV = "REHEARSE_KEEP"
NEEDED_DISK = 8e9  # bytes free in the temporary folder: the hub cache (3.6 GB), checkpoints (2.5 GB), logs
NEEDED_MEMORY = 16e9  # bytes available: two training processes of about 7 GB each, and the rehearsal's own
BATCH, EVAL_IMAGES, TOP_K = 8, 4, 3
MAX_TARGET_TOKENS, MAX_NEW_TOKENS, KEEP_CHECKPOINTS = 48, 32, 2  # train.py's defaults
PUSH_REPO = "someone/flickr30k-vit-top3"
HUB_FLICKR30K = "nlphuji/flickr30k"  # the hub dataset that `--data flickr30k` means
TEACHER_IMAGES, TEACHER_TOKENS = 3, 32
TIMEOUT = 900.0  # seconds, for any one command
# bench/memory.py's measured case at the real layout (its --measure uses 4 blocks and a small vocabulary).
ESTIMATOR_CASE = dict(size="0.6b", layers=28, vocab=151_936, precision="bf16", frozen="bf16", lora=16, top_k=TOP_K,
                      checkpointing=False, batch=4, visual=16, target=48, threads=2)  # fmt: skip
ENCODER_WIDTH = 768  # ViT-B/16's CLS token and CLIP ViT-B/32's hidden tokens: what the bridge reads
CLIP_TEXT_TOWER = ("transformer.", "token_embedding", "positional_embedding", "ln_final", "text_projection",
                   "logit_scale")  # fmt: skip


def say(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# Build and run
# ---------------------------------------------------------------------------------------------------------------------


def commands(ws: Workspace) -> dict[str, list[str]]:
    """Each command's label and argv, in the order they run (see the module docstring)."""
    py = sys.executable
    train, caption = str(REPO / "train.py"), str(REPO / "caption.py")
    images = ws.flickr / "flickr30k_images"
    common = ["--cache-dir", str(ws.cache), "--precision", "bf16", "--epochs", "1", "--batch-size", str(BATCH),
              "--eval-images", str(EVAL_IMAGES), "--gallery-size", str(EVAL_IMAGES)]  # fmt: skip
    data = ["--data", str(ws.flickr), *common]
    evaluation = ["--cache-dir", str(ws.cache), "--eval-images", str(EVAL_IMAGES), "--gallery-size", str(EVAL_IMAGES)]
    vit, clip = ["--encoder", "vit", "--top-k", str(TOP_K)], ["--encoder", "clip", "--top-k", str(TOP_K)]
    torchrun = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    photo = images / image_name(sum(SPLITS.values()) - 1)  # the last test image
    return {
        "build": [py, "-m", "rehearse.build", str(ws.root)],
        "imports": [py, "-c", "import train, training.run, caption, timm, timm.data, open_clip, transformers"],
        "train, 1 process": [py, train, *vit, *data, "--max-steps", "2", "--eval-every", "2", "--run-name", "vit-1"],
        "train clip hidden": [py, train, *clip, "--view", "hidden", *data, "--max-steps", "1", "--eval-every", "1",
                              "--run-name", "clip-hidden", "--output-dir", str(ws.root / "models-clip")],
        "train, 2 processes": [*torchrun, train, *vit, *data, "--run-name", "vit-2"],
        "test": [py, train, "--test", *vit, "--cache-dir", str(ws.cache), "--eval-images", str(EVAL_IMAGES),
                 "--gallery-size", str(EVAL_IMAGES)],
        "caption": [py, caption, str(photo), "--out", str(ws.root / "captions.jsonl")],
        "push dry run": [py, train, "--push-to-hub", PUSH_REPO, "--dry-run", *vit],
        "teacher": [py, "-m", "synth", "--images", str(images), "--limit", str(TEACHER_IMAGES), "--out",
                    str(ws.root / "synthetic"), "--questions", "3", "--max-new-tokens", str(TEACHER_TOKENS)],
        # The other data users bring (rehearse/captions.py), each in its own output folder.
        "train coco": [py, train, *vit, "--data", str(ws.coco), "--split", "karpathy", *common, "--max-steps", "1",
                       "--eval-every", "1", "--run-name", "coco", "--output-dir", str(ws.root / "models-coco")],
        "test coco": [py, train, "--test", "--checkpoint", str(ws.run_dir("coco", ws.root / "models-coco")),
                      *evaluation, "--output-dir", str(ws.root / "models-coco")],
        "train parquet": [py, train, *vit, "--data", f"hf:{PARQUET_REPO}", *common, "--max-steps", "1",
                          "--eval-every", "1", "--run-name", "parquet",
                          "--output-dir", str(ws.root / "models-parquet")],
        "test parquet": [py, train, "--test", "--checkpoint", str(ws.run_dir("parquet", ws.root / "models-parquet")),
                         *evaluation, "--output-dir", str(ws.root / "models-parquet")],
        # LoRA beside top-1 at the real layout (adapters on the 27 blocks below), then caption.py with it (merged).
        "train lora": [py, train, "--encoder", "vit", "--top-k", "1", "--lora-rank", "16", *data, "--max-steps", "1",
                       "--eval-every", "1", "--run-name", "lora", "--output-dir", str(ws.root / "models-lora")],
        "caption lora": [py, caption, str(photo), "--checkpoint", str(ws.run_dir("lora", ws.root / "models-lora")),
                         "--out", str(ws.root / "captions-lora.jsonl")],
        # The memory estimator (training/memory.py) against one measured step at Qwen3-0.6B's full layout: all 28
        # blocks and the 151,936-row vocabulary, bf16 with the frozen weights in bf16, LoRA beside the top K.
        "memory estimator": ["env", "MALLOC_MMAP_THRESHOLD_=65536", py, "-m", "bench.memory", "--child",
                             json.dumps(ESTIMATOR_CASE)],
    }  # fmt: skip


def run_all(ws: Workspace) -> dict[str, Finished]:
    """Every command in turn, each told what it took; later ones run even when an earlier one failed."""
    wandb = {"WANDB_DATA_DIR": "data", "WANDB_CACHE_DIR": "cache", "WANDB_CONFIG_DIR": "config"}
    wandb_dirs = {key: str(ws.root / "wandb" / part) for key, part in wandb.items()}  # W&B's files stay in the folder
    env = command_environment(ws.hf_home, REPO) | wandb_dirs | {
        "OUTPUT_DIR_MODELS": str(ws.models),  # train.py's and caption.py's output folder, from the environment
        "WANDB_MODE": "offline",  # what train.py's default --wandb auto does without an API key: no network
        "WANDB_SILENT": "true",
    }  # fmt: skip
    finished = {}
    for label, argv in commands(ws).items():
        done = run(label.replace(" ", "-").replace(",", ""), argv, env=env, cwd=ws.root, logs=ws.logs, timeout=TIMEOUT)
        together = f", {c.gb(done.total_rss)} together" if done.total_rss > done.peak_rss * 1.5 else ""
        say(f"ran   {label}: exit {done.status} in {done.seconds:.0f} s, peak {c.gb(done.peak_rss)}{together}")
        finished[label] = done
    return finished


# ---------------------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------------------


def model_sizes(ws: Workspace, encoder: str, view: str, top_k: int = TOP_K, lora_rank: int = 0) -> c.ModelSizes:
    """Parameter counts from the configs and the snapshots' files (not from the model code); LoRA's adapters (on
    every linear layer of the blocks below the top K) from training/memory.py's count."""
    from tiny_decoder import Qwen3Config
    from tiny_decoder.lora import TARGETS
    from training.memory import lora_parameters

    config = QWEN3_0_6B_BASE_CONFIG
    trainable = c.count(c.trainable_tensors(config, view, ENCODER_WIDTH, top_k))
    layers = config["num_hidden_layers"]
    trainable += lora_parameters(Qwen3Config.from_dict(config), lora_rank, TARGETS, layers - top_k) if lora_rank else 0
    bridge = c.count(c.bridge_tensors(view, ENCODER_WIDTH, config["hidden_size"]))
    if encoder == "vit":  # without the ImageNet head, which the project drops
        weights = ws.snapshot(VIT_REPO) / "model.safetensors"
        encoder_values = c.stored_parameters(weights, skip=("head.",))
    else:  # the image tower, and a whole second CLIP for its own retrieval, the reference row (training/run.py)
        weights = ws.snapshot(CLIP_REPO) / CLIP_WEIGHTS
        encoder_values = c.stored_parameters(weights, skip=CLIP_TEXT_TOWER) + c.stored_parameters(weights)
    decoder_file = (ws.snapshot(DECODER_REPO) / "model.safetensors").stat().st_size
    head = config["vocab_size"] * config["hidden_size"]
    return c.ModelSizes(c.decoder_parameters(config), head, encoder_values, bridge, trainable, decoder_file,
                        weights.stat().st_size)  # fmt: skip


def status_checks(finished: dict[str, Finished]) -> list[c.Check]:
    return [
        c.Check(f"{label}: exit status", done.status == 0 and not done.timed_out,
                f"{done.status}{' (timed out)' if done.timed_out else ''} after {done.seconds:.0f} s", "0")
        for label, done in finished.items()
    ]  # fmt: skip


def memory_checks(ws: Workspace, finished: dict[str, Finished]) -> list[c.Check]:
    imports = finished["imports"].peak_rss
    vit, clip = model_sizes(ws, "vit", "pooled"), model_sizes(ws, "clip", "hidden")
    lora = model_sizes(ws, "vit", "pooled", top_k=1, lora_rank=16)
    teacher_files = sorted(ws.snapshot(TEACHER_REPO).glob("model-*.safetensors"))
    teacher = (
        c.MemoryEstimate()
        .add("imports", imports)
        .add("teacher fp32", sum(c.stored_parameters(path) for path in teacher_files) * c.FP32)
        .add("its files mapped while loading", sum(path.stat().st_size for path in teacher_files))
    )
    estimates = {
        "train, 1 process": c.training_memory(imports, vit, bf16=True, processes=1),
        "train clip hidden": c.training_memory(imports, clip, bf16=True, processes=1),
        "train, 2 processes": c.training_memory(imports, vit, bf16=True, processes=2),
        "train coco": c.training_memory(imports, vit, bf16=True, processes=1),
        "train parquet": c.training_memory(imports, vit, bf16=True, processes=1),
        "train lora": c.training_memory(imports, lora, bf16=True, processes=1),
        "caption lora": c.inference_memory(imports, lora),
        "test": c.inference_memory(imports, vit),
        "caption": c.inference_memory(imports, vit),
        "teacher": teacher,
    }
    checks = [c.memory_check(label, finished[label].peak_rss, estimate) for label, estimate in estimates.items()]
    return checks + estimator_checks(finished["memory estimator"])


def estimator_checks(done: Finished) -> list[c.Check]:
    """training/memory.py's estimate of one training step at the real layout against what the step measured (CPU
    resident memory above a baseline, bench/memory.py), phase by phase. A CPU cannot see what only a GPU has: the
    CUDA context and the caching allocator's reserved-but-unused blocks (docs/memory.md)."""
    from bench.memory import compared

    lines = [line for line in done.output().splitlines() if line.startswith("RESULT ")]
    if done.status or not lines:
        return [c.Check("memory estimator: the measured step", False, f"exit {done.status}, no result", "a result")]
    measured = json.loads(lines[-1][len("RESULT ") :])
    return [
        c.Check(
            f"memory estimator at the real layout: {phase}",
            abs(got / expected - 1) <= c.MEMORY_MARGIN - 1,
            f"{c.gb(got)} measured ({got / expected:.2f} x the estimate)",
            f"within {c.MEMORY_MARGIN - 1:.0%} of training/memory.py's {c.gb(expected)}",
        )
        for phase, (got, expected) in compared(ESTIMATOR_CASE, measured).items()
    ]


def checkpoint_file_checks(ws: Workspace) -> list[c.Check]:
    """The three training runs' checkpoints: contents, bytes, and (ViT) bytes on disk against the run's estimate."""
    found = []
    for run_dir, encoder, view, step in ((ws.run_dir("vit-1"), "vit", "pooled", 2),
                                         (ws.run_dir("clip-hidden", ws.root / "models-clip"), "clip", "hidden", 1),
                                         (ws.run_dir("vit-2"), "vit", "pooled", None)):  # fmt: skip
        weights = run_dir / f"{checkpoint_stem(1, encoder, TOP_K, step=step)}.safetensors"
        label = f"checkpoint {run_dir.name}/{weights.name}"
        if not weights.exists():
            found.append(c.Check(label, False, "not written", str(weights)))
            continue
        expected = c.trainable_tensors(QWEN3_0_6B_BASE_CONFIG, view, ENCODER_WIDTH, TOP_K)
        found += c.checkpoint_checks(label, weights, expected)
        if encoder == "vit":
            found.append(c.checkpoint_disk_check(label, weights, c.count(expected) * c.FP32, KEEP_CHECKPOINTS))
    return found


def logged_number_checks(ws: Workspace) -> list[c.Check]:
    train = ("train/loss", "val/loss", "val/cider_d")
    return [
        c.finite_metrics_check("run vit-1", ws.run_dir("vit-1"), train),
        c.finite_metrics_check("run clip-hidden", ws.run_dir("clip-hidden", ws.root / "models-clip"), train),
        c.finite_metrics_check("run vit-2 and its --test", ws.run_dir("vit-2"), (*train, "shuffled/cider_d", "test/")),
        c.finite_metrics_check("run coco and its --test", ws.run_dir("coco", ws.root / "models-coco"),
                               (*train, "test/")),
        c.finite_metrics_check("run parquet and its --test", ws.run_dir("parquet", ws.root / "models-parquet"),
                               (*train, "test/")),
    ]  # fmt: skip


FULL_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d")  # what --test reports


def other_data_checks(ws: Workspace, finished: dict[str, Finished]) -> list[c.Check]:
    """COCO on Karpathy's split and a Parquet repo: read in their layouts, and --test's full metric set; COCO's with
    the published rows beside ours (metrics.json's `/published` entry, and the table in the output)."""
    found = []
    for name, layout in (("coco", "coco-karpathy-json (2017 folders)"), ("parquet", f"parquet at hf:{PARQUET_REPO}")):
        metrics_file = ws.run_dir(name, ws.root / f"models-{name}") / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        test = next((v for k, v in metrics.items() if k.startswith("test/") and not k.endswith("/published")), {})
        missing = [key for key in FULL_METRICS if key not in test]
        found.append(c.Check(f"train {name}: the layout read", layout in finished[f"train {name}"].output(),
                             f"{'found' if layout in finished[f'train {name}'].output() else 'not found'} in its log",
                             layout))  # fmt: skip
        found.append(c.Check(f"test {name}: the COCO caption metrics", bool(test) and not missing,
                             f"{len(FULL_METRICS) - len(missing)} of {len(FULL_METRICS)}"
                             + (f"; no {', '.join(missing)}" if missing else ""), ", ".join(FULL_METRICS)))  # fmt: skip
    metrics_file = ws.run_dir("coco", ws.root / "models-coco") / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    published = next((v for k, v in metrics.items() if k.endswith("/published")), {})
    rows = [row["model"] for row in published.get("rows", [])]
    printed = "coco, karpathy test split: published results and ours" in finished["test coco"].output()
    found.append(c.Check("test coco: the published rows beside ours", printed and len(rows) >= 3 and rows[-1] == "ours",
                         f"{len(rows)} rows in metrics.json ({', '.join(rows)}); table printed: {printed}",
                         "ClipCap's two rows, then ours, printed and in metrics.json"))  # fmt: skip
    return found


def end_of_text_checks(ws: Workspace, tokenizer: Tokenizer) -> list[c.Check]:
    def tokens(text: str) -> int:
        return len(tokenizer.encode(" " + text, add_special_tokens=False).ids)

    word = tokenizer.decode([GRAMMAR.word]).strip()
    captions = ws.root / "captions.jsonl"
    outputs = [json.loads(line)["output"] for line in captions.read_text().splitlines()] if captions.exists() else []
    sidecar = ws.run_dir("vit-2") / f"{checkpoint_stem(1, 'vit', TOP_K)}.json"
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    eos, source = meta.get("tokenizer", {}).get("eos_id"), meta.get("decoder", {}).get("source")
    return [
        c.Check("checkpoint vit-2: decoder and end-of-text", (eos, source) == (END_OF_TEXT, DECODER_REPO),
                f"decoder {source}, end-of-text {eos}", f"decoder {DECODER_REPO}, end-of-text {END_OF_TEXT}"),
        c.end_of_text_check("validation (bf16 autocast)", c.generated_texts(ws.run_dir("vit-2")), tokens,
                            MAX_NEW_TOKENS, word),
        c.end_of_text_check("caption.py (fp32)", outputs, tokens, MAX_NEW_TOKENS, word),
    ]  # fmt: skip


def long_caption_check(ws: Workspace, tokenizer: Tokenizer, log: str) -> c.Check:
    """The run's count of over-long training captions against the tokenizer's, from the Karpathy file itself."""
    images = json.loads((ws.flickr / KARPATHY_FILE).read_text())["images"]
    train = [s["raw"] for image in images if image["split"] == "train" for s in image["sentences"]]
    cut = sum(len(tokenizer.encode(" " + text, add_special_tokens=False).ids) > MAX_TARGET_TOKENS for text in train)
    return c.cut_targets_check(log, cut, len(train), MAX_TARGET_TOKENS)


def push_check(ws: Workspace, output: str) -> c.Check:
    """The dry run lists the checkpoint it would upload, byte for byte the newest ViT run's checkpoint."""
    weights = ws.run_dir("vit-2") / f"{checkpoint_stem(1, 'vit', TOP_K)}.safetensors"
    listed = [line.strip() for line in output.splitlines() if line.startswith("  ") and "bytes)" in line]
    if not weights.exists():
        return c.Check(f"push dry run to {PUSH_REPO}", False, "; ".join(listed) or "no files listed", f"{weights}")
    entry = f"checkpoint.safetensors ({weights.stat().st_size:,} bytes)"
    return c.Check(f"push dry run to {PUSH_REPO}", entry in listed, "; ".join(listed) or "no files listed",
                   f"{entry}, checkpoint.json, README.md")  # fmt: skip


def card_data_check(output: str) -> c.Check:
    """The model card says what the run trained on: the local folder it was given (named `flickr30k`, as the README's
    `--data ~/data/flickr30k`), not the hub's dataset `nlphuji/flickr30k`, which the run never read."""
    lines = output.splitlines()
    data = next((line.strip("- ") for line in lines if line.startswith("- **Data**")), "no Data line")
    listed = lines.index("datasets:") if "datasets:" in lines else len(lines)
    hub = [line.strip("- ") for line in lines[listed + 1 :] if line.startswith("- ")][:1] if listed < len(lines) else []
    claims_hub = HUB_FLICKR30K in data or HUB_FLICKR30K in hub
    return c.Check("push dry run: the card's data", data != "no Data line" and not claims_hub,
                   f"{data}; metadata datasets: {hub or 'none'}",
                   f"the local folder flickr30k, and no hub dataset ({HUB_FLICKR30K} was never read)")  # fmt: skip


def card_table_check(output: str) -> c.Check:
    """Every row of the model card's metrics table has a number in the validation or the test column (a row with
    neither is a value of metrics.json that is not a metric)."""
    rows = [line for line in output.splitlines() if line.startswith("| ") and not line.startswith("| metric ")]
    empty = [row.split("|")[1].strip() for row in rows if not any(cell.strip() for cell in row.split("|")[2:])]
    return c.Check("push dry run: the card's metrics table", bool(rows) and not empty,
                   f"{len(rows)} rows" + (f", without a number: {', '.join(empty)}" if empty else ""),
                   "every row with a validation or a test number")  # fmt: skip


def teacher_check(ws: Workspace) -> c.Check:
    """Every image asked about comes back, described or rejected, and the teacher wrote text for each: its random
    weights write junk, which the checks reject, but the processor, the chat template and generation all ran."""
    out = ws.root / "synthetic"
    records = [json.loads(line) for path in [*sorted(out.glob("data/shard-*.jsonl")), out / "rejected.jsonl"]
               if path.exists() for line in path.read_text().splitlines()]  # fmt: skip
    written = [r for r in records if r.get("caption") or r.get("output")]
    return c.Check(f"python -m synth with {TEACHER_REPO}", len(records) == TEACHER_IMAGES == len(written),
                   f"{len(records)} images back, {len(written)} with the teacher's text",
                   f"{TEACHER_IMAGES} images, each with text (random weights: rejected as not JSON)")  # fmt: skip


def check(ws: Workspace, finished: dict[str, Finished]) -> list[c.Check]:
    """Every check, in the order they print. A check whose inputs are missing (a command failed) fails itself; one
    that cannot be made at all is a failed check naming the error, never a traceback that hides the others."""
    tokenizer = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    status = status_checks(finished)
    if finished["build"].status != 0:
        return [*status, *read_build_checks(ws)]
    groups: list[tuple[str, Callable[[], list[c.Check]]]] = [
        ("the build", lambda: read_build_checks(ws)),
        ("exit statuses", lambda: status),
        ("memory", lambda: memory_checks(ws, finished)),
        ("checkpoints", lambda: checkpoint_file_checks(ws)),
        ("logged numbers", lambda: logged_number_checks(ws)),
        ("end of text", lambda: end_of_text_checks(ws, tokenizer)),
        ("long captions", lambda: [long_caption_check(ws, tokenizer, finished["train, 1 process"].output())]),
        ("the push", lambda: [push_check(ws, finished["push dry run"].output())]),
        ("the card", lambda: [card_data_check(finished["push dry run"].output())]),
        ("the card's table", lambda: [card_table_check(finished["push dry run"].output())]),
        ("the teacher", lambda: [teacher_check(ws)]),
        ("other data", lambda: other_data_checks(ws, finished)),
    ]
    results = []
    for name, make in groups:
        try:
            results += make()
        except Exception as err:  # reported as a failed check, with the others still printed
            results.append(c.Check(name, False, f"could not check: {type(err).__name__}: {err}", "a check"))
    return results


# ---------------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m rehearse", description="Rehearse the real run, offline (see "
                                   "rehearse/__main__.py).")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help=f"keep the temporary folder (also {KEEP_ENV}=1)")
    return parser


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes; None where there is none (macOS)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except OSError:
        return None
    return int(fields["MemAvailable"].split()[0]) * 1024


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        say(f"error: the real Qwen3 tokenizer is not at {TOKENIZER_DIR} (see docs/testing.md)")
        return 2
    if (available := available_memory()) is not None and available < NEEDED_MEMORY:
        say(f"error: {c.gb(available)} of memory available; the rehearsal needs {c.gb(NEEDED_MEMORY)}")
        return 2
    root = Path(tempfile.mkdtemp(prefix="tiny-vlm-rehearse-"))
    if (free := shutil.disk_usage(root).free) < NEEDED_DISK:
        say(f"error: {c.gb(free)} free in {root.parent}; the rehearsal needs {c.gb(NEEDED_DISK)} (set TMPDIR)")
        shutil.rmtree(root)
        return 2
    ws, started = Workspace(root), time.perf_counter()
    keep = args.keep or os.environ.get(KEEP_ENV, "") not in ("", "0")
    say(f"rehearsing in {root}")
    try:
        finished = run_all(ws)
        say(f"hub cache {c.gb(folder_bytes(ws.hub_cache))}; logs in {ws.logs}")
        results = check(ws, finished)
        for result in results:
            say(result.line())
        for done in finished.values():
            if done.status != 0:
                say(f"--- the end of {done.log.name}:\n{done.tail()}")
        failed = [r for r in results if not r.ok]
        say(f"rehearsal: {len(results) - len(failed)} of {len(results)} checks passed in "
            f"{(time.perf_counter() - started) / 60:.1f} min" + (f"; kept {root}" if keep else ""))  # fmt: skip
        return 1 if failed else 0
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
